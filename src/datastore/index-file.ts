/**
 * What `.fidx` and `.didx` share (PBS `fixed_index.rs`/`dynamic_index.rs`, reference §7.3/§7.4):
 * the 4096-byte header that starts `magic[8] uuid[16] ctime i64 index_csum[32]`, the reader
 * interface GC, verify and the protocols use, and the temp-file-then-rename writing (§7.1).
 * The kind-specific parts (header tail, entry layout) stay in `fixed-index.ts`/`dynamic-index.ts`.
 */
import { closeSync, fsyncSync, ftruncateSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { BadRequestError, CorruptDataError, ERR_INDEX_WRITER_CLOSED } from '../errors.js';
import { fsyncDir } from '../sys/atomic-file.js';
import type { SyncLevel } from './chunk-backend.js';

export const INDEX_HEADER_SIZE = 4096;

export type IndexKind = 'fixed' | 'dynamic';

/** What GC, verify and the reader protocol need from either index kind. */
export interface ChunkIndexReader {
  readonly kind: IndexKind;
  readonly uuid: Buffer;
  /** Seconds since epoch. */
  readonly ctime: number;
  /** index_csum as stored in the header. */
  readonly csum: Buffer;
  readonly count: number;
  /** Bytes of archive data the index describes. */
  readonly totalSize: number;
  /** A copy of the i-th digest. */
  digest(i: number): Buffer;
  /** Byte range [start, end) of the i-th chunk within the archive. */
  chunkRange(i: number): { start: number; end: number };
  /** Recompute index_csum from the body. */
  computeCsum(): Buffer;
  digests(): Generator<Buffer>;
}

export interface IndexCloseResult {
  /** index_csum, also what the manifest records as `csum`. */
  csum: Buffer;
  /** Archive data size, what the manifest records as `size`. */
  size: number;
  chunkCount: number;
}

/** The header fields both kinds share. */
export interface IndexHeaderCommon {
  uuid: Uint8Array;
  ctime: number;
  csum: Uint8Array;
}

/** The index kind a file name says (`*.fidx`, `*.didx`), or undefined for any other file. */
export function isIndexFileName(name: string): IndexKind | undefined {
  if (name.endsWith('.fidx')) return 'fixed';
  if (name.endsWith('.didx')) return 'dynamic';
  return undefined;
}

/** A 4096-byte header with magic, uuid, ctime and csum filled in; the rest is zero. Pure. */
export function encodeIndexHeaderCommon(magic: Buffer, h: IndexHeaderCommon): Buffer {
  const buf = Buffer.alloc(INDEX_HEADER_SIZE);
  magic.copy(buf, 0);
  buf.set(h.uuid.subarray(0, 16), 8);
  buf.writeBigInt64LE(BigInt(h.ctime), 24);
  buf.set(h.csum.subarray(0, 32), 32);
  return buf;
}

/**
 * Check the header's size and magic and read the shared fields. Pure; CorruptDataError names
 * `what` and the expected kind.
 */
export function decodeIndexHeaderCommon(
  bytes: Buffer,
  magic: Buffer,
  kind: IndexKind,
  what: string,
): { uuid: Buffer; ctime: number; csum: Buffer } {
  if (bytes.length < INDEX_HEADER_SIZE) {
    throw new CorruptDataError(`${what}: ${bytes.length} bytes is too small for a ${kind} index header`);
  }
  if (!bytes.subarray(0, 8).equals(magic)) {
    throw new CorruptDataError(`${what}: wrong magic number (not a ${kind} index)`);
  }
  return {
    uuid: Buffer.from(bytes.subarray(8, 24)),
    ctime: Number(bytes.readBigInt64LE(24)),
    csum: Buffer.from(bytes.subarray(32, 64)),
  };
}

/** With `verifyCsum`, refuse an index whose stored index_csum does not match its body. */
export function checkIndexCsum<T extends ChunkIndexReader>(
  index: T,
  opts: { verifyCsum?: boolean },
  what: string,
): T {
  if (opts.verifyCsum && !index.computeCsum().equals(index.csum)) {
    throw new CorruptDataError(`${what}: index checksum mismatch`);
  }
  return index;
}

/** Refuse a chunk number outside [0, count). */
export function checkChunkIndex(i: number, count: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= count) {
    throw new BadRequestError(`chunk index ${i} out of range (index has ${count} chunks)`);
  }
}

/** `<x>.fidx` → `<x>.tmp_fidx` (likewise didx), as PBS's `set_extension("tmp_fidx")`. */
export function indexTmpPath(path: string, ext: 'fidx' | 'didx'): string {
  return path.endsWith(`.${ext}`) ? `${path.slice(0, -ext.length)}tmp_${ext}` : `${path}.tmp_${ext}`;
}

/**
 * The temp file an index writer fills: created with its header at `<name>.tmp_<ext>`, renamed
 * over `<name>` by `commit`, so readers never see a half-written index (§7.1).
 */
export class IndexTmpFile {
  readonly path: string;
  readonly tmpPath: string;
  private readonly kind: IndexKind;
  private readonly syncLevel: SyncLevel;
  private openFd: number | undefined;

  /** With `fileSize`, the file is extended to that size up front (a fixed index's body). */
  constructor(
    path: string,
    kind: IndexKind,
    header: Buffer,
    opts: { syncLevel: SyncLevel; fileSize?: number },
  ) {
    this.path = path;
    this.kind = kind;
    this.tmpPath = indexTmpPath(path, kind === 'fixed' ? 'fidx' : 'didx');
    this.syncLevel = opts.syncLevel;
    const fd = openSync(this.tmpPath, 'w+', 0o644);
    try {
      writeSync(fd, header, 0, header.length, 0);
      if (opts.fileSize !== undefined) ftruncateSync(fd, opts.fileSize);
    } catch (err) {
      closeSync(fd);
      unlinkSync(this.tmpPath);
      throw err;
    }
    this.openFd = fd;
  }

  /** The open descriptor; a writer used after close or abort is a bug. */
  get fd(): number {
    if (this.openFd === undefined) throw ERR_INDEX_WRITER_CLOSED(this.kind, this.path);
    return this.openFd;
  }

  /** Refuse use after close, for callers that do not need the descriptor yet. */
  assertOpen(): void {
    void this.fd;
  }

  /** Write index_csum into the header and rename into place (fsync file and directory under sync-level `file`). */
  commit(csum: Buffer): void {
    const fd = this.fd;
    writeSync(fd, csum, 0, 32, 32);
    if (this.syncLevel === 'file') fsyncSync(fd);
    this.openFd = undefined;
    closeSync(fd);
    renameSync(this.tmpPath, this.path);
    if (this.syncLevel === 'file') fsyncDir(dirname(this.path));
  }

  /** Drop the temp file. Harmless after commit(). */
  abort(): void {
    if (this.openFd === undefined) return;
    const fd = this.openFd;
    // forgotten before closing: close(2) releases the descriptor even when it reports an error (EIO)
    this.openFd = undefined;
    closeSync(fd);
    try {
      unlinkSync(this.tmpPath);
    } catch {
      // already gone
    }
  }
}
