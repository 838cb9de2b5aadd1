/**
 * Dynamic index `.didx` (PBS `dynamic_index.rs`, reference §7.4): a 4096-byte header, then one
 * 40-byte entry per chunk, `end_offset u64 LE || digest[32]`, where end_offset is the cumulative
 * end of the chunk in the archive stream.
 *
 * ```
 * 0    magic[8]       [28,145,78,165,25,186,179,205]
 * 8    uuid[16]
 * 24   ctime i64      seconds since epoch
 * 32   index_csum[32] sha256(end1_le || d1 || end2_le || d2 || ...)
 * 64   reserved[4032]
 * ```
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { readFileSync, writeSync } from 'node:fs';
import { BadRequestError, CorruptDataError } from '../errors.js';
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
  type IndexHeaderCommon,
} from './index-file.js';

/** First 8 bytes of sha256("Proxmox Backup dynamic sized chunk index v1.0"). */
export const DYNAMIC_INDEX_MAGIC = Buffer.from([28, 145, 78, 165, 25, 186, 179, 205]);
export const DYNAMIC_INDEX_ENTRY_SIZE = 8 + DIGEST_SIZE;

export type DynamicIndexHeader = IndexHeaderCommon;

/** Encode the 4096-byte `.didx` header. Pure. */
export function encodeDynamicIndexHeader(h: DynamicIndexHeader): Buffer {
  return encodeIndexHeaderCommon(DYNAMIC_INDEX_MAGIC, h);
}

export class DynamicIndexReader implements ChunkIndexReader {
  readonly kind = 'dynamic' as const;
  readonly uuid: Buffer;
  readonly ctime: number;
  readonly csum: Buffer;
  readonly count: number;
  private readonly body: Buffer;

  private constructor(bytes: Buffer, what: string) {
    const head = decodeIndexHeaderCommon(bytes, DYNAMIC_INDEX_MAGIC, 'dynamic', what);
    const bodyLen = bytes.length - INDEX_HEADER_SIZE;
    if (bodyLen % DYNAMIC_INDEX_ENTRY_SIZE !== 0) {
      throw new CorruptDataError(
        `${what}: body of ${bodyLen} bytes is not a whole number of ${DYNAMIC_INDEX_ENTRY_SIZE}-byte entries`,
      );
    }
    this.uuid = head.uuid;
    this.ctime = head.ctime;
    this.csum = head.csum;
    this.body = bytes.subarray(INDEX_HEADER_SIZE);
    this.count = bodyLen / DYNAMIC_INDEX_ENTRY_SIZE;
    // Ranges are derived from consecutive end offsets; a decreasing one would give negative sizes.
    let prev = 0n;
    for (let i = 0; i < this.count; i++) {
      const end = this.body.readBigUInt64LE(i * DYNAMIC_INDEX_ENTRY_SIZE);
      if (end < prev || end > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new CorruptDataError(`${what}: entry ${i} has an invalid end offset ${end}`);
      }
      prev = end;
    }
  }

  /**
   * Parse a `.didx` from bytes, checking magic, header, body length and offsets; with
   * `verifyCsum`, also the stored index_csum. CorruptDataError names `what`.
   */
  static fromBuffer(bytes: Buffer, opts: { what?: string; verifyCsum?: boolean } = {}): DynamicIndexReader {
    const what = opts.what ?? 'dynamic index';
    return checkIndexCsum(new DynamicIndexReader(bytes, what), opts, what);
  }

  static open(path: string, opts: { verifyCsum?: boolean } = {}): DynamicIndexReader {
    return DynamicIndexReader.fromBuffer(readFileSync(path), { what: `dynamic index '${path}'`, ...opts });
  }

  /** Cumulative end offset of chunk i. */
  endOffset(i: number): number {
    checkChunkIndex(i, this.count);
    return Number(this.body.readBigUInt64LE(i * DYNAMIC_INDEX_ENTRY_SIZE));
  }

  get totalSize(): number {
    return this.count === 0 ? 0 : this.endOffset(this.count - 1);
  }

  digest(i: number): Buffer {
    checkChunkIndex(i, this.count);
    const off = i * DYNAMIC_INDEX_ENTRY_SIZE + 8;
    return Buffer.from(this.body.subarray(off, off + DIGEST_SIZE));
  }

