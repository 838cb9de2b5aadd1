import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackupGroup, BackupNamespace } from '../../src/datastore/backup-info.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { Datastore } from '../../src/datastore/datastore.js';
import { sha256 } from '../../src/datastore/digest.js';
import { encodeManifest, newManifest } from '../../src/datastore/manifest.js';
import { openTestDatastore } from '../helpers/test-datastore.js';

/** A datastore without chunk subdirectories (none of these tests stores chunks). */
function bareDatastore(t: { after: (fn: () => void) => void }): Datastore {
  const root = mkdtempSync(join(tmpdir(), 'stowage-snapw-'));
  const ds = openTestDatastore(root);
  t.after(() => {
    ds.close();
    rmSync(root, { recursive: true, force: true });
  });
  return ds;
}

const group = new BackupGroup(BackupNamespace.root(), 'host', 'web');

test('a snapshot being written does not look finished until finish writes the manifest', async (t) => {
  const ds = bareDatastore(t);
  await ds.createLockedBackupGroup(group, 'root@pam').then(({ lock }) => lock.release());
  const dir = group.snapshot(1_718_000_000);
  const { writer, lock } = await ds.createSnapshotWriter(dir);
  t.after(() => lock.release());
  const manifest = newManifest('host', 'web', dir.time);
  writer.stageManifest(encodeManifest(manifest));
  writer.addBlob('client.log.blob', encodeBlob(Buffer.from('log')));
  assert.deepEqual(
    ds.listSnapshots(group).map((s) => s.finished),
    [false],
  );
  assert.ok(writer.stagedManifest());
  await writer.finish(manifest);
  assert.deepEqual(
    ds.listSnapshots(group).map((s) => s.finished),
    [true],
  );
  assert.deepEqual(readdirSync(ds.snapshotPath(dir)).sort(), ['client.log.blob', 'index.json.blob']);
});

test('an index whose checksum does not match the client one is removed on close', async (t) => {
  const ds = bareDatastore(t);
  const dir = group.snapshot(1_718_000_000);
  mkdirSync(ds.groupPath(group), { recursive: true });
  const { writer, lock } = await ds.createSnapshotWriter(dir);
  t.after(() => lock.release());
  const digest = sha256(Buffer.from('chunk'));
  const good = writer.createDynamicIndex('good.didx');
  good.addChunk(5, digest);
  const bad = writer.createDynamicIndex('bad.didx');
  bad.addChunk(5, digest);
  const expected = sha256(Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), digest])).toString('hex');
  assert.equal(writer.closeIndex(good, expected)?.size, 5);
  assert.equal(writer.closeIndex(bad, '00'.repeat(32)), undefined);
  assert.deepEqual(readdirSync(ds.snapshotPath(dir)), ['good.didx']);
});

test('abort removes the snapshot, and the group it created when nothing else is in it', async (t) => {
  const ds = bareDatastore(t);
  mkdirSync(ds.groupPath(group), { recursive: true });
  const first = await ds.createSnapshotWriter(group.snapshot(1_718_000_000));
  const second = await ds.createSnapshotWriter(group.snapshot(1_718_000_100));
  first.writer.abort({ removeEmptyGroup: true });
  first.lock.release();
  assert.equal(ds.groupExists(group), true, 'another snapshot is still in the group');
  second.writer.abort({ removeEmptyGroup: true });
  second.lock.release();
  assert.equal(ds.groupExists(group), false);
});

test('a snapshot reader reads files by name and says undefined for a missing one', async (t) => {
  const ds = bareDatastore(t);
  mkdirSync(ds.groupPath(group), { recursive: true });
  const dir = group.snapshot(1_718_000_000);
  const { writer, lock } = await ds.createSnapshotWriter(dir);
  const blob = encodeBlob(Buffer.from('notes'));
  writer.addBlob('notes.blob', blob);
  lock.release();
  const reader = ds.openSnapshotReader(dir);
  assert.deepEqual(reader.readFile('notes.blob'), blob);
  assert.equal(reader.readFile('missing.blob'), undefined);
  assert.equal(reader.openFixedIndex('drive.fidx'), undefined);
  assert.equal(reader.exists(), true);
  await ds.deleteSnapshot(dir);
  assert.equal(reader.exists(), false);
});

test('the datastore reports its last GC result, none before the first run', async (t) => {
  const ds = bareDatastore(t);
  assert.equal(ds.gcStatus(), undefined);
  const status = await ds.garbageCollection();
  assert.deepEqual(ds.gcStatus(), status);
});
