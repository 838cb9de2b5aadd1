import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import { decodeBlob, blobKind } from '../../src/datastore/data-blob.js';
import { chunkBuffers, type PoolMemory } from '../../src/sys/buffer-pool.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest();

test('the pool hashes and encodes chunks in worker threads, and decodes them back', async () => {
  const pool = new ChunkPool({ threads: 2 });
  try {
    const inputs = [Buffer.alloc(200_000, 'text '), randomBytes(100_000), Buffer.from('tiny')];
    const copies = inputs.map((b) => Buffer.from(b));
    const out = await Promise.all(inputs.map((b) => pool.process(b, () => false)));
    for (const [i, r] of out.entries()) {
      assert.deepEqual(r.digest, sha(copies[i]!));
      assert.equal(r.size, copies[i]!.length);
      assert.ok(r.blob);
      assert.deepEqual(decodeBlob(r.blob), copies[i]);
    }
    assert.equal(blobKind(out[0]!.blob!), 'compressed');
    assert.equal(blobKind(out[1]!.blob!), 'uncompressed');
    const back = await pool.decode(Buffer.from(out[0]!.blob!), {
      digest: out[0]!.digest,
      size: copies[0]!.length,
    });
    assert.deepEqual(back, copies[0]);
  } finally {
    await pool.close();
  }
});

test('a chunk the server already has is hashed but not encoded', async () => {
  const pool = new ChunkPool({ threads: 1 });
  try {
    const data = randomBytes(50_000);
    const digest = sha(data);
    const r = await pool.process(Buffer.from(data), (d) => d.equals(digest));
    assert.deepEqual(r.digest, digest);
    assert.equal(r.blob, undefined);
  } finally {
    await pool.close();
  }
});

test('decoding a chunk whose content does not match its digest fails as corrupt data', async () => {
  const pool = new ChunkPool({ threads: 1 });
  try {
    const r = await pool.process(Buffer.from('some chunk'), () => false);
    // decode moves the blob's memory to the worker: keep a copy to damage first
    const damaged = Buffer.from(r.blob!);
    await assert.rejects(
      pool.decode(r.blob!, { digest: Buffer.alloc(32) }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'CORRUPT_DATA');
        assert.match(err.message, /wrong digest/);
        return true;
      },
    );
    damaged[damaged.length - 1]! ^= 1;
    await assert.rejects(pool.decode(damaged), /CRC/);
  } finally {
    await pool.close();
  }
});

test('released blobs go home to the workers and their memory is reused without mixing chunks up', async () => {
  const pool = new ChunkPool({ threads: 2 });
  try {
    // every blob's memory, once per piece of memory (a worker's blob memory arrives here as a new
    // object each time: the same memory is told by its identity, `sameMemory`)
    const seen: PoolMemory[] = [];
    for (let round = 0; round < 5; round++) {
      // several at once, so that both workers encode
      const inputs = Array.from({ length: 6 }, (_, i) =>
        i % 2 ? randomBytes(60_000 + round * 1000 + i) : Buffer.alloc(90_000 + i, `r${round}c${i} `),
      );
      const copies = inputs.map((b) => Buffer.from(b));
      const out = await Promise.all(inputs.map((b) => pool.process(b, () => false)));
      for (const [i, r] of out.entries()) {
        assert.deepEqual(r.digest, sha(copies[i]!));
        assert.deepEqual(decodeBlob(r.blob!), copies[i]);
        const mem = chunkBuffers.memoryOf(r.blob!);
        assert.ok(mem, 'a blob is on pooled memory');
        if (!seen.some((m) => chunkBuffers.sameMemory(m, mem))) seen.push(mem);
        pool.release(r.blob!);
      }
    }
    // 30 blobs: without going home each would be on memory of its own
    assert.ok(seen.length <= 12, `blobs on ${seen.length} pieces of memory`);
  } finally {
    await pool.close();
  }
});

test('workers started one by one under load all answer with the right chunk', async () => {
  const pool = new ChunkPool({ threads: 3 });
  try {
    const inputs = Array.from({ length: 12 }, (_, i) => randomBytes(50_000 + i));
    const copies = inputs.map((b) => Buffer.from(b));
    const out = await Promise.all(inputs.map((b, i) => pool.process(b, () => i % 2 === 0)));
    for (const [i, r] of out.entries()) {
      assert.deepEqual(r.digest, sha(copies[i]!));
      assert.equal(r.blob === undefined, i % 2 === 0);
      if (r.blob) assert.deepEqual(decodeBlob(r.blob), copies[i]);
    }
  } finally {
    await pool.close();
  }
});
