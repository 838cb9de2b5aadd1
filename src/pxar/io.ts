/**
 * The thin IO around the pxar codecs: a sink the encoder writes to (awaiting each write is the
 * backpressure), random-access reads for lookups, and a sequential reader over either a
 * random-access source or a stream.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { ERR_PXAR_SINK_CLOSED } from '../errors.js';
import { corrupt } from './format.js';

/**
 * A piece of an archive stream whose bytes are known to equal `length` bytes at `oldStart` of the
 * previous archive of the same tree (an unchanged file's contents): the consumer reads them with
 * `read` (offsets within the piece) only where it cannot take the previous archive's chunks
 * instead (client/tree-reuse.ts).
 */
export interface ReusablePiece {
  /** The key the previous archive's layout knows the bytes by (a file's contents: its metadata key). */
  key?: string;
  oldStart: number;
  length: number;
  read(from: number, to: number): AsyncIterable<Buffer>;
}

/**
 * Bytes [from, to) of a stream given as `parts` (bytes and reusable pieces, in order; the first
 * starting at `at`): what a piece made of other pieces reads.
 */
export async function* readParts(
  parts: ReadonlyArray<Buffer | ReusablePiece>,
  from: number,
  to: number,
  at = 0,
): AsyncGenerator<Buffer> {
  for (const part of parts) {
    const a = Math.max(from, at);
    const b = Math.min(to, at + part.length);
    if (a < b) {
      if (Buffer.isBuffer(part)) yield part.subarray(a - at, b - at);
      else yield* part.read(a - at, b - at);
    }
    at += part.length;
    if (at >= to) return;
  }
}

/** Where an encoder writes; `write` resolves when the consumer can take more. */
export interface PxarSink {
  write(chunk: Buffer): Promise<void>;
  /** Present when the consumer takes reusable pieces (an object-mode stream); else they are read. */
  writeReusable?(piece: ReusablePiece): Promise<void>;
}

/**
 * A sink over a Node Writable that waits for 'drain' when the stream's buffer is full. A stream
 * error, also one between writes, fails the next write (and never goes unhandled). An object-mode
 * stream takes reusable pieces as they are (`writeReusable`).
 */
export function writableSink(stream: Writable): PxarSink {
  let failed: Error | undefined;
  stream.on('error', (err) => (failed ??= err));
  const put = (chunk: Buffer | ReusablePiece): Promise<void> => {
    if (failed) return Promise.reject(failed);
    if (stream.write(chunk)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        stream.off('drain', onDrain);
        stream.off('error', done);
        stream.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(failed ?? ERR_PXAR_SINK_CLOSED());
      stream.on('drain', onDrain);
      stream.on('error', done);
      stream.on('close', onClose);
    });
  };
  return stream.writableObjectMode ? { write: put, writeReusable: put } : { write: put };
}

/** A sink that keeps everything in memory (tests, small archives such as catalogs). */
export function bufferSink(): PxarSink & { buffer(): Buffer } {
  const chunks: Buffer[] = [];
  return {
    write(chunk) {
      chunks.push(Buffer.from(chunk));
      return Promise.resolve();
    },
    buffer: () => Buffer.concat(chunks),
  };
}

/** Random access to an archive of known size; `read` may return fewer bytes only at the end. */
export interface PxarReadAt {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
}

export function readAtBuffer(buf: Buffer): PxarReadAt {
  return {
    size: buf.length,
    read: (offset, length) => Promise.resolve(buf.subarray(offset, Math.min(buf.length, offset + length))),
  };
}

