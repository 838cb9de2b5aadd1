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
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import type { DatastoreConfigFile } from '../../src/config/datastore-config.js';
import { LocalLockService } from '../../src/maintenance/local-lock-service.js';
import { createS3Client, s3ClientOptionsFor } from '../../src/s3/s3-client.js';
import { encodeBlob } from '../../src/datastore/data-blob.js';
import { S3ChunkBackend } from '../../src/datastore/s3-chunk-backend.js';
import { chunkBackendConformance } from '../suites/chunk-backend-conformance.js';
import { createTestBucket } from '../helpers/s3-test-bucket.js';

const { client, bucket, options } = await createTestBucket('chunks');

type TestContext = { after: (fn: () => void | Promise<void>) => void };

/** A backend on a store prefix of its own in the shared bucket, with its own cache dir. */
function makeBackend(t: TestContext, cacheCapacity?: number, clientOptions = options) {
  const cacheDir = mkdtempSync(join(tmpdir(), 'stowage-s3-cache-'));
  const storePrefix = `store-${randomBytes(4).toString('hex')}`;
  const backend = new S3ChunkBackend({ client: clientOptions, bucket, storePrefix, cacheDir, cacheCapacity });
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

const DAY = 86_400_000;
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

test("an endpoint's provider quirks are worked around: puts without If-None-Match, GC deleting one object per DELETE", async (t) => {
  // the quirks as an operator sets them in s3.cfg, for a store that implements neither
  const { quirks } = s3ClientOptionsFor({
    id: 'quirky',
    endpoint: '127.0.0.1',
    'access-key': options.accessKey,
    'secret-key': options.secretKey,
    'provider-quirks': ['skip-if-none-match-header', 'delete-objects-via-delete-object'],
  });
  const quirky = { ...options, quirks };
  // RGW refuses an overwrite under If-None-Match (the gateway test): this client does not send it
  const Key = `quirks-${randomBytes(4).toString('hex')}/object`;
  await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.from('one') }));
  const raw = createS3Client(quirky);
  t.after(() => raw.destroy());
  await raw.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.from('two'), IfNoneMatch: '*' }));
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key }));
  assert.equal(await got.Body!.transformToString(), 'two');

  const { backend, cacheOf, keyOf } = makeBackend(t, undefined, quirky);
  const chunks = ['quirk one ', 'quirk two ', 'quirk three '].map(chunk);
  for (const c of chunks) assert.equal((await backend.insert(c.digest, c.blob)).duplicate, false);
  assert.equal((await backend.insert(chunks[0]!.digest, chunks[0]!.blob)).duplicate, true);
  // two unmarked for two days, one marked now
  const old = (Date.now() - 2 * DAY) / 1000;
  for (const c of chunks.slice(0, 2)) utimesSync(cacheOf(c.hex), old, old);
  const before = backend.requestCounters();
  const now = Date.now();
  const stats = await backend.sweep({ minAtimeMs: now - DAY, oldestWriterMs: now });
  const after = backend.requestCounters();
  assert.equal(stats.removedChunks, 2);
  assert.deepEqual(
    [after.delete - before.delete, after.post - before.post],
    [2, 0],
    'one DELETE a chunk, no batch',
  );
  for (const [i, c] of chunks.entries()) {
    const there = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: keyOf(c.hex) })).then(
      () => true,
      () => false,
    );
    assert.equal(there, i === 2, `chunk ${i} in the bucket`);
  }
});

// ---- GC against a backup in another process (PBS 4's chunk lock, shared across processes) ----

const INSERTER = fileURLToPath(new URL('./fixtures/chunk-inserter.ts', import.meta.url));
/** GC's cutoff as the datastore computes it with no older writer: 24 h 5 min before now. */
const gcCutoffs = () => ({ minAtimeMs: Date.now() - DAY - 300_000, oldestWriterMs: Date.now() });

