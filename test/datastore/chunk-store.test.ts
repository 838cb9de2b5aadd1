import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { readCheckedChunk } from '../../src/datastore/chunk-backend.js';
import {
  FilesystemChunkBackend as ChunkStore,
  ChunkStoreMissingError,
  chunkFilePath,
  type ChunkStoreOptions,
} from '../../src/datastore/chunk-store.js';
import { WriterRegistry } from '../../src/datastore/writer-registry.js';
import { BLOB_MAGIC, encodeBlob, rewriteBlobCrc } from '../../src/datastore/data-blob.js';
import { dirtyBytes, openFilesUnder } from '../helpers/files.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
const DAY = 86_400_000;

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-cs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A datastore directory with `.chunks` but only the subdirectories a test uses: creating and
 * removing all 65536 takes seconds, so only the creation test pays for it.
 */
function lightStore(t: { after: (fn: () => void) => void }, opts?: ChunkStoreOptions): ChunkStore {
  const dir = tempDir(t);
  mkdirSync(join(dir, '.chunks'));
  writeFileSync(join(dir, '.lock'), '');
  const store = ChunkStore.open(dir, opts);
  bases.set(store, dir);
  t.after(() => store.closeSync());
  return store;
}

/** The tests below look at the files; the backend itself never hands out paths. */
const bases = new WeakMap<ChunkStore, string>();
const pathOf = (store: ChunkStore, digest: Uint8Array) => chunkFilePath(bases.get(store)!, digest);
const lockPathOf = (store: ChunkStore) => join(bases.get(store)!, '.lock');

async function put(store: ChunkStore, payload: Buffer, blob = encodeBlob(payload)) {
  const digest = sha(payload);
  mkdirSync(dirname(pathOf(store, digest)), { recursive: true });
  return { digest, blob, result: await store.insert(digest, blob) };
}

/** An encrypted-looking blob: the server only sees magic, CRC, iv, tag and ciphertext. */
function encryptedBlob(bodyLen: number): Buffer {
  const body = Buffer.alloc(32 + bodyLen, 0x5a);
  const blob = Buffer.concat([BLOB_MAGIC.encrypted, Buffer.alloc(4), body]);
  blob.writeUInt32LE(crc32(blob.subarray(12)), 8);
  return blob;
}

/** How many descriptors of this process are open on the lock file itself. */
function lockFdCount(lockPath: string): number {
  return openFilesUnder('self', lockPath).filter((p) => p === lockPath).length;
}

test('creating a datastore makes .lock and all 65536 chunk subdirectories, and refuses to create twice', async (t) => {
  const base = join(tempDir(t), 'store');
  // the 65536 mkdirs run off the event loop: timers keep firing while the store is created
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 1);
  const store = await ChunkStore.create(base).finally(() => clearInterval(ticker));
  assert.ok(ticks >= 5, `the event loop ran only ${ticks} timer ticks during creation`);
  t.after(() => store.closeSync());
  assert.equal(statSync(join(base, '.lock')).size, 0);
  const subdirs = readdirSync(join(base, '.chunks')).sort();
  assert.equal(subdirs.length, 65536);
  assert.equal(subdirs[0], '0000');
  assert.equal(subdirs[65535], 'ffff');
  const digest = Buffer.alloc(32, 0);
  digest[0] = 0xa3;
  digest[1] = 0x42;
  assert.equal(chunkFilePath(base, digest), join(base, '.chunks', 'a342', digest.toString('hex')));
  await assert.rejects(ChunkStore.create(base), { code: 'ALREADY_EXISTS' });
});

test('creating a datastore in a non-empty directory that is not one is refused and changes nothing', async (t) => {
  const base = tempDir(t);
  writeFileSync(join(base, 'precious.txt'), 'keep');
  await assert.rejects(ChunkStore.create(base), { code: 'BAD_REQUEST', message: /not empty/ });
  assert.deepEqual(readdirSync(base), ['precious.txt']);
});

test('opening a path without .chunks fails with a typed error that says so', (t) => {
  const base = tempDir(t);
  assert.throws(
    () => ChunkStore.open(base),
    (err) =>
      err instanceof ChunkStoreMissingError && err.code === 'NOT_FOUND' && /\.chunks/.test(err.message),
  );
  assert.equal(existsSync(join(base, '.lock')), false);
});

test('an open store holds a descriptor on .lock and close() releases it, twice harmlessly', async (t) => {
  const store = lightStore(t);
  assert.equal(lockFdCount(lockPathOf(store)), 1);
  await store.close();
  assert.equal(lockFdCount(lockPathOf(store)), 0);
  await store.close();
  await assert.rejects(readCheckedChunk(store, Buffer.alloc(32)), { code: 'INTERNAL', message: /closed/ });
});

