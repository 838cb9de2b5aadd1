/**
 * Removable datastores over real HTTPS on a real disk: an ext4 filesystem on a loop device made
 * here, holding a datastore at `pbs/` on it, configured as PBS 4 writes it (`backing-device UUID`,
 * relative `path`). Not mounted, reads and writes are refused with PBS's "not mounted"; `mount`
 * mounts it (task), `unmount` sets the `unmount` mode, waits for what runs (listing it in the task
 * log), unmounts, and puts the previous mode back; a busy unmount keeps the mode with its reason
 * and can be retried. Everything mounted or attached is undone in `after`, also after a failure.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FilesystemChunkBackend } from '../../src/datastore/chunk-store.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';
import {
  startTestServer,
  taskLog,
  waitForTask,
  type ApiReply,
  type TestServer,
} from '../helpers/https-api.js';
import {
  cleanupUnder,
  makeLoopDisk,
  mountDisk,
  mountsUnder,
  unmount,
  type LoopDisk,
} from '../helpers/loop-device.js';
import { openFilesUnder } from '../helpers/files.js';

let t: TestServer;
let disk: LoopDisk;
let mountDir: string;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-e2e-removable-' });
  mountDir = join(t.dir, 'mnt');
  process.env.STOWAGE_DATASTORE_MOUNT_DIR = mountDir;
  disk = makeLoopDisk(t.dir, 'usb1');
  const prep = join(t.dir, 'prep');
  mkdirSync(prep);
  mountDisk(disk, prep);
  try {
    // a whole chunk store: the sync test writes chunks into it
    (await FilesystemChunkBackend.create(join(prep, 'pbs'))).closeSync();
  } finally {
    unmount(prep);
  }
  await t.addBareDatastore('local');
  await t.server.context.datastores.config.update((stores) => {
    stores.set('usb1', { name: 'usb1', path: 'pbs', 'backing-device': disk.uuid, comment: 'USB disk' });
  });
});

after(async () => {
  if (t) cleanupUnder(t.dir);
  await t?.close();
});

const get = (path: string) => t.api('GET', path, { auth: t.root });
const post = (path: string, body?: unknown) =>
  t.api('POST', path, { auth: t.root, ...(body !== undefined && { body }) });

/** `mount-status` as active-operations reports it, beside the mode (what the UI reads). */
async function opsMountStatus(store: string): Promise<unknown> {
  const ops = await get(`/admin/datastore/${store}/active-operations`);
  assert.equal(ops.status, 200);
  return (ops.body.data as Record<string, unknown>)['mount-status'];
}

async function listItem(store: string): Promise<Record<string, unknown>> {
  const r = await get('/admin/datastore');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body.data as Array<Record<string, unknown>>).find((i) => i.store === store)!;
}

async function runTask(r: ApiReply): Promise<{ status: string; log: string[] }> {
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const upid = r.body.data as string;
  const status = await waitForTask(t, upid);
  return { status, log: taskLog(t, upid) };
}

function storedMode(store: string): string | undefined {
  return t.server.context.datastores.config.read().stores.get(store)?.['maintenance-mode'];
}

test('not mounted: listed as notmounted, reads and writes refused with a 400 naming the store, lookups answer', async () => {
  assert.deepEqual(await listItem('usb1'), {
    store: 'usb1',
    comment: 'USB disk',
    'mount-status': 'notmounted',
    'backend-type': 'filesystem',
  });
  const groups = await get('/admin/datastore/usb1/groups');
  assert.deepEqual(
    [groups.status, groups.body.code, groups.body.message],
    [400, 'NOT_MOUNTED', "datastore 'usb1' is not mounted"],
  );
  const gc = await post('/admin/datastore/usb1/gc');
  assert.equal(gc.status, 400);
  assert.equal(gc.body.message, "datastore 'usb1' is not mounted");
  assert.equal(await opsMountStatus('usb1'), 'notmounted');
  assert.deepEqual(mountsUnder(mountDir), []);
});

