/**
 * A server SIGKILLed in the middle of backups (issue 12, defect 3): after a restart the half
 * snapshots are gone from the listings and the disk, a group whose only snapshot was half is
 * gone too, the removals are in the server log, and the next backup is a full, correct one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runClient, spawnClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import {
  assertChunkStoreIntact,
  backupArgs,
  e2ePaths,
  filesMatching,
  randomTree,
  verifyWholeDatastore,
  waitUntil,
} from './fault-helpers.js';

let srv: E2eServer;
let small: string;
let big: string;

before(async () => {
  srv = await startE2eServer('stowage-fault-backup-', { serverLog: true });
  small = randomTree(join(srv.root, 'small'), 1, 100_000);
  // large enough that both uploads are still running when the server is killed
  big = randomTree(join(srv.root, 'big'), 8, 8 * 1024 * 1024);
});

after(async () => {
  await srv?.stop();
});

const T1 = 1_700_000_000;
const T2 = 1_700_000_100;
const T3 = 1_700_000_200;

function snapshotDir(id: string, time: number): string {
  return join(srv.storePath, 'host', id, new Date(time * 1000).toISOString().replace('.000Z', 'Z'));
}

test('a server killed mid-backup leaves no half snapshot after a restart, and the next backup is whole', async () => {
  const first = await runClient(backupArgs(small, 'web', T1), srv.env);
  assert.equal(first.code, 0, first.stderr);

  // two backups in flight: one on top of a finished snapshot, one the first of its group
  const clients = [
    spawnClient(backupArgs(big, 'web', T2), srv.env),
    spawnClient(backupArgs(big, 'fresh', T2), srv.env),
  ];
  const exited = clients.map((c) => new Promise((r) => c.once('close', r)));
  await waitUntil(
    'both backups uploading',
    () =>
      filesMatching(snapshotDir('web', T2), /\.tmp_didx$/).length > 0 &&
      filesMatching(snapshotDir('fresh', T2), /\.tmp_didx$/).length > 0,
  );
  await srv.kill();
  await Promise.all(exited);
  // what the defect left: unfinished snapshots with their index temp files
  assert.ok(existsSync(snapshotDir('web', T2)) && existsSync(snapshotDir('fresh', T2)));

  srv = await startE2eServer('', { root: srv.root, port: srv.port, serverLog: true });
  await waitUntil('half snapshots removed', () => !existsSync(snapshotDir('web', T2)));
  await waitUntil('emptied group removed', () => !existsSync(join(srv.storePath, 'host', 'fresh')));
  assert.deepEqual(filesMatching(srv.storePath, /\.tmp_[fd]idx$/), []);
  // in the server log (stderr, which may reach us after the ready line on stdout)
  for (const line of [
    /removed unfinished snapshot host\/web\/2023-11-14T22:15:00Z: no backup session owns it/,
    /removed unfinished snapshot host\/fresh\/2023-11-14T22:15:00Z: no backup session owns it/,
    /removed backup group host\/fresh: no snapshot left/,
  ]) {
    await waitUntil(`server log line ${line}`, () => line.test(srv.stderr), 10_000);
  }

  const snaps = await runClient(['snapshots', '--output-format', 'json'], srv.env);
  assert.equal(snaps.code, 0, snaps.stderr);
  const listed = JSON.parse(snaps.stdout) as Array<{ 'backup-id': string; 'backup-time': number }>;
  assert.deepEqual(
    listed.map((s) => `${s['backup-id']}@${s['backup-time']}`),
    [`web@${T1}`],
  );
  const groups = await runClient(['list', '--output-format', 'json'], srv.env);
  assert.equal(groups.code, 0, groups.stderr);
  const listedGroups = JSON.parse(groups.stdout) as Array<{ 'backup-id': string; 'last-backup': number }>;
  assert.deepEqual(
    listedGroups.map((g) => `${g['backup-id']}@${g['last-backup']}`),
    [`web@${T1}`],
  );

  // the next backup is a full one and verifies; its data restores byte for byte
  const next = await runClient(backupArgs(big, 'web', T3), srv.env);
  assert.equal(next.code, 0, next.stderr);
  const dst = join(srv.root, 'restored');
  const restored = await runClient(['restore', `host/web/2023-11-14T22:16:40Z`, 'data.tar', dst], srv.env);
  assert.equal(restored.code, 0, restored.stderr);
  const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
  for (const f of readdirSync(big)) assert.equal(sha(join(dst, f)), sha(join(big, f)), f);
  const v = await verifyWholeDatastore(e2ePaths(srv.root));
  assert.deepEqual(v, { verified: 2, failed: {} });
  assert.ok(assertChunkStoreIntact(srv.storePath) > 0);
});
