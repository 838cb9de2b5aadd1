import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { BadRequestError, StowageError } from '../../src/errors.js';
import { backupTimeFromString } from '../../src/api-types/names.js';
import { BackupGroup, BackupNamespace } from '../../src/datastore/backup-info.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { Datastore } from '../../src/datastore/datastore.js';
import { sha256 } from '../../src/datastore/digest.js';
import { DynamicIndexWriter } from '../../src/datastore/dynamic-index.js';
import { FixedIndexWriter } from '../../src/datastore/fixed-index.js';
import { newManifest, storeManifest } from '../../src/datastore/manifest.js';
import { chunkFilePath, FilesystemChunkBackend } from '../../src/datastore/chunk-store.js';
import { writeChunkFile } from '../helpers/chunk-files.js';
import { openTestDatastore } from '../helpers/test-datastore.js';
import { openFilesUnder } from '../helpers/files.js';

const ROOT = BackupNamespace.root();
const t = (s: string) => backupTimeFromString(s);

async function withTemp(fn: (root: string) => Promise<void>): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'stowage-datastore-'));
  try {
    await fn(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** Every regular file under `root`, relative, sorted (directories themselves are not listed). */
function files(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(root, p));
    }
  };
  walk(root);
  return out.sort();
}

/**
 * Open a datastore whose chunk store has no subdirectories yet: `.chunks` and `.lock` are all
 * `open` needs. Creating the 65536 chunk directories takes seconds on a busy disk, so only the
 * test that stores chunks pays for `Datastore.create`.
 */
function openBare(root: string): Datastore {
  return openTestDatastore(root);
}

/** Deterministic chunk contents, different per label. */
const data = (label: string, size: number) => Buffer.alloc(size, `${label}:stowage-test-chunk;`);

/**
 * Write one finished snapshot the way the backup protocol will: group and snapshot locks,
 * chunks into the chunk store, a fixed and a dynamic index, a config blob, the manifest last.
 */
async function writeSnapshot(
  ds: Datastore,
  group: BackupGroup,
  time: string,
  fixed: Buffer[],
  dynamic: Buffer[],
): Promise<void> {
  const { lock: groupLock } = await ds.createLockedBackupGroup(group, 'root@pam');
  const dir = group.snapshot(t(time));
  const { path, lock } = await ds.createLockedBackupDir(dir);
  try {
    const put = (chunk: Buffer) => {
      const digest = sha256(chunk);
      writeChunkFile(ds.basePath, digest, encodeBlob(chunk));
      return digest;
    };
    const manifest = newManifest(group.type, group.id, dir.time);

    const chunkSize = 4096;
    const size = fixed.reduce((n, c) => n + c.length, 0);
    const fw = FixedIndexWriter.create(join(path, 'drive-scsi0.img.fidx'), { size, chunkSize });
    fixed.forEach((c, i) => fw.addChunk(i * chunkSize, c.length, put(c)));
    const f = fw.close();
    manifest.files.push({
      filename: 'drive-scsi0.img.fidx',
      'crypt-mode': 'none',
      size: f.size,
      csum: f.csum.toString('hex'),
    });

    const dw = DynamicIndexWriter.create(join(path, 'root.pxar.didx'));
    let end = 0;
    for (const c of dynamic) {
      end += c.length;
      dw.addChunk(end, put(c));
    }
    const d = dw.close();
    manifest.files.push({
      filename: 'root.pxar.didx',
      'crypt-mode': 'none',
      size: d.size,
      csum: d.csum.toString('hex'),
    });

    storeManifest(path, manifest);
  } finally {
    lock.release();
    groupLock.release();
  }
}