test('mount and unmount are refused before any task for a datastore that is not removable, unknown, or without the privileges', async () => {
  for (const path of ['/admin/datastore/local/mount', '/admin/datastore/local/unmount']) {
    const r = await post(path);
    assert.deepEqual([r.status, r.body.message], [400, "datastore 'local' is not removable"], path);
  }
  assert.equal(storedMode('local'), undefined);
  assert.equal((await post('/admin/datastore/nosuch/mount')).status, 404);
  const unmounted = await post('/admin/datastore/usb1/unmount');
  assert.deepEqual([unmounted.status, unmounted.body.message], [400, "datastore 'usb1' is not mounted"]);
  assert.equal(storedMode('usb1'), undefined);
  // Datastore.Modify on the store is not enough: PBS also wants Sys.Modify on /system/disks
  const admin = await t.addUser('storeadmin@pbs', [{ path: '/datastore/usb1', role: 'DatastoreAdmin' }]);
  const r = await t.api('POST', '/admin/datastore/usb1/mount', { auth: admin });
  assert.equal(r.status, 403, JSON.stringify(r.body));
  assert.match(r.body.message!, /Sys\.Modify/);
});

test('mount: the device found by its UUID is mounted, its datastore directory bound at the mount point, and served', async () => {
  const { status, log } = await runTask(await post('/admin/datastore/usb1/mount'));
  assert.equal(status, 'OK', log.join('\n'));
  assert.ok(
    log.some((l) => l.includes(`temporarily mounting '${disk.uuid}'`)),
    log.join('\n'),
  );
  assert.ok(
    log.some((l) => l.includes(`bind mount 'usb1'(pbs) to '${mountDir}/usb1'`)),
    log.join('\n'),
  );
  // only the bind mount is left: the temporary mount of the whole device is gone
  assert.deepEqual(mountsUnder(t.dir), [join(mountDir, 'usb1')]);
  assert.equal((await listItem('usb1'))['mount-status'], 'mounted');
  assert.equal(await opsMountStatus('usb1'), 'mounted');
  const groups = await get('/admin/datastore/usb1/groups');
  assert.deepEqual([groups.status, groups.body.data], [200, []]);

  // a second mount changes nothing and says why (JSON body, as the wire allows)
  const again = await runTask(await post('/admin/datastore/usb1/mount', {}));
  assert.equal(again.status, 'OK');
  assert.ok(again.log.some((l) => l.includes(`device is already mounted at '${mountDir}/usb1'`)));
  assert.deepEqual(mountsUnder(t.dir), [join(mountDir, 'usb1')]);
});

test('unmount waits for the running operations, lists them, unmounts, and puts the previous mode back', async () => {
  const access = t.server.context.datastores;
  const put = await t.api('PUT', '/config/datastore/usb1', {
    auth: t.root,
    body: { 'maintenance-mode': 'read-only,message="weekly rotation"' },
  });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const restore = await access.lookupDatastore('usb1', 'read', {
    kind: 'restore',
    detail: 'host/web01',
    authId: 'root@pam',
  });
  const r = await post('/admin/datastore/usb1/unmount');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const upid = r.body.data as string;
  // from the answer on, nothing new is admitted
  assert.equal(storedMode('usb1'), 'unmount');
  const refused = await get('/admin/datastore/usb1/groups');
  assert.deepEqual(
    [refused.status, refused.body.message],
    [503, "datastore 'usb1' is unavailable: datastore is being unmounted"],
  );
  await waitForLog(upid, 'still running: restore host/web01');
  assert.ok(
    taskLog(t, upid).some((l) =>
      l.includes('cannot unmount yet, still 1 read and 0 write operations active'),
    ),
  );
  assert.deepEqual(mountsUnder(t.dir), [join(mountDir, 'usb1')], 'still mounted while the restore runs');

  await restore.release();
  const status = await waitForTask(t, upid);
  assert.equal(status, 'OK', taskLog(t, upid).join('\n'));
  assert.deepEqual(mountsUnder(t.dir), []);
  assert.deepEqual(openFilesUnder(process.pid, mountDir), []);
  assert.equal(storedMode('usb1'), 'read-only,message="weekly rotation"');
  const item = await listItem('usb1');
  assert.deepEqual(
    [item['mount-status'], item.maintenance],
    ['notmounted', 'read-only,message="weekly rotation"'],
  );
  const del = await t.api('PUT', '/config/datastore/usb1', {
    auth: t.root,
    body: { delete: 'maintenance-mode' },
  });
  assert.equal(del.status, 200);
});

