/**
 * The chunk backend: the only way to a datastore's chunks. A chunk is a DataBlob (reference §7.2)
 * stored under its 32-byte digest; a backend keeps the chunks, their access times (GC's mark,
 * §7.6) and the quarantined copies verify sets aside (`<digest>.<n>.bad`, §7.1).
 *
 * Implementations: the filesystem backend (`chunk-store.ts`, PBS's `.chunks/` layout), the
 * in-memory one (`memory-chunk-backend.ts`) and the S3 one (`s3-chunk-backend.ts`, PBS 4's bucket
 * layout with a local cache holding the marks). Every implementation passes the one conformance
 * suite in `test/suites/chunk-backend-conformance.ts`.
 *
 * Digests are never checked against content here except where a method says so: the protocol
 * layer checks uploads (encrypted chunks are opaque to the server, §7.2), verify checks reads.
 */
import { BadRequestError, CorruptDataError, NotFoundError, StowageError } from '../errors.js';
import { decodeBlob, isEncryptedKind, verifyBlobCrc, type BlobKind, type OutputBuffer } from './data-blob.js';
import { digestToHex, sha256 } from './digest.js';

/** PBS `sync-level` datastore option. PBS's default is `filesystem`. */
export type SyncLevel = 'none' | 'filesystem' | 'file';

export interface InsertOptions {
  crcChecked?: boolean;
}

export interface LoadOptions {
  stored?: boolean;
}

export interface InsertResult {
  /** True when an equal-or-smaller copy was already stored and only its atime was touched. */
  duplicate: boolean;
  /** Size of the copy that is now stored. */
  encodedSize: number;
}

/** One stored object, as `list()` yields it. */
export interface ChunkEntry {
  /** `<64 hex>` for a chunk, `<64 hex>.<n>.bad` for a quarantined copy. */
  name: string;
  digestHex: string;
  /** A copy quarantined by verify because it was corrupt (reference §7.1). */
  bad: boolean;
  atimeMs: number;
  size: number;
}

/** GC phase 2 counters (PBS `GarbageCollectionStatus` minus the index counts). */
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

/** The two times GC computes before phase 1 (gc.ts); both in ms since the epoch. */
export interface SweepCutoffs {
  /** Objects last marked before this are removed. */
  minAtimeMs: number;
  /** Start of the oldest active writer: unremoved objects older than this count as pending. */
  oldestWriterMs: number;
}

export interface SweepOptions {
  /** Checked between batches; an abort rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Progress lines for the GC task log. */
  log?: (line: string) => void;
}

/** The backend was closed; using it is a programming error, not an operator's problem. */
export class ChunkBackendClosedError extends StowageError {
  constructor(where: string) {
    super('INTERNAL', `chunk store at '${where}' is closed`);
  }
}

export function emptySweepStats(): SweepStats {
  return {
    removedBytes: 0,
    removedChunks: 0,
    removedBad: 0,
    stillBad: 0,
    pendingBytes: 0,
    pendingChunks: 0,
    diskBytes: 0,
    diskChunks: 0,
  };
}

/**
 * Where one object goes in a sweep, as PBS's `sweep_unused_chunks` decides: times compared in
 * whole seconds (a filesystem stamps atimes from a coarse clock that can lag Date.now() by a few
 * ms, so a chunk marked right after phase 1 started would otherwise look older than the oldest
 * writer). Every backend's sweep counts through this one function.
 */
export function sweepVerdict(atimeMs: number, cutoffs: SweepCutoffs): 'remove' | 'pending' | 'keep' {
  const atime = Math.floor(atimeMs / 1000);
  if (atime < Math.floor(cutoffs.minAtimeMs / 1000)) return 'remove';
  if (atime < Math.floor(cutoffs.oldestWriterMs / 1000)) return 'pending';
  return 'keep';
}

/**
 * What `insert` does when a copy of `storedSize` bytes is stored under the digest (the contract's
 * rules, PBS `insert_chunk` §7.1), for a backend that learns the stored size before it writes
 * (S3). `storedKind` is asked for only when it matters: an encrypted blob of another size than a
 * non-empty unencrypted copy is refused (BadRequestError) instead of replacing or joining it.
 */
export async function insertDecision(
  hex: string,
  where: string,
  stored: { size: number; kind: () => Promise<BlobKind | undefined> },
  newKind: BlobKind,
  newSize: number,
): Promise<'duplicate' | 'keep-stored' | 'replace'> {
  if (stored.size === newSize) return 'duplicate';
  if (stored.size === 0) return 'replace';
  if (isEncryptedKind(newKind)) {
    const storedKind = await stored.kind();
    if (storedKind !== undefined && !isEncryptedKind(storedKind)) {
      throw new BadRequestError(
        `refusing to overwrite unencrypted chunk ${hex} on store '${where}' with an encrypted chunk with the same digest`,
      );
    }
  }
  return stored.size < newSize ? 'keep-stored' : 'replace';
}

