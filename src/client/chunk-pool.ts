/**
 * A pool of worker threads that hash (SHA-256) and encode (zstd-1 DataBlob) chunks for backups
 * and decode and check them for restores, so the main thread only chunks, talks HTTP/2 and does
 * file IO, and both cores of a small machine are busy (architecture.md: one thread manages
 * about 310 MB/s for chunk+hash+compress).
 */
import { cpus } from 'node:os';
import type { Worker } from 'node:worker_threads';
import {
  CorruptDataError,
  ERR_CHUNK_POOL_CLOSED,
  ERR_CHUNK_WORKER_ANSWER,
  ERR_CHUNK_WORKER_EXITED,
  type ErrorCode,
  StowageError,
} from '../errors.js';
import { chunkBuffers, transferList, type PoolMemory } from '../sys/buffer-pool.js';
import { startModuleWorker } from '../sys/worker-module.js';
import type { WorkerRequest, WorkerResponse } from './chunk-worker.js';

/** A pool starts another worker when every running one has this many requests in flight. */
const GROW_AT_IN_FLIGHT = 2;

/** Worker memory held for sending back, per worker; beyond, it is left to the garbage collector. */
const MAX_GOING_BACK = 8;

export interface ProcessedChunk {
  digest: Buffer;
  /** Plaintext size. */
  size: number;
  /** The encoded DataBlob; absent when `isKnown` said the server already has the chunk. */
  blob?: Buffer;
}

interface Pending {
  resolve: (v: WorkerResponse) => void;
  reject: (e: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  inFlight: number;
  /** This worker's memory (blobs uploaded, plaintexts written), sent back with its next request. */
  goingBack: PoolMemory[];
}

function toBuffer(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export class ChunkPool {
  readonly threads: number;
  private readonly workers: PoolWorker[] = [];
  private readonly pending = new Map<number, Pending>();
  /** Which worker produced a blob's or plaintext's memory: it goes back to that worker. */
  private readonly owner = new WeakMap<ArrayBufferLike, PoolWorker>();
  private nextId = 1;
  private closed = false;
  private failure: Error | undefined;

  /**
   * `threads` defaults to the number of CPUs (at least 1, at most 8). Workers start with the
   * first request: a backup that only reuses indexes never pays for starting them.
   */
  constructor(opts: { threads?: number } = {}) {
    this.threads = Math.max(1, Math.min(8, opts.threads ?? cpus().length));
  }

  private startWorkers(count: number): void {
    for (let i = 0; i < count && this.workers.length < this.threads; i++) {
      const worker = startModuleWorker(import.meta.url, 'chunk-worker');
      const pw: PoolWorker = { worker, inFlight: 0, goingBack: [] };
      worker.on('message', (msg: WorkerResponse) => {
        for (const ab of msg.spare ?? []) chunkBuffers.give(new Uint8Array(ab));
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        pw.inFlight--;
        if (msg.op === 'error') {
          p.reject(new StowageError((msg.code as ErrorCode | undefined) ?? 'INTERNAL', msg.message));
        } else p.resolve(msg);
      });
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(ERR_CHUNK_WORKER_EXITED(code));
      });
      this.workers.push(pw);
    }
  }