/**
 * A store whose cache and lock dir a second process can share: the backend here runs GC, the
 * inserter process (test/s3/fixtures/chunk-inserter.ts) plays a backup of another server process.
 */
function makeSharedStore(t: TestContext, beforeSweepDelete?: (names: string[]) => Promise<void>) {
  const root = mkdtempSync(join(tmpdir(), 'stowage-s3-shared-'));
  const store = {
    client: options,
    bucket,
    storePrefix: `store-${randomBytes(4).toString('hex')}`,
    cacheDir: join(root, 'cache'),
    runDir: join(root, 'run'),
  };
  const backend = new S3ChunkBackend({
    ...store,
    lockService: new LocalLockService({
      runDir: store.runDir,
      dataDir: root,
      config: undefined as unknown as DatastoreConfigFile,
    }),
    beforeSweepDelete,
  });
  t.after(async () => {
    await backend.close();
    rmSync(root, { recursive: true, force: true });
  });
  const cacheOf = (name: string) => join(store.cacheDir, '.chunks', name.slice(0, 4), name);
  /** Mark `hex` as GC's phase 1 did two days ago: older than the cutoff. */
  const ageTwoDays = (hex: string) => {
    const at = (Date.now() - 2 * DAY) / 1000;
    utimesSync(cacheOf(hex), at, at);
  };
  const objects = async () => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: `${store.storePrefix}/.chunks/`,
          ContinuationToken: token,
        }),
      );
      for (const o of page.Contents ?? []) keys.push(o.Key!.slice(o.Key!.lastIndexOf('/') + 1));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  };
  return { root, store, backend, ageTwoDays, objects };
}

type Chunk = ReturnType<typeof chunk>;

function randomChunk(): Chunk {
  const payload = randomBytes(1024);
  const digest = sha(payload);
  return { digest, hex: digest.toString('hex'), blob: encodeBlob(payload) };
}

/** Start the inserter on `store` for `chunks`; it inserts them `gapMs` apart after `go()`. */
async function startInserter(
  t: TestContext,
  shared: ReturnType<typeof makeSharedStore>,
  chunks: Chunk[],
  gapMs: number,
) {
  const jobFile = join(shared.root, `job-${randomBytes(4).toString('hex')}.json`);
  const files = chunks.map((c) => {
    const file = join(shared.root, `${c.hex}.blob`);
    writeFileSync(file, c.blob);
    return { hex: c.hex, file };
  });
  writeFileSync(jobFile, JSON.stringify({ ...shared.store, chunks: files, gapMs }));
  const child = spawn(process.execPath, ['--import', 'tsx', INSERTER, jobFile], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(() => {
    child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`the inserter exited early (${child.exitCode})`);
    return value as string;
  };
  assert.equal(await next(), 'ready');
  let started!: Promise<void>;
  let done!: Promise<number[]>;
  return {
    go() {
      child.stdin!.write('go\n');
      started = next().then((l) => assert.equal(l, 'started'));
      done = started.then(async () => JSON.parse(await next()) as number[]);
    },
    started: () => started,
    done: () => done,
  };
}

test('a chunk another process re-inserts while the sweep is deleting it is uploaded again, not lost', async (t) => {
  const c = randomChunk();
  const peer: { inserter?: Awaited<ReturnType<typeof startInserter>> } = {};
  let insertedDuringDelete = false;
  const shared = makeSharedStore(t, async (names) => {
    assert.deepEqual(names, [c.hex]);
    // the other process's insert lands between the sweep's decision and its delete: it must
    // wait for the chunk's lock (given up to a second here) instead of relying on the marker
    peer.inserter!.go();
    insertedDuringDelete = await Promise.race([
      peer.inserter!.done().then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 1000)),
    ]);
  });
  await shared.backend.insert(c.digest, c.blob);
  shared.ageTwoDays(c.hex);
  peer.inserter = await startInserter(t, shared, [c], 0);
  const stats = await shared.backend.sweep(gcCutoffs());
  await peer.inserter.done();
  assert.equal(insertedDuringDelete, false, 'the insert did not wait for the sweep holding the chunk');
  assert.equal(stats.removedChunks, 1);
  assert.deepEqual(await shared.objects(), [c.hex], 'the insert put the chunk back after the delete');
  assert.deepEqual(await shared.backend.load(c.digest, undefined, { stored: true }), c.blob);
});

