import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkChunkBlob } from '../../src/datastore/chunk-backend.js';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import type { DatastoreAccess } from '../../src/maintenance/datastore-access.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { describeTree, makeTree } from '../client/tree-fixture.js';
import { runClient, spawnClient, startE2eServer, type E2eServer } from './backup-helpers.js';
import { openFilesUnder } from '../helpers/files.js';

let srv: E2eServer;
let access: DatastoreAccess;
let src: string;
let imagePath: string;

before(async () => {
  srv = await startE2eServer('stowage-e2e-backup-');
  access = openDatastoreAccess({
    configDir: join(srv.root, 'etc'),
    dataDir: srv.root,
    runDir: join(srv.root, 'run'),
  });
  src = join(srv.root, 'src');
  makeTree(src, { scale: 3 * 1024 * 1024 });
  imagePath = join(srv.root, 'disk.img');
  writeFileSync(
    imagePath,
    Buffer.concat([randomBytes(5 * 1024 * 1024), Buffer.alloc(3 * 1024 * 1024), randomBytes(1000)]),
  );
});

after(async () => {
  access?.close();
  await srv?.stop();
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    assert.ok(Date.now() < deadline, 'condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function snapshotsOf(id: string): string[] {
  const dir = join(srv.storePath, 'host', id);
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((n) => /^\d{4}-/.test(n))
        .sort()
    : [];
}

async function backup(id: string, time: number, extra: string[] = []) {
  return runClient(
    [
      'backup',
      `root.tar:${src}`,
      `disk.img:${imagePath}`,
      '--backup-id',
      id,
      '--backup-time',
      String(time),
      '--output-format',
      'json',
      ...extra,
    ],
    srv.env,
  );
}

test('a tree and an image are backed up and restored byte for byte with their metadata', async () => {
  const res = await backup('web01', 1_700_000_000);
  assert.equal(res.code, 0, res.stderr);
  const summary = JSON.parse(res.stdout) as { snapshot: string; bytes: number; newBytes: number };
  assert.equal(summary.snapshot, 'host/web01/2023-11-14T22:13:20Z');
  assert.ok(summary.newBytes > 0);
  // the progress of each archive ends at its total (tar headers included), never beyond it
  for (const archive of ['root.tar.didx', 'disk.img.fidx']) {
    const last = res.stderr
      .split('\n')
      .filter((l) => l.startsWith(`${archive}: `))
      .at(-1);
    const m = /^\S+: ([\d.]+ \w+) of ([\d.]+ \w+),/.exec(last ?? '');
    assert.ok(m, `no progress line for ${archive} in:\n${res.stderr}`);
    assert.equal(m[1], m[2], last);
  }

  const dst = join(srv.root, 'restore1');
  const r1 = await runClient(['restore', 'host/web01/2023-11-14T22:13:20Z', 'root.tar', dst], srv.env);
  assert.equal(r1.code, 0, r1.stderr);
  assert.deepEqual(describeTree(dst, { rootMeta: true }), describeTree(src, { rootMeta: true }));

  const img = join(srv.root, 'restored.img');
  const r2 = await runClient(['restore', 'host/web01', 'disk.img', img], srv.env);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(sha(readFileSync(img)), sha(readFileSync(imagePath)));

  // restore never overwrites: an existing target is named, with exit 3 and the file untouched
  const again = await runClient(['restore', 'host/web01', 'disk.img', img], srv.env);
  assert.equal(again.code, 3, again.stderr);
  assert.equal(
    again.stderr.trim().split('\n').at(-1),
    `error: '${img}' already exists: restore never overwrites a file - move it away or restore elsewhere`,
  );
  assert.equal(sha(readFileSync(img)), sha(readFileSync(imagePath)));
  const intoTree = await runClient(['restore', 'host/web01/2023-11-14T22:13:20Z', 'root.tar', dst], srv.env);
  assert.equal(intoTree.code, 2, intoTree.stderr);
  assert.match(intoTree.stderr, /^error: restore target '.*' exists and is not empty$/m);
  assert.deepEqual(describeTree(dst, { rootMeta: true }), describeTree(src, { rootMeta: true }));

  const list = await runClient(['snapshots', '--output-format', 'json'], srv.env);
  assert.equal(list.code, 0, list.stderr);
  const snaps = JSON.parse(list.stdout) as Array<{ 'backup-id': string; 'backup-time': number }>;
  assert.deepEqual(
    snaps.map((s) => `${s['backup-id']}@${s['backup-time']}`),
    ['web01@1700000000'],
  );
});

test('a second backup of unchanged data uploads no chunk data', async () => {
  const res = await backup('web01', 1_700_000_100);
  assert.equal(res.code, 0, res.stderr);
  const s = JSON.parse(res.stdout) as {
    bytes: number;
    newBytes: number;
    newChunks: number;
    uploadedBytes: number;
    reusedBytes: number;
  };
  assert.equal(s.newChunks, 0);
  assert.equal(s.uploadedBytes, 0);
  assert.equal(s.reusedBytes, s.bytes);
});

test('a backup started before read-only completes; one started after is refused and leaves no snapshot', async () => {
  const bigImage = join(srv.root, 'big.img');
  writeFileSync(bigImage, randomBytes(24 * 1024 * 1024));
  const running = spawnClient(
    ['backup', `big.img:${bigImage}`, '--backup-id', 'early', '--backup-time', '1700000000'],
    srv.env,
  );
  let stderr = '';
  running.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((r) => running.once('close', (c) => r(c ?? -1)));
  // wait until the server admitted the session, then switch to read-only while it runs
  const deadline = Date.now() + 20_000;
  while (!access.registry.list('local').some((op) => op.kind === 'backup')) {
    assert.ok(Date.now() < deadline, `backup never started: ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  // the session's operation names its worker task, so the operator can follow it
  await waitFor(() => access.registry.list('local').some((op) => /^UPID:.*:backup:/.test(op.taskId ?? '')));
  const change = await setMaintenanceMode(access, 'local', {
    type: 'read-only',
    message: 'replacing disk 3',
  });
  try {
    assert.equal(change.conflicting.length, 1, 'the early backup was running when read-only was set');
    const late = await backup('late', 1_700_000_000);
    assert.equal(late.code, EXIT.MAINTENANCE);
    assert.match(
      late.stderr,
      /^error: datastore 'local' is unavailable: read-only maintenance mode: replacing disk 3$/m,
    );
    assert.deepEqual(snapshotsOf('late'), []);
    assert.equal(await exited, 0, stderr);
    assert.deepEqual(snapshotsOf('early'), ['2023-11-14T22:13:20Z']);
    assert.ok(existsSync(join(srv.storePath, 'host/early/2023-11-14T22:13:20Z/index.json.blob')));

    // restores keep working under read-only ...
    const img = join(srv.root, 'early.img');
    const r = await runClient(['restore', 'host/early/2023-11-14T22:13:20Z', 'big.img', img], srv.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha(readFileSync(img)), sha(readFileSync(bigImage)));
    // ... and are refused under offline
    await setMaintenanceMode(access, 'local', { type: 'offline', message: 'moving shelves' });
    const off = await runClient(
      ['restore', 'host/early/2023-11-14T22:13:20Z', 'big.img', join(srv.root, 'x.img')],
      srv.env,
    );
    assert.equal(off.code, EXIT.MAINTENANCE);
    assert.match(
      off.stderr,
      /^error: datastore 'local' is unavailable: offline maintenance mode: moving shelves$/m,
    );
    // drained and offline: the server process holds no file on the datastore (it could be unmounted)
    assert.deepEqual(openFilesUnder(srv.proc.pid!, srv.storePath), []);
  } finally {
    await setMaintenanceMode(access, 'local', undefined);
  }
});

test('killing the client mid-backup leaves no snapshot and no broken chunk, and the next backup works', async () => {
  const bigTree = join(srv.root, 'bigtree');
  mkdirSync(bigTree);
  for (let i = 0; i < 6; i++) writeFileSync(join(bigTree, `f${i}`), randomBytes(5 * 1024 * 1024));
  const proc = spawnClient(
    ['backup', `data.tar:${bigTree}`, '--backup-id', 'killed', '--backup-time', '1700000000'],
    srv.env,
  );
  const deadline = Date.now() + 20_000;
  while (snapshotsOf('killed').length === 0) {
    assert.ok(Date.now() < deadline, 'backup never started');
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 300));
  proc.kill('SIGKILL');
  await new Promise((r) => proc.once('close', r));
  const gone = Date.now() + 10_000;
  while (existsSync(join(srv.storePath, 'host', 'killed'))) {
    assert.ok(Date.now() < gone, 'unfinished snapshot was not removed');
    await new Promise((r) => setTimeout(r, 20));
  }
  // every chunk on disk is whole: its content hashes to its name
  let checked = 0;
  for (const sub of readdirSync(join(srv.storePath, '.chunks'))) {
    for (const name of readdirSync(join(srv.storePath, '.chunks', sub))) {
      assert.match(name, /^[0-9a-f]{64}$/, `stray file ${sub}/${name}`);
      checkChunkBlob(Buffer.from(name, 'hex'), readFileSync(join(srv.storePath, '.chunks', sub, name)));
      checked++;
    }
  }
  assert.ok(checked > 0);
  const again = await runClient(
    ['backup', `data.tar:${bigTree}`, '--backup-id', 'killed', '--backup-time', '1700000001'],
    srv.env,
  );
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(snapshotsOf('killed'), ['2023-11-14T22:13:21Z']);
});
