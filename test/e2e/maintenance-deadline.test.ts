/**
 * Deadlines for a maintenance change (issue 13): `stowage datastore maintenance set NAME TYPE
 * --wait --timeout D --on-timeout keep|revert|abort`, each policy against real running tasks on a
 * real server process over HTTPS. The server reads and marks chunks slowly (SLOW_CHUNK_MS), so a
 * verify or GC of the seeded snapshot runs for seconds; the backup session is a real protocol
 * session held open mid-upload.
 *
 * - keep: the mode stays, exit code TIMEOUT, the blocker named;
 * - revert: the previous mode (none, or read-only with its message) is back, exit code TIMEOUT,
 *   the blocker named;
 * - abort, run through a second server process on the same host (the tasks belong to the first):
 *   the verify task fails with the mode's refusal and logs it, the backup client and a restore
 *   client get the mode's message, no snapshot is left, the store ends drained in the new mode,
 *   exit 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BackupReader } from '../../src/client/backup-reader.js';
import { BackupWriter, type BackupTarget } from '../../src/client/backup-writer.js';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import { ApiClient } from '../../src/client/connection.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { StowageError } from '../../src/errors.js';
import { STOWAGE_BIN, runCli, type CliResult } from '../helpers/cli.js';
import { ROOT_PASSWORD, runClient, startE2eServer, type E2eServer } from './backup-helpers.js';
import { randomTree } from '../faults/fault-helpers.js';

const STORE = 'local';
const T0 = 1_700_000_000;
const MiB = 1024 * 1024;
const OFFLINE = `datastore '${STORE}' is unavailable: offline maintenance mode: fsck`;

let srv: E2eServer;
/** A second server process on the same instance (as during a graceful restart). */
let second: E2eServer;
let api: ApiClient;
let pool: ChunkPool;

before(async () => {
  srv = await startE2eServer('stowage-deadline-', { env: { SLOW_CHUNK_MS: '150' } });
  // 4 MiB in 64 KiB chunks: about 64 chunks, so a verify or a GC mark runs about 10 s
  const tree = randomTree(join(srv.root, 'tree'), 4, MiB);
  const seeded = await runClient(
    ['backup', `data.tar:${tree}`, '--backup-id', 'seed', '--backup-time', String(T0), '--chunk-size', '64'],
    srv.env,
  );
  assert.equal(seeded.code, 0, seeded.stderr);
  second = await startE2eServer('unused-', { root: srv.root, env: { SLOW_CHUNK_MS: '150' } });
  const target = { host: srv.host, port: srv.port };
  const login = await new ApiClient(target, { fingerprint: srv.fingerprint }).call<{
    ticket: string;
    CSRFPreventionToken: string;
  }>('POST', '/access/ticket', { username: 'root@pam', password: ROOT_PASSWORD });
  api = new ApiClient(
    target,
    { fingerprint: srv.fingerprint },
    { kind: 'ticket', ticket: login.ticket, csrf: login.CSRFPreventionToken },
  );
  pool = new ChunkPool({ threads: 1 });
});

after(async () => {
  await pool?.close();
  await second?.kill();
  await srv?.stop();
});

/** The admin CLI against `server` (default the first). */
const admin = (args: string[], server: E2eServer = srv): Promise<CliResult> =>
  runCli(STOWAGE_BIN, [
    '--config-dir',
    join(srv.root, 'etc'),
    '--server',
    `127.0.0.1:${server.port}`,
    ...args,
  ]);

/** `stowage datastore maintenance set local ARGS` against `server`. */
const maintenanceSetOn = (server: E2eServer, ...args: string[]) =>
  admin(['datastore', 'maintenance', 'set', STORE, ...args], server);
const maintenanceSet = (...args: string[]) => maintenanceSetOn(srv, ...args);

interface ActiveOps {
  conflicting: number;
  operations: Array<{ kind: string; 'task-id'?: string }>;
  'maintenance-mode'?: string;
}
const activeOps = () => api.call<ActiveOps>('GET', `/admin/datastore/${STORE}/active-operations`);
const storedMode = async () =>
  (await api.call<{ 'maintenance-mode'?: string }>('GET', `/config/datastore/${STORE}`))['maintenance-mode'];

async function setMode(mode: string | undefined): Promise<void> {
  await api.call(
    'PUT',
    `/config/datastore/${STORE}`,
    mode === undefined ? { delete: ['maintenance-mode'] } : { 'maintenance-mode': mode },
  );
}

