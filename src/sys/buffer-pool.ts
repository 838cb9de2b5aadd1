/**
 * Reused memory for chunk-sized buffers (up to a 16 MiB chunk plus a blob header).
 *
 * Why: a fresh multi-megabyte buffer is mapped memory the kernel must fault in, zeroed, page by
 * page on first touch. On this project's machines that costs about 2.5 ms per 4 MiB, as much as
 * compressing the chunk: a backup or restore that allocated a new buffer for each copy of each
 * chunk (assembling it, the encoded blob, the uploaded body, the decoded plaintext) spent more
 * time in page faults than in zstd (docs/performance.md). Reused memory is faulted in once.
 *
 * Ownership is by hand, as with any pool: `give` a buffer back only when nothing reads it any
 * more, not even another view of the same memory. Buffers travel between threads by transfer
 * (postMessage with the ArrayBuffer in the transfer list); the receiving thread may `give` them to
 * its own pool, so memory circulates: the main thread assembles a chunk, a worker encodes it into
 * one of its buffers and keeps the chunk's memory for the next encode, the main thread keeps the
 * blob's memory after the upload for the next chunk.
 *
 * Each thread has its own `chunkBuffers` (module state is per thread).
 */

/** The capacity of every pooled buffer: the largest chunk (16 MiB) plus an encrypted blob header. */
export const CHUNK_BUFFER_CAPACITY = 16 * 1024 * 1024 + 64;

/** ArrayBuffers this thread's pools handed out or adopted: they may be transferred whole. */
const pooled = new WeakSet<ArrayBuffer>();

export class BufferPool {
  private readonly free: ArrayBuffer[] = [];

  /**
   * `capacity`: the size of every buffer (mapped lazily, so only the bytes used become resident);
   * `maxFree`: how many idle buffers are kept, the rest are left to the garbage collector.
   */
  constructor(
    readonly capacity: number,
    private readonly maxFree: number,
  ) {}

  /** An uninitialised Buffer of `size` bytes on pooled memory (a fresh one beyond `capacity`). */
  take(size: number): Buffer {
    if (size > this.capacity) return Buffer.allocUnsafeSlow(size);
    let ab = this.free.pop();
    if (!ab) {
      // Uninitialised: `new ArrayBuffer` zero-fills (calloc), which touches every page of the
      // capacity; this way only the pages a user writes are ever faulted in.
      ab = Buffer.allocUnsafeSlow(this.capacity).buffer as ArrayBuffer;
      pooled.add(ab);
    }
    return Buffer.from(ab, 0, size);
  }

  /**
   * Take over pool-sized memory that arrived from another thread (transferred), so that it may be
   * transferred on again whole (`transferList`) and given back here. Returns `buf`.
   */
  adopt<T extends Uint8Array>(buf: T): T {
    const ab = buf.buffer;
    if (ab instanceof ArrayBuffer && ab.byteLength === this.capacity) pooled.add(ab);
    return buf;
  }

  /**
   * Give the memory of `buf` back. Nothing may use `buf`, or any other view of its memory, after
   * this. Memory that is not a whole pool-sized buffer (or was transferred away, which leaves it
   * empty) is ignored, so any buffer may be given.
   */
  give(buf: Uint8Array): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || ab.byteLength !== this.capacity) return;
    if (this.free.length >= this.maxFree || this.free.includes(ab)) return;
    pooled.add(ab);
    this.free.push(ab);
  }

  /** Idle buffers held (for tests). */
  get idle(): number {
    return this.free.length;
  }
}

/**
 * The memory a thread may move to another with postMessage without copying: a pooled buffer, or
 * a buffer that owns its whole ArrayBuffer. Never a slice of Node's shared small-buffer slab,
 * which transferring would take away from every other Buffer on it.
 */
export function transferList(buf: Uint8Array): ArrayBuffer[] {
  const ab = buf.buffer;
  if (!(ab instanceof ArrayBuffer)) return [];
  return pooled.has(ab) || (buf.byteOffset === 0 && buf.byteLength === ab.byteLength) ? [ab] : [];
}

/**
 * This thread's pool of chunk buffers. 8 idle buffers at most: the client keeps up to 8 chunks in
 * flight with their blobs, a restore a few more; the server one upload body and its plaintext
 * per concurrent upload. Idle memory stays resident up to the largest chunk each buffer held.
 */
export const chunkBuffers = new BufferPool(CHUNK_BUFFER_CAPACITY, 8);

/** This thread's pooled memory as an encoder's or decoder's output (`OutputBuffer`). */
export const pooledOutput = (size: number): Buffer => chunkBuffers.take(size);