test('GC removes exactly the unreferenced chunks and none that a backup in another process inserted while it swept', async (t) => {
  const shared = makeSharedStore(t);
  const old = Array.from({ length: 60 }, randomChunk);
  await Promise.all(old.map((c) => shared.backend.insert(c.digest, c.blob)));
  for (const c of old) shared.ageTwoDays(c.hex);
  // the backup writes half of the old chunks again (found in the bucket: only marked) and new ones
  const reused = old.slice(0, 30);
  const written = [...reused, ...Array.from({ length: 6 }, randomChunk)].sort(() => Math.random() - 0.5);
  const inserter = await startInserter(t, shared, written, 3);
  inserter.go();
  await inserter.started();
  const sweepStart = Date.now();
  const stats = await shared.backend.sweep(gcCutoffs());
  const sweepEnd = Date.now();
  const insertedAt = await inserter.done();
  assert.ok(
    insertedAt.some((at) => at >= sweepStart && at <= sweepEnd),
    'the backup ran while the sweep did',
  );
  assert.deepEqual(await shared.objects(), written.map((c) => c.hex).sort());
  assert.ok(stats.removedChunks >= 30, `removed ${stats.removedChunks}`);
  const stored = await Promise.all(
    written.map((c) => shared.backend.load(c.digest, undefined, { stored: true })),
  );
  assert.deepEqual(
    stored,
    written.map((c) => c.blob),
  );
});

test("the endpoint's rate limits hold the traffic: uploads and downloads take at least what the rates allow", async (t) => {
  // the limits as an operator writes them in s3.cfg (PBS's human byte sizes), on the test gateway
  const conf = {
    id: 'limited',
    endpoint: '127.0.0.1',
    'access-key': options.accessKey,
    'secret-key': options.secretKey,
    'rate-out': '512 KiB',
    'burst-out': '64KiB',
    'rate-in': '512KiB',
    'burst-in': '64 KiB',
  };
  const { limits } = s3ClientOptionsFor(conf);
  assert.deepEqual(limits, {
    in: { rate: 512 * 1024, burst: 64 * 1024 },
    out: { rate: 512 * 1024, burst: 64 * 1024 },
    putsPerSecond: undefined,
  });
  const cacheDir = mkdtempSync(join(tmpdir(), 'stowage-s3-cache-'));
  const backend = new S3ChunkBackend({
    client: { ...options, limits },
    bucket,
    storePrefix: `store-${randomBytes(4).toString('hex')}`,
    cacheDir,
  });
  t.after(async () => {
    await backend.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });
  const chunks = Array.from({ length: 5 }, () => {
    const payload = randomBytes(128 * 1024);
    return { digest: sha(payload), blob: encodeBlob(payload) };
  });
  const sent = chunks.reduce((n, c) => n + c.blob.length, 0);
  const lowerBoundMs = ((sent - 64 * 1024) / (512 * 1024)) * 1000;

  let start = Date.now();
  await Promise.all(chunks.map((c) => backend.insert(c.digest, c.blob)));
  const putMs = Date.now() - start;
  assert.ok(putMs >= lowerBoundMs, `${sent} bytes uploaded in ${putMs} ms, under ${lowerBoundMs} ms`);

  start = Date.now();
  await Promise.all(chunks.map((c) => backend.load(c.digest, undefined, { stored: true })));
  const getMs = Date.now() - start;
  assert.ok(getMs >= lowerBoundMs, `${sent} bytes downloaded in ${getMs} ms, under ${lowerBoundMs} ms`);
});
