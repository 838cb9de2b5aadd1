/**
 * A thread that makes a restore's directories, small files and symlinks while the main thread
 * decodes on. Restoring many small files is mostly file system calls (create, write, owner, mode,
 * times, close: six per file, each a few tens of microseconds of kernel time); made on the main
 * thread they leave the decoding, TLS and HTTP/2 waiting behind them and the second core idle.
 *
 * The calls run in the order they were queued, one batch after another on one thread, so what
 * holds on the main thread holds here: a directory exists before its members, a directory's
 * metadata (mode, mtime) is set after its last member was written. Whatever the caller does on
 * the main thread between queued calls (a large file, a hard link, a device) must come after
 * `flush()`.
 *
 * A batch is one transferable buffer holding the paths and the files' contents, sent when full or
 * as soon as the main thread waits for anything else (the next network read); a few batches are
 * in flight at once and their buffers come back for reuse. The first call that fails fails the
 * writer: nothing after it is run, and the next call on this object throws its error, with its
 * errno code, as the synchronous call would have on the main thread.
 */
import type { Worker } from 'node:worker_threads';
import { ERR_RESTORE_WRITER_EXITED } from '../errors.js';
import type { RestoredMetadata } from './restore-files.js';
import { startModuleWorker } from './worker-module.js';

/** Offset and length of bytes in a batch's buffer. */
export type WriterRange = [number, number];

export type WriterOp =
  | { op: 'mkdir'; path: WriterRange }
  | { op: 'file'; path: WriterRange; data: WriterRange; size: number; meta: RestoredMetadata }
  | { op: 'metadata'; path: WriterRange; meta: RestoredMetadata }
  | { op: 'symlink'; path: WriterRange; target: WriterRange; meta: RestoredMetadata };

export interface WriterBatch {
  buffer: ArrayBuffer;
  ops: WriterOp[];
}

/** The first failed call's error, as Node reported it in the thread. */
export interface WriterFailure {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
}

export interface WriterAnswer {
  /** The batch's buffer, back for reuse. */
  buffer: ArrayBuffer;
  /** The call that failed in this batch; none when it ran whole or was skipped after a failure. */
  failure?: WriterFailure;
}

/** A batch's buffer: a few hundred small files' contents per message. */
const BATCH_BYTES = 1024 * 1024;
/** Calls per batch at most, for trees of empty files and directories. */
const BATCH_OPS = 512;
/** Batches sent and not yet answered; the main thread waits beyond. */
const MAX_IN_FLIGHT = 4;

interface OpenBatch {
  bytes: Buffer;
  used: number;
  ops: WriterOp[];
}

export class RestoreWriter {
  private readonly worker: Worker;
  private batch: OpenBatch | undefined;
  /** A file's contents are being copied into the open batch: it cannot be sent now. */
  private filling = false;
  /** The main thread waited while a file was being copied: send the batch after that file. */
  private sendAfterFill = false;
  private inFlight = 0;
  private readonly spare: ArrayBuffer[] = [];
  private readonly waiters: Array<() => void> = [];
  private failure: Error | undefined;
  private closed = false;