test('inserting the same chunk twice reports a duplicate and only refreshes its atime', async (t) => {
  const store = lightStore(t);
  const payload = Buffer.alloc(5000, 'dedup ');
  const first = await put(store, payload);
  assert.deepEqual(first.result, { duplicate: false, encodedSize: first.blob.length });
  const path = pathOf(store, first.digest);
  const old = (Date.now() - 2 * DAY) / 1000;
  utimesSync(path, old, old);
  const before = statSync(path);
  const second = await store.insert(first.digest, first.blob);
  assert.deepEqual(second, { duplicate: true, encodedSize: first.blob.length });
  const after = statSync(path);
  assert.ok(after.atimeMs > Date.now() - 60_000, 'atime refreshed');
  assert.equal(Math.round(after.mtimeMs), Math.round(before.mtimeMs), 'mtime kept');
  assert.equal(after.ino, before.ino, 'file not rewritten');
  assert.deepEqual(readFileSync(path), first.blob);
});

test('when two copies of a chunk differ in size the smaller one is kept', async (t) => {
  const store = lightStore(t);
  const payload = Buffer.alloc(20_000, 'compressible ');
  const big = encodeBlob(payload, { compress: false });
  const small = encodeBlob(payload);
  assert.ok(small.length < big.length);
  const { digest } = await put(store, payload, big);
  const path = pathOf(store, digest);
  assert.deepEqual(await store.insert(digest, small), { duplicate: false, encodedSize: small.length });
  assert.deepEqual(readFileSync(path), small);
  assert.deepEqual(await store.insert(digest, big), { duplicate: true, encodedSize: small.length });
  assert.deepEqual(readFileSync(path), small);
});

test('an empty chunk file left by a crash is overwritten by the next upload', async (t) => {
  const store = lightStore(t);
  const payload = Buffer.from('zero-length leftovers');
  const digest = sha(payload);
  const path = pathOf(store, digest);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, '');
  const blob = encodeBlob(payload);
  assert.deepEqual(await store.insert(digest, blob), { duplicate: false, encodedSize: blob.length });
  assert.deepEqual(readFileSync(path), blob);
});

test('an encrypted chunk never replaces an unencrypted chunk with the same digest', async (t) => {
  const store = lightStore(t);
  const payload = Buffer.alloc(3000, 'plain ');
  const { digest, blob } = await put(store, payload, encodeBlob(payload, { compress: false }));
  const smallerEncrypted = encryptedBlob(10);
  assert.ok(smallerEncrypted.length < blob.length);
  await assert.rejects(store.insert(digest, smallerEncrypted), {
    code: 'BAD_REQUEST',
    message: /unencrypted chunk/,
  });
  assert.deepEqual(readFileSync(pathOf(store, digest)), blob);
});

test('a blob with a bad CRC is refused and nothing is stored', async (t) => {
  const store = lightStore(t);
  const payload = Buffer.from('will be damaged in transit');
  const digest = sha(payload);
  mkdirSync(dirname(pathOf(store, digest)), { recursive: true });
  const blob = encodeBlob(payload);
  blob[blob.length - 1]! ^= 1;
  await assert.rejects(store.insert(digest, blob), { code: 'CORRUPT_DATA', message: /CRC/ });
  assert.equal(await store.exists(digest), false);
  assert.deepEqual(readdirSync(dirname(pathOf(store, digest))), [], 'no temp file left');
});

test('reading a chunk detects a flipped byte and a content/digest mismatch, naming the digest', async (t) => {
  const store = lightStore(t);
  const payload = Buffer.alloc(4000, 'read me ');
  const { digest, blob } = await put(store, payload);
  const hex = digest.toString('hex');
  assert.deepEqual(await readCheckedChunk(store, digest), blob);

  const path = pathOf(store, digest);
  const flipped = Buffer.from(blob);
  flipped[flipped.length - 2]! ^= 0x10;
  writeFileSync(path, flipped);
  await assert.rejects(readCheckedChunk(store, digest), {
    code: 'CORRUPT_DATA',
    message: new RegExp(`${hex}.*CRC`),
  });

  // Valid CRC, wrong content: only the digest check catches it.
  const other = encodeBlob(Buffer.from('something else entirely'), { compress: false });
  rewriteBlobCrc(other);
  writeFileSync(path, other);
  await assert.rejects(readCheckedChunk(store, digest), {
    code: 'CORRUPT_DATA',
    message: new RegExp(`${hex}.*wrong digest`),
  });

  await assert.rejects(readCheckedChunk(store, sha(Buffer.from('never stored'))), { code: 'NOT_FOUND' });
});

test('touching a chunk moves its atime to now and keeps its mtime', async (t) => {
  const store = lightStore(t);
  const { digest } = await put(store, Buffer.from('touch me'));
  const path = pathOf(store, digest);
  const old = (Date.now() - 3 * DAY) / 1000;
  utimesSync(path, old, old);
  assert.equal(await store.mark(digest), true);
  const st = statSync(path);
  assert.ok(st.atimeMs > Date.now() - 60_000);
  assert.ok(Math.abs(st.mtimeMs - old * 1000) < 1);
  // A missing chunk is not an error for mark (GC logs it); it says so instead.
  assert.equal(await store.mark(sha(Buffer.from('absent'))), false);
});

