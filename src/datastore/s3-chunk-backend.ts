/**
 * The S3 chunk backend: chunks as objects in a bucket, in PBS 4's layout
 * (`<store>/.chunks/<4 hex>/<64 hex>`, quarantined copies `<64 hex>.<n>.bad` beside them,
 * `pbs-datastore/src/s3.rs`), with a local cache directory in the filesystem layout
 * (`<cache>/.chunks/<4 hex>/<name>`, PBS `LocalDatastoreLruCache`). Its contract is
 * `ChunkBackend` (chunk-backend.ts); the conformance suite runs it against Ceph's RADOS Gateway.
 *
 * What S3 cannot hold, and where it lives instead (as PBS does):
 * - **Access times.** An object has no atime and S3 cannot change an object's metadata without
 *   rewriting it, so GC's marks are local files: every chunk this store knows has a cache file,
 *   either its content (the LRU keeps the last `cacheCapacity` chunks read or written) or, once
 *   evicted, an empty marker, whose atime is the chunk's mark. `mark` touches them without a
 *   request; `sweep` lists the bucket and judges each object by its marker's atime.
 * - **Objects nobody marked** (the cache was lost, or another server wrote them): PBS removes them
 *   in phase 2 unless phase 1 left an "expected" marker. Here `mark` asks the bucket (one HEAD,
 *   only for a chunk without a marker) and creates the marker, so its answer stays exact; and an
 *   object without a marker is judged by its upload time (LastModified): an upload that finished
 *   after phase 1 started is kept by the cutoff exactly as a fresh file on a filesystem, where
 *   PBS relies on its chunk lock to keep such an upload from being deleted.
 * - **Atomic replace with "smaller wins".** PBS uploads chunks with `If-None-Match: *` and takes
 *   a 412 as "already there" without comparing sizes. Here the stored size comes from the cache
 *   or a HEAD first, and a smaller copy replaces a larger one with `If-Match: <etag>`, so a
 *   concurrent change of the object is noticed (412) and the decision taken again.
 *
 * Locking (PBS 4's `lock_chunk`): each digest has a lock held by insert, a mark that asks the
 * bucket, caching a fetched chunk and quarantine, and by the sweep from judging an object until
 * its batch is deleted. It is the lock service's `chunk` lock, so it excludes holders in every
 * process on the host (the old server finishing its backups during a graceful restart, the new
 * one running GC); an in-process queue in front of it keeps this process's waiters off the
 * polling. The sweep never waits: a chunk whose lock is held is being inserted and is kept (PBS
 * skips it the same way), so an insert that found the chunk in the bucket and only touched its
 * marker cannot lose it to a sweep that read the marker's old time.
 */
import { randomBytes } from 'node:crypto';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  type _Object,
} from '@aws-sdk/client-s3';
import {
  countS3Requests,
  createS3Client,
  ifMatchValue,
  isS3Status,
  s3RequestError,
  type S3ClientOptions,
  type S3RequestCounters,
} from '../s3/s3-client.js';
import { replaceFile } from '../sys/atomic-file.js';
import {
  ChunkBackendClosedError,
  chunkNotFound,
  countSwept,
  emptySweepStats,
  insertDecision,
  sweepVerdict,
  type ChunkBackend,
  type ChunkEntry,
  type InsertOptions,
  type InsertResult,
  type LoadOptions,
  type SweepCutoffs,
  type SweepOptions,
  type SweepStats,
} from './chunk-backend.js';
import { blobKind, checkBlobHeader, verifyBlobCrc, type BlobKind, type OutputBuffer } from './data-blob.js';
import { digestToHex } from './digest.js';
import type { HeldLock, LockService } from './lock-service.js';
import { S3ContentMirror } from './s3-content-mirror.js';

