import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { FilesystemChunkBackend, chunkFilePath } from '../../src/datastore/chunk-store.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { DynamicIndexWriter } from '../../src/datastore/dynamic-index.js';
import { FixedIndexWriter } from '../../src/datastore/fixed-index.js';
import { garbageCollection, readGcStatus, type GcStore } from '../../src/datastore/gc.js';
import { WriterRegistry } from '../../src/datastore/writer-registry.js';
import { tryAcquireFileLock } from '../../src/sys/file-lock.js';
import { testDatastoreLocks } from '../helpers/test-datastore.js';

const DAY = 86_400_000;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

interface Fixture {
  base: string;
  /** What GC is given: the chunk backend, this process's writers and the datastore's locks. */
  gc: GcStore & { chunks: FilesystemChunkBackend; writers: WriterRegistry };
  store: { chunkPath(digest: Uint8Array): string; lockPath: string };
  chunk(name: string, ageMs?: number): Promise<Buffer>;
  setAge(path: string, ageMs: number): void;
  files(): string[];
}

/** A datastore with `.chunks` holding only the subdirectories used (all 65536 take seconds). */
function fixture(t: { after: (fn: () => void) => void }): Fixture {
  const base = mkdtempSync(join(tmpdir(), 'stowage-gc-'));
  mkdirSync(join(base, '.chunks'));
  writeFileSync(join(base, '.lock'), '');
  const chunks = FilesystemChunkBackend.open(base);
  // the lock service's run and config dirs, outside the datastore as in production
  const lockRoot = mkdtempSync(join(tmpdir(), 'stowage-gc-locks-'));
  const gc = {
    basePath: base,
    chunks,
    writers: new WriterRegistry(),
    locks: testDatastoreLocks(lockRoot, base),
  };
  const store = { chunkPath: (d: Uint8Array) => chunkFilePath(base, d), lockPath: join(base, '.lock') };
  t.after(() => {
    chunks.closeSync();
    rmSync(base, { recursive: true, force: true });
    rmSync(lockRoot, { recursive: true, force: true });
  });
  const setAge = (path: string, ageMs: number) => {
    const at = (Date.now() - ageMs) / 1000;
    utimesSync(path, at, at);
  };
  return {
    base,
    gc,
    store,
    setAge,
    async chunk(name, ageMs = 2 * DAY) {
      const payload = Buffer.from(`chunk ${name} `.repeat(50));
      const digest = sha(payload);
      mkdirSync(dirname(store.chunkPath(digest)), { recursive: true });
      await chunks.insert(digest, encodeBlob(payload));
      setAge(store.chunkPath(digest), ageMs);
      return digest;
    },
    // Read from disk, not through the backend: what GC left is what is there.
    files: () =>
      readdirSync(join(base, '.chunks'))
        .flatMap((sub) => readdirSync(join(base, '.chunks', sub)))
        .filter((n) => /^[0-9a-f]{64}(\.[0-9]\.bad)?$/.test(n))
        .sort(),
  };
}

function writeFidx(path: string, digests: Buffer[], chunkSize = 1000): void {
  mkdirSync(dirname(path), { recursive: true });
  const w = FixedIndexWriter.create(path, { size: digests.length * chunkSize, chunkSize });
  digests.forEach((dg, i) => w.setDigest(i, dg));
  w.close();
}

function writeDidx(path: string, digests: Buffer[]): void {
  mkdirSync(dirname(path), { recursive: true });
  const w = DynamicIndexWriter.create(path);
  digests.forEach((dg, i) => w.addChunk((i + 1) * 500, dg));
  w.close();
}

const hex = (d: Buffer) => d.toString('hex');