/** Add one object's fate to `s` (`.bad` copies are counted apart: removed-bad / still-bad). */
export function countSwept(
  s: SweepStats,
  verdict: 'remove' | 'pending' | 'keep',
  bad: boolean,
  size: number,
): void {
  if (verdict === 'remove') {
    if (bad) s.removedBad++;
    else s.removedChunks++;
    s.removedBytes += size;
  } else if (verdict === 'pending') {
    if (bad) s.stillBad++;
    else s.pendingChunks++;
    s.pendingBytes += size;
  } else {
    if (bad) s.stillBad++;
    else s.diskChunks++;
    s.diskBytes += size;
  }
}

/**
 * A chunk backend. Methods may be called concurrently; each one is atomic for its digest (an
 * insert and a sweep of the same digest never interleave halfway). All methods reject with
 * ChunkBackendClosedError after `close()`.
 */
export interface ChunkBackend {
  /**
   * Store `blob` under `digest` with PBS's `insert_chunk` rules (§7.1). The blob's magic and CRC
   * are checked first (CorruptDataError), so a damaged upload never replaces a good copy.
   * - Idempotent: a stored copy of the same size is only marked (its atime set to now) and the
   *   result says `duplicate`.
   * - An encrypted blob of another size never replaces an unencrypted copy (BadRequestError, even
   *   when it is smaller): an encrypted chunk's digest includes the key's id (§7.2), so that is a
   *   collision or an attack.
   * - Otherwise, when sizes differ, the smaller copy wins: a larger blob leaves the stored copy in place (only
   *   marked, `duplicate`, `encodedSize` of the stored copy); a smaller one replaces it.
   * - A stored zero-length object (a crash leftover) is always replaced.
   * A replacement is atomic: readers see the old or the new copy, never a part. The backend keeps
   * no reference to `blob` once the promise settles: the caller may reuse its memory (the
   * server's uploads are pooled memory). `crcChecked`: the caller has just computed the CRC
   * (the upload check rewrites it), so it is not computed a second time.
   */
  insert(digest: Uint8Array, blob: Uint8Array, opts?: InsertOptions): Promise<InsertResult>;

  /**
   * The raw blob bytes as stored, unchecked (the reader protocol sends them as they are; verify
   * checks them with `checkChunkBlob`). NotFoundError (code NOT_FOUND) when no chunk is stored
   * under `digest`; quarantined copies are never returned. `into` provides the memory (e.g.
   * pooled, for the reader protocol's downloads). `opts.stored`: read the stored copy itself,
   * past any cache (verify: PBS 4 verifies an S3 datastore's chunks from the bucket); the same
   * as without it where the stored copy is what `load` reads anyway.
   */
  load(digest: Uint8Array, into?: OutputBuffer, opts?: LoadOptions): Promise<Buffer>;

  /** Whether a chunk (not a quarantined copy) is stored under `digest`. */
  exists(digest: Uint8Array): Promise<boolean>;

  /**
   * GC phase 1: set the chunk's atime to now, so the next sweep keeps it. Returns false when no
   * chunk is stored under `digest`; then the quarantined copies of the digest are marked instead,
   * so they stay as evidence while an index needs the digest (a later good upload makes them
   * removable). Never fails for a missing chunk.
   */
  mark(digest: Uint8Array): Promise<boolean>;

  /**
   * GC phase 2 (PBS `sweep_unused_chunks`, §7.6): remove every object (chunk or quarantined copy)
   * whose atime is before `cutoffs.minAtimeMs`; of the rest, count those before
   * `cutoffs.oldestWriterMs` as pending and the others as on disk (see `sweepVerdict`). An object
   * removed concurrently is skipped. Rejects when `opts.signal` aborts (what was removed by then
   * stays removed; nothing that should be kept is ever removed).
   */
  sweep(cutoffs: SweepCutoffs, opts?: SweepOptions): Promise<SweepStats>;

  /**
   * Set a corrupt chunk aside as `<digest>.<n>.bad`, taking the first free n of 0..9 and
   * replacing 9 when all are taken (PBS `rename_corrupted_chunk`); afterwards no chunk is stored
   * under `digest`. Returns where the copy now is, for logs (a path, a key), or undefined when no
   * chunk was stored.
   */
  quarantine(digest: Uint8Array): Promise<string | undefined>;

  /**
   * Every stored object, chunks and quarantined copies, with atime and size, in no particular
   * order. Objects inserted or removed during the listing may or may not appear.
   */
  list(): AsyncIterable<ChunkEntry>;

  /**
   * Make every chunk inserted so far durable (sync-level `filesystem`: one flush before a manifest
   * that needs them is written, PBS `try_ensure_sync_level`). A no-op where inserts are already
   * durable.
   */
  flush(): Promise<void>;

  /** Release every resource the backend holds (descriptors, connections). Idempotent. */
  close(): Promise<void>;
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

/**
 * A chunk's raw bytes after `checkChunkBlob`: CorruptDataError names the digest, NotFoundError
 * when it is missing.
 */
export async function readCheckedChunk(backend: ChunkBackend, digest: Uint8Array): Promise<Buffer> {
  const bytes = await backend.load(digest);
  checkChunkBlob(digest, bytes);
  return bytes;
}

/** The NotFoundError every backend's `load` rejects with for a missing chunk. */
export function chunkNotFound(digest: Uint8Array): NotFoundError {
  return new NotFoundError(`chunk ${digestToHex(digest)} not found`);
}
