/**
 * The chunk store: content-addressed DataBlob files under `<base>/.chunks/<4 hex>/<64 hex>`,
 * byte-compatible with PBS (reference §7.1). The store holds one descriptor under its path (on
 * `.lock`, as PBS's ProcessLocker does); `close()` releases it so an offline datastore's
 * filesystem can be unmounted (maintenance.md §3.7).
 *
 * IO here is synchronous on purpose: every mutating step for one digest (stat, write temp,
 * rename, touch, sweep's stat + unlink) runs to completion without yielding, which is what PBS's
 * per-store mutex gives it in-process. Across processes the temp + rename keeps files whole.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants as fsConstants,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { promisify } from 'node:util';
import { BadRequestError, CorruptDataError, NotFoundError, StowageError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import { blobKind, decodeBlob, isEncryptedKind, verifyBlobCrc, type BlobKind } from './data-blob.js';
import { digestToHex, sha256 } from './digest.js';

/** PBS `sync-level` datastore option. PBS's default is `filesystem`. */
export type SyncLevel = 'none' | 'filesystem' | 'file';

export interface ChunkStoreOptions {
  syncLevel?: SyncLevel;
  /**
   * Start times (ms since epoch) of writers in other processes; the cross-process operation
   * registry plugs in here. GC never removes chunks younger than the oldest writer.
   */
  externalOldestWriter?: () => number | undefined;
}

export interface ChunkFileInfo {
  /** File name: `<64 hex>` or `<64 hex>.<n>.bad`. */
  name: string;
  path: string;
  digestHex: string;
  /** A chunk renamed by verify because it was corrupt (reference §7.1). */
  bad: boolean;
  atimeMs: number;
  size: number;
  /** Index (0..65535) of the `.chunks` subdirectory, for progress reports. */
  subdir: number;
}

export interface SweepStats {
  removedBytes: number;
  removedChunks: number;
  removedBad: number;
  stillBad: number;
  pendingBytes: number;
  pendingChunks: number;
  diskBytes: number;
  diskChunks: number;
}

export interface InsertResult {
  /** True when an equal-or-smaller copy was already stored and only its atime was touched. */
  duplicate: boolean;
  /** Size of the copy that is now on disk. */
  encodedSize: number;
}

export interface WriterRegistration {
  readonly startTime: number;
  /** Idempotent. */
  release(): void;
}

/** The path holds no chunk store: not created, or the disk is not mounted. */
export class ChunkStoreMissingError extends StowageError {
  constructor(basePath: string, cause?: unknown) {
    super(
      'NOT_FOUND',
      `unable to open chunk store at '${basePath}' - missing .chunks directory (not a datastore, or not mounted?)`,
      { cause },
    );
  }
}

const SUBDIR_COUNT = 0x10000;
const SUBDIR_NAME = /^[0-9a-f]{4}$/;
const CHUNK_NAME = /^[0-9a-fA-F]{64}(\.[0-9]\.bad)?$/;
const execFileAsync = promisify(execFile);

