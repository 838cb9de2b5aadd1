/**
 * The Datastore takes its chunk backend and its lock service from whoever opens it (issue 10):
 * here the in-memory chunk backend and a lock service that lives in this process only, with no
 * filesystem chunk store and no lock file anywhere. A backup-like sequence, verify, GC and
 * deletion run on them, and locks taken through the service are the ones the datastore honours.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LockTimeoutError } from '../../src/errors.js';
import { BackupGroup, BackupNamespace } from '../../src/datastore/backup-info.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { Datastore } from '../../src/datastore/datastore.js';
import { sha256 } from '../../src/datastore/digest.js';
import type { HeldLock, LockName, LockOptions, LockService } from '../../src/datastore/lock-service.js';
import { newManifest } from '../../src/datastore/manifest.js';
import { MemoryChunkBackend } from '../../src/datastore/memory-chunk-backend.js';

/** Locks in a map: shared holders count, an exclusive holder excludes everyone. */
class InProcessLockService implements LockService {
  private readonly held = new Map<string, { exclusive: boolean; count: number }>();
  /** Every lock handed out, `kind:store:what` (`:shared` for shared ones), in order. */
  readonly taken: string[] = [];

  static key(name: LockName): string {
    switch (name.kind) {
      case 'group':
        return `group:${name.store}:${name.group.relativePath}`;
      case 'snapshot':
      case 'manifest':
        return `${name.kind}:${name.store}:${name.snapshot.relativePath}`;
      case 'job':
        return `job:${name.jobType}:${name.id}`;
      case 'gc':
        return `gc:${name.store}`;
      case 'chunk':
        return `chunk:${name.store}:${name.digest}`;
    }
  }

  async tryAcquire(name: LockName, opts: LockOptions = {}): Promise<HeldLock | undefined> {
    const key = InProcessLockService.key(name);
    const shared = opts.shared ?? false;
    const entry = this.held.get(key);
    if (entry && (entry.exclusive || !shared)) return undefined;
    if (entry) entry.count++;
    else this.held.set(key, { exclusive: !shared, count: 1 });
    this.taken.push(shared ? `${key}:shared` : key);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const e = this.held.get(key)!;
        if (--e.count === 0) this.held.delete(key);
      },
    };
  }

  async acquire(name: LockName, opts: LockOptions & { timeoutMs?: number } = {}): Promise<HeldLock> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lock = await this.tryAcquire(name, opts);
      if (lock) return lock;
      if (Date.now() >= deadline) throw new LockTimeoutError(InProcessLockService.key(name), timeoutMs);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

const UPID = 'UPID:node:00001234:00005678:00000000:66000000:verify:store1:root@pam:';
const group = new BackupGroup(BackupNamespace.root(), 'vm', '100');
const dir = group.snapshot(1_718_000_000);

function setup(t: { after: (fn: () => void) => void }) {
  const root = mkdtempSync(join(tmpdir(), 'stowage-injected-'));
  const basePath = join(root, 'store');
  mkdirSync(basePath);
  const chunks = new MemoryChunkBackend();
  const locks = new InProcessLockService();
  const ds = Datastore.open('store1', basePath, { chunks, locks, syncLevel: 'filesystem' });
  t.after(() => {
    ds.close();
    rmSync(root, { recursive: true, force: true });
  });
  return { root, basePath, chunks, locks, ds };
}

/** One finished snapshot of one chunk, written as a backup session writes it. */
async function backup(ds: Datastore): Promise<Uint8Array> {
  const { lock: groupLock } = await ds.createLockedBackupGroup(group, 'root@pam');
  try {
    const { writer, lock } = await ds.createSnapshotWriter(dir);
    try {
      const data = Buffer.alloc(4096, 'injected backends;');
      const digest = sha256(data);
      assert.equal((await ds.chunks.insert(digest, encodeBlob(data))).duplicate, false);
      const index = writer.createDynamicIndex('root.pxar.didx');
      index.addChunk(data.length, digest);
      const end = Buffer.alloc(8);
      end.writeBigUInt64LE(BigInt(data.length));
      const closed = writer.closeIndex(index, sha256(Buffer.concat([end, digest])).toString('hex'));
      assert.ok(closed, 'the index checksum matches');
      const manifest = newManifest('vm', '100', dir.time);
      manifest.files.push({
        filename: 'root.pxar.didx',
        'crypt-mode': 'none',
        size: closed.size,
        csum: closed.csum.toString('hex'),
      });
      await writer.finish(manifest);
      return digest;
    } finally {
      lock.release();
    }
  } finally {
    groupLock.release();
  }
}