test('GC keeps exactly the chunks referenced by indexes, young chunks and needed .bad files', async (t) => {
  const f = fixture(t);
  const a = await f.chunk('a');
  const b = await f.chunk('b');
  const c = await f.chunk('c');
  const unused = await f.chunk('unused');
  const young = await f.chunk('young', 3_600_000);
  const hidden = await f.chunk('hidden-only');
  // A corrupt copy nobody references any more, and one whose digest an index still needs.
  const oldBad = await f.chunk('old-bad');
  const stillBad = await f.chunk('still-bad');
  const oldBadPath = (await f.gc.chunks.quarantine(oldBad))!;
  const stillBadPath = (await f.gc.chunks.quarantine(stillBad))!;
  f.setAge(oldBadPath, 2 * DAY);
  f.setAge(stillBadPath, 2 * DAY);

  const snap = join(f.base, 'vm', '100', '2024-01-01T00:00:00Z');
  writeFidx(join(snap, 'drive-scsi0.img.fidx'), [a, b, a]);
  writeDidx(join(f.base, 'ns', 'prod', 'host', 'web', '2024-01-02T00:00:00Z', 'root.pxar.didx'), [
    c,
    stillBad,
  ]);
  // Dot entries are not part of the datastore's content (PBS skips them).
  writeFidx(join(f.base, '.trash', 'old.fidx'), [hidden]);

  // stat, not read: on a relatime mount reading a 2-day-old file refreshes its atime.
  const size = (d: Buffer) => statSync(f.store.chunkPath(d)).size;
  const removedBytes = size(unused) + size(hidden) + statSync(oldBadPath).size;
  const lines: string[] = [];
  const status = await garbageCollection(f.gc, { log: (l) => lines.push(l) });

  assert.deepEqual(f.files(), [hex(a), hex(b), hex(c), `${hex(stillBad)}.0.bad`, hex(young)].sort());
  // As in PBS, an unreferenced chunk within the 24 h 5 min cutoff is kept and counted as a
  // pending removal; referenced chunks (and the .bad copy an index needs) count as on disk.
  assert.deepEqual(status, {
    'index-file-count': 2,
    'index-data-bytes': 3000 + 1000,
    'disk-bytes': size(a) + size(b) + size(c) + statSync(stillBadPath).size,
    'disk-chunks': 3,
    'removed-bytes': removedBytes,
    'removed-chunks': 2,
    'pending-bytes': size(young),
    'pending-chunks': 1,
    'removed-bad': 1,
    'still-bad': 1,
  });
  assert.ok(lines.some((l) => l.includes(`non-existent chunk ${hex(stillBad)}`)));
  assert.deepEqual(JSON.parse(readFileSync(join(f.base, '.gc-status'), 'utf8')), status);
  assert.deepEqual(readGcStatus(f.base), status);
});

test('unreferenced chunks younger than the writer are on disk, older ones within the cutoff are pending', async (t) => {
  const f = fixture(t);
  const beforeWriter = await f.chunk('before the writer', 3_600_000);
  const byWriter = await f.chunk('uploaded by the writer', 600_000);
  const w = f.gc.writers.register(Date.now() - 1_800_000);
  t.after(() => w.release());
  const status = await garbageCollection(f.gc);
  assert.equal(status['pending-chunks'], 1);
  assert.equal(status['disk-chunks'], 1);
  assert.equal(status['pending-bytes'], statSync(f.store.chunkPath(beforeWriter)).size);
  assert.deepEqual(f.files(), [hex(beforeWriter), hex(byWriter)].sort());
});

test('GC does not delete a chunk an in-progress writer (started 3 days ago) inserted but has not indexed yet', async (t) => {
  const f = fixture(t);
  const inserted = await f.chunk('from a long backup', 2 * DAY);
  await f.chunk('garbage', 4 * DAY);
  const writer = f.gc.writers.register(Date.now() - 3 * DAY);
  const status = await garbageCollection(f.gc);
  assert.deepEqual(f.files(), [hex(inserted)]);
  assert.equal(status['removed-chunks'], 1, 'a chunk older than the writer still goes');
  writer.release();

  // Once the writer is gone (and never indexed it), the chunk is garbage.
  await garbageCollection(f.gc);
  assert.deepEqual(f.files(), []);
});

test('writers in other processes protect their chunks through the provider or the caller', async (t) => {
  const f = fixture(t);
  const viaProvider = await f.chunk('provider', 2 * DAY);
  f.gc.writers.setExternal(() => Date.now() - 3 * DAY);
  await garbageCollection(f.gc);
  assert.deepEqual(f.files(), [hex(viaProvider)]);
  f.gc.writers.setExternal(undefined);

  await garbageCollection(f.gc, { oldestWriterStartMs: Date.now() - 3 * DAY });
  assert.deepEqual(f.files(), [hex(viaProvider)]);
});

test('a second GC on the same datastore is refused while one holds the lock', async (t) => {
  const f = fixture(t);
  const doomed = await f.chunk('doomed');
  const lock = tryAcquireFileLock(f.store.lockPath);
  assert.ok(lock);
  try {
    await assert.rejects(garbageCollection(f.gc), {
      code: 'CONFLICT',
      message: 'Start GC failed - (already running/locked)',
    });
  } finally {
    lock.release();
  }
  assert.deepEqual(f.files(), [hex(doomed)], 'nothing removed');
});

test('an aborted GC removes nothing and leaves no status behind', async (t) => {
  const f = fixture(t);
  const doomed = await f.chunk('doomed');
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(garbageCollection(f.gc, { signal: ac.signal }));
  assert.deepEqual(f.files(), [hex(doomed)]);
  assert.equal(readGcStatus(f.base), undefined);
});

test('a corrupt index stops GC before anything is swept', async (t) => {
  const f = fixture(t);
  const doomed = await f.chunk('doomed');
  const path = join(f.base, 'vm', '100', '2024-01-01T00:00:00Z', 'broken.fidx');
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, Buffer.alloc(100));
  await assert.rejects(garbageCollection(f.gc), {
    code: 'CORRUPT_DATA',
    message: /broken\.fidx/,
  });
  assert.deepEqual(f.files(), [hex(doomed)]);
});