function subdirName(i: number): string {
  return i.toString(16).padStart(4, '0');
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Check a chunk's bytes against its digest: magic and CRC always; for unencrypted chunks also
 * that the plaintext hashes to `digest` and, when given, has `expectedSize` bytes. Encrypted
 * chunks are opaque to the server (their digest includes the client's id key, §7.2).
 */
export function checkChunkBlob(
  digest: Uint8Array,
  bytes: Uint8Array,
  opts: { expectedSize?: number } = {},
): BlobKind {
  const hex = digestToHex(digest);
  const kind = verifyBlobCrc(bytes, `chunk ${hex}`);
  if (isEncryptedKind(kind)) return kind;
  const plain = decodeBlob(bytes, `chunk ${hex}`);
  if (opts.expectedSize !== undefined && plain.length !== opts.expectedSize) {
    throw new CorruptDataError(
      `chunk ${hex}: wrong size (${plain.length} bytes, index expects ${opts.expectedSize})`,
    );
  }
  if (!sha256(plain).equals(Buffer.from(digest))) {
    throw new CorruptDataError(
      `chunk ${hex}: wrong digest (content hashes to ${sha256(plain).toString('hex')})`,
    );
  }
  return kind;
}

export class ChunkStore {
  readonly basePath: string;
  readonly chunkDir: string;
  readonly syncLevel: SyncLevel;
  private lockFd: number | undefined;
  private externalOldestWriter: (() => number | undefined) | undefined;
  private readonly writers = new Map<number, number>();
  private nextWriterId = 1;
  /** Files and dirs written since the last syncFilesystem(), for the fallback without syncfs. */
  private readonly unsynced = new Set<string>();

  private constructor(basePath: string, lockFd: number, opts: ChunkStoreOptions) {
    this.basePath = basePath;
    this.chunkDir = join(basePath, '.chunks');
    this.syncLevel = opts.syncLevel ?? 'filesystem';
    this.lockFd = lockFd;
    this.externalOldestWriter = opts.externalOldestWriter;
  }

  /**
   * Create a chunk store: `basePath` (if needed), an empty `.lock`, `.chunks/0000`…`ffff`
   * (all 65536 subdirectories up front, as PBS does, §7.1). A non-empty directory that is not
   * a datastore is refused (only `lost+found`, as on a freshly formatted disk, is tolerated); an
   * existing datastore is refused unless `reuseExisting`, then it is completed and opened.
   */
  static create(basePath: string, opts: ChunkStoreOptions & { reuseExisting?: boolean } = {}): ChunkStore {
    mkdirSync(basePath, { recursive: true });
    const entries = readdirSync(basePath);
    const isDatastore = entries.includes('.chunks');
    if (isDatastore && !opts.reuseExisting) {
      throw new StowageError('ALREADY_EXISTS', `a datastore already exists at '${basePath}'`);
    }
    if (!isDatastore && entries.some((e) => e !== 'lost+found')) {
      throw new BadRequestError(`path '${basePath}' is not empty and is not a datastore`);
    }
    const chunkDir = join(basePath, '.chunks');
    mkdirSync(chunkDir, { recursive: true });
    const lockPath = join(basePath, '.lock');
    if (!entries.includes('.lock')) writeFileSync(lockPath, '', { mode: 0o644 });
    for (let i = 0; i < SUBDIR_COUNT; i++) {
      try {
        mkdirSync(join(chunkDir, subdirName(i)));
      } catch (err) {
        if (errno(err) !== 'EEXIST') throw err;
      }
    }
    return ChunkStore.open(basePath, opts);
  }

  /** Open an existing chunk store; fails with ChunkStoreMissingError when `.chunks` is absent. */
  static open(basePath: string, opts: ChunkStoreOptions = {}): ChunkStore {
    try {
      if (!statSync(join(basePath, '.chunks')).isDirectory()) throw new ChunkStoreMissingError(basePath);
    } catch (err) {
      if (err instanceof ChunkStoreMissingError) throw err;
      throw new ChunkStoreMissingError(basePath, err);
    }
    const lockPath = join(basePath, '.lock');
    let fd: number;
    try {
      fd = openSync(lockPath, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    } catch (err) {
      // A read-only mount still has to open for restores and read-only verify.
      if (errno(err) !== 'EROFS' && errno(err) !== 'EACCES') throw err;
      fd = openSync(lockPath, 'r');
    }
    return new ChunkStore(basePath, fd, opts);
  }

  get lockPath(): string {
    return join(this.basePath, '.lock');
  }

  get isOpen(): boolean {
    return this.lockFd !== undefined;
  }

  /** Release every descriptor this store holds under its path. Idempotent. */
  close(): void {
    if (this.lockFd === undefined) return;
    const fd = this.lockFd;
    this.lockFd = undefined;
    closeSync(fd);
  }

  private assertOpen(): void {
    if (this.lockFd === undefined) {
      throw new StowageError('INTERNAL', `chunk store at '${this.basePath}' is closed`);
    }
  }

  /** `<base>/.chunks/<first 2 bytes as 4 hex>/<64 hex>` (PBS `digest_to_prefix`, §7.1). */
  chunkPath(digest: Uint8Array): string {
    const hex = digestToHex(digest);
    return join(this.chunkDir, hex.slice(0, 4), hex);
  }

  chunkExists(digest: Uint8Array): boolean {
    return statSync(this.chunkPath(digest), { throwIfNoEntry: false })?.isFile() ?? false;
  }

  /**
   * Store a chunk with PBS's `insert_chunk` rules (§7.1): an existing copy of the same size is
   * only touched (dedup); an existing empty file is overwritten; an encrypted chunk never
   * replaces an unencrypted one; otherwise the smaller copy wins. The blob's CRC is checked
   * first so a damaged upload never replaces a good copy.
   */
  insertChunk(digest: Uint8Array, blob: Uint8Array): InsertResult {
    this.assertOpen();
    const path = this.chunkPath(digest);
    const hex = digestToHex(digest);
    const kind = verifyBlobCrc(blob, `chunk ${hex}`);
    const encodedSize = blob.length;
    const old = statSync(path, { throwIfNoEntry: false });
    if (old) {
      if (!old.isFile()) {
        throw new CorruptDataError(`unexpected file type on store '${this.basePath}' for chunk ${hex}`);
      }
      if (old.size === encodedSize) {
        this.touchChunk(digest);
        return { duplicate: true, encodedSize };
      }
      if (old.size !== 0) {
        // The digest of an encrypted chunk includes the key's id_key (§7.2), so an encrypted
        // copy of an unencrypted chunk is a collision or an attack, never a legitimate upload.
        if (isEncryptedKind(kind)) {
          const oldKind = this.readMagicKind(path);
          if (oldKind !== undefined && !isEncryptedKind(oldKind)) {
            throw new BadRequestError(
              `refusing to overwrite unencrypted chunk ${hex} on store '${this.basePath}' with an encrypted chunk with the same digest`,
            );
          }
        }
        if (old.size < encodedSize) {
          this.touchChunk(digest);
          return { duplicate: true, encodedSize: old.size };
        }
      }
    }
    this.writeChunkFile(path, blob);
    return { duplicate: false, encodedSize };
  }

  private readMagicKind(path: string): BlobKind | undefined {
    const fd = openSync(path, 'r');
    try {
      const head = Buffer.alloc(8);
      const n = readSync(fd, head, 0, 8, 0);
      return blobKind(head.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  }

  private writeChunkFile(path: string, blob: Uint8Array): void {
    // Sync level `file` fsyncs the chunk and its directory right here; `filesystem` leaves
    // both to syncFilesystem(), `none` to the kernel.
    replaceFile(path, blob, {
      fsync: this.syncLevel === 'file',
      tempPath: `${path}.tmp_${randomBytes(6).toString('hex')}`,
    });
    if (this.syncLevel === 'filesystem') {
      this.unsynced.add(path);
      this.unsynced.add(join(path, '..'));
    }
  }

  /** The raw blob bytes as stored, unchecked; NotFoundError when the chunk is missing. */
  loadChunkFile(digest: Uint8Array): Buffer {
    this.assertOpen();
    try {
      return readFileSync(this.chunkPath(digest));
    } catch (err) {
      if (errno(err) === 'ENOENT') throw new NotFoundError(`chunk ${digestToHex(digest)} not found`);
      throw err;
    }
  }

  /**
   * Read a chunk's raw blob bytes after checking them: CRC always, and for unencrypted chunks
   * that the plaintext hashes to `digest`. CorruptDataError names the digest.
   */
  readChunk(digest: Uint8Array): Buffer {
    const bytes = this.loadChunkFile(digest);
    checkChunkBlob(digest, bytes);
    return bytes;
  }

  /** Set a chunk's atime to now, keeping its mtime (PBS `touch_chunk`); NotFoundError if missing. */
  touchChunk(digest: Uint8Array): void {
    if (!this.touchPath(this.chunkPath(digest))) {
      throw new NotFoundError(`chunk ${digestToHex(digest)} not found`);
    }
  }

  /**
   * atime = now, mtime unchanged; false when the file does not exist. Node has no UTIME_OMIT,
   * so mtime is re-set from a stat (sub-microsecond precision is lost, nothing reads it).
   * Explicit utimes is what makes GC independent of `relatime`/`noatime` mounts (§7.6).
   */
  touchPath(path: string): boolean {
    this.assertOpen();
    try {
      const st = statSync(path);
      utimesSync(path, Date.now() / 1000, st.mtimeMs / 1000);
      return true;
    } catch (err) {
      if (errno(err) === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Move a corrupt chunk aside as `<digest>.<n>.bad`, taking the first free n of 0..9 and reusing
   * 9 when all are taken (PBS `rename_corrupted_chunk`). GC keeps `.bad` files while an index
   * still references the digest, so a later good upload can repair the snapshot. Returns the new
   * path, or undefined when the chunk is already gone.
   */
  renameCorruptChunk(digest: Uint8Array): string | undefined {
    this.assertOpen();
    const path = this.chunkPath(digest);
    let n = 0;
    let target = `${path}.${n}.bad`;
    while (n < 9 && statSync(target, { throwIfNoEntry: false })) {
      n++;
      target = `${path}.${n}.bad`;
    }
    try {
      renameSync(path, target);
      return target;
    } catch (err) {
      if (errno(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Paths of `<digest>.0.bad` … `<digest>.9.bad`, existing or not. */
  badChunkPaths(digest: Uint8Array): string[] {
    const path = this.chunkPath(digest);
    return Array.from({ length: 10 }, (_, n) => `${path}.${n}.bad`);
  }

  /**
   * Every chunk file (`<64 hex>` and `<64 hex>.<n>.bad`) with its atime and size, subdirectory
   * by subdirectory; temp files and other names are skipped, a missing subdirectory is fine.
   * A file that vanishes between listing and stat (concurrent sweep) is skipped.
   */
  *chunkFiles(): Generator<ChunkFileInfo> {
    this.assertOpen();
    // List `.chunks` once rather than probing 65536 names: same result on a complete store,
    // much cheaper on one whose subdirectories are missing.
    const subdirs = readdirSync(this.chunkDir)
      .filter((n) => SUBDIR_NAME.test(n))
      .sort();
    for (const sub of subdirs) {
      const i = parseInt(sub, 16);
      const dir = join(this.chunkDir, sub);
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch (err) {
        if (errno(err) === 'ENOENT') continue;
        throw new StowageError(
          'INTERNAL',
          `unable to read chunk subdir '${dir}' - ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
      for (const name of names) {
        if (!CHUNK_NAME.test(name)) continue;
        const path = join(dir, name);
        const st = lstatSync(path, { throwIfNoEntry: false });
        if (!st?.isFile()) continue;
        yield {
          name,
          path,
          digestHex: name.slice(0, 64).toLowerCase(),
          bad: name.length > 64,
          atimeMs: st.atimeMs,
          size: st.size,
          subdir: i,
        };
      }
    }
  }

  /**
   * GC phase 2 (PBS `sweep_unused_chunks`, §7.6): unlink chunk files with atime < `minAtimeMs`;
   * count files with atime < `oldestWriterMs` as pending (both compared in whole seconds), the rest as on disk. `.bad` files are
   * counted apart (removed-bad / still-bad). Yields to the event loop between subdirectories.
   */
  async sweepUnusedChunks(
    minAtimeMs: number,
    oldestWriterMs: number,
    opts: { signal?: AbortSignal; log?: (line: string) => void } = {},
  ): Promise<SweepStats> {
    const s: SweepStats = {
      removedBytes: 0,
      removedChunks: 0,
      removedBad: 0,
      stillBad: 0,
      pendingBytes: 0,
      pendingChunks: 0,
      diskBytes: 0,
      diskChunks: 0,
    };
    const minAtimeS = Math.floor(minAtimeMs / 1000);
    const oldestWriterS = Math.floor(oldestWriterMs / 1000);
    let lastPercent = 0;
    let count = 0;
    let lastSubdir = -1;
    for (const f of this.chunkFiles()) {
      if (f.subdir !== lastSubdir) {
        lastSubdir = f.subdir;
        const percent = Math.floor((f.subdir * 100) / SUBDIR_COUNT);
        if (percent !== lastPercent) {
          lastPercent = percent;
          opts.log?.(`processed ${percent}% (${count} chunks)`);
          await yieldToLoop();
        }
        opts.signal?.throwIfAborted();
      }
      count++;
      // Re-stat right before deciding: the iterator's stat may predate a dedup touch.
      const st = lstatSync(f.path, { throwIfNoEntry: false });
      if (!st) continue;
      // Whole seconds, as PBS compares them: the kernel stamps atimes from a coarse clock that
      // can lag Date.now() by a few ms, so a chunk marked right after phase 1 started would
      // otherwise look older than the oldest writer and be miscounted as pending.
      const atime = Math.floor(st.atimeMs / 1000);
      if (atime < minAtimeS) {
        try {
          unlinkSync(f.path);
        } catch (err) {
          if (errno(err) === 'ENOENT') continue;
          throw err;
        }
        if (f.bad) s.removedBad++;
        else s.removedChunks++;
        s.removedBytes += st.size;
      } else if (atime < oldestWriterS) {
        if (f.bad) s.stillBad++;
        else s.pendingChunks++;
        s.pendingBytes += st.size;
      } else {
        if (f.bad) s.stillBad++;
        else s.diskChunks++;
        s.diskBytes += st.size;
      }
    }
    return s;
  }

  /**
   * Announce a writer whose new chunks are not indexed yet; GC will not sweep chunks touched
   * after the oldest writer's start. `startTimeMs` defaults to now (pass an earlier time when the
   * session began earlier).
   */
  registerWriter(startTimeMs: number = Date.now()): WriterRegistration {
    const id = this.nextWriterId++;
    this.writers.set(id, startTimeMs);
    return {
      startTime: startTimeMs,
      release: () => {
        this.writers.delete(id);
      },
    };
  }

  /** Plug in the cross-process registry's view of active writers (ms since epoch). */
  setExternalOldestWriter(provider: (() => number | undefined) | undefined): void {
    this.externalOldestWriter = provider;
  }

  /** Start time (ms) of the oldest active writer, in this process or (via the provider) others. */
  oldestWriterStart(): number | undefined {
    let oldest: number | undefined;
    for (const t of this.writers.values()) if (oldest === undefined || t < oldest) oldest = t;
    const ext = this.externalOldestWriter?.();
    if (ext !== undefined && (oldest === undefined || ext < oldest)) oldest = ext;
    return oldest;
  }

  /**
   * Make chunks written under sync-level `filesystem` durable. PBS calls syncfs(2); Node has
   * none, so we run `sync -f <base>` (coreutils, which is syncfs on the datastore's filesystem:
   * one flush instead of an fsync per chunk). Without it, fall back to fsync of every chunk file
   * and subdirectory written since the last call.
   */
  async syncFilesystem(): Promise<void> {
    this.assertOpen();
    const pending = [...this.unsynced];
    this.unsynced.clear();
    try {
      await execFileAsync('sync', ['-f', this.basePath]);
      return;
    } catch {
      // fall through to per-file fsync
    }
    for (const p of pending) {
      let fd: number;
      try {
        fd = openSync(p, 'r');
      } catch (err) {
        if (errno(err) === 'ENOENT') continue; // swept or replaced since
        throw err;
      }
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }

  /** Number of files/dirs waiting for syncFilesystem() (for tests and diagnostics). */
  get unsyncedCount(): number {
    return this.unsynced.size;
  }
}
