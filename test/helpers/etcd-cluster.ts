/**
 * A real 3-member etcd cluster for the cluster tests (issue 17): Debian's `etcd-server` (3.4) on
 * loopback ports, each member's data under one temp dir. No mock stands in for it.
 *
 * `npm test` starts one cluster for the whole run when a selected file sits under `test/cluster/`
 * (scripts/test.mjs runs this file with `--serve`) and passes it on in STOWAGE_TEST_ETCD_*; a file
 * run on its own starts its own through `testEtcd()`. Tests share the cluster, so each one works
 * under its own key prefix (`uniqueEtcdPrefix`). A test that stops a member (`stopMember`) must
 * start it again (`startMember`) before it ends, and stops `m1` only: files run two at a time, and
 * two different members down would leave the cluster without a quorum. A member is stopped for one
 * test at a time (a second stop waits for the first one's start), and a test that talks to `m1`
 * alone must allow for it being down in another test's outage; the serving process offers both over a small
 * HTTP control endpoint on loopback so that test processes can ask for them.
 *
 * Why these settings: `--unsafe-no-fsync` because the tests prove coordination, not durability
 * across a power cut, and fsync on a disk shared by four agents costs tens of milliseconds per
 * write; default heartbeat and election timeouts, because shorter ones make a loaded 2-core
 * machine flap between leaders.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { killWithProcess } from './service-lifetime.js';

export const ETCD_TEST_ENV = {
  /** Comma-separated client URLs of the members. */
  endpoints: 'STOWAGE_TEST_ETCD_ENDPOINTS',
  /** `http://127.0.0.1:PORT` of the serving process's member control. */
  control: 'STOWAGE_TEST_ETCD_CONTROL',
} as const;

const MEMBERS = ['m1', 'm2', 'm3'] as const;
export type EtcdMemberName = (typeof MEMBERS)[number];
const STARTUP_TIMEOUT_MS = 30_000;
/** How long a stop waits for another test's outage of the same member to end. */
const OUTAGE_WAIT_MS = 180_000;

/** What a test needs of the cluster. */
export interface EtcdTestTarget {
  /** Client URLs, one per member (`http://127.0.0.1:PORT`). */
  endpoints: string[];
  /** The client URL of one member. */
  endpointOf(member: EtcdMemberName): string;
  /** SIGKILL one member (its data stays); resolves once it is gone. */
  stopMember(member: EtcdMemberName): Promise<void>;
  /** Start a stopped member again on its data; resolves once it answers. */
  startMember(member: EtcdMemberName): Promise<void>;
}

export interface EtcdCluster extends EtcdTestTarget {
  dir: string;
  startupMs: number;
  /** Stop every member and remove the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Synchronous last resort for `process.on('exit')`. */
  killSync(): void;
}