test('a corrupt chunk is renamed to the first free <digest>.<n>.bad', async (t) => {
  const store = lightStore(t);
  const { digest, blob } = await put(store, Buffer.from('bad twice'));
  const path = pathOf(store, digest);
  assert.equal(await store.quarantine(digest), `${path}.0.bad`);
  await store.insert(digest, blob);
  assert.equal(await store.quarantine(digest), `${path}.1.bad`);
  assert.equal(await store.quarantine(digest), undefined, 'nothing left to rename');
  assert.equal(existsSync(`${path}.0.bad`) && existsSync(`${path}.1.bad`), true);
});

test('listing chunk files yields chunks and .bad files with atime and size, and skips anything else', async (t) => {
  const store = lightStore(t);
  const a = await put(store, Buffer.from('chunk a'));
  const b = await put(store, Buffer.from('chunk b'));
  await store.quarantine(b.digest);
  const dir = dirname(pathOf(store, a.digest));
  writeFileSync(join(dir, `${a.digest.toString('hex')}.tmp_123456`), 'x');
  writeFileSync(join(dir, 'README'), 'x');
  const files: { name: string; bad: boolean; size: number }[] = [];
  for await (const f of store.list()) files.push({ name: f.name, bad: f.bad, size: f.size });
  files.sort((x, y) => x.name.localeCompare(y.name));
  const expected = [
    { name: a.digest.toString('hex'), bad: false, size: a.blob.length },
    { name: `${b.digest.toString('hex')}.0.bad`, bad: true, size: b.blob.length },
  ].sort((x, y) => x.name.localeCompare(y.name));
  assert.deepEqual(files, expected);
});

test('the oldest writer is the earliest of this process and the external provider, until released', () => {
  let external: number | undefined;
  const store = new WriterRegistry(() => external);
  assert.equal(store.oldestStart(), undefined);
  const w1 = store.register(5000);
  const w2 = store.register(3000);
  assert.equal(store.oldestStart(), 3000);
  external = 1000;
  assert.equal(store.oldestStart(), 1000);
  external = undefined;
  w2.release();
  w2.release();
  assert.equal(store.oldestStart(), 5000);
  w1.release();
  assert.equal(store.oldestStart(), undefined);
});

test('with sync-level filesystem, chunks written are synced by flush()', async (t) => {
  const store = lightStore(t, { syncLevel: 'filesystem' });
  await put(store, Buffer.from('durable'));
  assert.equal(store.unsyncedCount, 2, 'the chunk file and its subdirectory');
  await store.flush();
  assert.equal(store.unsyncedCount, 0);
  const fileLevel = lightStore(t, { syncLevel: 'file' });
  const { digest } = await put(fileLevel, Buffer.from('durable'));
  assert.equal(fileLevel.unsyncedCount, 0, 'fsynced at once');
  assert.equal(await fileLevel.exists(digest), true);
});

test('with sync-level filesystem, chunks are written back while more arrive, before flush()', async (t) => {
  const MiB = 1024 * 1024;
  const write48MiB = async (store: ChunkStore) => {
    const before = dirtyBytes();
    for (let i = 0; i < 12; i++) await put(store, randomBytes(4 * MiB));
    await store.writebackSettled();
    return dirtyBytes() - before;
  };
  // the kernel alone leaves them dirty (it writes back after 30 s or past 10 % of memory)
  const late = lightStore(t, { syncLevel: 'filesystem', earlyWritebackBytes: Infinity });
  const leftByKernel = await write48MiB(late);
  await late.flush();
  const early = lightStore(t, { syncLevel: 'filesystem', earlyWritebackBytes: 8 * MiB });
  const leftEarly = await write48MiB(early);
  assert.ok(leftByKernel > 40 * MiB, `without early writeback ${leftByKernel} bytes stay dirty`);
  assert.ok(leftEarly < 24 * MiB, `with a writeback every 8 MiB ${leftEarly} bytes stay dirty`);
  // durability is still flush()'s: what the last writeback missed
  assert.ok(early.unsyncedCount > 0);
  await early.flush();
  assert.equal(early.unsyncedCount, 0);
});

test('flush() returns while uploads go on and early writebacks follow one another', async (t) => {
  const store = lightStore(t, { syncLevel: 'filesystem', earlyWritebackBytes: 1 });
  let uploading = true;
  const uploads = (async () => {
    while (uploading) {
      await put(store, randomBytes(64 * 1024));
      await new Promise((r) => setImmediate(r));
    }
  })();
  try {
    await new Promise((r) => setTimeout(r, 200));
    const flushed = await Promise.race([
      store.flush().then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 10_000)),
    ]);
    assert.equal(flushed, true, 'flush() returned within 10 s');
  } finally {
    uploading = false;
    await uploads;
    await store.writebackSettled();
  }
});
