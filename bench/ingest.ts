/**
 * Server ingest, independent of stowage-client: a load generator opens N backup sessions at once
 * (the real HTTPS upgrade and HTTP/2 backup protocol, one connection each, as N clients would)
 * and uploads pre-encoded chunks into one dynamic index per session, appends them, closes and
 * finishes. Measured against the floor in the same run: the same blobs written with write +
 * rename into a chunk-store-like directory on the same disk by N concurrent writers, each ending
 * with the same one syncfs (`sync -f`) the server's default sync level does at `finish`.
 *
 *   node --import tsx bench/ingest.ts [--mb 512] [--sessions 1,4,16] [--tsx] [--profile DIR]
 *
 * Every N gets a fresh server and datastore; the sessions share `--mb` between them (each uploads
 * its own chunks: nothing deduplicates). Chunks are 4 MiB of half random, half text, encoded
 * (zstd, CRC) before the clock starts. The server verifies every chunk as PBS does (CRC, decode,
 * SHA-256 of the plaintext), which the floor does not: that is the cost being measured. The
 * generator runs in this process and shares the machine's cores with the server (TLS both ways).
 * Prints MB/s of plaintext, the ratio server / floor (the goal: >= 0.7 at N = 4), the
 * server's CPU seconds (user + system, all threads) during the uploads and per plaintext byte, and
 * the server's peak RSS (VmHWM) per N. Not a test: the machine should be idle. `--profile DIR`
 * runs each server under `node --cpu-prof` (DIR/server-N; bench/profile-summary.ts reads them).
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeBlob } from '../src/datastore/data-blob.js';
import { ApiClient, openSnapshotSession, type Credentials } from '../src/client/connection.js';
import { BACKUP_PATH, BACKUP_PROTOCOL_ID } from '../src/api-types/protocol.js';
import { processCpuSeconds } from './lib/measure.js';
import { fromSources, startServer, transpile } from './lib/stowage-process.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : (args[i + 1] ?? def);
};
const totalMb = Number(arg('mb', '512'));
const sessionCounts = arg('sessions', '1,4,16').split(',').map(Number);
const profileDir = arg('profile', '');
const PASSWORD = 'bench-secret-1';
const CHUNK = 4 * 1024 * 1024;
/** Uploads in flight per session, as stowage-client keeps them. */
const IN_FLIGHT = 4;

interface Chunk {
  digest: Buffer;
  size: number;
  blob: Buffer;
}

function makeChunks(n: number): Chunk[] {
  const text = Buffer.from(
    'lorem ipsum dolor sit amet backup chunk datastore maintenance restore\n'.repeat(32),
  );
  return Array.from({ length: n }, () => {
    const data = Buffer.allocUnsafe(CHUNK);
    randomBytes(CHUNK / 2).copy(data, 0);
    for (let off = CHUNK / 2; off < CHUNK; off += text.length) text.copy(data, off);
    data.writeUInt32LE(Math.floor(Math.random() * 2 ** 32), CHUNK - 4); // unique
    return { digest: createHash('sha256').update(data).digest(), size: CHUNK, blob: encodeBlob(data) };
  });
}

/** Run `tasks` with at most `limit` at once. */
async function limited(tasks: Array<() => Promise<void>>, limit: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) await tasks[next++]!();
    }),
  );
}

