/**
 * `stowage datastore mount|unmount NAME` against a real `stowage server` process, on an ext4 loop
 * device made here: the list says whether the disk is mounted, the unmount prints the operations
 * it waits for (held by another process) as they go, and a busy unmount exits non-zero naming the
 * reason, leaves `unmount` in `maintenance show`, and succeeds when run again; a disk that failed
 * while mounted is listed unavailable with the reason.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StowagePaths } from '../../src/config/paths.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { STOWAGE_BIN, ServerProcess, freePort, runCli } from '../helpers/cli.js';
import { makeBareChunkStore } from '../helpers/test-datastore.js';
import {
  cleanupUnder,
  makeLoopDisk,
  mountDisk,
  mountsUnder,
  pullDisk,
  unmount,
  type LoopDisk,
} from '../helpers/loop-device.js';

let root: string;
let paths: StowagePaths;
let env: NodeJS.ProcessEnv;
let server: ServerProcess;
let disk: LoopDisk;
let mountDir: string;
const stowage = (...args: string[]) => runCli(STOWAGE_BIN, args, env);

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'stowage-cli-removable-'));
  paths = { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
  mountDir = join(root, 'mnt');
  disk = makeLoopDisk(root, 'usb1');
  const prep = join(root, 'prep');
  mkdirSync(prep);
  mountDisk(disk, prep);
  try {
    makeBareChunkStore(join(prep, 'pbs'));
  } finally {
    unmount(prep);
  }
  mkdirSync(paths.configDir, { recursive: true });
  writeFileSync(
    join(paths.configDir, 'datastore.cfg'),
    `datastore: usb1\n\tpath pbs\n\tbacking-device ${disk.uuid}\n`,
  );
  const port = await freePort();
  env = {
    STOWAGE_DATA_DIR: root,
    STOWAGE_SERVER: `127.0.0.1:${port}`,
    STOWAGE_ROOT_PASSWORD: 'removable-pw',
    STOWAGE_DATASTORE_MOUNT_DIR: mountDir,
  };
  server = new ServerProcess(['--listen', `127.0.0.1:${port}`], env);
  await server.started();
});

after(async () => {
  try {
    await server?.stop();
  } finally {
    if (root) {
      cleanupUnder(root);
      rmSync(root, { recursive: true, force: true });
    }
  }
});

test('datastore mount mounts the device and the list says so', async () => {
  const before = await stowage('datastore', 'list');
  assert.equal(before.code, 0, before.stderr);
  assert.match(before.stdout, /^usb1\s+pbs\s+none\s+none\s+not mounted/m);
  const r = await stowage('datastore', 'mount', 'usb1');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /bind mount 'usb1'\(pbs\)/);
  assert.deepEqual(mountsUnder(root), [join(mountDir, 'usb1')]);
  assert.match((await stowage('datastore', 'list')).stdout, /^usb1\s+pbs\s+none\s+none\s+mounted/m);
});

test('datastore unmount prints what it waits for, held by another process, and unmounts once it ends', async () => {
  // the holder opens the datastore at the same mount point the server uses
  process.env.STOWAGE_DATASTORE_MOUNT_DIR = mountDir;
  const holder = await new HolderProcess(paths).start();
  try {
    await holder.hold('usb1', 'read', 'restore', 'host/web01', 'alice@pbs');
    const unmounting = stowage('datastore', 'unmount', 'usb1');
    // the wait is visible while it lasts, which is until the holder ends (each CLI call starts a
    // process: on a loaded machine the first answers take seconds)
    for (const end = Date.now() + 60_000; ;) {
      const show = await stowage('datastore', 'maintenance', 'show', 'usb1');
      if (show.stdout.includes('unmount')) break;
      assert.ok(Date.now() < end, `never in unmount: ${show.stdout}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1000));
    await holder.kill();
    const r = await unmounting;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /cannot unmount yet, still 1 read and 0 write operations active/);
    assert.match(r.stdout, /still running: restore host\/web01 by alice@pbs/);
    assert.deepEqual(mountsUnder(root), []);
  } finally {
    await holder.kill();
  }
});

test('a busy unmount exits non-zero with the reason and stays in maintenance mode unmount; run again it unmounts', async () => {
  assert.equal((await stowage('datastore', 'mount', 'usb1')).code, 0);
  const fd = openSync(join(mountDir, 'usb1', '.lock'), 'r');
  let busy;
  try {
    busy = await stowage('datastore', 'unmount', 'usb1');
  } finally {
    closeSync(fd);
  }
  assert.notEqual(busy.code, 0);
  assert.match(busy.stderr, /datastore 'usb1' could not be unmounted: .*target is busy/);
  const show = await stowage('datastore', 'maintenance', 'show', 'usb1');
  assert.match(show.stdout, /unmount/);
  assert.match(show.stdout, /unmount failed: target is busy/);
  const again = await stowage('datastore', 'unmount', 'usb1');
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(mountsUnder(root), []);
  assert.match((await stowage('datastore', 'list')).stdout, /^usb1\s+pbs\s+none\s+none\s+not mounted/m);
});

test('a disk that failed while mounted: the list says unavailable with the reason, the unmount takes it away', async () => {
  assert.equal((await stowage('datastore', 'mount', 'usb1')).code, 0);
  pullDisk(join(mountDir, 'usb1'));
  assert.match(
    (await stowage('datastore', 'list')).stdout,
    /^usb1\s+pbs\s+none\s+none\s+unavailable: the filesystem on \/dev\/loop\d+ was shut down after a device failure/m,
  );
  const r = await stowage('datastore', 'unmount', 'usb1');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(mountsUnder(root), []);
  assert.match((await stowage('datastore', 'list')).stdout, /^usb1\s+pbs\s+none\s+none\s+not mounted/m);
});