/** Poll `cond` (an API call) until it holds; fail naming `what` after 30 s. */
async function waitUntil(what: string, cond: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await cond())) {
    assert.ok(Date.now() < deadline, `timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const taskPath = (upid: string) => `/nodes/${upid.split(':')[1]!}/tasks/${encodeURIComponent(upid)}`;

/** Start a task through the API and wait until its operation is registered. */
async function startTask(path: string, params: Record<string, unknown> = {}): Promise<string> {
  const upid = await api.call<string>('POST', `/admin/datastore/${STORE}/${path}`, {
    ...(path === 'verify' && { 'ignore-verified': false }),
    ...params,
  });
  await waitUntil(`${path} admitted`, async () =>
    (await activeOps()).operations.some((o) => o['task-id'] === upid),
  );
  return upid;
}

/** Wait for a task to end; its final status and log. */
async function taskEnd(upid: string): Promise<{ status: string; log: string[] }> {
  let status = '';
  await waitUntil(`task ${upid} to end`, async () => {
    const s = await api.call<{ status: string; exitstatus?: string }>('GET', `${taskPath(upid)}/status`);
    status = s.exitstatus ?? '';
    return s.status !== 'running';
  });
  const log = (await api.call<Array<{ t: string }>>('GET', `${taskPath(upid)}/log`, { limit: 1000 })).map(
    (l) => l.t,
  );
  return { status, log };
}

/** Stop a task the test left running, and wait for it. */
async function stopTask(upid: string): Promise<void> {
  await api.call('DELETE', taskPath(upid));
  await taskEnd(upid);
}

test('--on-timeout keep: the mode stays, the command exits TIMEOUT naming the verify that still runs', async () => {
  const verify = await startTask('verify');
  try {
    const r = await maintenanceSet(
      'read-only',
      '--message=disk swap',
      '--wait',
      '--timeout=1s',
      '--on-timeout=keep',
    );
    assert.equal(r.code, EXIT.TIMEOUT, r.stderr);
    assert.match(r.stdout, /^datastore 'local' is now in read-only maintenance mode$/m);
    assert.match(r.stdout, /^waiting for 1 conflicting operation\(s\):\n {2}verify .*by root@pam/m);
    assert.match(
      r.stderr,
      /^error: datastore 'local' did not drain within 1s: 1 conflicting operation\(s\) still running: verify /,
    );
    assert.equal(await storedMode(), 'read-only,message="disk swap"');
    const s = await api.call<{ status: string }>('GET', `${taskPath(verify)}/status`);
    assert.equal(s.status, 'running', 'keep leaves the verify running');
  } finally {
    await stopTask(verify);
    await setMode(undefined);
  }
});

test('--on-timeout revert from none: the GC blocks offline, the mode goes back to none, exit TIMEOUT', async () => {
  const gc = await startTask('gc');
  try {
    const r = await maintenanceSet('offline', '--timeout=1s', '--on-timeout=revert');
    assert.equal(r.code, EXIT.TIMEOUT, r.stderr);
    assert.match(r.stdout, /^datastore 'local' reverted to no maintenance mode$/m);
    assert.match(
      r.stderr,
      /^error: datastore 'local' did not drain within 1s: maintenance mode reverted to no maintenance mode; blocked by 1 operation\(s\): gc by root@pam/,
    );
    assert.equal(await storedMode(), undefined);
    assert.equal((await activeOps()).conflicting, 0, 'nothing conflicts with no mode');
  } finally {
    await stopTask(gc);
  }
});

test('--on-timeout revert from read-only: a read-only verify blocks offline, read-only with its message is back', async () => {
  await setMode('read-only,message="disk swap"');
  const verify = await startTask('verify', { 'read-only': true });
  try {
    const r = await maintenanceSet(
      'offline',
      '--message=fsck',
      '--wait',
      '--timeout=1s',
      '--on-timeout=revert',
    );
    assert.equal(r.code, EXIT.TIMEOUT, r.stderr);
    assert.match(r.stdout, /^datastore 'local' reverted to read-only \(disk swap\) maintenance mode$/m);
    assert.match(r.stderr, /blocked by 1 operation\(s\): verify /);
    assert.equal(await storedMode(), 'read-only,message="disk swap"');
  } finally {
    await stopTask(verify);
    await setMode(undefined);
  }
});

test('--on-timeout abort through another server process: verify, backup and restore end with the mode message, no snapshot, drained offline', async (t) => {
  t.after(() => setMode(undefined));
  const verify = await startTask('verify');
  // a real backup session, paused after its first part
  let paused!: () => void;
  const isPaused = new Promise<void>((r) => (paused = r));
  let resume!: () => void;
  const resumed = new Promise<void>((r) => (resume = r));
  async function* parts(): AsyncGenerator<Buffer> {
    yield randomBytes(MiB);
    paused();
    await resumed;
    for (let i = 0; i < 8; i++) yield randomBytes(MiB / 4);
  }
  const snapshot = (backupId: string, backupTime: number): BackupTarget => ({
    target: { host: srv.host, port: srv.port },
    policy: { fingerprint: srv.fingerprint },
    credentials: api.credentials!,
    store: STORE,
    backupType: 'host',
    backupId,
    backupTime,
  });
  const writer = await BackupWriter.start(snapshot('web01', T0 + 600), pool);
  const upload = writer
    .uploadStream('data.tar.didx', parts(), { chunkSize: 64 * 1024 })
    .then(() => writer.finish())
    .then(
      () => undefined,
      (err: unknown) => {
        writer.abort();
        return err;
      },
    );
  await isPaused;
  await waitUntil('backup admitted', async () =>
    (await activeOps()).operations.some((o) => o.kind === 'backup'),
  );
  const backupTask = (await activeOps()).operations.find((o) => o.kind === 'backup')!['task-id']!;
  // a real restore (reader session) of the seed, after its first chunk
  const reader = await BackupReader.open(snapshot('seed', T0), pool);
  const restore = reader.chunks('data.tar.didx');
  assert.equal((await restore.next()).done, false);

  const r = await maintenanceSetOn(second, 'offline', '--message=fsck', '--timeout=1s', '--on-timeout=abort');
  resume();
  assert.equal(r.code, EXIT.OK, `${r.stdout}\n${r.stderr}`);
  assert.match(
    r.stdout,
    /^datastore 'local' did not drain within 1s: aborting 3 conflicting operation\(s\)$/m,
  );
  assert.match(r.stdout, /^aborted: verify /m);
  assert.match(r.stdout, /^aborted: backup host\/web01\/\S+ by root@pam/m);
  assert.match(r.stdout, /^aborted: reader host\/seed\/\S+ by root@pam/m);
  assert.match(r.stdout, /^datastore 'local' drained: no conflicting operation is running$/m);

  // the client got the mode's message, not a generic error
  const err = await upload;
  assert.ok(err instanceof StowageError, `the backup should have failed: ${String(err)}`);
  assert.equal(err.code, 'MAINTENANCE');
  assert.equal(err.message, OFFLINE);
  const restoreErr = await (async () => {
    try {
      while (!(await restore.next()).done);
    } catch (e) {
      return e;
    } finally {
      await reader.close();
    }
  })();
  assert.ok(restoreErr instanceof StowageError, `the restore should have failed: ${String(restoreErr)}`);
  assert.equal(restoreErr.message, OFFLINE);

  const v = await taskEnd(verify);
  assert.equal(v.status, OFFLINE);
  assert.ok(
    v.log.some((l) => l.endsWith(`abort requested: ${OFFLINE}`)),
    v.log.join('\n'),
  );
  assert.ok(v.log.at(-1)!.endsWith(`TASK ERROR: ${OFFLINE}`), v.log.at(-1));
  const b = await taskEnd(backupTask);
  assert.equal(b.status, OFFLINE);
  assert.ok(
    b.log.some((l) => l.endsWith('removing unfinished backup')),
    b.log.join('\n'),
  );

  assert.equal(existsSync(join(srv.storePath, 'host', 'web01')), false, 'no snapshot, no group left');
  assert.equal(existsSync(join(srv.storePath, 'host', 'seed')), true);
  const ops = await activeOps();
  assert.equal(ops['maintenance-mode'], 'offline,message="fsck"');
  assert.equal(ops.conflicting, 0);
});

test('--on-timeout without --wait waits; --dry-run refuses to wait; an unknown policy is a usage error', async () => {
  const bad = await maintenanceSet('offline', '--on-timeout=later');
  assert.equal(bad.code, EXIT.USAGE);
  assert.match(
    bad.stderr,
    /--on-timeout <policy>' argument 'later' is invalid\. Allowed choices are keep, revert, abort/,
  );
  const both = await maintenanceSet('offline', '--dry-run', '--wait');
  assert.equal(both.code, EXIT.USAGE);
  assert.equal(
    both.stderr,
    'error: --dry-run changes nothing, so there is nothing to wait for: drop --wait and --on-timeout\n',
  );
  assert.equal(await storedMode(), undefined, 'nothing was set');
  const implied = await maintenanceSet('read-only', '--on-timeout=revert');
  assert.equal(implied.code, EXIT.OK, implied.stderr);
  assert.match(implied.stdout, /^datastore 'local' drained: no conflicting operation is running$/m);
  await setMode(undefined);
});

test('maintenance set --dry-run prints one line per conflict and skipped job, and changes nothing', async () => {
  await api.call('PUT', `/config/datastore/${STORE}`, { 'gc-schedule': 'daily' });
  const verify = await startTask('verify');
  try {
    const r = await maintenanceSet('read-only', '--dry-run');
    assert.equal(r.code, EXIT.OK, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(
      lines[0],
      "dry run: nothing changed; datastore 'local' would be in read-only maintenance mode",
    );
    assert.match(lines[1]!, /^would conflict: verify .*by root@pam since \d\d:\d\d:\d\dZ \(pid \d+\)$/);
    assert.match(lines[2]!, /^would skip: garbage_collection local \(schedule daily, next run \d{4}-.*Z\)$/);
    assert.equal(lines.length, 3);
    assert.equal(await storedMode(), undefined);
  } finally {
    await stopTask(verify);
    await api.call('PUT', `/config/datastore/${STORE}`, { delete: ['gc-schedule'] });
  }
});