test('a datastore holds two snapshots, prunes one, collects its garbage and the rest verifies', () =>
  withTemp(async (root) => {
    const basePath = join(root, 'store');
    (await FilesystemChunkBackend.create(basePath)).closeSync();
    const ds = openTestDatastore(root, { basePath, chunkStore: 'open' });
    try {
      const group = new BackupGroup(ROOT, 'vm', '100');
      const [A, B, C, F] = [data('A', 4096), data('B', 4096), data('C', 1000), data('F', 1000)];
      const [D, E, G] = [data('D', 3000), data('E', 5000), data('G', 2000)];
      await writeSnapshot(ds, group, '2024-06-01T10:00:00Z', [A!, B!, C!], [D!, E!]);
      await writeSnapshot(ds, group, '2024-06-02T10:00:00Z', [A!, B!, F!], [E!, G!]);

      assert.deepEqual(ds.listGroups().map(String), ['vm/100']);
      assert.deepEqual(
        ds.listSnapshots(group).map((s) => [s.dir.timeString, s.finished]),
        [
          ['2024-06-01T10:00:00Z', true],
          ['2024-06-02T10:00:00Z', true],
        ],
      );
      const first = group.snapshot(t('2024-06-01T10:00:00Z'));
      const second = group.snapshot(t('2024-06-02T10:00:00Z'));
      assert.deepEqual((await ds.verifySnapshot(first, { mode: 'read' })).errors, []);

      const pruned = await ds.prune(group, { 'keep-last': 1 });
      assert.deepEqual(
        pruned.map((r) => [r.dir.timeString, r.keep, r.reason, r.error]),
        [
          ['2024-06-02T10:00:00Z', true, 'keep-last', undefined],
          ['2024-06-01T10:00:00Z', false, 'remove', undefined],
        ],
      );

      // GC only sweeps chunks older than 24 h 5 min: age every chunk by two days first, so the
      // ones the remaining snapshot still references are saved only by GC's own marking.
      const old = Date.now() / 1000 - 2 * 86400;
      for (const c of [A, B, C, D, E, F, G]) {
        const p = chunkFilePath(ds.basePath, sha256(c!));
        utimesSync(p, old, statSync(p).mtime);
      }
      const gc = await ds.garbageCollection();
      assert.equal(gc['removed-chunks'], 2, 'C and D were only used by the pruned snapshot');
      assert.equal(gc['disk-chunks'], 5);
      assert.equal(gc['index-file-count'], 2);

      const verified = await ds.verifySnapshot(second, { mode: 'write', upid: 'UPID:test:verify' });
      assert.deepEqual(verified, { ok: true, errors: [], renamed: [] });
      assert.deepEqual(ds.loadManifest(second).unprotected.verify_state, {
        upid: 'UPID:test:verify',
        state: 'ok',
      });

      const chunkFile = (c: Buffer) => {
        const hex = sha256(c).toString('hex');
        return `.chunks/${hex.slice(0, 4)}/${hex}`;
      };
      assert.deepEqual(
        files(basePath),
        [
          '.gc-status',
          '.lock',
          'vm/100/2024-06-02T10:00:00Z/drive-scsi0.img.fidx',
          'vm/100/2024-06-02T10:00:00Z/index.json.blob',
          'vm/100/2024-06-02T10:00:00Z/root.pxar.didx',
          'vm/100/owner',
          ...[A, B, E, F, G].map((c) => chunkFile(c!)),
        ].sort(),
      );
      assert.equal(readFileSync(join(basePath, 'vm/100/owner'), 'utf8'), 'root@pam\n');
    } finally {
      ds.close();
    }
  }));

test('closing a datastore releases every file under its path, twice is harmless, and use after is refused', () =>
  withTemp(async (root) => {
    const basePath = join(root, 'store');
    const ds = openBare(root);
    assert.ok(openFilesUnder('self', basePath).length > 0, 'an open datastore holds its .lock');
    ds.close();
    assert.deepEqual(openFilesUnder('self', basePath), []);
    ds.close();
    assert.equal(ds.isOpen, false);
    assert.throws(
      () => ds.listGroups(),
      (err: unknown) => err instanceof StowageError && /closed/.test(err.message),
    );
    assert.throws(() => ds.status(), StowageError);

    const again = openTestDatastore(root, { basePath, chunkStore: 'open' });
    assert.deepEqual(again.listGroups(), []);
    again.close();
    assert.deepEqual(openFilesUnder('self', basePath), []);
  }));

