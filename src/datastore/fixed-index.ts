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
import { ftruncateSync, readFileSync, readSync, writeSync } from 'node:fs';
import { BadRequestError, CorruptDataError, ERR_INDEX_SHORT_READ } from '../errors.js';
import type { SyncLevel } from './chunk-backend.js';
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
 *
 * Without a `size` the index grows with the chunks added (PBS `FixedIndexWriter` with
 * `known_size: None`, for an image read from a pipe — PBS bug 3847): every chunk is a full
 * `chunkSize` except a last, shorter one, after which the size is fixed.
 */
export class FixedIndexWriter {
  readonly chunkSize: number;
  readonly uuid: Buffer;
  readonly ctime: number;
  private currentSize: number;
  private currentCount: number;
  private growable: boolean;
  private readonly file: IndexTmpFile;
  private filled: Uint8Array;
  private unfilled: number;

  private constructor(
    path: string,
    opts: { size?: number; chunkSize: number; uuid?: Uint8Array; ctime?: number; syncLevel?: SyncLevel },
  ) {
    if (opts.size !== undefined && (!Number.isSafeInteger(opts.size) || opts.size < 0)) {
      throw new BadRequestError(`fixed index size must be a non-negative integer, got ${opts.size}`);
    }
    if (!Number.isSafeInteger(opts.chunkSize) || opts.chunkSize <= 0) {
      throw new BadRequestError(`fixed index chunk size must be a positive integer, got ${opts.chunkSize}`);
    }
    this.growable = opts.size === undefined;
    this.currentSize = opts.size ?? 0;
    this.chunkSize = opts.chunkSize;
    this.currentCount = Math.ceil(this.currentSize / opts.chunkSize);
    this.uuid = Buffer.from(opts.uuid ?? randomBytes(16));
    this.ctime = opts.ctime ?? Math.floor(Date.now() / 1000);
    this.filled = new Uint8Array(this.currentCount);
    this.unfilled = this.currentCount;
    const header = encodeFixedIndexHeader({
      uuid: this.uuid,
      ctime: this.ctime,
      csum: Buffer.alloc(32),
      size: this.currentSize,
      chunkSize: this.chunkSize,
    });
    this.file = new IndexTmpFile(path, 'fixed', header, {
      syncLevel: opts.syncLevel ?? 'none',
      fileSize: INDEX_HEADER_SIZE + this.currentCount * DIGEST_SIZE,
    });
  }

  get path(): string {
    return this.file.path;
  }

  get tmpPath(): string {
    return this.file.tmpPath;
  }

  /** Image size in bytes so far (final unless the index is still growable). */
  get size(): number {
    return this.currentSize;
  }

  /** Number of chunks the index has so far. */
  get count(): number {
    return this.currentCount;
  }

  /**
   * Start a new index for an image of `size` bytes cut into `chunkSize` pieces; without `size`,
   * an index that grows with the chunks added.
   */
  static create(
    path: string,
    opts: { size?: number; chunkSize: number; uuid?: Uint8Array; ctime?: number; syncLevel?: SyncLevel },
  ): FixedIndexWriter {
    return new FixedIndexWriter(path, opts);
  }

  /**
   * Grow a growable index to `size` bytes (PBS `grow_to_size`); a size that is not a whole
   * number of chunks ends the growth. A smaller `size` changes nothing.
   */
  growToSize(size: number): void {
    if (size <= this.currentSize) return;
    if (!this.growable) {
      throw new BadRequestError(`refusing to resize fixed index from ${this.currentSize} to ${size}`);
    }
    const count = Math.ceil(size / this.chunkSize);
    if (count * this.chunkSize !== size) this.growable = false;
    if (count > this.filled.length) {
      const filled = new Uint8Array(Math.max(count, this.filled.length * 2));
      filled.set(this.filled);
      this.filled = filled;
    }
    this.unfilled += count - this.currentCount;
    this.currentCount = count;
    this.currentSize = size;
    ftruncateSync(this.file.fd, INDEX_HEADER_SIZE + count * DIGEST_SIZE);
  }

