/**
 * A pull interrupted half-way (issue 14): the target server SIGKILLed mid-sync, or the source
 * server SIGKILLed (the network cut from the target's side). Either way the target shows no
 * partial snapshot — after its restart, or at once when the pull task fails — and the next pull
 * completes the copy, which then verifies.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../src/client/connection.js';
import { remoteConfig } from '../../src/config/remote-config.js';
import {
  ROOT_PASSWORD,
  loginApi,
  runTreeBackup,
  startE2eServer,
  taskEnd,
  type E2eServer,
} from '../e2e/backup-helpers.js';
import { randomTree, waitUntil } from './fault-helpers.js';

const STORE = 'local';
const T0 = 1_700_000_000;

let src: E2eServer;
let dst: E2eServer;

/** The source serves every chunk slowly (SLOW_CHUNK_MS), so a pull is under way long enough to cut. */
const startSource = (root?: string, port?: number, slow = true) =>
  startE2eServer('stowage-sync-cut-src-', {
    ...(root && { root }),
    ...(port && { port }),
    ...(slow && { env: { SLOW_CHUNK_MS: '400' } }),
  });

before(async () => {
  [src, dst] = await Promise.all([startSource(), startE2eServer('stowage-sync-cut-dst-')]);
  await remoteConfig(join(dst.root, 'etc')).update((remotes) => {
    remotes.set('site-a', {
      name: 'site-a',
      host: '127.0.0.1',
      port: src.port,
      'auth-id': 'root@pam',
      password: ROOT_PASSWORD,
      fingerprint: src.fingerprint,
    });
  });
  // several 4 MiB chunks per snapshot
  const tree = randomTree(join(src.root, 'tree'), 3, 6 * 1024 * 1024);
  for (const time of [T0, T0 + 60]) {
    const r = await runTreeBackup(src.env, tree, 'web', time);
    assert.equal(r.code, 0, r.stderr);
  }
});

after(async () => {
  await Promise.all([src?.stop(), dst?.stop()]);
});

const snapshotDir = (s: E2eServer, time: number, id = 'web') =>
  join(s.storePath, 'host', id, new Date(time * 1000).toISOString().replace('.000Z', 'Z'));

const startPull = (api: ApiClient) =>
  api.call<string>('POST', '/pull', { store: STORE, remote: 'site-a', 'remote-store': STORE });

/** The snapshots of host/`id` on the target, finished or not. */
async function finishedSnapshots(api: ApiClient, id = 'web'): Promise<number[]> {
  const list = await api.call<Array<{ 'backup-id': string; 'backup-time': number }>>(
    'GET',
    `/admin/datastore/${STORE}/snapshots`,
  );
  return list
    .filter((s) => s['backup-id'] === id)
    .map((s) => s['backup-time'])
    .sort();
}

async function pullCompletesAndVerifies(api: ApiClient, id = 'web', times = [T0, T0 + 60]): Promise<void> {
  const res = await taskEnd(api, await startPull(api));
  assert.equal(res.status, 'OK', res.log.join('\n'));
  assert.deepEqual(await finishedSnapshots(api, id), times);
  const verify = await taskEnd(api, await api.call<string>('POST', `/admin/datastore/${STORE}/verify`));
  assert.equal(verify.status, 'OK', verify.log.join('\n'));
}

test('the target SIGKILLed mid-pull shows no partial snapshot after its restart; the next pull completes it', async () => {
  let api = await loginApi(dst);
  await startPull(api);
  await waitUntil('the pull to be writing the first snapshot', () => existsSync(snapshotDir(dst, T0)));
  await dst.kill();
  dst = await startE2eServer('stowage-sync-cut-dst-', { root: dst.root, port: dst.port });
  api = await loginApi(dst);
  assert.equal(
    existsSync(snapshotDir(dst, T0)),
    false,
    'the start-up cleanup removed the unfinished snapshot',
  );
  assert.deepEqual(await finishedSnapshots(api), []);
  await pullCompletesAndVerifies(api);
});

test('the source cut off mid-pull fails the task, leaves no partial snapshot, and the next pull completes it', async () => {
  const api = await loginApi(dst);
  // a new group of new data on the source: its chunks must be downloaded
  const tree = randomTree(join(src.root, 'tree-db'), 3, 6 * 1024 * 1024);
  assert.equal((await runTreeBackup(src.env, tree, 'db', T0)).code, 0);
  const upid = await startPull(api);
  await waitUntil('the pull to be writing the new snapshot', () => existsSync(snapshotDir(dst, T0, 'db')));
  await src.kill();
  const res = await taskEnd(api, upid);
  assert.notEqual(res.status, 'OK', res.log.join('\n'));
  assert.equal(
    existsSync(snapshotDir(dst, T0, 'db')),
    false,
    `the half-synced snapshot was removed:\n${res.log.join('\n')}`,
  );
  assert.deepEqual(await finishedSnapshots(api, 'db'), []);

  src = await startSource(src.root, src.port, false);
  await pullCompletesAndVerifies(api, 'db', [T0]);
});
