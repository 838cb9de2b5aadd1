/**
 * The start-up cleanup of abandoned snapshots (issue 12, defect 3) is careful: it never touches
 * a datastore in offline maintenance (GC removes the half snapshot once the store is back), and
 * it never removes the snapshot of a backup still running in another server process (the old
 * process of a graceful restart) — the snapshot lock decides.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import { runCli, STOWAGE_BIN } from '../helpers/cli.js';
import { runClient, spawnClient, startE2eServer, type E2eServer } from '../e2e/backup-helpers.js';
import {
  backupArgs,
  e2ePaths,
  filesMatching,
  randomTree,
  verifyWholeDatastore,
  waitUntil,
} from './fault-helpers.js';

let srv: E2eServer;
let big: string;

before(async () => {
  srv = await startE2eServer('stowage-fault-startup-', { serverLog: true });
  big = randomTree(join(srv.root, 'big'), 4, 8 * 1024 * 1024);
});

after(async () => {
  await srv?.stop();
});

function snapshotDir(id: string, time: number): string {
  return join(srv.storePath, 'host', id, new Date(time * 1000).toISOString().replace('.000Z', 'Z'));
}

/** Start a backup of `big` and return once it uploads, SIGSTOPped so it stays mid-upload. */
async function pausedBackup(id: string, time: number) {
  const client = spawnClient(backupArgs(big, id, time), srv.env);
  let stderr = '';
  client.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((r) => client.once('close', (code) => r(code ?? -1)));
  await waitUntil('backup uploading', () => filesMatching(snapshotDir(id, time), /\.tmp_didx$/).length > 0);
  client.kill('SIGSTOP');
  return { client, exited, stderr: () => stderr };
}

test('a backup running in another server process keeps its snapshot through the new process start-up', async () => {
  const backup = await pausedBackup('overlap', 1_700_000_000);
  // a second server process on the same configuration, as during a graceful restart
  const second = await startE2eServer('', { root: srv.root, serverLog: true });
  try {
    assert.ok(existsSync(snapshotDir('overlap', 1_700_000_000)), 'the running backup lost its snapshot');
    assert.doesNotMatch(second.stderr, /removed unfinished snapshot/);
  } finally {
    await second.kill();
  }
  backup.client.kill('SIGCONT');
  assert.equal(await backup.exited, 0, backup.stderr());
  const v = await verifyWholeDatastore(e2ePaths(srv.root));
  assert.deepEqual(v, { verified: 1, failed: {} });
});

test('start-up leaves an offline datastore alone; GC removes the half snapshot once it is back', async () => {
  const time = 1_700_000_100;
  const backup = await pausedBackup('offline', time);
  await srv.kill();
  backup.client.kill('SIGKILL');
  await backup.exited;

  const access = openDatastoreAccess(e2ePaths(srv.root));
  try {
    await setMaintenanceMode(access, 'local', { type: 'offline', message: 'disk check' });
    srv = await startE2eServer('', { root: srv.root, port: srv.port, serverLog: true });
    assert.ok(existsSync(snapshotDir('offline', time)), 'start-up touched an offline datastore');
    assert.doesNotMatch(srv.stderr, /removed unfinished snapshot/);
    await setMaintenanceMode(access, 'local', undefined);
  } finally {
    access.close();
  }

  const gc = await runCli(STOWAGE_BIN, [
    '--config-dir',
    join(srv.root, 'etc'),
    '--server',
    `127.0.0.1:${srv.port}`,
    'gc',
    'local',
  ]);
  assert.equal(gc.code, 0, gc.stderr);
  assert.match(
    gc.stdout,
    /removed unfinished snapshot host\/offline\/2023-11-14T22:15:00Z: no backup session owns it/,
  );
  assert.match(gc.stdout, /removed backup group host\/offline: no snapshot left/);
  assert.ok(!existsSync(join(srv.storePath, 'host', 'offline')));
  assert.deepEqual(filesMatching(srv.storePath, /\.tmp_[fd]idx$/), []);
  const list = await runClient(['snapshots', '--output-format', 'json'], srv.env);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(
    (JSON.parse(list.stdout) as Array<{ 'backup-id': string }>).map((s) => s['backup-id']),
    ['overlap'],
  );
});
