/**
 * The one conformance suite of the `ChunkBackend` contract (src/datastore/chunk-backend.ts), as
 * restic's `backend/test` suite: every backend runs it through a harness (filesystem and memory
 * from test/datastore/chunk-backend.test.ts, S3 on Ceph's RADOS Gateway from
 * test/s3/s3-chunk-backend.test.ts). Each test checks a sentence of the
 * contract written above the interface's methods.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { ChunkBackend, ChunkEntry } from '../../src/datastore/chunk-backend.js';
import { BLOB_MAGIC, encodeBlob } from '../../src/datastore/data-blob.js';
import { isStowageError } from '../../src/errors.js';

/** A backend under test, with the two things the contract cannot express through the interface. */
export interface ChunkBackendHarness {
  backend: ChunkBackend;
  /** Set the atime of the stored object `name` (`<64 hex>` or `<64 hex>.<n>.bad`) to `ageMs` ago. */
  age(name: string, ageMs: number): void | Promise<void>;
  /** Store `bytes` under `name` bypassing insert's checks, as a crash or a bit flip leaves them. */
  plant(name: string, bytes: Uint8Array): void | Promise<void>;
  /**
   * Called before a digest is first stored: a test store may lack what a real one has from its
   * creation (the filesystem harness creates the digest's `.chunks` subdirectory: all 65536 take
   * seconds, and PBS's insert does not create them either).
   */
  prepare?(digest: Uint8Array): void | Promise<void>;
}

interface TestChunk {
  digest: Buffer;
  hex: string;
  blob: Buffer;
}

type Ctx = ChunkBackendHarness & {
  /** A chunk of `text` repeated, ready to insert into this test's backend. */
  chunk(text: string, opts?: { compress?: boolean }): Promise<TestChunk>;
};

type TestContext = { after: (fn: () => void | Promise<void>) => void };

const DAY = 86_400_000;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

function makeChunk(text: string, opts: { compress?: boolean } = {}): TestChunk {
  const payload = Buffer.from(text.repeat(200));
  const digest = sha(payload);
  return { digest, hex: digest.toString('hex'), blob: encodeBlob(payload, { compress: opts.compress }) };
}

/** An encrypted-looking blob: the server only sees magic, CRC, iv, tag and ciphertext. */
function encryptedBlob(bodyLen: number): Buffer {
  const body = Buffer.alloc(32 + bodyLen, 0x5a);
  const blob = Buffer.concat([BLOB_MAGIC.encrypted, Buffer.alloc(4), body]);
  blob.writeUInt32LE(crc32(blob.subarray(12)), 8);
  return blob;
}