class EtcdStartError extends Error {}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function tail(file: string, lines = 20): string {
  if (!existsSync(file)) return `(${file} does not exist)`;
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/** Whether the member at `url` answers as healthy (its /health needs a leader). */
async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

/** Start a 3-member cluster; rejects with the tails of the members' logs when it does not come up. */
export async function startEtcdCluster(): Promise<EtcdCluster> {
  if (spawnSync('sh', ['-c', 'command -v etcd']).status !== 0) {
    throw new EtcdStartError(
      'the cluster tests need etcd, but it is not installed (Debian: apt-get install etcd-server etcd-client; .ci/run does it)',
    );
  }
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'stowage-etcd-'));
  const ports = new Map<EtcdMemberName, { client: number; peer: number }>();
  for (const m of MEMBERS) ports.set(m, { client: await freePort(), peer: await freePort() });
  const clientUrl = (m: EtcdMemberName) => `http://127.0.0.1:${ports.get(m)!.client}`;
  const peerUrl = (m: EtcdMemberName) => `http://127.0.0.1:${ports.get(m)!.peer}`;
  const initialCluster = MEMBERS.map((m) => `${m}=${peerUrl(m)}`).join(',');
  // one token for the cluster: members with different tokens refuse each other (cluster ID mismatch)
  const clusterToken = `stowage-test-${randomBytes(4).toString('hex')}`;
  const children = new Map<EtcdMemberName, ChildProcess>();
  let stopped = false;

  const launch = (m: EtcdMemberName) => {
    const out = openSync(join(dir, `${m}.log`), 'a');
    const child = spawn(
      'etcd',
      [
        '--name',
        m,
        '--data-dir',
        join(dir, m),
        '--listen-client-urls',
        clientUrl(m),
        '--advertise-client-urls',
        clientUrl(m),
        '--listen-peer-urls',
        peerUrl(m),
        '--initial-advertise-peer-urls',
        peerUrl(m),
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-state',
        'new',
        '--initial-cluster-token',
        clusterToken,
        '--unsafe-no-fsync',
        '--logger',
        'zap',
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    child.unref();
    children.set(m, child);
  };
  const alive = (c: ChildProcess | undefined) =>
    c !== undefined && c.exitCode === null && c.signalCode === null;

  const killSync = () => {
    if (stopped) return;
    stopped = true;
    for (const c of children.values()) if (alive(c)) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  const killMember = async (m: EtcdMemberName) => {
    const c = children.get(m);
    if (!alive(c)) return;
    const exited = new Promise((resolve) => c!.once('exit', resolve));
    c!.ref(); // the process waits for the exit even when nothing else keeps it alive
    c!.kill('SIGKILL');
    await exited;
  };
  // One outage of a member at a time, across the test files sharing the cluster: a second
  // `stopMember` waits for the first one's `startMember`, so no test sees the member it stopped
  // come back under it (or another test's writes to it fail) because files run two at a time.
  const outages = new Map<EtcdMemberName, { ended: Promise<void>; end: () => void }>();
  const stopMember = async (m: EtcdMemberName) => {
    const since = Date.now();
    for (let current = outages.get(m); current; current = outages.get(m)) {
      if (Date.now() - since > OUTAGE_WAIT_MS) {
        throw new Error(
          `etcd member ${m} was kept stopped by another test for over ${OUTAGE_WAIT_MS / 1000} s`,
        );
      }
      await Promise.race([current.ended, new Promise((r) => setTimeout(r, 1_000).unref())]);
    }
    let end!: () => void;
    const ended = new Promise<void>((resolve) => (end = resolve));
    outages.set(m, { ended, end });
    await killMember(m);
  };
  const waitHealthy = async (members: readonly EtcdMemberName[], since: number) => {
    for (;;) {
      const dead = members.find((m) => !alive(children.get(m)));
      if (dead) throw new EtcdStartError(`etcd member ${dead} exited:\n${tail(join(dir, `${dead}.log`))}`);
      if ((await Promise.all(members.map((m) => healthy(clientUrl(m))))).every(Boolean)) return;
      if (Date.now() - since > STARTUP_TIMEOUT_MS) {
        throw new EtcdStartError(`etcd did not become healthy within ${STARTUP_TIMEOUT_MS / 1000} s`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const startMember = async (m: EtcdMemberName) => {
    try {
      if (alive(children.get(m))) return;
      launch(m);
      await waitHealthy([m], Date.now());
    } finally {
      outages.get(m)?.end();
      outages.delete(m);
    }
  };
  const stop = async () => {
    if (stopped) return;
    await Promise.all(MEMBERS.map(killMember));
    killSync();
  };

  try {
    for (const m of MEMBERS) launch(m);
    await waitHealthy(MEMBERS, started);
  } catch (err) {
    const logs = MEMBERS.map((m) => `--- ${m}.log ---\n${tail(join(dir, `${m}.log`))}`).join('\n');
    await stop();
    const msg = err instanceof Error ? err.message : String(err);
    throw new EtcdStartError(`starting the test etcd cluster failed: ${msg}\n${logs}`, { cause: err });
  }
  return {
    endpoints: MEMBERS.map(clientUrl),
    endpointOf: clientUrl,
    stopMember,
    startMember,
    dir,
    startupMs: Date.now() - started,
    stop,
    killSync,
  };
}

/** The target of a cluster another process serves: member control goes over its HTTP endpoint. */
function remoteTarget(endpoints: string[], control: string): EtcdTestTarget {
  const ask = async (what: 'stop' | 'start', member: EtcdMemberName) => {
    const res = await fetch(`${control}/${what}/${member}`, { method: 'POST' });
    if (!res.ok) throw new Error(`etcd test control: ${what} ${member}: ${await res.text()}`);
  };
  return {
    endpoints,
    endpointOf: (m) => endpoints[MEMBERS.indexOf(m)]!,
    stopMember: (m) => ask('stop', m),
    startMember: (m) => ask('start', m),
  };
}

let ownCluster: Promise<EtcdTestTarget> | undefined;

/**
 * The etcd cluster of this test run: the one `npm test` started (STOWAGE_TEST_ETCD_*), or else a
 * cluster of this process's own, started at the first call and stopped when the process exits.
 */
export function testEtcd(): Promise<EtcdTestTarget> {
  const endpoints = process.env[ETCD_TEST_ENV.endpoints];
  const control = process.env[ETCD_TEST_ENV.control];
  if (endpoints && control) return Promise.resolve(remoteTarget(endpoints.split(','), control));
  ownCluster ??= startEtcdCluster().then(killWithProcess);
  return ownCluster;
}

/** A key prefix no other test uses (`/stowage-test/LABEL-<random>/`): tests isolate themselves by it. */
export function uniqueEtcdPrefix(label: string): string {
  return `/stowage-test/${label}-${process.pid}-${randomBytes(4).toString('hex')}/`;
}

/**
 * `node --import tsx test/helpers/etcd-cluster.ts --serve`: start a cluster, print one JSON line
 * (`{endpoints, control, dir, startupMs}` or `{error}`), serve `POST /stop/<member>` and
 * `POST /start/<member>` on `control`, and stop it all when stdin closes or on SIGTERM/SIGINT.
 */
async function serve(): Promise<void> {
  let cluster: EtcdCluster;
  try {
    cluster = await startEtcdCluster();
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }) + '\n');
    process.exitCode = 1;
    return;
  }
  const http = createHttpServer((req, res) => {
    const m = /^\/(stop|start)\/(m[123])$/.exec(req.url ?? '');
    if (req.method !== 'POST' || !m) {
      res.writeHead(404).end('POST /stop/<member> or /start/<member>');
      return;
    }
    const member = m[2] as EtcdMemberName;
    const act = m[1] === 'stop' ? cluster.stopMember(member) : cluster.startMember(member);
    act.then(
      () => res.writeHead(204).end(),
      (err: unknown) => res.writeHead(500).end(err instanceof Error ? err.message : String(err)),
    );
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const control = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
  const { endpoints, dir, startupMs } = cluster;
  process.stdout.write(JSON.stringify({ endpoints, control, dir, startupMs }) + '\n');
  const shutdown = () => {
    http.close();
    void cluster.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  process.once('exit', () => cluster.killSync());
  createInterface({ input: process.stdin }).once('close', shutdown);
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--serve')) await serve();