/** One backup session uploading `chunks` as one dynamic index, appended in batches of 128. */
async function session(
  server: { host: string; port: number; fingerprint: string },
  credentials: Credentials,
  id: string,
  chunks: Chunk[],
): Promise<void> {
  const s = await openSnapshotSession(
    {
      target: { host: server.host, port: server.port },
      policy: { fingerprint: server.fingerprint },
      credentials,
      store: 'local',
      backupType: 'host',
      backupId: id,
      backupTime: 1_700_000_000,
    },
    BACKUP_PATH,
    BACKUP_PROTOCOL_ID,
  );
  try {
    const wid = await s.json<number>('POST', 'dynamic_index', { 'archive-name': 'data.didx' });
    await limited(
      chunks.map((c) => async () => {
        await s.request(
          'POST',
          'dynamic_chunk',
          { wid, digest: c.digest.toString('hex'), size: c.size, 'encoded-size': c.blob.length },
          c.blob,
        );
      }),
      IN_FLIGHT,
    );
    const csum = createHash('sha256');
    for (let first = 0; first < chunks.length; first += 128) {
      const batch = chunks.slice(first, first + 128);
      const offsets = batch.map((_, i) => (first + i) * CHUNK);
      await s.json(
        'PUT',
        'dynamic_index',
        {},
        {
          wid,
          'digest-list': batch.map((c) => c.digest.toString('hex')),
          'offset-list': offsets,
        },
      );
      batch.forEach((c, i) => {
        const end = Buffer.alloc(8);
        end.writeBigUInt64LE(BigInt(offsets[i]! + c.size));
        csum.update(end).update(c.digest);
      });
    }
    await s.json('POST', 'dynamic_close', {
      wid,
      'chunk-count': chunks.length,
      size: chunks.length * CHUNK,
      csum: csum.digest('hex'),
    });
    await s.json('POST', 'finish');
  } finally {
    await s.close();
  }
}

/** The floor: the same blobs written with write + rename by `n` writers, each ending with one syncfs. */
async function rawWrite(dir: string, parts: Chunk[][]): Promise<number> {
  for (let i = 0; i < 256; i++) mkdirSync(join(dir, i.toString(16).padStart(4, '0')), { recursive: true });
  const t0 = process.hrtime.bigint();
  await Promise.all(
    parts.map(async (chunks) => {
      await limited(
        chunks.map((c) => async () => {
          const hex = c.digest.toString('hex');
          const path = join(dir, `00${hex.slice(0, 2)}`, hex);
          const tmp = `${path}.tmp_${process.pid}`;
          const fh = await open(tmp, 'wx');
          await fh.writeFile(c.blob);
          await fh.close();
          await rename(tmp, path);
        }),
        IN_FLIGHT,
      );
      spawnSync('sync', ['-f', dir]);
    }),
  );
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

const work = mkdtempSync(join(tmpdir(), 'stowage-ingest-'));
try {
  const run = args.includes('--tsx') ? fromSources : transpile(join(work, 'build'));
  const count = Math.max(1, Math.round((totalMb * 1024 * 1024) / CHUNK));
  process.stderr.write(`encoding ${count} chunks of 4 MiB (${((count * CHUNK) / 1e6).toFixed(0)} MB)\n`);
  const chunks = makeChunks(count);
  const mb = (count * CHUNK) / 1e6;
  console.log('sessions  server MB/s  floor MB/s  server/floor  server CPU s  CPU ns/byte  server peak RSS');
  for (const n of sessionCounts) {
    const parts = Array.from({ length: n }, (_, i) => chunks.filter((_, k) => k % n === i));
    const root = join(work, `server-${n}`);
    const server = await startServer(root, run, {
      password: PASSWORD,
      profile: profileDir && join(profileDir, `server-${n}`),
    });
    try {
      const api = new ApiClient(
        { host: server.host, port: server.port },
        { fingerprint: server.fingerprint },
      );
      const t = await api.call<{ ticket: string; CSRFPreventionToken: string }>('POST', '/access/ticket', {
        username: 'root@pam',
        password: PASSWORD,
      });
      const credentials: Credentials = { kind: 'ticket', ticket: t.ticket, csrf: t.CSRFPreventionToken };
      const cpu0 = processCpuSeconds(server.pid);
      const t0 = process.hrtime.bigint();
      await Promise.all(parts.map((p, i) => session(server, credentials, `ingest${i}`, p)));
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = processCpuSeconds(server.pid) - cpu0;
      const rss = peakRssMiB(server.pid);
      const rawDir = join(root, 'raw');
      const rawSecs = await rawWrite(rawDir, parts);
      console.log(
        `${String(n).padStart(8)}  ${(mb / secs).toFixed(0).padStart(11)}  ${(mb / rawSecs).toFixed(0).padStart(10)}` +
          `  ${(rawSecs / secs).toFixed(2).padStart(11)}x  ${cpu.toFixed(2).padStart(12)}` +
          `  ${((cpu * 1e9) / (mb * 1e6)).toFixed(2).padStart(11)}  ${rss.toFixed(0).padStart(11)} MiB`,
      );
    } finally {
      await server.stop();
      rmSync(root, { recursive: true, force: true });
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