test('a datastore on the in-memory chunk backend and an in-process lock service backs up, verifies and collects garbage', async (t) => {
  const { root, basePath, chunks, locks, ds } = setup(t);
  const digest = await backup(ds);
  assert.deepEqual(
    ds.listSnapshots(group).map((s) => s.finished),
    [true],
  );
  assert.equal(await chunks.exists(digest), true, 'the chunk went to the injected backend');

  const verified = await ds.verifySnapshot(dir, { mode: 'write', upid: UPID });
  assert.deepEqual(verified.errors, []);
  assert.equal(ds.loadManifest(dir).unprotected.verify_state?.state, 'ok');

  const status = await ds.garbageCollection();
  assert.equal(status['index-file-count'], 1);
  assert.equal(status['disk-chunks'], 1);
  assert.equal(await chunks.exists(digest), true, 'a referenced chunk survives GC');

  // every lock went through the service; none is a file, and no filesystem chunk store exists
  const snap = `store1:${dir.relativePath}`;
  assert.deepEqual(locks.taken, [
    'group:store1:vm/100',
    `snapshot:${snap}`,
    `snapshot:${snap}:shared`,
    `manifest:${snap}`,
    'gc:store1',
  ]);
  assert.deepEqual(readdirSync(root), ['store']);
  assert.equal(existsSync(join(basePath, '.chunks')), false);
  assert.equal(existsSync(join(basePath, '.lock')), false);
});

test('locks held through the injected service refuse GC, deletion and flag changes with the usual conflicts', async (t) => {
  const { locks, ds } = setup(t);
  await backup(ds);

  const gc = await locks.acquire({ kind: 'gc', store: 'store1' });
  await assert.rejects(ds.garbageCollection(), {
    code: 'CONFLICT',
    message: 'Start GC failed - (already running/locked)',
  });
  gc.release();

  const groupLock = await locks.acquire({ kind: 'group', store: 'store1', group });
  await assert.rejects(ds.deleteGroup(group), {
    code: 'CONFLICT',
    message: 'unable to acquire lock on backup group vm/100 - possibly running backup',
  });
  await assert.rejects(ds.createLockedBackupGroup(group, 'root@pam'), {
    code: 'CONFLICT',
    message: 'unable to acquire lock on backup group vm/100 - another backup is already running',
  });
  groupLock.release();

  const writer = await locks.acquire({ kind: 'snapshot', store: 'store1', snapshot: dir });
  await assert.rejects(ds.deleteSnapshot(dir), {
    code: 'CONFLICT',
    message: `unable to acquire lock on snapshot ${dir} - backup is running or snapshot is in use`,
  });
  await assert.rejects(ds.setProtected(dir, true), { code: 'CONFLICT' });
  const skipped = await ds.verifySnapshot(dir, { mode: 'read', upid: UPID });
  assert.match(skipped.skipped ?? '', /unable to acquire lock on snapshot/);
  writer.release();

  const manifestLock = await locks.acquire({ kind: 'manifest', store: 'store1', snapshot: dir });
  const update = ds.updateManifest(dir, (m) => void (m.unprotected.notes = 'after the holder'));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(ds.loadManifest(dir).unprotected.notes, undefined, 'the update waits for the holder');
  manifestLock.release();
  await update;
  assert.equal(ds.loadManifest(dir).unprotected.notes, 'after the holder');

  const reader = await locks.acquire({ kind: 'snapshot', store: 'store1', snapshot: dir }, { shared: true });
  await ds.setProtected(dir, true); // shared with a reader
  await ds.setProtected(dir, false);
  reader.release();

  assert.deepEqual(await ds.deleteGroup(group), {
    removedSnapshots: 1,
    protectedSnapshots: 0,
    groupRemoved: true,
  });
});
