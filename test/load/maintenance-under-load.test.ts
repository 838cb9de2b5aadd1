/**
 * The load suite (issue 12): 20 backup sessions at once, restores and a GC against one real
 * server process over HTTPS, while an operator flips the datastore from none to read-only (API)
 * to offline (the admin CLI with `--wait`) and back. Most sessions are in-process clients of the
 * real backup/reader protocols, so the test decides when each one is in the middle of its work;
 * a few are real `stowage-client` processes, for the exit code and message an operator sees.
 *
 * Promised: every admitted backup finishes and verifies, restores admitted before offline finish
 * byte for byte, every refused session gets the mode's message and leaves nothing on disk, the
 * drain returns once the running ones end, the counts return to zero, and no chunk is lost (the
 * GC, run while backups hold half-written indexes, removes only what no snapshot needs).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BackupWriter, type BackupTarget } from '../../src/client/backup-writer.js';
import { BackupReader } from '../../src/client/backup-reader.js';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import { ApiClient, type Credentials } from '../../src/client/connection.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { StowageError } from '../../src/errors.js';
import { openFilesUnder } from '../helpers/files.js';
import { CLIENT_BIN, STOWAGE_BIN, runCli, type CliResult } from '../helpers/cli.js';
import { ROOT_PASSWORD, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import {
  assertChunkStoreIntact,
  backupArgs,
  e2ePaths,
  filesMatching,
  verifyWholeDatastore,
  waitUntil,
} from '../faults/fault-helpers.js';

const STORE = 'local';
const ARCHIVE = 'data.tar.didx';
const CHUNK = 64 * 1024; // small average chunk: a few MiB make many chunks
const T0 = 1_700_000_000; // the seeded snapshots
const T1 = 1_700_000_600; // everything written under load
const MiB = 1024 * 1024;
const READ_ONLY = `datastore '${STORE}' is unavailable: read-only maintenance mode: disk swap`;
const OFFLINE = `datastore '${STORE}' is unavailable: offline maintenance mode: fsck`;

const IN_PROCESS_WRITERS = 16;
const CLI_WRITERS = 4;
const SEEDED_GROUPS = 4; // the first writers back up on top of these (incremental, known chunks)

let srv: E2eServer;
let api: ApiClient;
let creds: Credentials;
let pool: ChunkPool;

// Shared content, so that sessions deduplicate against each other and against the seeds: every
// stream is A + own + (gate) + own + B. A is in the seeded snapshots; B only in a deleted one.
const sharedA = randomBytes(MiB);
const sharedB = randomBytes(MiB);

before(async () => {
  srv = await startE2eServer('stowage-load-');
  const target = { host: srv.host, port: srv.port };
  const policy = { fingerprint: srv.fingerprint };
  const login = await new ApiClient(target, policy).call<{ ticket: string; CSRFPreventionToken: string }>(
    'POST',
    '/access/ticket',
    { username: 'root@pam', password: ROOT_PASSWORD },
  );
  creds = { kind: 'ticket', ticket: login.ticket, csrf: login.CSRFPreventionToken };
  api = new ApiClient(target, policy, creds);
  pool = new ChunkPool({ threads: 2 });
});

after(async () => {
  await pool?.close();
  await srv?.stop();
});

function spec(id: string, time: number): BackupTarget {
  return {
    target: { host: srv.host, port: srv.port },
    policy: { fingerprint: srv.fingerprint },
    credentials: creds,
    store: STORE,
    backupType: 'host',
    backupId: id,
    backupTime: time,
  };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');

/** A promise with its resolver: the test opens it when sessions may go on. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

/** `parts` in 256 KiB pieces; before the part at `pauseAt`, report `paused` and wait for `resume`. */
async function* pieces(
  parts: Buffer[],
  pause?: { at: number; paused: () => void; resume: Promise<void> },
): AsyncGenerator<Buffer> {
  for (const [i, part] of parts.entries()) {
    if (pause && i === pause.at) {
      pause.paused();
      await pause.resume;
    }
    for (let off = 0; off < part.length; off += 256 * 1024) yield part.subarray(off, off + 256 * 1024);
  }
}