test('clearing the mode while the unmount waits cancels it: the datastore stays mounted and in service', async () => {
  assert.equal((await runTask(await post('/admin/datastore/usb1/mount'))).status, 'OK');
  const access = t.server.context.datastores;
  const backup = await access.lookupDatastore('usb1', 'ingest', {
    kind: 'backup',
    detail: 'host/db',
    authId: 'root@pam',
  });
  const r = await post('/admin/datastore/usb1/unmount');
  const upid = r.body.data as string;
  await waitForLog(upid, 'still running: backup host/db');
  const clear = await t.api('PUT', '/config/datastore/usb1', {
    auth: t.root,
    form: 'delete=maintenance-mode',
  });
  assert.equal(clear.status, 200);
  const status = await waitForTask(t, upid);
  assert.match(status, /maintenance mode is not 'unmount' any more \(now none\): unmount aborted/);
  await backup.release();
  assert.deepEqual(mountsUnder(t.dir), [join(mountDir, 'usb1')]);
  assert.equal((await get('/admin/datastore/usb1/groups')).status, 200);
});

test('a busy unmount keeps the unmount mode with the reason; once the file is closed a retry unmounts', async () => {
  // a process outside Stowage (here: the test) holds a file on the disk
  const fd = openSync(join(mountDir, 'usb1', '.lock'), 'r');
  let status: string;
  try {
    ({ status } = await runTask(await post('/admin/datastore/usb1/unmount')));
  } finally {
    closeSync(fd);
  }
  assert.match(
    status,
    /datastore 'usb1' could not be unmounted: .*target is busy.*stays in maintenance mode unmount/,
  );
  assert.equal(storedMode('usb1'), 'unmount,message="unmount failed: target is busy"');
  assert.deepEqual(mountsUnder(t.dir), [join(mountDir, 'usb1')]);
  const refused = await get('/admin/datastore/usb1/groups');
  assert.equal(refused.status, 503);

  const retry = await runTask(await post('/admin/datastore/usb1/unmount'));
  assert.equal(retry.status, 'OK', retry.log.join('\n'));
  assert.equal(storedMode('usb1'), undefined);
  assert.deepEqual(mountsUnder(t.dir), []);
  assert.equal((await listItem('usb1'))['mount-status'], 'notmounted');
});

async function waitForLog(upid: string, text: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (taskLog(t, upid).some((l) => l.includes(text))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`task log never said '${text}':\n${taskLog(t, upid).join('\n')}`);
}

test('reuse-datastore needs a datastore at the path: refused naming it, nothing created', async () => {
  const path = join(t.dir, 'stores', 'empty-dir');
  mkdirSync(path, { recursive: true });
  const r = await t.api('POST', '/config/datastore', {
    auth: t.root,
    form: `name=reused&path=${encodeURIComponent(path)}&reuse-datastore=1`,
  });
  assert.deepEqual(
    [r.status, r.body.message],
    [
      400,
      `parameter verification failed - 'reuse-datastore': no datastore to reuse at '${path}' (it has no .chunks)`,
    ],
  );
  assert.equal(t.server.context.datastores.config.read().stores.has('reused'), false);
});

