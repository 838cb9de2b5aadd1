/**
 * Fixed index `.fidx` (PBS `fixed_index.rs`, reference §7.3): a 4096-byte header, then one
 * 32-byte digest per `chunk_size` slice of an image. All integers little-endian.
 *
 * ```
 * 0    magic[8]       [47,127,65,237,145,253,15,205]
 * 8    uuid[16]
 * 24   ctime i64      seconds since epoch
 * 32   index_csum[32] sha256(d1 || d2 || ...)
 * 64   size u64       image bytes
 * 72   chunk_size u64
 * 80   reserved[4016]
 * ```
 *
 * The parser works on bytes (pure); `open`/the writer are the thin IO around it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readSync, writeSync } from 'node:fs';
import { BadRequestError, CorruptDataError, StowageError } from '../errors.js';
import type { SyncLevel } from './chunk-store.js';
import { DIGEST_SIZE, sha256 } from './digest.js';
import {
  INDEX_HEADER_SIZE,
  IndexTmpFile,
  checkChunkIndex,
  checkIndexCsum,
  decodeIndexHeaderCommon,
  encodeIndexHeaderCommon,
  type ChunkIndexReader,
  type IndexCloseResult,
} from './index-file.js';

/** First 8 bytes of sha256("Proxmox Backup fixed sized chunk index v1.0"). */
export const FIXED_INDEX_MAGIC = Buffer.from([47, 127, 65, 237, 145, 253, 15, 205]);
export const FIXED_INDEX_ENTRY_SIZE = DIGEST_SIZE;

export interface FixedIndexHeader {
  uuid: Uint8Array;
  ctime: number;
  csum: Uint8Array;
  size: number;
  chunkSize: number;
}

/** Encode the 4096-byte `.fidx` header. Pure. */
export function encodeFixedIndexHeader(h: FixedIndexHeader): Buffer {
  const buf = encodeIndexHeaderCommon(FIXED_INDEX_MAGIC, h);
  buf.writeBigUInt64LE(BigInt(h.size), 64);
  buf.writeBigUInt64LE(BigInt(h.chunkSize), 72);
  return buf;
}

function readU64(buf: Buffer, off: number, what: string, field: string): number {
  const v = buf.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new CorruptDataError(`${what}: ${field} ${v} is out of range`);
  return Number(v);
}

export class FixedIndexReader implements ChunkIndexReader {
  readonly kind = 'fixed' as const;
  readonly uuid: Buffer;
  readonly ctime: number;
  readonly csum: Buffer;
  /** Image size in bytes. */
  readonly size: number;
  readonly chunkSize: number;
  readonly count: number;
  private readonly body: Buffer;

  private constructor(bytes: Buffer, what: string) {
    const head = decodeIndexHeaderCommon(bytes, FIXED_INDEX_MAGIC, 'fixed', what);
    this.uuid = head.uuid;
    this.ctime = head.ctime;
    this.csum = head.csum;
    this.size = readU64(bytes, 64, what, 'size');
    this.chunkSize = readU64(bytes, 72, what, 'chunk size');
    if (this.chunkSize === 0) throw new CorruptDataError(`${what}: chunk size is 0`);
    this.count = Math.ceil(this.size / this.chunkSize);
    const expected = INDEX_HEADER_SIZE + this.count * FIXED_INDEX_ENTRY_SIZE;
    if (bytes.length !== expected) {
      throw new CorruptDataError(
        `${what}: wrong file size ${bytes.length} (header describes ${this.count} chunks, expected ${expected})`,
      );
    }
    this.body = bytes.subarray(INDEX_HEADER_SIZE);
  }

  /**
   * Parse a `.fidx` from bytes, checking magic, header and body length; with `verifyCsum`, also
   * that the stored index_csum matches the body. CorruptDataError names `what`.
   */
  static fromBuffer(bytes: Buffer, opts: { what?: string; verifyCsum?: boolean } = {}): FixedIndexReader {
    const what = opts.what ?? 'fixed index';
    return checkIndexCsum(new FixedIndexReader(bytes, what), opts, what);
  }

  static open(path: string, opts: { verifyCsum?: boolean } = {}): FixedIndexReader {
    return FixedIndexReader.fromBuffer(readFileSync(path), { what: `fixed index '${path}'`, ...opts });
  }

  get totalSize(): number {
    return this.size;
  }

  digest(i: number): Buffer {
    checkChunkIndex(i, this.count);
    return Buffer.from(this.body.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE));
  }

  chunkRange(i: number): { start: number; end: number } {
    checkChunkIndex(i, this.count);
    const start = i * this.chunkSize;
    return { start, end: Math.min(start + this.chunkSize, this.size) };
  }

  /** The chunk holding byte `offset` of the image. */
  chunkIndexAt(offset: number): number {
    if (offset < 0 || offset >= this.size) {
      throw new BadRequestError(`offset ${offset} out of range (image has ${this.size} bytes)`);
    }
    return Math.floor(offset / this.chunkSize);
  }

  computeCsum(): Buffer {
    return sha256(this.body);
  }

  *digests(): Generator<Buffer> {
    for (let i = 0; i < this.count; i++) yield this.digest(i);
  }
}