  /** Start the thread; owners are set only `asRoot`, as on the main thread. */
  constructor(asRoot: boolean) {
    this.worker = startModuleWorker(import.meta.url, 'restore-writer-worker', { workerData: { asRoot } });
    this.worker.on('message', (a: WriterAnswer) => this.answered(a));
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => {
      if (!this.closed) this.fail(ERR_RESTORE_WRITER_EXITED(code));
    });
  }

  /** Make directory `path` (mode 0700 until its metadata is set). */
  async mkdir(path: Buffer): Promise<void> {
    const b = await this.room(path.length);
    b.ops.push({ op: 'mkdir', path: this.put(b, path) });
  }

  /** Set the owner (as root), mode and mtime of the directory or file at `path`. */
  async metadata(path: Buffer, meta: RestoredMetadata): Promise<void> {
    const b = await this.room(path.length);
    b.ops.push({ op: 'metadata', path: this.put(b, path), meta });
  }

  /** Make a symlink at `path` to `target` (exact bytes) with its owner (as root) and mtime. */
  async symlink(target: Buffer, path: Buffer, meta: RestoredMetadata): Promise<void> {
    const b = await this.room(path.length + target.length);
    b.ops.push({ op: 'symlink', path: this.put(b, path), target: this.put(b, target), meta });
  }

  /**
   * Create file `path` with `contents` (`size` bytes, copied into the batch as they come: the
   * source may reuse their memory afterwards), its holes, and its metadata.
   */
  async file(
    path: Buffer,
    size: number,
    contents: AsyncIterable<Buffer>,
    meta: RestoredMetadata,
  ): Promise<void> {
    const b = await this.room(path.length + size);
    const pathRange = this.put(b, path);
    const start = b.used;
    this.filling = true;
    try {
      for await (const d of contents) {
        if (b.used + d.length > start + size)
          throw new Error(`the archive holds more than the ${size} bytes its entry declares`);
        b.used += d.copy(b.bytes, b.used);
      }
    } finally {
      this.filling = false;
    }
    b.ops.push({ op: 'file', path: pathRange, data: [start, b.used - start], size, meta });
    if (this.sendAfterFill) this.send();
  }

  /** Wait until every queued call ran; throws the first failure. */
  async flush(): Promise<void> {
    this.check();
    if (this.batch) this.send();
    while (this.inFlight > 0) await this.answer();
    this.check();
  }

  /** Run what is queued, then end the thread. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.abort();
    }
  }

  /** End the thread at once (after a failure elsewhere): the call it is in finishes, no other. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.batch = undefined;
    await this.worker.terminate();
    this.wake();
  }

  /** The open batch, with room for `bytes` more; sends a full one, waits while too many are in flight. */
  private async room(bytes: number): Promise<OpenBatch> {
    this.check();
    const b = this.batch;
    if (b && (b.used + bytes > b.bytes.length || b.ops.length >= BATCH_OPS)) this.send();
    while (this.inFlight >= MAX_IN_FLIGHT) {
      await this.answer();
      this.check();
    }
    if (this.batch) return this.batch;
    const capacity = Math.max(BATCH_BYTES, bytes);
    const spare = capacity === BATCH_BYTES ? this.spare.pop() : undefined;
    const open: OpenBatch = {
      bytes: Buffer.from(spare ?? new ArrayBuffer(capacity)),
      used: 0,
      ops: [],
    };
    this.batch = open;
    // sent as soon as the main thread waits for anything else: the thread never idles on a
    // half-filled batch while the decoder waits for the network
    setImmediate(() => {
      if (this.batch !== open) return;
      if (this.filling) this.sendAfterFill = true;
      else this.send();
    });
    return open;
  }

  private put(b: OpenBatch, bytes: Buffer): WriterRange {
    const off = b.used;
    b.used += bytes.copy(b.bytes, off);
    return [off, bytes.length];
  }

  private send(): void {
    const b = this.batch;
    if (!b) return;
    this.batch = undefined;
    this.sendAfterFill = false;
    const buffer = b.bytes.buffer as ArrayBuffer;
    const message: WriterBatch = { buffer, ops: b.ops };
    this.inFlight++;
    this.worker.postMessage(message, [buffer]);
  }

  private answered(a: WriterAnswer): void {
    this.inFlight--;
    if (a.buffer.byteLength === BATCH_BYTES && this.spare.length < MAX_IN_FLIGHT) this.spare.push(a.buffer);
    if (a.failure) this.failure ??= Object.assign(new Error(a.failure.message), a.failure);
    this.wake();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.inFlight = 0;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private answer(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw ERR_RESTORE_WRITER_EXITED(-1);
  }
}