async function listAll(backend: ChunkBackend): Promise<ChunkEntry[]> {
  const out: ChunkEntry[] = [];
  for await (const e of backend.list()) out.push(e);
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

const names = async (backend: ChunkBackend) => (await listAll(backend)).map((e) => e.name);

/** Register the contract's tests for the backends `make` creates (one fresh backend per test). */
export function chunkBackendConformance(
  label: string,
  make: (t: TestContext) => ChunkBackendHarness | Promise<ChunkBackendHarness>,
): void {
  const it = (name: string, fn: (h: Ctx) => Promise<void>) =>
    test(`${label}: ${name}`, async (t) => {
      const h = await make(t);
      const chunk = async (text: string, opts?: { compress?: boolean }) => {
        const c = makeChunk(text, opts);
        await h.prepare?.(c.digest);
        return c;
      };
      await fn({ ...h, chunk });
    });

  it('a stored chunk loads byte for byte and exists; another digest does not', async ({ backend, chunk }) => {
    const c = await chunk('load me ');
    assert.deepEqual(await backend.insert(c.digest, c.blob), {
      duplicate: false,
      encodedSize: c.blob.length,
    });
    assert.deepEqual(await backend.load(c.digest), c.blob);
    assert.equal(await backend.exists(c.digest), true);
    assert.equal(await backend.exists((await chunk('other ')).digest), false);
  });

  it('loading a missing chunk rejects with a typed NOT_FOUND error naming the digest', async ({
    backend,
    chunk,
  }) => {
    const c = await chunk('never stored ');
    await assert.rejects(
      backend.load(c.digest),
      (err) => isStowageError(err) && err.code === 'NOT_FOUND' && err.message.includes(c.hex),
    );
  });

  it('inserting the same chunk twice is idempotent: a duplicate that refreshes its atime', async (h) => {
    const { chunk } = h;
    const { backend } = h;
    const c = await chunk('dedup ');
    await backend.insert(c.digest, c.blob);
    await h.age(c.hex, 2 * DAY);
    assert.deepEqual(await backend.insert(c.digest, c.blob), { duplicate: true, encodedSize: c.blob.length });
    const [entry] = await listAll(backend);
    assert.ok(entry!.atimeMs > Date.now() - 60_000, 'atime refreshed');
    assert.deepEqual(await backend.load(c.digest), c.blob);
  });

  it('concurrent inserts of one chunk store it once: one new copy, the rest duplicates', async ({
    backend,
    chunk,
  }) => {
    const c = await chunk('raced ');
    const results = await Promise.all(Array.from({ length: 8 }, () => backend.insert(c.digest, c.blob)));
    assert.equal(results.filter((r) => !r.duplicate).length, 1);
    assert.deepEqual(await names(backend), [c.hex]);
    assert.deepEqual(await backend.load(c.digest), c.blob);
  });

  it('when two copies differ in size the smaller one wins, in either order', async ({ backend, chunk }) => {
    const big = await chunk('compressible ', { compress: false });
    const small = await chunk('compressible ');
    assert.ok(small.blob.length < big.blob.length);
    await backend.insert(big.digest, big.blob);
    assert.deepEqual(await backend.insert(small.digest, small.blob), {
      duplicate: false,
      encodedSize: small.blob.length,
    });
    assert.deepEqual(await backend.insert(big.digest, big.blob), {
      duplicate: true,
      encodedSize: small.blob.length,
    });
    assert.deepEqual(await backend.load(small.digest), small.blob);
  });

  it('an encrypted chunk never replaces an unencrypted one, even when smaller', async ({
    backend,
    chunk,
  }) => {
    const c = await chunk('plain ', { compress: false });
    await backend.insert(c.digest, c.blob);
    const enc = encryptedBlob(10);
    assert.ok(enc.length < c.blob.length);
    await assert.rejects(backend.insert(c.digest, enc), {
      code: 'BAD_REQUEST',
      message: /unencrypted chunk/,
    });
    assert.deepEqual(await backend.load(c.digest), c.blob);
  });

  it('a zero-length leftover is overwritten by the next insert', async (h) => {
    const { chunk } = h;
    const c = await chunk('zero-length leftovers ');
    await h.plant(c.hex, Buffer.alloc(0));
    assert.deepEqual(await h.backend.insert(c.digest, c.blob), {
      duplicate: false,
      encodedSize: c.blob.length,
    });
    assert.deepEqual(await h.backend.load(c.digest), c.blob);
  });

  it('a blob with a bad CRC is refused and nothing is stored', async ({ backend, chunk }) => {
    const c = await chunk('damaged in transit ');
    const bad = Buffer.from(c.blob);
    bad[bad.length - 1]! ^= 1;
    await assert.rejects(backend.insert(c.digest, bad), { code: 'CORRUPT_DATA', message: /CRC/ });
    assert.equal(await backend.exists(c.digest), false);
    assert.deepEqual(await names(backend), []);
  });

  it('mark then sweep keeps marked chunks and removes old unmarked ones', async (h) => {
    const { chunk } = h;
    const { backend } = h;
    const kept = await chunk('marked ');
    const gone = await chunk('unmarked ');
    for (const c of [kept, gone]) {
      await backend.insert(c.digest, c.blob);
      await h.age(c.hex, 2 * DAY);
    }
    assert.equal(await backend.mark(kept.digest), true);
    const now = Date.now();
    const stats = await backend.sweep({ minAtimeMs: now - DAY, oldestWriterMs: now - 60_000 });
    assert.deepEqual(await names(backend), [kept.hex]);
    assert.equal(await backend.exists(gone.digest), false);
    assert.deepEqual(stats, {
      removedBytes: gone.blob.length,
      removedChunks: 1,
      removedBad: 0,
      stillBad: 0,
      pendingBytes: 0,
      pendingChunks: 0,
      diskBytes: kept.blob.length,
      diskChunks: 1,
    });
  });

  it('sweep counts unremoved objects older than the oldest writer as pending, newer ones as on disk', async (h) => {
    const { chunk } = h;
    const { backend } = h;
    const pending = await chunk('before the writer ');
    const onDisk = await chunk('by the writer ');
    const removed = await chunk('garbage ');
    await backend.insert(pending.digest, pending.blob);
    await backend.insert(onDisk.digest, onDisk.blob);
    await backend.insert(removed.digest, removed.blob);
    await h.age(pending.hex, 3_600_000);
    await h.age(onDisk.hex, 600_000);
    await h.age(removed.hex, 2 * DAY);
    const now = Date.now();
    const stats = await backend.sweep({ minAtimeMs: now - DAY, oldestWriterMs: now - 1_800_000 });
    assert.deepEqual(stats, {
      removedBytes: removed.blob.length,
      removedChunks: 1,
      removedBad: 0,
      stillBad: 0,
      pendingBytes: pending.blob.length,
      pendingChunks: 1,
      diskBytes: onDisk.blob.length,
      diskChunks: 1,
    });
    assert.deepEqual(await names(backend), [onDisk.hex, pending.hex].sort());
  });

  it('a missing chunk marks its quarantined copies, which the sweep keeps; unmarked ones go', async (h) => {
    const { chunk } = h;
    const { backend } = h;
    const needed = await chunk('still needed ');
    const orphan = await chunk('nobody needs ');
    for (const c of [needed, orphan]) {
      await backend.insert(c.digest, c.blob);
      await backend.quarantine(c.digest);
      await h.age(`${c.hex}.0.bad`, 2 * DAY);
    }
    assert.equal(await backend.mark(needed.digest), false, 'no chunk under the digest');
    const now = Date.now();
    const stats = await backend.sweep({ minAtimeMs: now - DAY, oldestWriterMs: now });
    assert.deepEqual(await names(backend), [`${needed.hex}.0.bad`]);
    assert.equal(stats.removedBad, 1);
    assert.equal(stats.stillBad, 1);
    assert.equal(stats.removedChunks + stats.diskChunks + stats.pendingChunks, 0);
    assert.equal(stats.removedBytes, orphan.blob.length);
  });

  it('quarantine takes the first free <digest>.<n>.bad of 0..9 and reuses 9 when all are taken', async ({
    backend,
    chunk,
  }) => {
    const c = await chunk('bad again and again ');
    for (let n = 0; n < 11; n++) {
      await backend.insert(c.digest, c.blob);
      assert.ok(await backend.quarantine(c.digest));
      assert.equal(await backend.exists(c.digest), false);
    }
    const expected = Array.from({ length: 10 }, (_, n) => `${c.hex}.${n}.bad`);
    assert.deepEqual(await names(backend), expected);
    assert.equal(await backend.quarantine(c.digest), undefined, 'nothing left to quarantine');
    await assert.rejects(backend.load(c.digest), { code: 'NOT_FOUND' });
  });

  it('list yields chunks and quarantined copies with digest, size and atime', async ({ backend, chunk }) => {
    const a = await chunk('chunk a ');
    const b = await chunk('chunk b ');
    await backend.insert(a.digest, a.blob);
    await backend.insert(b.digest, b.blob);
    await backend.quarantine(b.digest);
    const entries = (await listAll(backend)).map(({ atimeMs, ...rest }) => {
      assert.ok(atimeMs > Date.now() - 60_000);
      return rest;
    });
    const expected = [
      { name: a.hex, digestHex: a.hex, bad: false, size: a.blob.length },
      { name: `${b.hex}.0.bad`, digestHex: b.hex, bad: true, size: b.blob.length },
    ].sort((x, y) => x.name.localeCompare(y.name));
    assert.deepEqual(entries, expected);
  });

  it('flush keeps every chunk and can be called repeatedly', async ({ backend, chunk }) => {
    const c = await chunk('durable ');
    await backend.insert(c.digest, c.blob);
    await backend.flush();
    await backend.flush();
    assert.deepEqual(await backend.load(c.digest), c.blob);
  });

  it('an aborted sweep rejects and removes nothing it had not reached', async (h) => {
    const { chunk } = h;
    const c = await chunk('doomed ');
    await h.backend.insert(c.digest, c.blob);
    await h.age(c.hex, 2 * DAY);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(h.backend.sweep({ minAtimeMs: Date.now(), oldestWriterMs: Date.now() }, ac));
    assert.deepEqual(await names(h.backend), [c.hex]);
  });

  it('after close every method is refused, and close again is harmless', async ({ backend, chunk }) => {
    const c = await chunk('closed ');
    await backend.insert(c.digest, c.blob);
    await backend.close();
    await backend.close();
    const closed = { code: 'INTERNAL', message: /closed/ };
    await assert.rejects(backend.insert(c.digest, c.blob), closed);
    await assert.rejects(backend.load(c.digest), closed);
    await assert.rejects(backend.exists(c.digest), closed);
    await assert.rejects(backend.mark(c.digest), closed);
    await assert.rejects(backend.quarantine(c.digest), closed);
    await assert.rejects(backend.sweep({ minAtimeMs: 0, oldestWriterMs: 0 }), closed);
    await assert.rejects(listAll(backend), closed);
    await assert.rejects(backend.flush(), closed);
  });
}