test('run-on-mount: mounting runs the sync jobs into the datastore; unmount-on-done unmounts it afterwards', async () => {
  await writeSnapshots(t.server.context.datastores, 'local', [
    { type: 'vm', id: '100', time: 1_717_236_000 },
  ]);
  const job = await t.api('POST', '/config/sync', {
    auth: t.root,
    body: {
      id: 'usb-copy',
      store: 'usb1',
      'remote-store': 'local',
      'run-on-mount': true,
      'unmount-on-done': true,
    },
  });
  assert.equal(job.status, 200, JSON.stringify(job.body));
  assert.equal((await listItem('usb1'))['mount-status'], 'notmounted');
  const mounted = await runTask(await post('/admin/datastore/usb1/mount'));
  assert.equal(mounted.status, 'OK', mounted.log.join('\n'));
  assert.ok(
    mounted.log.some((l) => l.includes('starting 1 sync jobs')),
    mounted.log.join('\n'),
  );
  // the job copies, then its unmount-on-done unmounts the disk and then clears the mode
  for (
    const end = Date.now() + 30_000;
    (await listItem('usb1'))['mount-status'] !== 'notmounted' || storedMode('usb1') !== undefined;
  ) {
    assert.ok(Date.now() < end, `never unmounted after the sync (mode ${storedMode('usb1')})`);
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual(mountsUnder(t.dir), []);
  assert.equal((await t.api('DELETE', '/config/sync/usb-copy', { auth: t.root })).status, 200);
  assert.equal((await runTask(await post('/admin/datastore/usb1/mount'))).status, 'OK');
  const snapshots = await get('/admin/datastore/usb1/snapshots');
  assert.deepEqual(
    (snapshots.body.data as Array<Record<string, unknown>>).map(
      (s) => `${String(s['backup-type'])}/${String(s['backup-id'])}`,
    ),
    ['vm/100'],
  );
  assert.equal((await runTask(await post('/admin/datastore/usb1/unmount'))).status, 'OK');
});

test('a disk whose device node vanished while mounted (an unplugged USB disk): notmounted as PBS says, unavailable with the reason, a mount refused, the unmount clears it', async () => {
  assert.equal((await runTask(await post('/admin/datastore/usb1/mount'))).status, 'OK');
  // the kernel removes /dev/sdX when a USB disk goes; here the loop device's node goes
  const { rdev, mode } = statSync(disk.device);
  const [major, minor] = [(rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00)];
  rmSync(disk.device);
  try {
    const item = await listItem('usb1');
    assert.equal(item['mount-status'], 'notmounted');
    assert.equal(item.unavailable, `its device ${disk.device} is gone`);
    const groups = await get('/admin/datastore/usb1/groups');
    assert.deepEqual([groups.status, groups.body.message], [400, "datastore 'usb1' is not mounted"]);
    const mount = await runTask(await post('/admin/datastore/usb1/mount'));
    assert.match(
      mount.status,
      /datastore 'usb1' is unavailable: its device \/dev\/loop\d+ is gone; unmount it/,
    );
    const unmounted = await runTask(await post('/admin/datastore/usb1/unmount'));
    assert.match(unmounted.status, /^(OK|WARNINGS)/, unmounted.log.join('\n'));
    assert.deepEqual(mountsUnder(mountDir), []);
    assert.equal((await listItem('usb1')).unavailable, undefined);
  } finally {
    const perms = (mode & 0o777).toString(8);
    execFileSync('mknod', ['-m', perms, disk.device, 'b', String(major), String(minor)]);
  }
  // the disk back: it mounts and serves again
  assert.equal((await runTask(await post('/admin/datastore/usb1/mount'))).status, 'OK');
  assert.equal((await get('/admin/datastore/usb1/groups')).status, 200);
  assert.equal((await runTask(await post('/admin/datastore/usb1/unmount'))).status, 'OK');
});
