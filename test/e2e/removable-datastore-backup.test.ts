/**
 * A removable datastore's life with real processes on a real disk (issue 18's "done when"): the
 * server (its own process) creates a removable datastore on an ext4 loop device made here,
 * `stowage-client` backs up into it, an unmount started while a restore runs waits for the
 * restore (listing it), then unmounts — `umount` succeeded and no process holds a file under the
 * mount point — a backup while it is away is refused naming it, and mounted again (or recreated
 * with `reuse-datastore`) it restores byte for byte. Chunk loads are slowed (SLOW_CHUNK_MS) so
 * the restore is still running when the unmount starts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApiClient } from '../../src/client/connection.js';
import { listTree, openFilesUnder } from '../helpers/files.js';
import { cleanupUnder, makeLoopDisk, mountsUnder, pullDisk, type LoopDisk } from '../helpers/loop-device.js';
import {
  loginApi,
  runClient,
  runTreeBackup,
  spawnClient,
  startE2eServer,
  taskEnd,
  type E2eServer,
} from './backup-helpers.js';

const T1 = 1_780_000_000;
let root: string;
let srv: E2eServer;
let api: ApiClient;
let disk: LoopDisk;
let mountDir: string;
let src: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'stowage-e2e-removable-backup-'));
  mountDir = join(root, 'mnt');
  srv = await startE2eServer('unused', {
    root,
    env: { STOWAGE_DATASTORE_MOUNT_DIR: mountDir, SLOW_CHUNK_MS: '300' },
  });
  api = await loginApi(srv);
  disk = makeLoopDisk(root, 'usb');
  env = { ...srv.env, STOWAGE_REPOSITORY: `root@pam@${srv.host}:${srv.port}:usb1` };
  src = join(root, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  // incompressible, so several chunks (each load slowed) make the restore take a while
  writeFileSync(join(src, 'disk.bin'), randomBytes(6 << 20));
  writeFileSync(join(src, 'etc', 'hosts'), '127.0.0.1 localhost\n');
});

after(async () => {
  try {
    await srv?.kill();
  } finally {
    if (root) cleanupUnder(root);
    await srv?.stop();
  }
});

async function task(upid: string): Promise<{ status: string; log: string[] }> {
  return taskEnd(api, upid);
}

async function mountStatus(store: string): Promise<string | undefined> {
  const list = await api.call<Array<{ store: string; 'mount-status': string }>>('GET', '/admin/datastore');
  return list.find((i) => i.store === store)?.['mount-status'];
}

/** Every process's open files under `dir` (/proc/PID/fd of all processes). */
function openFilesOfAllUnder(dir: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      out.push(...openFilesUnder(Number(pid), dir).map((f) => `${pid}: ${f}`));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Start `stowage-client ARGS` against usb1; resolves with its exit code and stderr when it ends. */
function startClient(args: string[]): Promise<{ code: number; stderr: string }> {
  const proc = spawnClient(args, env);
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((r) => proc.once('close', (code) => r({ code: code ?? -1, stderr })));
}

/** Wait until a read operation (the restore's reader session) is admitted on `store`. */
async function waitForRead(store: string): Promise<void> {
  for (const end = Date.now() + 20_000; ;) {
    const ops = await api.call<{ read: number }>('GET', `/admin/datastore/${store}/active-operations`);
    if (ops.read > 0) return;
    assert.ok(Date.now() < end, 'the restore never started');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function assertSameTree(a: string, b: string): void {
  const tree = listTree(a);
  assert.deepEqual(listTree(b), tree);
  for (const rel of tree.filter((r) => statSync(join(a, r)).isFile())) {
    assert.ok(readFileSync(join(a, rel)).equals(readFileSync(join(b, rel))), rel);
  }
}

test('a removable datastore is created on the device: mounted, the chunk store made at the path on it, the UUID recorded', async () => {
  const upid = await api.call<string>('POST', '/config/datastore', {
    name: 'usb1',
    path: 'backups/pbs',
    'backing-device': disk.uuid,
    comment: 'rotating disk A',
  });
  const { status, log } = await task(upid);
  assert.equal(status, 'OK', log.join('\n'));
  assert.ok(
    log.some((l) => l.includes(`temporarily mounting '${disk.uuid}'`)),
    log.join('\n'),
  );
  const cfg = await api.call<Record<string, unknown>>('GET', '/config/datastore/usb1');
  assert.deepEqual([cfg.path, cfg['backing-device']], ['backups/pbs', disk.uuid]);
  // stays mounted, as in PBS
  assert.equal(await mountStatus('usb1'), 'mounted');
  assert.deepEqual(mountsUnder(root), [join(mountDir, 'usb1')]);
  assert.ok(existsSync(join(mountDir, 'usb1', '.chunks', 'ffff')));
});

test('a second datastore on a directory of the device that holds files is refused, and its mount undone', async () => {
  const upid = await api.call<string>('POST', '/config/datastore', {
    name: 'usb2',
    path: 'backups',
    'backing-device': disk.uuid,
  });
  const { status } = await task(upid);
  assert.match(status, /'backups' is not empty|is not empty/);
  assert.deepEqual(mountsUnder(root), [join(mountDir, 'usb1')]);
  const names = (await api.call<Array<{ name: string }>>('GET', '/config/datastore')).map((c) => c.name);
  assert.ok(!names.includes('usb2'));
});

test('stowage-client backs up into the removable datastore', async () => {
  const r = await runTreeBackup(env, src, 'web01', T1);
  assert.equal(r.code, 0, r.stderr);
});

test('unmount while a restore runs: waits for it, lists it, then unmounts and nothing holds a file there', async () => {
  const dst = join(root, 'restore-1');
  const restore = startClient(['restore', 'host/web01', 'root.tar', dst]);
  await waitForRead('usb1');
  const upid = await api.call<string>('POST', '/admin/datastore/usb1/unmount');
  const { code, stderr } = await restore;
  assert.equal(code, 0, stderr);
  const { status, log } = await task(upid);
  assert.equal(status, 'OK', log.join('\n'));
  assert.ok(
    log.some((l) => l.includes('cannot unmount yet, still 1 read and 0 write operations active')),
    log.join('\n'),
  );
  assert.ok(
    log.some((l) => l.includes('still running: ') && l.includes('host/web01')),
    log.join('\n'),
  );
  const waited = log.findIndex((l) => l.includes('still running: '));
  const unmounted = log.findIndex((l) => l.includes('unmounting '));
  assert.ok(waited >= 0 && unmounted > waited, 'unmounted only after the restore ended');
  assert.deepEqual(mountsUnder(root), []);
  assert.deepEqual(openFilesOfAllUnder(mountDir), []);
  assert.equal(await mountStatus('usb1'), 'notmounted');
  assertSameTree(src, dst);
});

test('while the disk is away a backup is refused naming the datastore, and nothing is written to the mount point', async () => {
  const r = await runTreeBackup(env, src, 'web01', T1 + 60);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /datastore 'usb1' is not mounted/);
  assert.deepEqual(readdirSync(join(mountDir, 'usb1')), []);
});

test('mounted again, the snapshot restores byte for byte', async () => {
  const { status, log } = await task(await api.call<string>('POST', '/admin/datastore/usb1/mount'));
  assert.equal(status, 'OK', log.join('\n'));
  assert.equal(await mountStatus('usb1'), 'mounted');
  const dst = join(root, 'restore-2');
  const r = await runClient(['restore', 'host/web01', 'root.tar', dst], env);
  assert.equal(r.code, 0, r.stderr);
  assertSameTree(src, dst);
});

test('with gc-on-unmount the unmount starts garbage collection, is refusing new work from its answer on, and waits for the GC and the restore', async () => {
  await api.call('PUT', '/config/datastore/usb1', { 'gc-on-unmount': true });
  const cfg = await api.call<Record<string, unknown>>('GET', '/config/datastore/usb1');
  assert.equal(cfg['gc-on-unmount'], true);
  const dst = join(root, 'restore-gc');
  const restore = startClient(['restore', 'host/web01', 'root.tar', dst]);
  await waitForRead('usb1');
  const upid = await api.call<string>('POST', '/admin/datastore/usb1/unmount');
  // PBS's order: the GC is started, then the unmount mode set, before the unmount answers
  await assert.rejects(api.call('GET', '/admin/datastore/usb1/status'), {
    message: /datastore is being unmounted/,
  });
  const restored = await restore;
  assert.equal(restored.code, 0, restored.stderr);
  const { status, log } = await task(upid);
  assert.equal(status, 'OK', log.join('\n'));
  const started = log.find((l) => l.includes('gc-on-unmount: started garbage collection'));
  const gcUpid = /\((UPID:[^)]+)\)/.exec(started ?? '')?.[1];
  assert.ok(gcUpid?.includes(':garbage_collection:usb1:'), log.join('\n'));
  const waitedForGc = log.findIndex((l) => l.includes('still running: ') && /\bgc\b/.test(l));
  const unmounted = log.findIndex((l) => l.includes('unmounting '));
  assert.ok(waitedForGc >= 0 && unmounted > waitedForGc, log.join('\n'));
  const gcTask = await task(gcUpid!);
  assert.equal(gcTask.status, 'OK', gcTask.log.join('\n'));
  assert.ok(
    gcTask.log.some((l) => l.includes('Start GC phase2')),
    gcTask.log.join('\n'),
  );
  assert.deepEqual(mountsUnder(root), []);
  assert.deepEqual(openFilesOfAllUnder(mountDir), []);
  assertSameTree(src, dst);
  // the GC's result is on the disk, under its own task's UPID
  assert.equal((await task(await api.call<string>('POST', '/admin/datastore/usb1/mount'))).status, 'OK');
  const gcStatus = await api.call<{ upid?: string }>('GET', '/admin/datastore/usb1/gc');
  assert.equal(gcStatus.upid, gcUpid);
});

test('removed from the configuration it is unmounted; created again with reuse-datastore it serves the old snapshots', async () => {
  const removed = await task(await api.call<string>('DELETE', '/config/datastore/usb1'));
  assert.equal(removed.status, 'OK', removed.log.join('\n'));
  assert.ok(
    removed.log.some((l) => l.includes('unmounted ')),
    removed.log.join('\n'),
  );
  assert.deepEqual(mountsUnder(root), []);
  const upid = await api.call<string>('POST', '/config/datastore', {
    name: 'usb1',
    path: 'backups/pbs',
    'backing-device': disk.uuid,
    'reuse-datastore': true,
  });
  const { status, log } = await task(upid);
  assert.equal(status, 'OK', log.join('\n'));
  assert.ok(
    log.some((l) => l.includes('reusing the datastore')),
    log.join('\n'),
  );
  const snapshots = await api.call<Array<{ 'backup-id': string }>>('GET', '/admin/datastore/usb1/snapshots');
  assert.deepEqual(
    snapshots.map((s) => s['backup-id']),
    ['web01'],
  );
  const dst = join(root, 'restore-3');
  const r = await runClient(['restore', 'host/web01', 'root.tar', dst], env);
  assert.equal(r.code, 0, r.stderr);
  assertSameTree(src, dst);
});

test('a disk pulled mid-backup: the client fails with a clear error, the store shows as unavailable with the failure until unmounted, and mounted again no snapshot of it is visible', async () => {
  const big = join(root, 'src-big');
  mkdirSync(big);
  writeFileSync(join(big, 'db.bin'), randomBytes(20 << 20));
  // zeros after it (one deduplicated chunk, no space on the disk): the backup is still reading
  // them when the disk is pulled, however fast it wrote the rest
  writeFileSync(join(big, 'zz-zeros.img'), '');
  truncateSync(join(big, 'zz-zeros.img'), 256 << 20);
  const backup = startClient([
    'backup',
    `root.tar:${big}`,
    '--backup-id',
    'db01',
    '--backup-time',
    String(T1 + 600),
  ]);
  for (const end = Date.now() + 20_000; ;) {
    const ops = await api.call<{ write: number }>('GET', '/admin/datastore/usb1/active-operations');
    if (ops.write > 0) break;
    assert.ok(Date.now() < end, 'the backup never started');
    await new Promise((r) => setTimeout(r, 20));
  }
  // what the backup wrote so far reaches the disk (as the journal's commit would after 5 s), so
  // its unfinished snapshot is there after the remount: the mount must clean it up
  await new Promise((r) => setTimeout(r, 300));
  execFileSync('sync', ['-f', join(mountDir, 'usb1')]);
  pullDisk(join(mountDir, 'usb1'));
  const { code, stderr } = await backup;
  assert.notEqual(code, 0, 'the backup must not succeed on a pulled disk');
  assert.match(stderr, /i\/o error|EIO|input\/output error/i, stderr);

  // still mounted (PBS's mount-status), but shown as unavailable with the failure, and refused
  // with it rather than with an I/O error from the disk
  const failure = /shut down after a device failure/;
  const item = (await api.call<Array<Record<string, unknown>>>('GET', '/admin/datastore')).find(
    (i) => i.store === 'usb1',
  );
  assert.equal(item?.['mount-status'], 'mounted');
  assert.match(String(item?.unavailable), failure);
  const ops = await api.call<{ 'mount-status': string; unavailable?: string }>(
    'GET',
    '/admin/datastore/usb1/active-operations',
  );
  assert.deepEqual([ops['mount-status'], failure.test(ops.unavailable ?? '')], ['mounted', true]);
  await assert.rejects(api.call('GET', '/admin/datastore/usb1/status'), {
    status: 400,
    message:
      /^datastore 'usb1' is unavailable: the filesystem on \/dev\/loop\d+ was shut down after a device failure; unmount it/,
  });
  const usage = await api.call<Array<{ store: string; error?: string }>>('GET', '/status/datastore-usage');
  assert.match(usage.find((u) => u.store === 'usb1')?.error ?? '', failure);
  // mounting again is refused until the failed one is unmounted
  const remount = await task(await api.call<string>('POST', '/admin/datastore/usb1/mount'));
  assert.match(remount.status, /is unavailable: .*unmount it/, remount.log.join('\n'));

  // the operator unmounts what is left; the dead filesystem is not synced (a warning saying
  // why), the unmount goes on
  const unmounted = await task(await api.call<string>('POST', '/admin/datastore/usb1/unmount'));
  assert.match(unmounted.status, /^WARNINGS: 1$/, unmounted.log.join('\n'));
  assert.ok(
    unmounted.log.some((l) =>
      /not syncing .*shut down after a device failure; what was not written is lost/.test(l),
    ),
    unmounted.log.join('\n'),
  );
  assert.deepEqual(mountsUnder(root), []);
  const mounted = await task(await api.call<string>('POST', '/admin/datastore/usb1/mount'));
  assert.equal(mounted.status, 'OK', mounted.log.join('\n'));
  const healed = await api.call<{ unavailable?: string }>('GET', '/admin/datastore/usb1/active-operations');
  assert.equal(healed.unavailable, undefined);
  assert.ok(
    mounted.log.some((l) => l.includes('db01')),
    `the mount removed the unfinished backup:\n${mounted.log.join('\n')}`,
  );
  const snapshots = await api.call<Array<{ 'backup-id': string }>>('GET', '/admin/datastore/usb1/snapshots');
  assert.deepEqual(
    snapshots.map((s) => s['backup-id']),
    ['web01'],
  );
  const dst = join(root, 'restore-after-pull');
  const r = await runClient(['restore', 'host/web01', 'root.tar', dst], env);
  assert.equal(r.code, 0, r.stderr);
  assertSameTree(src, dst);
});