/**
 * Writes a `.fidx` to `<name>.tmp_fidx` and renames it into place on `close()`, so readers
 * never see a half-written index (§7.1). Digests are written in place at their position, so
 * memory stays small for large images.
 */
export class FixedIndexWriter {
  readonly size: number;
  readonly chunkSize: number;
  readonly count: number;
  readonly uuid: Buffer;
  readonly ctime: number;
  private readonly file: IndexTmpFile;
  private readonly filled: Uint8Array;
  private unfilled: number;

  private constructor(
    path: string,
    opts: { size: number; chunkSize: number; uuid?: Uint8Array; ctime?: number; syncLevel?: SyncLevel },
  ) {
    if (!Number.isSafeInteger(opts.size) || opts.size < 0) {
      throw new BadRequestError(`fixed index size must be a non-negative integer, got ${opts.size}`);
    }
    if (!Number.isSafeInteger(opts.chunkSize) || opts.chunkSize <= 0) {
      throw new BadRequestError(`fixed index chunk size must be a positive integer, got ${opts.chunkSize}`);
    }
    this.size = opts.size;
    this.chunkSize = opts.chunkSize;
    this.count = Math.ceil(opts.size / opts.chunkSize);
    this.uuid = Buffer.from(opts.uuid ?? randomBytes(16));
    this.ctime = opts.ctime ?? Math.floor(Date.now() / 1000);
    this.filled = new Uint8Array(this.count);
    this.unfilled = this.count;
    const header = encodeFixedIndexHeader({
      uuid: this.uuid,
      ctime: this.ctime,
      csum: Buffer.alloc(32),
      size: this.size,
      chunkSize: this.chunkSize,
    });
    this.file = new IndexTmpFile(path, 'fixed', header, {
      syncLevel: opts.syncLevel ?? 'none',
      fileSize: INDEX_HEADER_SIZE + this.count * DIGEST_SIZE,
    });
  }

  get path(): string {
    return this.file.path;
  }

  get tmpPath(): string {
    return this.file.tmpPath;
  }

  /** Start a new index for an image of `size` bytes cut into `chunkSize` pieces. */
  static create(
    path: string,
    opts: { size: number; chunkSize: number; uuid?: Uint8Array; ctime?: number; syncLevel?: SyncLevel },
  ): FixedIndexWriter {
    return new FixedIndexWriter(path, opts);
  }

  /** Set the digest of chunk `i`. */
  setDigest(i: number, digest: Uint8Array): void {
    const fd = this.file.fd;
    checkChunkIndex(i, this.count);
    if (digest.length !== DIGEST_SIZE) throw new BadRequestError(`digest must be ${DIGEST_SIZE} bytes`);
    writeSync(fd, digest, 0, DIGEST_SIZE, INDEX_HEADER_SIZE + i * DIGEST_SIZE);
    if (!this.filled[i]) {
      this.filled[i] = 1;
      this.unfilled--;
    }
  }

  /**
   * Set a chunk by its byte range, as the backup protocol's `fixed_chunk` append does: `offset`
   * must be chunk-aligned and `size` the chunk size (smaller only for the last chunk).
   */
  addChunk(offset: number, size: number, digest: Uint8Array): void {
    if (offset % this.chunkSize !== 0) {
      throw new BadRequestError(
        `fixed index: offset ${offset} is not aligned to chunk size ${this.chunkSize}`,
      );
    }
    const i = offset / this.chunkSize;
    checkChunkIndex(i, this.count);
    const expected = Math.min(this.chunkSize, this.size - offset);
    if (size !== expected) {
      throw new BadRequestError(
        `fixed index: chunk at offset ${offset} has size ${size}, expected ${expected}`,
      );
    }
    this.setDigest(i, digest);
  }

  /** Take every digest from a previous index of the same geometry (incremental backups). */
  cloneFrom(previous: FixedIndexReader): void {
    if (previous.size !== this.size || previous.chunkSize !== this.chunkSize) {
      throw new BadRequestError(
        `cannot reuse index: size/chunk size differ (${previous.size}/${previous.chunkSize} vs ${this.size}/${this.chunkSize})`,
      );
    }
    for (let i = 0; i < this.count; i++) this.setDigest(i, previous.digest(i));
  }

  /**
   * Write index_csum into the header and rename into place (fsync file and directory under
   * sync-level `file`). Every chunk must have been set.
   */
  close(): IndexCloseResult {
    const fd = this.file.fd;
    if (this.unfilled !== 0) {
      throw new BadRequestError(
        `fixed index '${this.path}': ${this.unfilled} of ${this.count} chunks not written`,
      );
    }
    const hash = createHash('sha256');
    const block = Buffer.alloc(64 * 1024);
    const bodyLen = this.count * DIGEST_SIZE;
    for (let off = 0; off < bodyLen;) {
      const n = readSync(fd, block, 0, Math.min(block.length, bodyLen - off), INDEX_HEADER_SIZE + off);
      if (n === 0) throw new StowageError('INTERNAL', `fixed index '${this.tmpPath}': short read`);
      hash.update(block.subarray(0, n));
      off += n;
    }
    const csum = hash.digest();
    this.file.commit(csum);
    return { csum, size: this.size, chunkCount: this.count };
  }

  /** Drop the temp file. Harmless after close(). */
  abort(): void {
    this.file.abort();
  }
}