test('opening a path without a chunk store or with a bad name fails with a typed error', () =>
  withTemp(async (root) => {
    mkdirSync(join(root, 'empty'));
    assert.throws(
      () => openTestDatastore(root, { basePath: join(root, 'empty'), chunkStore: 'open' }),
      (err: unknown) =>
        err instanceof StowageError && err.code === 'NOT_FOUND' && /not mounted/.test(err.message),
    );
    assert.throws(
      () => openTestDatastore(root, { name: '../x', basePath: join(root, 'x') }),
      BadRequestError,
    );
    assert.throws(
      () => openTestDatastore(root, { name: 'ab', basePath: join(root, 'empty') }),
      BadRequestError,
    );
    assert.deepEqual(openFilesUnder('self', root), []);
  }));

test('counts report groups with snapshots per type across namespaces, and status reports disk usage', () =>
  withTemp(async (root) => {
    const ds = openBare(root);
    try {
      const ns = BackupNamespace.parse('site1');
      await ds.createNamespace(ns);
      const mk = async (group: BackupGroup, time: string) => {
        (await ds.createLockedBackupGroup(group, 'root@pam')).lock.release();
        (await ds.createLockedBackupDir(group.snapshot(t(time)))).lock.release();
      };
      await mk(new BackupGroup(ROOT, 'vm', '100'), '2024-01-01T00:00:00Z');
      await mk(new BackupGroup(ROOT, 'vm', '100'), '2024-01-02T00:00:00Z');
      await mk(new BackupGroup(ns, 'vm', '100'), '2024-01-01T00:00:00Z');
      await mk(new BackupGroup(ns, 'ct', '200'), '2024-01-01T00:00:00Z');
      (await ds.createLockedBackupGroup(new BackupGroup(ROOT, 'host', 'empty'), 'root@pam')).lock.release();

      assert.deepEqual(ds.counts(), {
        ct: { groups: 1, snapshots: 1 },
        host: { groups: 0, snapshots: 0 },
        vm: { groups: 2, snapshots: 3 },
        other: { groups: 0, snapshots: 0 },
      });

      const st = ds.status();
      assert.ok(st.total > 0);
      assert.ok(st.used > 0 && st.used <= st.total);
      assert.ok(st.avail >= 0 && st.avail <= st.total - st.used);
    } finally {
      ds.close();
    }
  }));

test('notes, protection and owner go through the facade to the right files', () =>
  withTemp(async (root) => {
    const ds = openBare(root);
    try {
      const group = new BackupGroup(ROOT, 'host', 'web01');
      const dir = group.snapshot(t('2024-01-01T00:00:00Z'));
      (await ds.createLockedBackupGroup(group, 'alice@pbs')).lock.release();
      const { path, lock } = await ds.createLockedBackupDir(dir);
      storeManifest(path, newManifest('host', 'web01', dir.time));
      lock.release();

      await ds.setNotes(group, 'group note');
      await ds.setNotes(dir, 'snapshot note');
      assert.equal(ds.getNotes(group), 'group note');
      assert.equal(ds.getNotes(dir), 'snapshot note');
      assert.equal(ds.loadManifest(dir).unprotected.notes, 'snapshot note');

      await ds.setProtected(dir, true);
      assert.equal(ds.getProtected(dir), true);
      await assert.rejects(
        ds.deleteSnapshot(dir),
        (err: unknown) => err instanceof StowageError && err.code === 'PROTECTED',
      );
      assert.deepEqual(await ds.deleteGroup(group), {
        removedSnapshots: 0,
        protectedSnapshots: 1,
        groupRemoved: false,
      });

      assert.equal(ds.getOwner(group), 'alice@pbs');
      ds.setOwner(group, 'bob@pbs', { force: true });
      assert.equal(ds.getOwner(group), 'bob@pbs');
    } finally {
      ds.close();
    }
  }));