export interface S3ChunkBackendOptions {
  client: S3ClientOptions;
  bucket: string;
  /** The datastore's name: every key starts with `<storePrefix>/` (PBS's common prefix). */
  storePrefix: string;
  /** The local cache directory (the datastore's `path`); `.chunks/` is made in it as needed. */
  cacheDir: string;
  /** How many chunks keep their content in the cache (PBS sizes it from `max-cache-size`). */
  cacheCapacity?: number;
  /**
   * Where requests are counted: the datastore's counters, which outlive one open backend (a
   * datastore is closed whenever its last operation ends); fresh ones by default.
   */
  counters?: S3RequestCounters;
  /**
   * Where the per-chunk locks are shared with the other processes using this store (the
   * datastore's lock service, `chunk` locks named by `storePrefix`); without it they are
   * in-process only, enough for a backend nobody else opens (tests).
   */
  lockService?: LockService;
  /**
   * Fault injection for tests: called in the sweep with a batch decided for removal, its locks
   * held, before the delete is sent, where another process's insert can land
   * (test/s3/s3-chunk-backend.test.ts).
   */
  beforeSweepDelete?: (names: string[]) => void | Promise<void>;
}

/** `<64 hex>` or `<64 hex>.<n>.bad`, the last part of a chunk object's key. */
const OBJECT_NAME = /^([0-9a-f]{64})(\.[0-9]\.bad)?$/;
/** PBS deletes in batches of 100 (`S3_DELETE_BATCH_LIMIT`), holding those chunks' locks meanwhile. */
const DELETE_BATCH = 100;
/** A replace that keeps meeting a concurrent change gives up after this many tries. */
const MAX_INSERT_ATTEMPTS = 3;
const DEFAULT_CACHE_CAPACITY = 1024;
/** PBS's `CHUNK_LOCK_TIMEOUT`: an insert waits this long for another holder of the chunk's lock. */
const CHUNK_LOCK_TIMEOUT_MS = 3 * 60 * 60 * 1000;

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** An in-process lock per key: `acquire` resolves with the release once earlier holders released. */
class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async acquire(key: string): Promise<() => void> {
    const before = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.tails.set(key, tail);
    await before;
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }

  /** The release when nobody holds or waits for `key`, else undefined, without waiting. */
  tryAcquire(key: string): (() => void) | undefined {
    if (this.tails.has(key)) return undefined;
    let release!: () => void;
    const tail = new Promise<void>((resolve) => (release = resolve));
    this.tails.set(key, tail);
    return () => {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    };
  }
}

interface StoredCopy {
  size: number;
  /** Known when the size came from the bucket (a HEAD); needed to replace the object. */
  etag?: string;
}

export class S3ChunkBackend implements ChunkBackend {
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly storePrefix: string;
  private readonly chunkDir: string;
  private readonly capacity: number;
  /** Digests whose cache file has content, least recently used first (Map keeps insertion order). */
  private readonly lru = new Map<string, true>();
  private readonly locks = new KeyedLock();
  private readonly counters: S3RequestCounters;
  private readonly lockService: LockService | undefined;
  private readonly beforeSweepDelete: S3ChunkBackendOptions['beforeSweepDelete'];
  private closed = false;

  constructor(opts: S3ChunkBackendOptions) {
    this.s3 = createS3Client(opts.client);
    this.counters = countS3Requests(this.s3, opts.counters);
    this.bucket = opts.bucket;
    this.storePrefix = opts.storePrefix;
    this.prefix = `${opts.storePrefix}/.chunks/`;
    this.chunkDir = join(opts.cacheDir, '.chunks');
    this.capacity = opts.cacheCapacity ?? DEFAULT_CACHE_CAPACITY;
    this.lockService = opts.lockService;
    this.beforeSweepDelete = opts.beforeSweepDelete;
    mkdirSync(this.chunkDir, { recursive: true });
  }

  /** For logs and errors: where the chunks are. */
  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  /** Requests and traffic counted so far (PBS's `S3Statistics`): since opened, or in the counters given. */
  requestCounters(): S3RequestCounters {
    return { ...this.counters };
  }

