/**
 * The filesystem chunk backend (the chunk store): content-addressed DataBlob files under
 * `<base>/.chunks/<4 hex>/<64 hex>`, byte-compatible with PBS (reference §7.1). Its contract is
 * `ChunkBackend` (chunk-backend.ts); paths stay inside this file. The store holds one descriptor
 * under its path (on `.lock`, as PBS's ProcessLocker does); `close()` releases it so an offline
 * datastore's filesystem can be unmounted (maintenance.md §3.7). It never flocks `.lock`: that
 * file is also the datastore's GC lock in the local lock service (local-lock-service.ts), which
 * flocks it on a descriptor of its own, so only GC runs exclude each other.
 *
 * The methods are async (the interface's), but their IO is synchronous on purpose: every
 * mutating step for one digest (stat, write temp, rename, touch, sweep's stat + unlink) runs to
 * completion without yielding, which is what PBS's per-store mutex gives it in-process, and it
 * is faster than libuv's thread pool for small files. Across processes the temp + rename keeps
 * files whole.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants as fsConstants,
  fstatSync,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
} from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import {
  BadRequestError,
  CorruptDataError,
  ERR_CHUNK_DIR_UNREADABLE,
  ERR_DATASTORE_FULL,
  ERR_DATASTORE_PATH_IN_USE,
  StowageError,
} from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import { syncFilesystem } from '../sys/syncfs.js';
import {
  ChunkBackendClosedError,
  chunkNotFound,
  countSwept,
  emptySweepStats,
  sweepVerdict,
  type ChunkBackend,
  type ChunkEntry,
  type InsertOptions,
  type InsertResult,
  type SweepCutoffs,
  type SweepOptions,
  type SweepStats,
  type SyncLevel,
} from './chunk-backend.js';
import {
  blobKind,
  isEncryptedKind,
  checkBlobHeader,
  verifyBlobCrc,
  type BlobKind,
  type OutputBuffer,
} from './data-blob.js';
import { digestToHex } from './digest.js';

export interface ChunkStoreOptions {
  syncLevel?: SyncLevel;
  /** EARLY_WRITEBACK_BYTES, smaller in tests. */
  earlyWritebackBytes?: number;
  /**
   * Fault injection for tests: called in the sweep between deciding to remove `name` and
   * removing it, where another process's re-insert can land (test/faults/gc-sweep-race.test.ts).
   */
  beforeSweepRemove?: (name: string) => void;
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
/**
 * What a killed process leaves in a chunk directory: a write's temp file (`replaceFile`) or a
 * sweep's set-aside copy (`removeUnlessTouched`). Never a chunk; the sweep removes them once
 * they are older than its cutoff (no live writer is that old).
 */
const LEFTOVER_NAME = /^[0-9a-fA-F]{64}(\.[0-9]\.bad)?\.(tmp|gc)_[0-9a-f]{12}$/;

/**
 * Sync-level `filesystem`: once this many bytes of chunk files were written since the last
 * writeback began, a syncfs starts in the background, so that the disk takes them while the upload
 * goes on and the flush() that ends a backup finds little left. The kernel starts writing dirty
 * pages back only after 30 s or beyond `dirty_background_ratio` (10 % of memory): without this, a
 * backup's chunks are all written at its end while the client waits (docs/performance.md,
 * nineteenth round).
 */
const EARLY_WRITEBACK_BYTES = 64 * 1024 * 1024;

function subdirName(i: number): string {
  return i.toString(16).padStart(4, '0');
}

/**
 * `<base>/.chunks/<first 2 bytes as 4 hex>/<64 hex>` (PBS `digest_to_prefix`, §7.1): the on-disk
 * layout, for tools and tests that inspect a datastore's files. The backend never hands out paths.
 */