/** One backup session through the protocol; the session is dropped if anything fails. */
async function backup(
  id: string,
  time: number,
  parts: Buffer[],
  pause?: { at: number; paused: () => void; resume: Promise<void> },
): Promise<void> {
  const w = await BackupWriter.start(spec(id, time), pool);
  try {
    await w.uploadStream(ARCHIVE, pieces(parts, pause), { chunkSize: CHUNK });
    await w.finish();
  } catch (err) {
    w.abort();
    throw err;
  }
}

/** Restore the archive of host/`id` at `time` through a reader session; `pause` after the first chunk. */
async function restore(id: string, time: number, pause?: { paused: () => void; resume: Promise<void> }) {
  const r = await BackupReader.open(spec(id, time), pool);
  try {
    const parts: Buffer[] = [];
    for await (const data of r.chunks(ARCHIVE)) {
      parts.push(data);
      if (pause && parts.length === 1) {
        pause.paused();
        await pause.resume;
      }
    }
    return Buffer.concat(parts);
  } finally {
    await r.close();
  }
}

/** The refusal `fn` got: the server's 503 (code MAINTENANCE) and its message. */
async function refusal(fn: () => Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof StowageError, String(err));
    return { status: err.status, message: err.message };
  }
  assert.fail('admitted, but the maintenance mode should have refused it');
}

interface ActiveOps {
  read: number;
  write: number;
  lookup: number;
  conflicting: number;
  operations: Array<{ class: string; kind: string; detail?: string }>;
  'maintenance-mode'?: string;
}
const activeOps = () => api.call<ActiveOps>('GET', `/admin/datastore/${STORE}/active-operations`);

const client = (args: string[]) => runCli(CLIENT_BIN, args, srv.env);
const admin = (...args: string[]) =>
  runCli(STOWAGE_BIN, ['--config-dir', join(srv.root, 'etc'), '--server', `127.0.0.1:${srv.port}`, ...args]);

/** A tree for `stowage-client`: the shared content and 1 MiB of its own. */
function cliTree(id: string): string {
  const dir = join(srv.root, 'trees', id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'shared'), Buffer.concat([sharedA, sharedB]));
  writeFileSync(join(dir, 'own'), randomBytes(MiB));
  return dir;
}

