/**
 * The chunk-backend contract (test/suites/chunk-backend-conformance.ts) against the S3 backend on
 * a real Ceph RADOS Gateway, and what is particular to S3: PBS 4's object layout, the local
 * cache with its markers, and an object someone else uploaded.
 *
 * How the harness reaches what the interface cannot: an object's atime (GC's mark) lives in the
 * local cache, as in PBS 4 (S3 cannot change an object's time without rewriting it), so `age`
 * sets the cache file's atime, creating the empty marker when the cache has none, which is what
 * a mark does. `plant` writes the object into the bucket directly and removes the cache file, as
 * another server or a crash would leave the store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { S3ChunkBackend } from '../../src/datastore/s3-chunk-backend.js';
import { chunkBackendConformance } from '../suites/chunk-backend-conformance.js';
import { createTestBucket } from '../helpers/s3-test-bucket.js';

const { client, bucket, options } = await createTestBucket('chunks');

type TestContext = { after: (fn: () => void | Promise<void>) => void };

/** A backend on a store prefix of its own in the shared bucket, with its own cache dir. */
function makeBackend(t: TestContext, cacheCapacity?: number) {
  const cacheDir = mkdtempSync(join(tmpdir(), 'stowage-s3-cache-'));
  const storePrefix = `store-${randomBytes(4).toString('hex')}`;
  const backend = new S3ChunkBackend({ client: options, bucket, storePrefix, cacheDir, cacheCapacity });
  t.after(async () => {
    await backend.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });
  // PBS 4's layout, spelled out here on purpose: a bucket written by either must read in both
  const keyOf = (name: string) => `${storePrefix}/.chunks/${name.slice(0, 4)}/${name}`;
  const cacheOf = (name: string) => join(cacheDir, '.chunks', name.slice(0, 4), name);
  return { backend, keyOf, cacheOf };
}

chunkBackendConformance('s3 (Ceph RGW)', (t) => {
  const { backend, keyOf, cacheOf } = makeBackend(t);
  return {
    backend,
    age(name, ageMs) {
      const path = cacheOf(name);
      mkdirSync(dirname(path), { recursive: true });
      if (!statSync(path, { throwIfNoEntry: false })) writeFileSync(path, '');
      const at = (Date.now() - ageMs) / 1000;
      utimesSync(path, at, at);
    },
    async plant(name, bytes) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: keyOf(name), Body: Buffer.from(bytes) }));
      rmSync(cacheOf(name), { force: true });
    },
  };
});

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();
function chunk(text: string) {
  const payload = Buffer.from(text.repeat(300));
  const digest = sha(payload);
  return { digest, hex: digest.toString('hex'), blob: encodeBlob(payload) };
}

test('a chunk is stored as PBS 4 lays it out: <store>/.chunks/<4 hex>/<digest>, the blob as it is', async (t) => {
  const { backend, keyOf } = makeBackend(t);
  const c = chunk('layout ');
  await backend.insert(c.digest, c.blob);
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keyOf(c.hex) }));
  assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), c.blob);
});

test('a chunk another server already uploaded is a duplicate and is not uploaded again', async (t) => {
  const { backend, keyOf } = makeBackend(t);
  const c = chunk('uploaded elsewhere ');
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: keyOf(c.hex), Body: c.blob }));
  const before = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: keyOf(c.hex) }));
  await new Promise((r) => setTimeout(r, 1100)); // a re-upload would show in LastModified
  assert.deepEqual(await backend.insert(c.digest, c.blob), { duplicate: true, encodedSize: c.blob.length });
  const after = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: keyOf(c.hex) }));
  assert.deepEqual(after.LastModified, before.LastModified);
  assert.equal(await backend.mark(c.digest), true);
  assert.deepEqual(await backend.load(c.digest), c.blob);
});

test('the cache keeps the newest chunks; an evicted one leaves an empty marker with its mark and loads from the bucket', async (t) => {
  const { backend, cacheOf } = makeBackend(t, 1);
  const first = chunk('evicted ');
  const second = chunk('kept ');
  await backend.insert(first.digest, first.blob);
  const marked = new Date(Date.now() - 3_600_000);
  utimesSync(cacheOf(first.hex), marked, marked);
  await backend.insert(second.digest, second.blob);
  const marker = statSync(cacheOf(first.hex));
  assert.equal(marker.size, 0);
  assert.equal(
    Math.floor(marker.atimeMs / 1000),
    Math.floor(marked.getTime() / 1000),
    'eviction is not a mark',
  );
  assert.equal(statSync(cacheOf(second.hex)).size, second.blob.length);
  assert.deepEqual(await backend.load(first.digest), first.blob);
  assert.equal(statSync(cacheOf(first.hex)).size, first.blob.length, 'cached again once read');
  assert.equal(statSync(cacheOf(second.hex)).size, 0);
});

test('without its cache (lost, or a new server on the bucket) a referenced chunk is marked from the bucket and kept by the sweep', async (t) => {
  const { backend, cacheOf } = makeBackend(t);
  const c = chunk('cache lost ');
  await backend.insert(c.digest, c.blob);
  rmSync(cacheOf(c.hex));
  assert.equal(await backend.mark(c.digest), true);
  assert.equal(statSync(cacheOf(c.hex)).size, 0, 'a marker now holds its mark');
  const now = Date.now();
  const stats = await backend.sweep({ minAtimeMs: now - 60_000, oldestWriterMs: now });
  assert.equal(stats.removedChunks, 0);
  assert.deepEqual(await backend.load(c.digest), c.blob);
});

test('an unmarked object without a cache file counts from its upload: a fresh one survives the sweep', async (t) => {
  const { backend, keyOf } = makeBackend(t);
  const c = chunk('uploaded during phase 1 ');
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: keyOf(c.hex), Body: c.blob }));
  const now = Date.now();
  const stats = await backend.sweep({ minAtimeMs: now - 86_400_000, oldestWriterMs: now - 60_000 });
  assert.equal(stats.diskChunks, 1);
  assert.equal(await backend.exists(c.digest), true);
});

test('an unreachable endpoint fails with the request and what the network said', async (t) => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'stowage-s3-cache-'));
  t.after(() => rmSync(cacheDir, { recursive: true, force: true }));
  const backend = new S3ChunkBackend({
    client: { ...options, endpoint: 'http://127.0.0.1:9' },
    bucket,
    storePrefix: 'nowhere',
    cacheDir,
  });
  t.after(() => backend.close());
  const c = chunk('unreachable ');
  await assert.rejects(backend.insert(c.digest, c.blob), {
    id: 'ERR_S3_REQUEST_FAILED',
    message: new RegExp(
      `^S3 request failed: HEAD ${bucket}/nowhere/\\.chunks/${c.hex.slice(0, 4)}/${c.hex} - .*ECONNREFUSED`,
    ),
  });
});

test('requests and traffic are counted per method, as PBS 4 shows them per datastore', async (t) => {
  const { backend, cacheOf } = makeBackend(t);
  const c = chunk('counted ');
  await backend.insert(c.digest, c.blob); // HEAD (not there), PUT
  await backend.insert(c.digest, c.blob); // cached: no request
  rmSync(cacheOf(c.hex));
  await backend.load(c.digest); // GET
  assert.deepEqual(backend.requestCounters(), {
    get: 1,
    put: 1,
    post: 0,
    delete: 0,
    head: 1,
    uploaded: c.blob.length,
    downloaded: c.blob.length,
  });
});