  /** Set the digest of chunk `i`. */
  setDigest(i: number, digest: Uint8Array): void {
    const fd = this.file.fd;
    checkChunkIndex(i, this.currentCount);
    if (digest.length !== DIGEST_SIZE) throw new BadRequestError(`digest must be ${DIGEST_SIZE} bytes`);
    writeSync(fd, digest, 0, DIGEST_SIZE, INDEX_HEADER_SIZE + i * DIGEST_SIZE);
    if (!this.filled[i]) {
      this.filled[i] = 1;
      this.unfilled--;
    }
  }

  /**
   * Set a chunk by its byte range, as the backup protocol's `fixed_chunk` append does (PBS
   * `check_chunk_alignment`): `offset` must be chunk-aligned and `size` the chunk size, smaller
   * only for the last chunk. A growable index grows to the chunk's end first.
   */
  addChunk(offset: number, size: number, digest: Uint8Array): void {
    const end = offset + size;
    if (this.growable) this.growToSize(end);
    if (end > this.currentSize) {
      throw new BadRequestError(`fixed index: chunk data exceeds size (${end} > ${this.currentSize})`);
    }
    if (offset % this.chunkSize !== 0) {
      throw new BadRequestError(
        `fixed index: offset ${offset} is not aligned to chunk size ${this.chunkSize}`,
      );
    }
    const i = offset / this.chunkSize;
    checkChunkIndex(i, this.currentCount);
    const expected = Math.min(this.chunkSize, this.currentSize - offset);
    if (size !== expected) {
      throw new BadRequestError(
        `fixed index: chunk at offset ${offset} has size ${size}, expected ${expected}`,
      );
    }
    this.setDigest(i, digest);
  }

  /** Take every digest from a previous index of the same geometry (incremental backups). */
  cloneFrom(previous: FixedIndexReader): void {
    if (previous.chunkSize !== this.chunkSize || previous.count !== this.currentCount) {
      throw new BadRequestError(
        `cannot reuse index - index sizes not equal (${this.currentCount} != ${previous.count})`,
      );
    }
    for (let i = 0; i < this.currentCount; i++) this.setDigest(i, previous.digest(i));
  }

  /**
   * Write size and index_csum into the header and rename into place (fsync file and directory
   * under sync-level `file`). Every chunk must have been set.
   */
  close(): IndexCloseResult {
    const fd = this.file.fd;
    // PBS: an image of unknown size that got no chunk is no image (an explicit size 0 is valid)
    if (this.growable && this.currentCount === 0) {
      throw new BadRequestError(`fixed index '${this.path}': fidx file must have at least one chunk`);
    }
    if (this.unfilled !== 0) {
      throw new BadRequestError(
        `fixed index '${this.path}': ${this.unfilled} of ${this.currentCount} chunks not written`,
      );
    }
    const hash = createHash('sha256');
    const block = Buffer.alloc(64 * 1024);
    const bodyLen = this.currentCount * DIGEST_SIZE;
    for (let off = 0; off < bodyLen;) {
      const n = readSync(fd, block, 0, Math.min(block.length, bodyLen - off), INDEX_HEADER_SIZE + off);
      if (n === 0) throw ERR_INDEX_SHORT_READ(this.tmpPath);
      hash.update(block.subarray(0, n));
      off += n;
    }
    const csum = hash.digest();
    const sizeField = Buffer.alloc(8);
    sizeField.writeBigUInt64LE(BigInt(this.currentSize));
    writeSync(fd, sizeField, 0, 8, 64);
    this.file.commit(csum);
    return { csum, size: this.currentSize, chunkCount: this.currentCount };
  }

  /** Drop the temp file. Harmless after close(). */
  abort(): void {
    this.file.abort();
  }
}