export async function readAtFile(fh: FileHandle): Promise<PxarReadAt> {
  const { size } = await fh.stat();
  return {
    size,
    async read(offset, length) {
      const n = Math.max(0, Math.min(length, size - offset));
      const b = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await fh.read(b, got, n - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return b.subarray(0, got);
    },
  };
}

/** Read exactly `length` bytes at `offset`, or fail naming what was being read. */
export async function readExactAt(
  src: PxarReadAt,
  offset: number,
  length: number,
  what: string,
): Promise<Buffer> {
  if (offset < 0 || offset + length > src.size) throw corrupt(offset, `${what} lies outside the archive`);
  const b = await src.read(offset, length);
  if (b.length !== length) throw corrupt(offset, `short read of ${what}`);
  return b;
}

/** `size` bytes from `start` in chunks of at most IO_CHUNK. */
export async function* readRange(
  src: PxarReadAt,
  start: number,
  size: number,
  what: string,
): AsyncGenerator<Buffer> {
  for (let done = 0; done < size;) {
    const n = Math.min(IO_CHUNK, size - done);
    yield await readExactAt(src, start + done, n, what);
    done += n;
  }
}

/** Sequential reads with a position; `null` from `readHeaderOrEof` marks a clean end. */
export interface SequentialReader {
  readonly position: number;
  /** Exactly n bytes, or null if the input ends before the first byte; a partial read is an error. */
  readOrEof(n: number): Promise<Buffer | null>;
  read(n: number): Promise<Buffer>;
  /**
   * Between 1 and `max` bytes, as many as are at hand without copying (a file's contents are
   * passed on piece by piece, never reassembled); the end of input is an error.
   */
  readSome(max: number): Promise<Buffer>;
  skip(n: number): Promise<void>;
}

/** Chunks of the copy loops: big enough to stream quickly, small enough to bound memory. */
export const IO_CHUNK = 1024 * 1024;

/** What a sequential decode reads ahead: one read serves many small items. */
export const READ_AHEAD = 64 * 1024;

/**
 * A sequential reader over `[start, end)` of a random-access source. Small reads are served
 * from a window of `readAhead` bytes fetched at once (a whole decode would otherwise make one
 * read per item); reads of a window or more go to the source directly.
 */
export function sequentialFromReadAt(
  src: PxarReadAt,
  start = 0,
  end = src.size,
  readAhead = READ_AHEAD,
): SequentialReader {
  let pos = start;
  let window: Buffer = Buffer.alloc(0);
  let windowAt = start;
  return {
    get position() {
      return pos;
    },
    async readOrEof(n) {
      if (pos >= end) return null;
      if (pos + n > end) throw corrupt(pos, 'unexpected end of archive');
      let b: Buffer;
      if (pos >= windowAt && pos + n <= windowAt + window.length) {
        b = window.subarray(pos - windowAt, pos - windowAt + n);
      } else if (n >= readAhead) {
        b = await readExactAt(src, pos, n, 'item');
      } else {
        // a fresh window each time: earlier slices handed out stay valid
        window = await readExactAt(src, pos, Math.min(readAhead, end - pos), 'item');
        windowAt = pos;
        b = window.subarray(0, n);
      }
      pos += n;
      return b;
    },
    async read(n) {
      const b = await this.readOrEof(n);
      if (b === null) throw corrupt(pos, 'unexpected end of archive');
      return b;
    },
    readSome(max) {
      return this.read(max);
    },
    async skip(n) {
      if (pos + n > end) throw corrupt(pos, 'unexpected end of archive');
      pos += n;
    },
  };
}

/**
 * A sequential reader over a byte stream (a Readable, a restore download).
 *
 * `releaseChunk` (a restore's chunks, whose memory the chunk workers reuse): each chunk of the
 * stream is given to it once the reader has consumed all of it and the caller asks for more
 * bytes than remain: from then on nothing of the reader's may read it. For that, `read` and
 * `readOrEof` (metadata: names, xattrs, link targets, which a caller may keep) return copies;
 * only `readSome` (file contents) returns views of a chunk, and its caller must be done with a
 * view before it next calls the reader (write it, or copy it).
 */
export function sequentialFromStream(
  stream: AsyncIterable<Uint8Array>,
  opts: { releaseChunk?: (chunk: Buffer) => void } = {},
): SequentialReader {
  const it = stream[Symbol.asyncIterator]();
  const pending: Buffer[] = [];
  const { releaseChunk } = opts;
  /** With `releaseChunk`: the chunk each piece of `pending` is a view of. */
  const origins: Buffer[] = [];
  /** With `releaseChunk`: chunks consumed whole, given back before the next is pulled. */
  const consumed: Buffer[] = [];
  let buffered = 0;
  let pos = 0;
  let ended = false;

  const fill = async (n: number): Promise<void> => {
    while (buffered < n && !ended) {
      if (releaseChunk) for (const c of consumed.splice(0)) releaseChunk(c);
      const r = await it.next();
      if (r.done) ended = true;
      else if (r.value.length > 0) {
        const chunk = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.length);
        pending.push(chunk);
        if (releaseChunk) origins.push(chunk);
        buffered += chunk.length;
      }
    }
  };
  const dropFirst = () => {
    pending.shift();
    if (releaseChunk) consumed.push(origins.shift()!);
  };
  /** The next n bytes; a view of a chunk only if `view` (or nothing is given back). */
  const take = (n: number, view: boolean): Buffer => {
    buffered -= n;
    pos += n;
    const first = pending[0]!;
    // the first chunk usually holds all n bytes: a slice of it, no copy
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length > n) pending[0] = first.subarray(n);
      else dropFirst();
      return view || !releaseChunk ? out : Buffer.from(out);
    }
    // n bytes across chunks: copy just those (not every chunk buffered, which copied each
    // multi-megabyte restore chunk once more whenever an item crossed into it)
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = pending[0]!;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k < c.length) pending[0] = c.subarray(k);
      else dropFirst();
    }
    return out;
  };
  return {
    get position() {
      return pos;
    },
    async readOrEof(n) {
      await fill(n);
      if (buffered === 0 && ended) return null;
      if (buffered < n) throw corrupt(pos + buffered, 'unexpected end of archive');
      return take(n, false);
    },
    async read(n) {
      const b = await this.readOrEof(n);
      if (b === null) throw corrupt(pos, 'unexpected end of archive');
      return b;
    },
    async readSome(max) {
      await fill(1);
      if (buffered === 0) throw corrupt(pos, 'unexpected end of archive');
      return take(Math.min(max, pending[0]!.length), true);
    },
    async skip(n) {
      let left = n;
      while (left > 0) {
        const step = Math.min(left, IO_CHUNK);
        await fill(step);
        if (buffered < step) throw corrupt(pos + buffered, 'unexpected end of archive');
        take(step, true);
        left -= step;
      }
    },
  };
}