  /**
   * The datastore's content mirror (`<store>/.cnt/`) on this backend's client, so its requests
   * are counted with the chunks'. Usable while the backend is open.
   */
  contentMirror(basePath: string): S3ContentMirror {
    return new S3ContentMirror({
      s3: this.s3,
      bucket: this.bucket,
      storePrefix: this.storePrefix,
      basePath,
      checkOpen: () => this.assertOpen(),
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new ChunkBackendClosedError(this.location);
  }

  /** Wait for the chunk's lock, in this process and then across processes. */
  private async lockChunk(hex: string): Promise<() => void> {
    const releaseLocal = await this.locks.acquire(hex);
    let shared: HeldLock | undefined;
    try {
      shared = await this.lockService?.acquire(
        { kind: 'chunk', store: this.storePrefix, digest: hex },
        { timeoutMs: CHUNK_LOCK_TIMEOUT_MS },
      );
    } catch (err) {
      releaseLocal();
      throw err;
    }
    return () => {
      shared?.release();
      releaseLocal();
    };
  }

  /** The chunk's lock if nobody holds it in any process, else undefined (the sweep never waits). */
  private async tryLockChunk(hex: string): Promise<(() => void) | undefined> {
    const releaseLocal = this.locks.tryAcquire(hex);
    if (!releaseLocal) return undefined;
    let shared: HeldLock | undefined;
    try {
      shared = await this.lockService?.tryAcquire({ kind: 'chunk', store: this.storePrefix, digest: hex });
    } catch (err) {
      releaseLocal();
      throw err;
    }
    if (this.lockService && !shared) {
      releaseLocal();
      return undefined;
    }
    return () => {
      shared?.release();
      releaseLocal();
    };
  }

  private async withChunkLock<T>(hex: string, fn: () => Promise<T>): Promise<T> {
    const release = await this.lockChunk(hex);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private key(name: string): string {
    return `${this.prefix}${name.slice(0, 4)}/${name}`;
  }

  private cachePath(name: string): string {
    return join(this.chunkDir, name.slice(0, 4), name);
  }

  // ---- the local cache ------------------------------------------------------------------------

  private cacheStat(name: string) {
    return statSync(this.cachePath(name), { throwIfNoEntry: false });
  }

  /** Set the mark (atime) of `name`'s cache file to now, creating an empty marker if missing. */
  private touchMarker(name: string): void {
    const path = this.cachePath(name);
    const st = statSync(path, { throwIfNoEntry: false });
    const now = new Date();
    if (st) {
      utimesSync(path, now, st.mtime);
      return;
    }
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, '');
  }

  /** Keep `blob` as the content of `hex`'s cache file (replacing a marker), newest in the LRU. */
  private cacheContent(hex: string, blob: Uint8Array): void {
    const path = this.cachePath(hex);
    mkdirSync(join(path, '..'), { recursive: true });
    replaceFile(path, blob, { tempPath: `${path}.tmp_${randomBytes(6).toString('hex')}` });
    this.lru.delete(hex);
    this.lru.set(hex, true);
    while (this.lru.size > this.capacity) {
      const oldest = this.lru.keys().next().value as string;
      this.lru.delete(oldest);
      this.evict(oldest);
    }
  }

  /**
   * Replace a cached chunk's content with an empty marker of the same mark, by rename so a
   * concurrent reader sees the whole chunk or the marker (then fetches it from the bucket).
   */
  private evict(hex: string): void {
    const path = this.cachePath(hex);
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st || st.size === 0) return;
    const tmp = `${path}.tmp_${randomBytes(6).toString('hex')}`;
    writeFileSync(tmp, '');
    utimesSync(tmp, st.atime, st.mtime);
    renameSync(tmp, path);
  }

  private dropCacheFile(name: string): void {
    this.lru.delete(name);
    try {
      unlinkSync(this.cachePath(name));
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
    }
  }

  // ---- the bucket -----------------------------------------------------------------------------

  private async head(name: string): Promise<StoredCopy | undefined> {
    try {
      const res = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(name) }));
      return { size: res.ContentLength ?? 0, etag: res.ETag };
    } catch (err) {
      if (isS3Status(err, 404)) return undefined;
      throw s3RequestError(`HEAD ${this.bucket}/${this.key(name)}`, err);
    }
  }

  private async get(name: string, range?: string): Promise<Buffer | undefined> {
    try {
      const res = await this.s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(name), Range: range }),
      );
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (err) {
      if (isS3Status(err, 404)) return undefined;
      throw s3RequestError(`GET ${this.bucket}/${this.key(name)}`, err);
    }
  }

  /** PUT `blob`: only if absent (`ifMatch` undefined) or only over the version `ifMatch` names. */
  private async put(name: string, blob: Uint8Array, ifMatch?: string): Promise<'stored' | 'changed'> {
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(name),
          Body: blob,
          ContentLength: blob.length,
          ContentType: 'application/octet-stream',
          ...(ifMatch === undefined ? { IfNoneMatch: '*' } : { IfMatch: ifMatchValue(ifMatch) }),
        }),
      );
      return 'stored';
    } catch (err) {
      // 412: created or changed since we looked; 409: a concurrent conditional write (AWS)
      if (isS3Status(err, 412) || isS3Status(err, 409)) return 'changed';
      throw s3RequestError(`PUT ${this.bucket}/${this.key(name)}`, err);
    }
  }

  private async *listObjects(prefix: string, signal?: AbortSignal): AsyncGenerator<_Object> {
    let token: string | undefined;
    do {
      signal?.throwIfAborted();
      let page;
      try {
        page = await this.s3.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
        );
      } catch (err) {
        throw s3RequestError(`LIST ${this.bucket}/${prefix}`, err);
      }
      this.assertOpen();
      yield* page.Contents ?? [];
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** The quarantined copies of `hex` in the bucket, by their `<n>`. */
  private async badCopies(hex: string): Promise<Map<number, _Object>> {
    const found = new Map<number, _Object>();
    for await (const obj of this.listObjects(`${this.key(hex)}.`)) {
      const m = OBJECT_NAME.exec(obj.Key!.slice(obj.Key!.lastIndexOf('/') + 1));
      if (m?.[1] === hex && m[2]) found.set(Number(m[2][1]), obj);
    }
    return found;
  }

  // ---- the contract ---------------------------------------------------------------------------

  async insert(digest: Uint8Array, blob: Uint8Array, opts: InsertOptions = {}): Promise<InsertResult> {
    this.assertOpen();
    const hex = digestToHex(digest);
    const kind = opts.crcChecked
      ? checkBlobHeader(blob, `chunk ${hex}`)
      : verifyBlobCrc(blob, `chunk ${hex}`);
    // the SDK may still hold the body after we return; the caller's memory is pooled
    const body = Buffer.from(blob);
    return this.withChunkLock(hex, async () => {
      for (let attempt = 1; ; attempt++) {
        this.assertOpen();
        const cached = this.cacheStat(hex);
        // a cache file with content is the stored copy; a marker or nothing: ask the bucket
        const stored: StoredCopy | undefined =
          cached && cached.size > 0 ? { size: cached.size } : await this.head(hex);
        if (!stored) {
          if ((await this.put(hex, body)) === 'stored') {
            this.cacheContent(hex, body);
            return { duplicate: false, encodedSize: body.length };
          }
        } else {
          const decision = await insertDecision(
            hex,
            this.location,
            { size: stored.size, kind: () => this.storedKind(hex) },
            kind,
            body.length,
          );
          if (decision !== 'replace') {
            this.touchMarker(hex);
            return { duplicate: true, encodedSize: decision === 'duplicate' ? body.length : stored.size };
          }
          const etag = stored.etag ?? (await this.head(hex))?.etag;
          const outcome = etag === undefined ? await this.put(hex, body) : await this.put(hex, body, etag);
          if (outcome === 'stored') {
            this.cacheContent(hex, body);
            return { duplicate: false, encodedSize: body.length };
          }
          // the cached size was stale: decide again from the bucket
          this.dropCacheFile(hex);
        }
        if (attempt >= MAX_INSERT_ATTEMPTS) {
          throw s3RequestError(`PUT ${this.bucket}/${this.key(hex)}`, new Error('the object kept changing'));
        }
      }
    });
  }

  /** The stored copy's blob kind, from its first 8 bytes (cache or a ranged GET). */
  private async storedKind(hex: string): Promise<BlobKind | undefined> {
    const cached = this.cacheStat(hex);
    if (cached && cached.size > 0) return blobKind(readFileSync(this.cachePath(hex)).subarray(0, 8));
    const head = await this.get(hex, 'bytes=0-7');
    return head ? blobKind(head) : undefined;
  }

  async load(digest: Uint8Array, into?: OutputBuffer, opts: LoadOptions = {}): Promise<Buffer> {
    this.assertOpen();
    const hex = digestToHex(digest);
    let bytes: Buffer | undefined;
    if (!opts.stored) {
      try {
        bytes = readFileSync(this.cachePath(hex));
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err;
      }
    }
    if (bytes && bytes.length > 0) {
      this.lru.delete(hex);
      this.lru.set(hex, true);
    } else {
      bytes = await this.get(hex);
      this.assertOpen();
      if (!bytes) throw chunkNotFound(digest);
      // as PBS's cache `access`: a chunk fetched once is kept for the next reader; not what a
      // verify reads, which may be the corruption it is looking for
      if (bytes.length > 0 && !opts.stored)
        await this.withChunkLock(hex, async () => this.cacheContent(hex, bytes!));
    }
    if (!into) return bytes;
    const out = into(bytes.length);
    bytes.copy(out);
    return out;
  }

  /** Asks the bucket unless the chunk's content is cached: a marker may outlive its object. */
  async exists(digest: Uint8Array): Promise<boolean> {
    this.assertOpen();
    const hex = digestToHex(digest);
    const cached = this.cacheStat(hex);
    if (cached && cached.size > 0) return true;
    return (await this.head(hex)) !== undefined;
  }

  async mark(digest: Uint8Array): Promise<boolean> {
    this.assertOpen();
    const hex = digestToHex(digest);
    if (this.cacheStat(hex)) {
      this.touchMarker(hex);
      return true;
    }
    return this.withChunkLock(hex, async () => {
      if (await this.head(hex)) {
        this.touchMarker(hex);
        return true;
      }
      // no chunk: its quarantined copies stay as evidence while an index needs the digest
      for (const n of (await this.badCopies(hex)).keys()) this.touchMarker(`${hex}.${n}.bad`);
      return false;
    });
  }

  async sweep(cutoffs: SweepCutoffs, opts: SweepOptions = {}): Promise<SweepStats> {
    this.assertOpen();
    const { signal } = opts;
    signal?.throwIfAborted();
    const stats = emptySweepStats();
    // names decided for removal, with their locks held until the batch is deleted (as PBS's
    // S3DeleteList): an insert of one of them waits, then finds it gone and uploads it again.
    // One lock per digest: a chunk and its set-aside copies share it.
    let batch: string[] = [];
    let held = new Map<string, () => void>();
    const releaseAll = (locks: Map<string, () => void>) => {
      for (const release of locks.values()) release();
    };
    const deleteBatch = async () => {
      const current = batch;
      const locks = held;
      batch = [];
      held = new Map();
      try {
        if (current.length === 0) return;
        signal?.throwIfAborted();
        await this.beforeSweepDelete?.(current);
        let res;
        try {
          res = await this.s3.send(
            new DeleteObjectsCommand({
              Bucket: this.bucket,
              Delete: { Objects: current.map((name) => ({ Key: this.key(name) })), Quiet: true },
            }),
          );
        } catch (err) {
          throw s3RequestError(`DELETE ${current.length} objects in ${this.bucket}/${this.prefix}`, err);
        }
        const failed = new Set((res.Errors ?? []).map((e) => e.Key));
        for (const name of current) if (!failed.has(this.key(name))) this.dropCacheFile(name);
        if (failed.size > 0) {
          const first = res.Errors![0]!;
          throw s3RequestError(
            `DELETE ${this.bucket}/${first.Key}`,
            new Error(
              `${failed.size} of ${current.length} objects not deleted: ${first.Code} ${first.Message}`,
            ),
          );
        }
      } finally {
        releaseAll(locks);
      }
    };
    let seen = 0;
    try {
      for await (const obj of this.listObjects(this.prefix, signal)) {
        const name = obj.Key!.slice(obj.Key!.lastIndexOf('/') + 1);
        const m = OBJECT_NAME.exec(name);
        if (!m) continue;
        seen++;
        const hex = m[1]!;
        const bad = m[2] !== undefined;
        const inBatch = held.has(hex);
        const release = inBatch ? undefined : await this.tryLockChunk(hex);
        if (!inBatch && !release) {
          // an insert, a mark or a quarantine holds it, in some process: it is in use
          countSwept(stats, 'keep', bad, obj.Size ?? 0);
          continue;
        }
        let verdict: ReturnType<typeof sweepVerdict>;
        try {
          // read under the lock: an insert that only touched the marker did so before this
          verdict = sweepVerdict(this.cacheStat(name)?.atimeMs ?? obj.LastModified!.getTime(), cutoffs);
        } catch (err) {
          release?.();
          throw err;
        }
        countSwept(stats, verdict, bad, obj.Size ?? 0);
        if (verdict === 'remove') {
          batch.push(name);
          if (release) held.set(hex, release);
        } else release?.();
        if (batch.length >= DELETE_BATCH) await deleteBatch();
      }
      await deleteBatch();
    } finally {
      releaseAll(held);
    }
    opts.log?.(`processed ${seen} chunk objects in ${this.location}`);
    await this.sweepCache(cutoffs, signal);
    return stats;
  }

  /**
   * PBS's phase 3: cache files as old as what the sweep removed have no object any more (it
   * was removed with them, or by someone else), and temp files a killed process left.
   */
  private async sweepCache(cutoffs: SweepCutoffs, signal?: AbortSignal): Promise<void> {
    for (const sub of readdirSync(this.chunkDir)) {
      signal?.throwIfAborted();
      const dir = join(this.chunkDir, sub);
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        const st = statSync(path, { throwIfNoEntry: false });
        if (!st) continue;
        const chunk = OBJECT_NAME.exec(name);
        const atime = chunk ? st.atimeMs : st.mtimeMs;
        if (sweepVerdict(atime, cutoffs) !== 'remove') continue;
        // a chunk's file only under its lock, judged again: an insert may have just touched it
        const release = chunk ? await this.tryLockChunk(chunk[1]!) : () => {};
        if (!release) continue;
        try {
          const now = statSync(path, { throwIfNoEntry: false });
          if (now && sweepVerdict(chunk ? now.atimeMs : now.mtimeMs, cutoffs) === 'remove') {
            unlinkSync(path);
            this.lru.delete(name);
          }
        } catch (err) {
          if (errno(err) !== 'ENOENT') throw err;
        } finally {
          release();
        }
      }
    }
  }

  async quarantine(digest: Uint8Array): Promise<string | undefined> {
    this.assertOpen();
    const hex = digestToHex(digest);
    return this.withChunkLock(hex, async () => {
      if (!(await this.head(hex))) {
        this.dropCacheFile(hex);
        return undefined;
      }
      const taken = await this.badCopies(hex);
      let n = 0;
      while (n < 9 && taken.has(n)) n++;
      const bad = `${hex}.${n}.bad`;
      // S3 has no rename: copy, then delete. A crash between leaves the chunk and its copy,
      // and the next verify sets it aside again.
      try {
        await this.s3.send(
          new CopyObjectCommand({
            Bucket: this.bucket,
            Key: this.key(bad),
            CopySource: `${this.bucket}/${this.key(hex)}`,
          }),
        );
        await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(hex) }));
      } catch (err) {
        throw s3RequestError(`quarantine ${this.bucket}/${this.key(hex)}`, err);
      }
      // the chunk's mark goes with it, as a rename does on a filesystem
      this.lru.delete(hex);
      try {
        renameSync(this.cachePath(hex), this.cachePath(bad));
        this.evict(bad);
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err;
        this.touchMarker(bad);
      }
      return `s3://${this.bucket}/${this.key(bad)}`;
    });
  }

  async *list(): AsyncGenerator<ChunkEntry> {
    this.assertOpen();
    for await (const obj of this.listObjects(this.prefix)) {
      const name = obj.Key!.slice(obj.Key!.lastIndexOf('/') + 1);
      const m = OBJECT_NAME.exec(name);
      if (!m) continue;
      yield {
        name,
        digestHex: m[1]!,
        bad: m[2] !== undefined,
        atimeMs: this.cacheStat(name)?.atimeMs ?? obj.LastModified!.getTime(),
        size: obj.Size ?? 0,
      };
    }
  }

  /** A PUT the store answered with success is durable there; nothing is buffered here. */
  async flush(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.s3.destroy();
  }
}