  /**
   * Start the workers now rather than with the first request. A restore calls this before it
   * logs in: a worker takes a few hundred milliseconds to start (module loading), which then
   * overlaps the login and the index download instead of delaying the first chunk's decode.
   */
  warmUp(): void {
    if (this.workers.length === 0 && !this.closed) this.startWorkers(this.threads);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /**
   * The least busy worker. Workers start one at a time, as the load asks for them: the first
   * with the first request, another only when every running one already has
   * `GROW_AT_IN_FLIGHT` requests. A backup that hashes a few chunks (one file changed) so
   * starts one worker (about 0.1 s of CPU each) instead of all of them.
   */
  private pick(): PoolWorker {
    if (this.workers.length === 0 && !this.closed) this.startWorkers(1);
    let best = this.workers[0]!;
    for (const w of this.workers) if (w.inFlight < best.inFlight) best = w;
    if (best.inFlight >= GROW_AT_IN_FLIGHT && this.workers.length < this.threads && !this.closed) {
      this.startWorkers(1);
      best = this.workers[this.workers.length - 1]!;
    }
    return best;
  }

  private request(pw: PoolWorker, msg: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<WorkerResponse> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(ERR_CHUNK_POOL_CLOSED());
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject });
      pw.inFlight++;
      if (pw.goingBack.length === 0) pw.worker.postMessage(msg, transfer);
      else {
        pw.worker.postMessage({ ...msg, spare: pw.goingBack.splice(0) }, transfer);
      }
    });
  }

  /**
   * Hash a chunk and, unless `isKnown(digest)` says the server has it, encode it as a DataBlob.
   * The chunk's memory is moved to the worker when it is pooled or owns its ArrayBuffer: do not
   * use it again. The blob is a worker's memory: `release` it once it is sent.
   */
  async process(
    chunk: Buffer,
    isKnown: (digest: Buffer) => boolean,
    opts: { compress?: boolean } = {},
  ): Promise<ProcessedChunk> {
    const id = this.nextId++;
    const size = chunk.length;
    const pw = this.pick();
    const hashed = await this.request(pw, { op: 'hash', id, data: chunk }, transferList(chunk));
    if (hashed.op !== 'hashed') throw ERR_CHUNK_WORKER_ANSWER(hashed.op, 'hash');
    const digest = toBuffer(hashed.digest);
    if (isKnown(digest)) {
      pw.worker.postMessage({ op: 'drop', id } satisfies WorkerRequest);
      return { digest, size };
    }
    const encoded = await this.request(pw, { op: 'encode', id, compress: opts.compress !== false });
    if (encoded.op !== 'encoded') throw ERR_CHUNK_WORKER_ANSWER(encoded.op, 'encode');
    this.owner.set(encoded.blob.buffer, pw);
    return { digest, size, blob: toBuffer(encoded.blob) };
  }

  /**
   * Decode a DataBlob (CRC, zstd) and, when `digest` is given, check that the plaintext hashes
   * to it (and has `size` bytes): a restore never writes data the index does not describe.
   * `blob`'s memory moves to the worker (and home to this thread's pool after the decode); the
   * plaintext is a worker's memory: `release` it once written, if nothing else holds it.
   */
  async decode(blob: Buffer, opts: { digest?: Buffer; size?: number } = {}): Promise<Buffer> {
    const id = this.nextId++;
    const pw = this.pick();
    const res = await this.request(
      pw,
      { op: 'decode', id, blob, digest: opts.digest, size: opts.size },
      transferList(blob),
    );
    if (res.op !== 'decoded') throw new CorruptDataError(`chunk worker answered ${res.op} to decode`);
    this.owner.set(res.data.buffer, pw);
    return toBuffer(res.data);
  }

  /**
   * Memory a worker produced (a blob once uploaded, a plaintext once written) goes back to that
   * worker with its next request, for its next blob or plaintext: each worker so reuses its own
   * memory. (Sent to whichever worker came next, it piled up beyond the pool's cap in one worker,
   * which dropped it, while the other allocated fresh memory for every blob.) Nothing may use
   * `buf` after.
   */
  release(buf: Uint8Array): void {
    const mem = chunkBuffers.memoryOf(buf);
    if (!mem) return;
    const pw = this.owner.get(mem) ?? this.workers[0];
    if (!pw || pw.goingBack.length >= MAX_GOING_BACK) return;
    if (!pw.goingBack.some((m) => chunkBuffers.sameMemory(m, mem))) pw.goingBack.push(mem);
  }

  /** Number of requests waiting for a worker's answer. */
  get inFlight(): number {
    return this.pending.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
    this.fail(ERR_CHUNK_POOL_CLOSED());
  }
}
