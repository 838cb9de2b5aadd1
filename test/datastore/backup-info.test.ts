import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadRequestError, NotFoundError, StowageError } from '../../src/errors.js';
import { backupTimeFromString } from '../../src/api-types/names.js';
import {
  BackupDir,
  BackupGroup,
  BackupNamespace,
  createLockedBackupDir,
  createLockedBackupGroup,
  createNamespace,
  deleteGroup,
  deleteSnapshot,
  getGroupNotes,
  getOwner,
  getSnapshotNotes,
  isProtected,
  listGroups,
  listNamespaces,
  listSnapshots,
  removeAbandonedSnapshots,
  setGroupNotes,
  setOwner,
  setProtected,
  setSnapshotNotes,
  snapshotFiles,
  snapshotPath,
  type BackupStore,
} from '../../src/datastore/backup-info.js';
import {
  MANIFEST_BLOB_NAME,
  loadManifest,
  newManifest,
  storeManifest,
} from '../../src/datastore/manifest.js';
import { listTree } from '../helpers/files.js';
import { testDatastoreLocks } from '../helpers/test-datastore.js';

const ROOT = BackupNamespace.root();
const t = (s: string) => backupTimeFromString(s);

function code(c: string) {
  return (err: unknown) => err instanceof StowageError && err.code === c;
}

