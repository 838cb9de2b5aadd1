/**
 * The floor under every backup and restore: moving bytes from one Node process to another the
 * way the backup protocol does (HTTP/2 over TLS, Stowage's flow-control windows and frame size,
 * 4 MiB bodies, 4 in flight as a 2-core client keeps them) with nothing else to do: the server
 * reads each body into one reused buffer and answers. Measured in the same run against the same
 * bytes over a plain loopback TCP connection between two processes (what the kernel costs).
 *
 *   node --import tsx bench/transport.ts [--mb 1024] [--runs 3] [--in-flight 4]
 *
 * Prints, per transport, MB/s, seconds and the CPU seconds of each side (medians of the runs),
 * and the HTTP/2 + TLS floor against TCP. What it tells: how much of a backup's time and CPU no
 * change to chunking, hashing, compression or storage can win back on this machine
 * (docs/performance.md compares it with restic's and borg's whole backups). Not a test: run it
 * on an idle machine.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureCertificate } from '../src/http/tls.js';
import { median, processCpuSeconds } from './lib/measure.js';
import { H2_MAX_FRAME_SIZE, H2_MAX_SESSION_MEMORY_MB, H2_WINDOW_SIZE } from '../src/protocol/h2-session.js';

const BODY = 4 * 1024 * 1024;
type Transport = 'h2-tls' | 'tcp';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const IN_FLIGHT = arg('in-flight', 4);

/** The receiving side, in a child process: prints its port on the IPC channel. */
async function serve(transport: Transport, certDir: string): Promise<void> {
  const into = Buffer.allocUnsafe(BODY);
  if (transport === 'tcp') {
    const srv = createServer((sock) => {
      let n = 0;
      let answered = 0;
      sock.on('data', (d: Buffer) => {
        for (let off = 0; off < d.length;) {
          const take = Math.min(d.length - off, BODY - (n % BODY));
          d.copy(into, n % BODY, off, off + take);
          off += take;
          n += take;
        }
        // one answer per body, as the protocol answers each upload
        for (; answered < Math.floor(n / BODY); answered++) sock.write('k');
      });
    });
    srv.listen(0, '127.0.0.1', () => process.send!((srv.address() as AddressInfo).port));
    return;
  }
  const tls = await ensureCertificate(certDir, 'localhost');
  const srv = http2.createSecureServer({
    key: tls.key,
    cert: tls.cert,
    settings: { initialWindowSize: H2_WINDOW_SIZE, maxFrameSize: H2_MAX_FRAME_SIZE },
    maxSessionMemory: H2_MAX_SESSION_MEMORY_MB,
  });
  srv.on('session', (s) => s.setLocalWindowSize(H2_WINDOW_SIZE));
  srv.on('stream', (st) => {
    let n = 0;
    st.on('data', (d: Buffer) => {
      d.copy(into, n);
      n += d.length;
    });
    st.on('end', () => {
      st.respond({ ':status': 200 });
      st.end(String(n));
    });
  });
  srv.listen(0, '127.0.0.1', () => process.send!((srv.address() as AddressInfo).port));
}

interface Result {
  seconds: number;
  clientCpu: number;
  serverCpu: number;
}

/** Send `total` bytes in 4 MiB bodies, `IN_FLIGHT` at a time, waiting for each body's answer. */
async function measure(transport: Transport, total: number, certDir: string): Promise<Result> {
  const child = fork(new URL(import.meta.url).pathname, ['--serve', transport, certDir], {
    execArgv: process.execArgv,
  });
  const port = await new Promise<number>((resolve) => child.once('message', (m) => resolve(Number(m))));
  const body = Buffer.allocUnsafe(BODY);
  for (let i = 0; i < BODY; i++) body[i] = (i * 2654435761) >>> 24;
  const count = Math.ceil(total / BODY);
  let send: () => Promise<void>;
  let close: () => void;
  if (transport === 'tcp') {
    const sock = createConnection({ host: '127.0.0.1', port });
    await new Promise((r) => sock.once('connect', r));
    const waiting: Array<() => void> = [];
    sock.on('data', (d: Buffer) => {
      for (let i = 0; i < d.length; i++) waiting.shift()?.();
    });
    send = () => new Promise<void>((resolve) => (waiting.push(resolve), sock.write(body)));
    close = () => sock.destroy();
  } else {
    const h2 = http2.connect(`https://127.0.0.1:${port}`, {
      rejectUnauthorized: false,
      settings: { initialWindowSize: H2_WINDOW_SIZE, maxFrameSize: H2_MAX_FRAME_SIZE },
      maxSessionMemory: H2_MAX_SESSION_MEMORY_MB,
    });
    await new Promise((r) => h2.once('connect', r));
    h2.setLocalWindowSize(H2_WINDOW_SIZE);
    send = () =>
      new Promise<void>((resolve, reject) => {
        const req = h2.request({ ':method': 'POST', ':path': '/upload' });
        req.on('error', reject);
        req.resume();
        req.on('end', () => resolve());
        req.end(body);
      });
    close = () => h2.close();
  }
  const c0 = process.cpuUsage();
  const s0 = processCpuSeconds(child.pid!);
  const t0 = process.hrtime.bigint();
  let next = 0;
  const lane = async () => {
    while (next < count) {
      next++;
      await send();
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  const serverCpu = processCpuSeconds(child.pid!) - s0;
  close();
  child.kill();
  return { seconds, clientCpu: (c.user + c.system) / 1e6, serverCpu };
}

async function main(): Promise<void> {
  const serveAt = process.argv.indexOf('--serve');
  if (serveAt >= 0) return serve(process.argv[serveAt + 1] as Transport, process.argv[serveAt + 2]!);
  const mb = arg('mb', 1024);
  const runs = arg('runs', 3);
  const total = mb * 1024 * 1024;
  const certDir = mkdtempSync(join(tmpdir(), 'stowage-transport-'));
  try {
    const results: Record<Transport, Result[]> = { 'h2-tls': [], tcp: [] };
    for (let r = 0; r < runs; r++) {
      for (const t of ['h2-tls', 'tcp'] as const) {
        const res = await measure(t, total, certDir);
        results[t].push(res);
        console.log(
          `  run ${r + 1} ${t.padEnd(6)} ${res.seconds.toFixed(2)} s  (CPU client ${res.clientCpu.toFixed(2)} s, server ${res.serverCpu.toFixed(2)} s)`,
        );
      }
    }
    console.log(
      `\n== ${mb} MiB in ${BODY >> 20} MiB bodies, ${IN_FLIGHT} in flight, ${runs} run(s), medians`,
    );
    console.log('transport   seconds    MB/s  client CPU s  server CPU s');
    const med = (t: Transport, k: keyof Result) => median(results[t].map((x) => x[k]));
    for (const t of ['h2-tls', 'tcp'] as const) {
      const s = med(t, 'seconds');
      console.log(
        `${t.padEnd(10)} ${s.toFixed(2).padStart(8)} ${(total / 1e6 / s).toFixed(0).padStart(7)} ${med(t, 'clientCpu').toFixed(2).padStart(13)} ${med(t, 'serverCpu').toFixed(2).padStart(13)}`,
      );
    }
    const cpu = (t: Transport) => med(t, 'clientCpu') + med(t, 'serverCpu');
    console.log(
      `           h2-tls / tcp: time ${(med('h2-tls', 'seconds') / med('tcp', 'seconds')).toFixed(2)}x, CPU ${(cpu('h2-tls') / cpu('tcp')).toFixed(2)}x`,
    );
  } finally {
    rmSync(certDir, { recursive: true, force: true });
  }
}

await main();