/** Poll `cond` (an API call, so asynchronous) until it holds; fail naming `what` after `timeoutMs`. */
async function pollUntil(what: string, cond: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    assert.ok(Date.now() < deadline, `timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Wait for a task to end through the API; returns its log lines, having checked it ended OK. */
async function taskLog(upid: string): Promise<string[]> {
  const path = `/nodes/${upid.split(':')[1]!}/tasks/${encodeURIComponent(upid)}`;
  let state = { status: 'running', exitstatus: '' };
  await pollUntil(`task ${upid} to end`, async () => {
    state = await api.call('GET', `${path}/status`);
    return state.status !== 'running';
  });
  const log = (await api.call<Array<{ t: string }>>('GET', `${path}/log`, { limit: 1000 })).map((l) => l.t);
  assert.equal(state.exitstatus, 'OK', log.join('\n'));
  return log;
}

/** Every chunk file now looks unused for two days: the next GC removes what no index marks. */
function ageAllChunks(): void {
  const old = (Date.now() - 2 * 86_400_000) / 1000;
  const chunks = join(srv.storePath, '.chunks');
  for (const sub of readdirSync(chunks)) {
    for (const name of readdirSync(join(chunks, sub))) utimesSync(join(chunks, sub, name), old, old);
  }
}

/** Nothing of host/`id` on disk. */
function assertNothingLeft(id: string): void {
  assert.equal(existsSync(join(srv.storePath, 'host', id)), false, `host/${id} left on disk`);
}

test('20 backups, restores and a GC while maintenance goes none -> read-only -> offline -> none', async () => {
  // --- seed: snapshots to restore and to back up on top of, and garbage for the GC
  const seedData: Buffer[] = [];
  for (let i = 0; i < SEEDED_GROUPS; i++) {
    seedData.push(Buffer.concat([sharedA, randomBytes(MiB / 2)]));
    await backup(`seed-${i}`, T0, [seedData[i]!]);
  }
  await backup('garbage', T0, [sharedB, randomBytes(MiB / 2)]);
  await api.call('DELETE', `/admin/datastore/${STORE}/groups`, {
    'backup-type': 'host',
    'backup-id': 'garbage',
  });
  ageAllChunks();

  // --- wave 1, mode none: 16 in-process sessions that stop half-way, 4 CLI backups, 2 restores
  const resume = gate();
  let paused = 0;
  const onPause = () => void paused++;
  const writerData = new Map<string, Buffer[]>();
  const writers = Array.from({ length: IN_PROCESS_WRITERS }, (_, i) => {
    const id = i < SEEDED_GROUPS ? `seed-${i}` : `w-${i}`;
    const parts = [sharedA, randomBytes(MiB / 2), randomBytes(MiB / 2), sharedB];
    writerData.set(id, parts);
    return backup(id, T1, parts, { at: 2, paused: onPause, resume: resume.opened });
  });
  const cliIds = Array.from({ length: CLI_WRITERS }, (_, i) => `cli-${i}`);
  const cliTrees = new Map(cliIds.map((id) => [id, cliTree(id)]));
  const cliRuns = new Map<string, { result?: CliResult; done: Promise<CliResult> }>();
  for (const id of cliIds) {
    const run: { result?: CliResult; done: Promise<CliResult> } = {
      done: client(backupArgs(cliTrees.get(id)!, id, T1)),
    };
    void run.done.then((r) => (run.result = r));
    cliRuns.set(id, run);
  }
  const readers = [2, 3].map((i) => restore(`seed-${i}`, T0, { paused: onPause, resume: resume.opened }));
  writers.concat(readers as Array<Promise<never>>).forEach((p) => p.catch(() => {}));

  // all 20 backups admitted: the in-process ones half-way, each CLI one running or done
  await waitUntil('16 writers half-way and 2 readers after their first chunk', () => paused === 18, 90_000);
  await pollUntil('each CLI backup admitted (running or done)', async () => {
    const ops = await activeOps();
    return cliIds.every(
      (id) => cliRuns.get(id)!.result || ops.operations.some((o) => o.detail?.includes(`host/${id}`)),
    );
  });
  for (const run of cliRuns.values()) if (run.result) assert.equal(run.result.code, 0, run.result.stderr);

  // --- GC while 16 sessions hold half-written indexes; B is referenced by no snapshot yet
  const gcLog = await taskLog(await api.call<string>('POST', `/admin/datastore/${STORE}/gc`));
  assert.ok(!gcLog.some((l) => /non-existent chunk/.test(l)), gcLog.join('\n'));
  const removed = Number(/Removed chunks: (\d+)/.exec(gcLog.join('\n'))?.[1]);
  assert.ok(removed > 0, `the GC removed the deleted snapshot's chunks:\n${gcLog.join('\n')}`);

  // --- read-only through the API: running sessions go on, new writes are refused, reads go on
  await api.call('PUT', `/config/datastore/${STORE}`, {
    'maintenance-mode': 'read-only,message="disk swap"',
  });
  for (const id of ['ro-0', 'ro-1']) {
    assert.deepEqual(await refusal(() => backup(id, T1, [randomBytes(1000)])), {
      status: 503,
      message: READ_ONLY,
    });
  }
  assert.deepEqual(await refusal(() => api.call('POST', `/admin/datastore/${STORE}/gc`)), {
    status: 503,
    message: READ_ONLY,
  });
  const roCli = await client(backupArgs(cliTree('cli-ro'), 'cli-ro', T1));
  assert.equal(roCli.code, EXIT.MAINTENANCE, roCli.stderr);
  assert.equal(roCli.stderr.trim(), `error: ${READ_ONLY}`);
  assert.equal(sha(await restore('seed-1', T0)), sha(seedData[1]!), 'a restore under read-only');

  // --- offline through the admin CLI, waiting for the drain
  const drain = {
    result: undefined as CliResult | undefined,
    done: admin(
      'datastore',
      'maintenance',
      'set',
      STORE,
      'offline',
      '--message',
      'fsck',
      '--wait',
      '--timeout',
      '2m',
    ),
  };
  void drain.done.then((r) => (drain.result = r));
  await pollUntil('the admin CLI to set offline', async () => {
    assert.equal(drain.result, undefined, `the admin CLI ended early: ${JSON.stringify(drain.result)}`);
    return (await activeOps())['maintenance-mode']?.startsWith('offline') ?? false;
  });
  for (const id of ['off-0', 'off-1']) {
    assert.deepEqual(await refusal(() => backup(id, T1, [randomBytes(1000)])), {
      status: 503,
      message: OFFLINE,
    });
  }
  assert.deepEqual(await refusal(() => restore('seed-0', T0)), { status: 503, message: OFFLINE });
  const offCli = await client(backupArgs(cliTree('cli-off'), 'cli-off', T1));
  assert.equal(offCli.code, EXIT.MAINTENANCE, offCli.stderr);
  assert.equal(offCli.stderr.trim(), `error: ${OFFLINE}`);
  // what still runs: the 16 half-way sessions, the 2 paused restores, and maybe a CLI backup of
  // wave 1 still finishing (they run unpaced); nothing admitted after the changes
  const held = await activeOps();
  const heldBackups = held.operations
    .filter((o) => o.class === 'ingest')
    .map((o) => /^host\/([^/]+)/.exec(o.detail ?? '')?.[1]);
  for (const id of writerData.keys()) assert.ok(heldBackups.includes(id), JSON.stringify(held));
  for (const id of heldBackups) assert.ok(writerData.has(id!) || cliRuns.has(id!), JSON.stringify(held));
  assert.equal(held.read, 2, JSON.stringify(held.operations));
  assert.equal(held.conflicting, held.read + held.write);
  assert.equal(drain.result, undefined, 'the drain returned while 18 sessions still run');

  // --- the sessions admitted before go on and finish; then the drain returns
  resume.open();
  await Promise.all(writers);
  const restored = await Promise.all(readers);
  assert.deepEqual(restored.map(sha), [sha(seedData[2]!), sha(seedData[3]!)]);
  const cliResults = await Promise.all([...cliRuns.values()].map((r) => r.done));
  for (const r of cliResults) assert.equal(r.code, 0, r.stderr);
  const drained = await drain.done;
  assert.equal(drained.code, 0, drained.stderr);
  assert.match(drained.stdout, /now in offline maintenance mode/);
  assert.match(drained.stdout, new RegExp(`datastore '${STORE}' drained`));
  const idle = await activeOps();
  assert.deepEqual([idle.read, idle.write, idle.lookup, idle.conflicting, idle.operations], [0, 0, 0, 0, []]);

  // drained and offline: the server holds no file on the datastore (it could be unmounted)
  assert.deepEqual(openFilesUnder(srv.proc.pid!, srv.storePath), []);

  // --- back in service: nothing left by the refused, every admitted backup is there and whole
  const cleared = await admin('datastore', 'maintenance', 'clear', STORE);
  assert.equal(cleared.code, 0, cleared.stderr);
  for (const id of ['ro-0', 'ro-1', 'off-0', 'off-1', 'cli-ro', 'cli-off']) assertNothingLeft(id);
  assertNothingLeft('garbage');
  assert.deepEqual(filesMatching(srv.storePath, /tmp/), [], 'temp files left in the datastore');

  const listed = await api.call<Array<{ 'backup-id': string; 'backup-time': number }>>(
    'GET',
    `/admin/datastore/${STORE}/snapshots`,
  );
  const expected = [
    ...Array.from({ length: SEEDED_GROUPS }, (_, i) => `seed-${i}@${T0}`),
    ...[...writerData.keys()].map((id) => `${id}@${T1}`),
    ...cliIds.map((id) => `${id}@${T1}`),
  ].sort();
  assert.deepEqual(listed.map((s) => `${s['backup-id']}@${s['backup-time']}`).sort(), expected);

  const v = await verifyWholeDatastore(e2ePaths(srv.root), STORE);
  assert.deepEqual(v, { verified: expected.length, failed: {} });
  assert.ok(assertChunkStoreIntact(srv.storePath) > 0);

  // a sample restores byte for byte: an incremental one, a new group, and one written by the CLI
  for (const id of ['seed-0', `w-${IN_PROCESS_WRITERS - 1}`]) {
    assert.equal(sha(await restore(id, T1)), sha(Buffer.concat(writerData.get(id)!)), id);
  }
  const dst = join(srv.root, 'restored');
  const cliRestore = await client(['restore', `host/cli-0/${iso(T1)}`, 'data.tar', dst]);
  assert.equal(cliRestore.code, 0, cliRestore.stderr);
  for (const f of readdirSync(cliTrees.get('cli-0')!)) {
    assert.equal(sha(readFileSync(join(dst, f))), sha(readFileSync(join(cliTrees.get('cli-0')!, f))), f);
  }
});