export function chunkFilePath(basePath: string, digest: Uint8Array): string {
  const hex = digestToHex(digest);
  return join(basePath, '.chunks', hex.slice(0, 4), hex);
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** A chunk file found by the listing, with where it is. */
interface ChunkFile extends ChunkEntry {
  path: string;
  /** Index (0..65535) of the `.chunks` subdirectory, for progress reports. */
  subdir: number;
  /** A temp or set-aside file a killed process left (LEFTOVER_NAME), not a chunk. */
  leftover: boolean;
}

export class FilesystemChunkBackend implements ChunkBackend {
  readonly syncLevel: SyncLevel;
  private readonly basePath: string;
  private readonly chunkDir: string;
  private lockFd: number | undefined;
  /** Files and dirs written since the last flush(), for the fallback without syncfs. */
  private readonly unsynced = new Set<string>();
  /** Chunk bytes written since the last early writeback began, and that writeback while it runs. */
  private writtenSinceWriteback = 0;
  private writeback: Promise<void> | undefined;
  private readonly earlyWritebackBytes: number;
  private readonly beforeSweepRemove: ((name: string) => void) | undefined;

  private constructor(basePath: string, lockFd: number, opts: ChunkStoreOptions) {
    this.basePath = basePath;
    this.beforeSweepRemove = opts.beforeSweepRemove;
    this.chunkDir = join(basePath, '.chunks');
    this.syncLevel = opts.syncLevel ?? 'filesystem';
    this.earlyWritebackBytes = opts.earlyWritebackBytes ?? EARLY_WRITEBACK_BYTES;
    this.lockFd = lockFd;
  }

  /**
   * Create a chunk store: `basePath` (if needed), an empty `.lock`, `.chunks/0000`…`ffff`
   * (all 65536 subdirectories up front, as PBS does, §7.1). A non-empty directory that is not
   * a datastore is refused (only `lost+found`, as on a freshly formatted disk, is tolerated); an
   * existing datastore is refused unless `reuseExisting`, then it is completed and opened.
   */
  static async create(
    basePath: string,
    opts: ChunkStoreOptions & { reuseExisting?: boolean } = {},
  ): Promise<FilesystemChunkBackend> {
    // Asynchronous, so that the 65536 mkdirs (seconds on a slow disk, unbounded on a hung
    // network mount) run on libuv's thread pool and never hold up the server's event loop.
    await mkdir(basePath, { recursive: true });
    const entries = await readdir(basePath);
    const isDatastore = entries.includes('.chunks');
    if (isDatastore && !opts.reuseExisting) {
      throw ERR_DATASTORE_PATH_IN_USE(basePath);
    }
    if (!isDatastore && entries.some((e) => e !== 'lost+found')) {
      throw new BadRequestError(`path '${basePath}' is not empty and is not a datastore`);
    }
    const chunkDir = join(basePath, '.chunks');
    await mkdir(chunkDir, { recursive: true });
    const lockPath = join(basePath, '.lock');
    if (!entries.includes('.lock')) await writeFile(lockPath, '', { mode: 0o644 });
    const mkSubdir = async (i: number) => {
      try {
        await mkdir(join(chunkDir, subdirName(i)));
      } catch (err) {
        if (errno(err) !== 'EEXIST') throw err;
      }
    };
    // a few at a time: enough to keep the thread pool busy without queueing 65536 requests
    const PARALLEL = 16;
    for (let i = 0; i < SUBDIR_COUNT; i += PARALLEL) {
      await Promise.all(
        Array.from({ length: Math.min(PARALLEL, SUBDIR_COUNT - i) }, (_, k) => mkSubdir(i + k)),
      );
    }
    return FilesystemChunkBackend.open(basePath, opts);
  }

  /** Open an existing chunk store; fails with ChunkStoreMissingError when `.chunks` is absent. */
  static open(basePath: string, opts: ChunkStoreOptions = {}): FilesystemChunkBackend {
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
    return new FilesystemChunkBackend(basePath, fd, opts);
  }

  get isOpen(): boolean {
    return this.lockFd !== undefined;
  }

  /** close(), for callers that cannot wait (the datastore handle's synchronous close). */
  closeSync(): void {
    if (this.lockFd === undefined) return;
    const fd = this.lockFd;
    this.lockFd = undefined;
    closeSync(fd);
  }

  async close(): Promise<void> {
    this.closeSync();
    // its syncfs holds the file system open (an unmount right after would fail with EBUSY)
    await this.writebackSettled();
  }

  /** Settles when no early writeback runs. */
  async writebackSettled(): Promise<void> {
    while (this.writeback) await this.writeback;
  }

  private assertOpen(): void {
    if (this.lockFd === undefined) throw new ChunkBackendClosedError(this.basePath);
  }

  private chunkPath(digest: Uint8Array): string {
    return chunkFilePath(this.basePath, digest);
  }

  async exists(digest: Uint8Array): Promise<boolean> {
    this.assertOpen();
    return statSync(this.chunkPath(digest), { throwIfNoEntry: false })?.isFile() ?? false;
  }

  async insert(digest: Uint8Array, blob: Uint8Array, opts: InsertOptions = {}): Promise<InsertResult> {
    this.assertOpen();
    const path = this.chunkPath(digest);
    const hex = digestToHex(digest);
    const kind = opts.crcChecked
      ? checkBlobHeader(blob, `chunk ${hex}`)
      : verifyBlobCrc(blob, `chunk ${hex}`);
    const encodedSize = blob.length;
    const old = statSync(path, { throwIfNoEntry: false });
    if (old) {
      if (!old.isFile()) {
        throw new CorruptDataError(`unexpected file type on store '${this.basePath}' for chunk ${hex}`);
      }
      if (old.size === encodedSize) {
        if (this.touchExisting(path, old.ino)) return { duplicate: true, encodedSize };
        this.writeChunkFile(path, blob); // swept meanwhile: store our copy
        return { duplicate: false, encodedSize };
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
        if (old.size < encodedSize && this.touchExisting(path, old.ino)) {
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
    // both to flush(), `none` to the kernel.
    try {
      replaceFile(path, blob, {
        fsync: this.syncLevel === 'file',
        tempPath: `${path}.tmp_${randomBytes(6).toString('hex')}`,
      });
    } catch (err) {
      // the temp file is gone again (replaceFile); say what happened, not just the errno
      const code = errno(err);
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw ERR_DATASTORE_FULL.withOptions({ cause: err }, this.basePath, `chunk ${basename(path)}`);
      }
      throw err;
    }
    if (this.syncLevel === 'filesystem') {
      this.unsynced.add(path);
      this.unsynced.add(join(path, '..'));
      this.writtenSinceWriteback += blob.length;
      if (this.writtenSinceWriteback >= this.earlyWritebackBytes && !this.writeback) this.startWriteback();
    }
  }

  /**
   * An early writeback, and the next one at once when another EARLY_WRITEBACK_BYTES arrived while
   * it ran. A speed-up only: a failure is left to the next flush().
   */
  private startWriteback(): void {
    this.writtenSinceWriteback = 0;
    const next = () => {
      this.writeback = undefined;
      if (this.isOpen && this.writtenSinceWriteback >= this.earlyWritebackBytes) this.startWriteback();
    };
    this.writeback = syncFilesystem(this.basePath).then(next, next);
  }

  async load(digest: Uint8Array, into?: OutputBuffer): Promise<Buffer> {
    this.assertOpen();
    try {
      if (!into) return readFileSync(this.chunkPath(digest));
      const fd = openSync(this.chunkPath(digest), 'r');
      try {
        const out = into(fstatSync(fd).size);
        let got = 0;
        while (got < out.length) {
          const n = readSync(fd, out, got, out.length - got, got);
          if (n === 0) break;
          got += n;
        }
        // a file shortened meanwhile (it never is: chunks are replaced by rename) reads short
        return out.subarray(0, got);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if (errno(err) === 'ENOENT') throw chunkNotFound(digest);
      throw err;
    }
  }

  async mark(digest: Uint8Array): Promise<boolean> {
    this.assertOpen();
    const path = this.chunkPath(digest);
    if (touchPath(path)) return true;
    // Keep the corrupt copies verify set aside: they are the only evidence, and a later good
    // upload makes them removable once no index needs the digest.
    for (let n = 0; n < 10; n++) touchPath(`${path}.${n}.bad`);
    return false;
  }

  /**
   * The insert-time touch of a chunk file just stat'ed (inode `ino`), as PBS's insert_chunk: the
   * atime keeps the sweep of a concurrent GC from removing it. False when the file is gone or
   * replaced by then, and the caller stores its own copy. The file is looked up again after the
   * touch: a sweep in another process that set it aside (see `sweep`) before the touch landed
   * may remove it, so only a touch followed by the file still being in place counts.
   */
  private touchExisting(path: string, ino: number): boolean {
    if (!touchPath(path)) return false;
    return statSync(path, { throwIfNoEntry: false })?.ino === ino;
  }

  async quarantine(digest: Uint8Array): Promise<string | undefined> {
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

  async *list(): AsyncGenerator<ChunkEntry> {
    for (const f of this.files()) {
      if (f.leftover) continue;
      yield { name: f.name, digestHex: f.digestHex, bad: f.bad, atimeMs: f.atimeMs, size: f.size };
    }
  }

  /**
   * Every chunk file (`<64 hex>` and `<64 hex>.<n>.bad`) with its atime and size, subdirectory
   * by subdirectory; temp files and other names are skipped, a missing subdirectory is fine.
   * A file that vanishes between listing and stat (concurrent sweep) is skipped.
   */
  private *files(): Generator<ChunkFile> {
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
        throw ERR_CHUNK_DIR_UNREADABLE.withOptions({ cause: err }, dir, (err as Error).message);
      }
      for (const name of names) {
        const leftover = LEFTOVER_NAME.test(name);
        if (!leftover && !CHUNK_NAME.test(name)) continue;
        const path = join(dir, name);
        const st = lstatSync(path, { throwIfNoEntry: false });
        if (!st?.isFile()) continue;
        yield {
          name,
          path,
          leftover,
          digestHex: name.slice(0, 64).toLowerCase(),
          bad: /^.{64}\.[0-9]\.bad$/.test(name),
          atimeMs: st.atimeMs,
          size: st.size,
          subdir: i,
        };
      }
    }
  }

  /** Yields to the event loop and logs progress between subdirectories. */
  async sweep(cutoffs: SweepCutoffs, opts: SweepOptions = {}): Promise<SweepStats> {
    const s = emptySweepStats();
    let lastPercent = 0;
    let count = 0;
    let lastSubdir = -1;
    for (const f of this.files()) {
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
      // Re-stat right before deciding: the iterator's stat may predate a dedup touch.
      const st = lstatSync(f.path, { throwIfNoEntry: false });
      if (!st) continue;
      if (f.leftover) {
        // by its modification time: a write in progress keeps changing it
        if (st.mtimeMs < cutoffs.minAtimeMs) {
          unlinkIfPresent(f.path);
          opts.log?.(`removed leftover file ${f.name}`);
        }
        continue;
      }
      count++;
      let verdict = sweepVerdict(st.atimeMs, cutoffs);
      if (verdict === 'remove') {
        this.beforeSweepRemove?.(f.name);
        const outcome = removeUnlessTouched(f.path, cutoffs);
        if (outcome === 'gone') continue;
        verdict = outcome;
      }
      countSwept(s, verdict, f.bad, st.size);
    }
    return s;
  }

  /**
   * Sync-level `filesystem`: PBS calls syncfs(2); Node has none, so we run `sync -f <base>`
   * (coreutils, which is syncfs on the datastore's filesystem: one flush instead of an fsync per
   * chunk). Without it, fall back to fsync of every chunk file and subdirectory written since the
   * last call.
   */
  async flush(): Promise<void> {
    this.assertOpen();
    const pending = [...this.unsynced];
    this.unsynced.clear();
    // Not waiting for early writebacks (under steady uploads one follows the other): the helper
    // runs this syncfs after the one under way, and it writes what that one missed.
    try {
      await syncFilesystem(this.basePath);
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

  /** Number of files/dirs waiting for flush() (for tests and diagnostics). */
  get unsyncedCount(): number {
    return this.unsynced.size;
  }
}

/**
 * Remove a chunk file the sweep found unused, unless a re-insert in another process touched it
 * meanwhile (issue 2's note: the stat -> unlink window of PBS's sweep). The file is first moved
 * aside under a name no reader or insert uses, then its atime is read again: a touch that landed
 * before the move shows there and the file goes back; a touch after it finds no file, and that
 * insert stores its own copy (`touchExisting`). In one process the sync IO makes this atomic
 * anyway; across processes (a graceful restart's two servers) this is what keeps the chunk.
 */
function removeUnlessTouched(path: string, cutoffs: SweepCutoffs): 'remove' | 'pending' | 'keep' | 'gone' {
  const aside = `${path}.gc_${randomBytes(6).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if (errno(err) === 'ENOENT') return 'gone';
    throw err;
  }
  const verdict = sweepVerdict(lstatSync(aside).atimeMs, cutoffs);
  // Back in place if touched; a concurrent insert may have stored a fresh copy by now, with the
  // same digest and so the same content.
  if (verdict !== 'remove') renameSync(aside, path);
  else unlinkSync(aside);
  return verdict;
}

function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw err;
  }
}

/**
 * atime = now, mtime unchanged; false when the file does not exist. Node has no UTIME_OMIT,
 * so mtime is re-set from a stat (sub-microsecond precision is lost, nothing reads it).
 * Explicit utimes is what makes GC independent of `relatime`/`noatime` mounts (§7.6).
 */
function touchPath(path: string): boolean {
  try {
    const st = statSync(path);
    utimesSync(path, Date.now() / 1000, st.mtimeMs / 1000);
    return true;
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
}
