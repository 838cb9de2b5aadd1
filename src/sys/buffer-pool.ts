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
 * more, not even another view of the same memory. Buffers travel between threads as shared memory
 * (postMessage of a view on a SharedArrayBuffer); the receiving thread may `give` them to its own
 * pool, so memory circulates: the main thread assembles a chunk, a worker encodes it into
 * one of its buffers and keeps the chunk's memory for the next encode, the main thread keeps the
 * blob's memory after the upload for the next chunk.
 *
 * Each thread has its own `chunkBuffers` (module state is per thread).
 */
import { threadId } from 'node:worker_threads';

/** The capacity of every pooled buffer: the largest chunk (16 MiB) plus an encrypted blob header. */
export const CHUNK_BUFFER_CAPACITY = 16 * 1024 * 1024 + 64;

/**
 * Bytes after the capacity holding the memory's identity (a float64): a SharedArrayBuffer that
 * arrives in a message is a new object on the same memory, so identity is read from the memory.
 */
const ID_BYTES = 8;

/** Where this thread's new pool memory numbers itself: thread id in the high bits, a counter below. */
let nextId = (threadId + 1) * 2 ** 24;

/**
 * Pool memory is a SharedArrayBuffer, shared with other threads instead of transferred. Why: V8
 * counts every ArrayBuffer that arrives by transfer as newly allocated external memory of the
 * receiving thread while its object is young, and once young ArrayBuffers hold 32 MiB (two pool
 * buffers) it runs a scavenge before every further allocation of ArrayBuffer memory, however
 * small (a digest, a file read, a TLS write): a 256 MB backup's client ran 70 such collections, a
 * sixth of its CPU (docs/performance.md). Shared memory is not counted per thread. The price is
 * that nothing detaches the sender's view any more: ownership is kept by hand, as the pool's
 * users always did (`give` only what nothing reads; what went to another thread is not touched).
 */
export type PoolMemory = SharedArrayBuffer;

/** Where pool memory of `capacity` keeps its identity (the same in every thread that holds it). */
function idSlot(mem: PoolMemory, capacity: number): Float64Array {
  return new Float64Array(mem, capacity, 1);
}

export class BufferPool {
  private readonly free: PoolMemory[] = [];

  /**
   * `capacity`: the size of every buffer (mapped lazily, so only the bytes used become resident);
   * `maxFree`: how many idle buffers are kept, the rest are left to the garbage collector.
   */
  constructor(
    readonly capacity: number,
    private readonly maxFree: number,
  ) {
    if (capacity % 8 !== 0) throw new RangeError(`pool capacity ${capacity} is not a multiple of 8`);
  }

  /** An uninitialised Buffer of `size` bytes on pooled memory (a fresh one beyond `capacity`). */
  take(size: number): Buffer {
    if (size > this.capacity) return Buffer.allocUnsafeSlow(size);
    let mem = this.free.pop();
    if (!mem) {
      // Zero-filled, but large enough to be fresh mapped memory, which the kernel gives zeroed:
      // only the pages a user writes are ever faulted in.
      mem = new SharedArrayBuffer(this.capacity + ID_BYTES);
      idSlot(mem, this.capacity)[0] = nextId++;
    }
    return Buffer.from(mem, 0, size);
  }

  /** The pool memory `buf` is a view of (from any thread's pool of this capacity), if it is. */
  memoryOf(buf: Uint8Array): PoolMemory | undefined {
    const ab = buf.buffer;
    return ab instanceof SharedArrayBuffer && ab.byteLength === this.capacity + ID_BYTES ? ab : undefined;
  }

  /** Whether two views are on the same pool memory (the same in every thread). */
  sameMemory(a: PoolMemory, b: PoolMemory): boolean {
    return a === b || idSlot(a, this.capacity)[0] === idSlot(b, this.capacity)[0];
  }

  /**
   * Give the memory of `buf` back. Nothing may use `buf`, or any other view of its memory, after
   * this, in this thread or any other. Memory that is not a whole pool buffer is ignored, so any
   * buffer may be given.
   */
  give(buf: Uint8Array): void {
    const mem = this.memoryOf(buf);
    if (!mem || this.free.length >= this.maxFree) return;
    if (this.free.some((f) => this.sameMemory(f, mem))) return;
    this.free.push(mem);
  }

  /** Idle buffers held (for tests). */
  get idle(): number {
    return this.free.length;
  }
}

/**
 * The memory a thread may move to another with postMessage without copying: a buffer that owns
 * its whole ArrayBuffer (pool memory is shared, never transferred). Never a slice of Node's
 * shared small-buffer slab, which transferring would take away from every other Buffer on it.
 */
export function transferList(buf: Uint8Array): ArrayBuffer[] {
  const ab = buf.buffer;
  if (!(ab instanceof ArrayBuffer)) return [];
  return buf.byteOffset === 0 && buf.byteLength === ab.byteLength ? [ab] : [];
}

/**
 * This thread's pool of chunk buffers. 8 idle buffers at most: the client keeps up to 8 chunks in
 * flight with their blobs, a restore a few more; the server one upload body and its plaintext
 * per concurrent upload. Idle memory stays resident up to the largest chunk each buffer held.
 */
export const chunkBuffers = new BufferPool(CHUNK_BUFFER_CAPACITY, 8);

/** This thread's pooled memory as an encoder's or decoder's output (`OutputBuffer`). */
export const pooledOutput = (size: number): Buffer => chunkBuffers.take(size);