async function withStore(fn: (store: BackupStore, root: string) => Promise<void> | void): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'stowage-backup-info-'));
  const basePath = join(root, 'store');
  mkdirSync(basePath);
  try {
    await fn({ basePath, locks: testDatastoreLocks(root, basePath) }, root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** A snapshot directory with the given archives; finished unless told otherwise. */
function addSnapshot(
  store: BackupStore,
  group: BackupGroup,
  time: string,
  opts: { finished?: boolean; files?: Record<string, number> } = {},
): BackupDir {
  const dir = group.snapshot(t(time));
  const path = snapshotPath(store, dir);
  mkdirSync(path, { recursive: true });
  for (const [name, size] of Object.entries(opts.files ?? {}))
    writeFileSync(join(path, name), Buffer.alloc(size));
  if (opts.finished !== false) storeManifest(path, newManifest(group.type, group.id, dir.time));
  return dir;
}

test('relative paths are built from validated parts only', () => {
  const ns = BackupNamespace.parse('site1/pve');
  assert.equal(ns.path, 'ns/site1/ns/pve');
  assert.equal(ns.name, 'site1/pve');
  assert.equal(ROOT.path, '');
  const group = new BackupGroup(ns, 'vm', '100');
  assert.equal(group.relativePath, 'ns/site1/ns/pve/vm/100');
  assert.equal(new BackupGroup(ROOT, 'host', 'web01').relativePath, 'host/web01');
  const dir = group.snapshot(t('2024-06-10T06:13:20Z'));
  assert.equal(dir.relativePath, 'ns/site1/ns/pve/vm/100/2024-06-10T06:13:20Z');
  assert.equal(dir.toString(), 'vm/100/2024-06-10T06:13:20Z');

  assert.throws(() => new BackupGroup(ROOT, 'vm', '../../etc'), BadRequestError);
  assert.throws(() => new BackupGroup(ROOT, 'vm', '.'), BadRequestError);
  assert.throws(() => new BackupGroup(ROOT, '..', '100'), BadRequestError);
  assert.throws(() => BackupNamespace.fromComponents(['a', '..']), BadRequestError);
  assert.throws(() => BackupNamespace.fromComponents(['a/b']), BadRequestError);
  assert.throws(() => ns.child('..'), BadRequestError);
  assert.throws(() => BackupDir.fromTimeString(group, '../2024-06-10T06:13:20Z'), BadRequestError);
  assert.throws(() => group.snapshot(0), BadRequestError);
});

test('namespaces, groups and snapshots are listed from disk in PBS order, skipping foreign entries', () =>
  withStore((store) => {
    const a = BackupNamespace.parse('a');
    createNamespace(store, a);
    createNamespace(store, a.child('b'));
    createNamespace(store, BackupNamespace.parse('c'));
    assert.throws(() => createNamespace(store, BackupNamespace.parse('x/y')), NotFoundError);
    assert.throws(() => createNamespace(store, a), code('ALREADY_EXISTS'));
    mkdirSync(join(store.basePath, 'ns', '.hidden'));
    mkdirSync(join(store.basePath, 'lost+found'));

    assert.deepEqual(
      listNamespaces(store).map((n) => n.name),
      ['', 'a', 'a/b', 'c'],
    );
    assert.deepEqual(
      listNamespaces(store, a).map((n) => n.name),
      ['a', 'a/b'],
    );
    assert.deepEqual(
      listNamespaces(store, ROOT, 1).map((n) => n.name),
      ['', 'a', 'c'],
    );
    assert.throws(() => listNamespaces(store, BackupNamespace.parse('nope')), NotFoundError);

    for (const [type, id] of [
      ['vm', '10'],
      ['vm', 'abc'],
      ['vm', '9'],
      ['host', 'web01'],
      ['ct', '200'],
    ]) {
      addSnapshot(store, new BackupGroup(ROOT, type!, id!), '2024-01-01T00:00:00Z');
    }
    mkdirSync(join(store.basePath, 'vm', '.tmp'));
    mkdirSync(join(store.basePath, 'vm', 'bad name'));
    writeFileSync(join(store.basePath, 'vm', '11'), 'a file, not a group');
    addSnapshot(store, new BackupGroup(a, 'vm', '100'), '2024-01-01T00:00:00Z');

    assert.deepEqual(listGroups(store, ROOT).map(String), [
      'ct/200',
      'host/web01',
      'vm/9',
      'vm/10',
      'vm/abc',
    ]);
    assert.deepEqual(listGroups(store, a).map(String), ['vm/100']);
    assert.deepEqual(listGroups(store, a.child('b')), []);

    const g = new BackupGroup(ROOT, 'vm', '9');
    addSnapshot(store, g, '2024-03-01T00:00:00Z', {
      finished: false,
      files: { 'drive-scsi0.img.fidx': 4096 },
    });
    const d2 = addSnapshot(store, g, '2024-02-01T00:00:00Z', {
      files: { 'drive-scsi0.img.fidx': 4160, 'qemu-server.conf.blob': 100, 'notes.txt': 5, 'x.tmp_fidx': 1 },
    });
    writeFileSync(join(snapshotPath(store, d2), '.protected'), '');
    mkdirSync(join(store.basePath, 'vm', '9', '2024-02-30T00:00:00Z')); // matches the pattern, no real date
    writeFileSync(join(store.basePath, 'vm', '9', '2024-04-01T00:00:00Z'), 'a file, not a snapshot');

    const snaps = listSnapshots(store, g);
    assert.deepEqual(
      snaps.map((s) => [s.dir.timeString, s.finished, s.protected, s.files]),
      [
        ['2024-01-01T00:00:00Z', true, false, [MANIFEST_BLOB_NAME]],
        [
          '2024-02-01T00:00:00Z',
          true,
          true,
          ['drive-scsi0.img.fidx', MANIFEST_BLOB_NAME, 'qemu-server.conf.blob'],
        ],
        ['2024-03-01T00:00:00Z', false, false, ['drive-scsi0.img.fidx']],
      ],
    );
    const manifestSize = statSync(join(snapshotPath(store, d2), MANIFEST_BLOB_NAME)).size;
    assert.deepEqual(snapshotFiles(store, d2), [
      { filename: 'drive-scsi0.img.fidx', size: 4160 },
      { filename: MANIFEST_BLOB_NAME, size: manifestSize },
      { filename: 'qemu-server.conf.blob', size: 100 },
    ]);
    assert.throws(() => listSnapshots(store, new BackupGroup(ROOT, 'vm', '404')), NotFoundError);
    assert.throws(() => snapshotFiles(store, g.snapshot(t('2020-01-01T00:00:00Z'))), NotFoundError);
  }));

test('the first backup of a group claims its owner file and later backups see that owner', () =>
  withStore(async (store) => {
    const g = new BackupGroup(ROOT, 'host', 'web01');
    const first = await createLockedBackupGroup(store, g, 'alice@pbs');
    first.lock.release();
    assert.equal(first.owner, 'alice@pbs');
    assert.equal(readFileSync(join(store.basePath, 'host', 'web01', 'owner'), 'utf8'), 'alice@pbs\n');
    const second = await createLockedBackupGroup(store, g, 'bob@pbs!token1');
    second.lock.release();
    assert.equal(second.owner, 'alice@pbs', 'the owner is not taken over by a later backup');

    assert.throws(() => setOwner(store, g, 'bob@pbs'), code('ALREADY_EXISTS'));
    setOwner(store, g, 'bob@pbs!token1', { force: true });
    assert.equal(getOwner(store, g), 'bob@pbs!token1');
    assert.throws(() => setOwner(store, g, 'not an id', { force: true }), BadRequestError);
    assert.throws(() => getOwner(store, new BackupGroup(ROOT, 'vm', '1')), NotFoundError);
    await assert.rejects(
      createLockedBackupGroup(store, new BackupGroup(BackupNamespace.parse('nope'), 'vm', '1'), 'alice@pbs'),
      NotFoundError,
    );
  }));

test('two backups of one group cannot hold it at once, and a snapshot time is created only once', () =>
  withStore(async (store) => {
    const g = new BackupGroup(ROOT, 'vm', '100');
    const held = await createLockedBackupGroup(store, g, 'root@pam');
    try {
      await assert.rejects(createLockedBackupGroup(store, g, 'root@pam'), code('CONFLICT'));
      await assert.rejects(deleteGroup(store, g), code('CONFLICT'));
      const dir = g.snapshot(t('2024-01-01T00:00:00Z'));
      const created = await createLockedBackupDir(store, dir);
      await assert.rejects(createLockedBackupDir(store, dir), code('CONFLICT'), 'locked by the writer');
      created.lock.release();
      await assert.rejects(createLockedBackupDir(store, dir), code('ALREADY_EXISTS'));
    } finally {
      held.lock.release();
    }
  }));

test('group notes, snapshot notes and the protected flag round-trip', () =>
  withStore(async (store) => {
    const g = new BackupGroup(ROOT, 'ct', '200');
    const d = addSnapshot(store, g, '2024-01-01T00:00:00Z');
    assert.equal(getGroupNotes(store, g), '');
    await setGroupNotes(store, g, 'database server\nsecond line');
    assert.equal(getGroupNotes(store, g), 'database server\nsecond line');
    assert.equal(
      readFileSync(join(store.basePath, 'ct', '200', 'notes'), 'utf8'),
      'database server\nsecond line',
    );

    assert.equal(getSnapshotNotes(store, d), '');
    await setSnapshotNotes(store, d, 'before upgrade');
    assert.equal(getSnapshotNotes(store, d), 'before upgrade');
    assert.equal(loadManifest(snapshotPath(store, d)).unprotected.notes, 'before upgrade');

    assert.equal(isProtected(store, d), false);
    await setProtected(store, d, true);
    assert.equal(isProtected(store, d), true);
    assert.ok(existsSync(join(snapshotPath(store, d), '.protected')));
    await setProtected(store, d, true); // idempotent
    await setProtected(store, d, false);
    await setProtected(store, d, false);
    assert.equal(isProtected(store, d), false);

    // a running backup (exclusive snapshot lock) refuses the change; a reader does not
    const writer = await store.locks.lockSnapshot(d);
    await assert.rejects(setProtected(store, d, true), code('CONFLICT'));
    writer.release();
    const reader = await store.locks.lockSnapshot(d, { shared: true });
    await setProtected(store, d, true);
    reader.release();
    assert.equal(isProtected(store, d), true);
  }));

test('a protected snapshot cannot be deleted, an unprotected one can, one in use is refused', () =>
  withStore(async (store) => {
    const g = new BackupGroup(ROOT, 'vm', '100');
    const d1 = addSnapshot(store, g, '2024-01-01T00:00:00Z');
    const d2 = addSnapshot(store, g, '2024-01-02T00:00:00Z');
    await setProtected(store, d1, true);
    await assert.rejects(deleteSnapshot(store, d1), (err: unknown) => {
      assert.ok(err instanceof StowageError);
      assert.equal(err.code, 'PROTECTED');
      assert.equal(err.status, 409);
      assert.match(err.message, /protected snapshot 'vm\/100\/2024-01-01T00:00:00Z'/);
      return true;
    });
    assert.ok(existsSync(snapshotPath(store, d1)));

    const reader = await store.locks.lockSnapshot(d2, { shared: true });
    await assert.rejects(deleteSnapshot(store, d2), code('CONFLICT'));
    reader.release();
    assert.ok(existsSync(snapshotPath(store, d2)));
    await deleteSnapshot(store, d2);
    assert.equal(existsSync(snapshotPath(store, d2)), false);
    await assert.rejects(deleteSnapshot(store, d2), NotFoundError);
  }));

test('deleting the last snapshot removes its group with owner and notes, as PBS 4 does, unless the group is held', () =>
  withStore(async (store) => {
    const g = new BackupGroup(ROOT, 'vm', '100');
    (await createLockedBackupGroup(store, g, 'alice@pbs')).lock.release();
    await setGroupNotes(store, g, 'n');
    const d1 = addSnapshot(store, g, '2024-01-01T00:00:00Z');
    const d2 = addSnapshot(store, g, '2024-01-02T00:00:00Z');
    await deleteSnapshot(store, d1);
    assert.ok(existsSync(join(store.basePath, 'vm', '100', 'owner')), 'a snapshot is left: the group stays');

    // held (a running backup, a prune): the group stays, empty
    const held = await store.locks.lockGroup(g);
    await deleteSnapshot(store, d2);
    held.release();
    assert.deepEqual(readdirSync(join(store.basePath, 'vm', '100')).sort(), ['notes', 'owner']);

    const d3 = addSnapshot(store, g, '2024-01-03T00:00:00Z');
    await deleteSnapshot(store, d3);
    assert.deepEqual(readdirSync(join(store.basePath, 'vm')), [], 'group, owner and notes gone');
    // the id is free again: another user's first backup claims it
    const { owner, lock } = await createLockedBackupGroup(store, g, 'bob@pbs');
    lock.release();
    assert.equal(owner, 'bob@pbs');
  }));

test('deleting a group keeps it, with owner and notes, while a protected snapshot remains', () =>
  withStore(async (store, root) => {
    const g = new BackupGroup(ROOT, 'vm', '100');
    (await createLockedBackupGroup(store, g, 'alice@pbs')).lock.release();
    await setGroupNotes(store, g, 'n');
    const keep = addSnapshot(store, g, '2024-01-01T00:00:00Z');
    addSnapshot(store, g, '2024-01-02T00:00:00Z');
    addSnapshot(store, g, '2024-01-03T00:00:00Z', { finished: false });
    await setProtected(store, keep, true);

    assert.deepEqual(await deleteGroup(store, g), {
      removedSnapshots: 2,
      protectedSnapshots: 1,
      groupRemoved: false,
    });
    assert.deepEqual(readdirSync(join(store.basePath, 'vm', '100')).sort(), [
      '2024-01-01T00:00:00Z',
      'notes',
      'owner',
    ]);

    await setProtected(store, keep, false);
    assert.deepEqual(await deleteGroup(store, g), {
      removedSnapshots: 1,
      protectedSnapshots: 0,
      groupRemoved: true,
    });
    assert.deepEqual(readdirSync(join(store.basePath, 'vm')), []);
    await assert.rejects(deleteGroup(store, g), NotFoundError);

    // every lock file lives under the run dir, none inside the datastore
    assert.deepEqual(listTree(store.basePath), ['vm']);
    assert.ok(listTree(join(root, 'run')).includes('locks/store1/vm/100/group.lck'));
  }));

test('abandoned unfinished snapshots go, a locked or protected one stays, and so does a group with others', async () => {
  await withStore(async (store) => {
    const ns = BackupNamespace.parse('site1');
    mkdirSync(join(store.basePath, ns.path), { recursive: true });
    const web = new BackupGroup(ROOT, 'host', 'web01');
    const finished = addSnapshot(store, web, '2024-06-10T06:00:00Z');
    const half = addSnapshot(store, web, '2024-06-10T07:00:00Z', {
      finished: false,
      files: { 'root.tar.tmp_didx': 10 },
    });
    const lonely = new BackupGroup(ns, 'vm', '100');
    const onlyHalf = addSnapshot(store, lonely, '2024-06-10T06:00:00Z', { finished: false });
    const live = new BackupGroup(ROOT, 'ct', '200');
    const running = addSnapshot(store, live, '2024-06-10T06:00:00Z', { finished: false });
    const kept = new BackupGroup(ROOT, 'vm', '300');
    const protectedHalf = addSnapshot(store, kept, '2024-06-10T06:00:00Z', { finished: false });
    writeFileSync(join(snapshotPath(store, protectedHalf), '.protected'), '');

    const lines: string[] = [];
    // a running backup session holds its snapshot's lock
    const lock = await store.locks.lockSnapshot(running);
    try {
      const res = await removeAbandonedSnapshots(store, (l) => lines.push(l));
      assert.deepEqual(
        res.snapshots.map((d) => d.toString()),
        [half.toString(), onlyHalf.toString()],
      );
      assert.deepEqual(
        res.groups.map((g) => g.toString()),
        ['vm/100'],
      );
    } finally {
      lock.release();
    }
    assert.deepEqual(lines, [
      'removed unfinished snapshot host/web01/2024-06-10T07:00:00Z: no backup session owns it',
      "removed unfinished snapshot vm/100/2024-06-10T06:00:00Z in namespace 'site1': no backup session owns it",
      "removed backup group vm/100 in namespace 'site1': no snapshot left",
    ]);
    assert.deepEqual(
      listSnapshots(store, web).map((s) => s.dir.toString()),
      [finished.toString()],
    );
    assert.deepEqual(listGroups(store, ns), []);
    assert.equal(listSnapshots(store, live).length, 1);
    assert.equal(listSnapshots(store, kept).length, 1);
  });
});