  chunkRange(i: number): { start: number; end: number } {
    return { start: i === 0 ? 0 : this.endOffset(i - 1), end: this.endOffset(i) };
  }

  /** The chunk holding byte `offset` of the stream (binary search over end offsets). */
  chunkIndexAt(offset: number): number {
    if (offset < 0 || offset >= this.totalSize) {
      throw new BadRequestError(`offset ${offset} out of range (archive has ${this.totalSize} bytes)`);
    }
    let lo = 0;
    let hi = this.count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.endOffset(mid) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  computeCsum(): Buffer {
    // The on-disk entries are exactly end_le || digest, so the csum is the hash of the body.
    return sha256(this.body);
  }

  *digests(): Generator<Buffer> {
    for (let i = 0; i < this.count; i++) yield this.digest(i);
  }
}

const FLUSH_ENTRIES = 4096;

/**
 * Writes a `.didx` to `<name>.tmp_didx` and renames it into place on `close()`. Entries are
 * appended in stream order and hashed as they go.
 */
export class DynamicIndexWriter {
  readonly uuid: Buffer;
  readonly ctime: number;
  private readonly file: IndexTmpFile;
  private readonly hash: Hash = createHash('sha256');
  private readonly pending = Buffer.alloc(FLUSH_ENTRIES * DYNAMIC_INDEX_ENTRY_SIZE);
  private pendingCount = 0;
  private writePos = INDEX_HEADER_SIZE;
  private lastEnd = 0;
  private count = 0;

  private constructor(path: string, opts: { uuid?: Uint8Array; ctime?: number; syncLevel?: SyncLevel }) {
    this.uuid = Buffer.from(opts.uuid ?? randomBytes(16));
    this.ctime = opts.ctime ?? Math.floor(Date.now() / 1000);
    const header = encodeDynamicIndexHeader({ uuid: this.uuid, ctime: this.ctime, csum: Buffer.alloc(32) });
    this.file = new IndexTmpFile(path, 'dynamic', header, { syncLevel: opts.syncLevel ?? 'none' });
  }

  get path(): string {
    return this.file.path;
  }

  get tmpPath(): string {
    return this.file.tmpPath;
  }

  static create(
    path: string,
    opts: { uuid?: Uint8Array; ctime?: number; syncLevel?: SyncLevel } = {},
  ): DynamicIndexWriter {
    return new DynamicIndexWriter(path, opts);
  }

  /** Append a chunk ending at `endOffset` (cumulative); offsets must increase. */
  addChunk(endOffset: number, digest: Uint8Array): void {
    this.file.assertOpen();
    if (!Number.isSafeInteger(endOffset) || endOffset <= this.lastEnd) {
      throw new BadRequestError(
        `dynamic index: end offset ${endOffset} must be greater than ${this.lastEnd}`,
      );
    }
    if (digest.length !== DIGEST_SIZE) throw new BadRequestError(`digest must be ${DIGEST_SIZE} bytes`);
    const off = this.pendingCount * DYNAMIC_INDEX_ENTRY_SIZE;
    this.pending.writeBigUInt64LE(BigInt(endOffset), off);
    this.pending.set(digest, off + 8);
    this.pendingCount++;
    this.count++;
    this.lastEnd = endOffset;
    if (this.pendingCount === FLUSH_ENTRIES) this.flush();
  }

  private flush(): void {
    const fd = this.file.fd;
    const chunk = this.pending.subarray(0, this.pendingCount * DYNAMIC_INDEX_ENTRY_SIZE);
    this.hash.update(chunk);
    for (let off = 0; off < chunk.length;) {
      const n = writeSync(fd, chunk, off, chunk.length - off, this.writePos);
      off += n;
      this.writePos += n;
    }
    this.pendingCount = 0;
  }

  /** Write index_csum into the header and rename into place (fsync under sync-level `file`). */
  close(): IndexCloseResult {
    this.flush();
    const csum = this.hash.digest();
    this.file.commit(csum);
    return { csum, size: this.lastEnd, chunkCount: this.count };
  }

  /** Drop the temp file. Harmless after close(). */
  abort(): void {
    this.file.abort();
  }
}
