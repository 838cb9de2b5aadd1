/**
 * Random access into the archive a chunk index describes (PBS `BufferedDynamicReader` /
 * `LocalDynamicReadAt`): a read at an offset finds the chunk holding it by binary search over
 * the chunks' end offsets and decodes only the chunks it touches. The last few decoded chunks are
 * kept, because pxar lookups and catalog listings read small pieces close to each other.
 * Used on the server (chunks from the datastore) and in the client (chunks over a reader session).
 */
import type { ChunkIndexReader } from './index-file.js';

/** Decoded chunks kept (each up to 16 MiB; typically 4 MiB). */
const DEFAULT_CACHED_CHUNKS = 4;

export interface ArchiveReadAt {
  /** Bytes of the archive. */
  readonly size: number;
  /** Up to `length` bytes at `offset`; fewer only at the end of the archive. */
  read(offset: number, length: number): Promise<Buffer>;
}

export class IndexReadAt implements ArchiveReadAt {
  private readonly cache = new Map<number, Promise<Buffer>>();

  /**
   * `loadChunk(i)`: the i-th chunk's plaintext, checked against its digest and its size in the
   * index (the caller's reader does that: `readDecodedChunk`, the client's worker pool).
   */
  constructor(
    private readonly index: ChunkIndexReader,
    private readonly loadChunk: (i: number) => Promise<Buffer>,
    private readonly cachedChunks = DEFAULT_CACHED_CHUNKS,
  ) {}

  get size(): number {
    return this.index.totalSize;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    for (let pos = offset, i = this.chunkAt(offset); pos < end; i++) {
      const range = this.index.chunkRange(i);
      const data = await this.chunk(i);
      const piece = data.subarray(pos - range.start, Math.min(end, range.end) - range.start);
      parts.push(piece);
      pos += piece.length;
    }
    // a copy when one chunk answers: the caller may keep the result, the cache keeps the chunk
    return parts.length === 1 ? Buffer.from(parts[0]!) : Buffer.concat(parts);
  }

  /** The index of the chunk holding byte `offset` (the first whose end is past it). */
  private chunkAt(offset: number): number {
    let lo = 0;
    let hi = this.index.count - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.index.chunkRange(mid).end <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private chunk(i: number): Promise<Buffer> {
    let p = this.cache.get(i);
    if (p) {
      // most recently used last
      this.cache.delete(i);
      this.cache.set(i, p);
      return p;
    }
    p = this.loadChunk(i);
    this.cache.set(i, p);
    p.catch(() => this.cache.delete(i));
    while (this.cache.size > this.cachedChunks) this.cache.delete(this.cache.keys().next().value!);
    return p;
  }
}
