/**
 * Content-defined chunking for file archives, the algorithm of PBS's `chunker.rs` (a rewrite of
 * casync's buzhash chunker, reference §7.4): a 48-byte buzhash window, chunk sizes between avg/4
 * and avg*4, and a cut wherever `h mod d == d - 1` with PBS's discriminator `d(avg)`.
 *
 * The 256-entry table is our own (derived from SHA-256, below), not casync's: we chunk a tar
 * stream, not pxar, so boundaries could never match a PBS client's anyway, and only the
 * statistical properties of the table matter.
 *
 * Because the rolling hash at a position depends only on the 48 bytes before it, and a cut can
 * never happen before `min` bytes, the first `min - 49` bytes of each chunk are skipped without
 * hashing. The boundaries are the same as hashing every byte (tested), it is just faster.
 *
 * The loop that hashes the rest runs in WebAssembly (wasm/chunker-scan.ts, compiled into
 * chunker-scan-wasm.ts by `npm run build:wasm`); the bytes before a piece's 48th stay here.
 */
import { createHash } from 'node:crypto';
import { BadRequestError } from '../errors.js';
import { chunkBuffers } from '../sys/buffer-pool.js';
import { CHUNKER_SCAN_WASM } from './chunker-scan-wasm.js';

export const CHUNKER_WINDOW_SIZE = 48;
/** PBS's default average chunk size for dynamic indexes, and the fixed chunk size for images. */
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

function buildTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    t[i] = createHash('sha256').update(`stowage buzhash table ${i}`).digest().readUInt32LE(0);
  }
  return t;
}

// Int32Array, not Uint32Array: values above 2^31 read from a Uint32Array are doubles in V8 and
// make the hot loop several times slower.
const TABLE = new Int32Array(buildTable().buffer);
/** TABLE[b] rotated left by the window size (48 mod 32 = 16): the term a byte leaving the window had. */
const TABLE_LEAVE = TABLE.map((v) => (v << 16) | (v >>> 16));

/**
 * `h mod d == d - 1` without a division per byte, as a divisibility test of `h + 1`: for odd `m`,
 * `x` is a multiple of `m` exactly when `x * m⁻¹ mod 2^32 <= (2^32 - 1) / m` (Granlund and
 * Montgomery). `m` is the odd part of `d`, so the test can only have false positives (multiples
 * of `m` that are not multiples of `d`, and `h = 2^32 - 1`, where `h + 1` wraps to 0); each hit is
 * confirmed with the exact `%` (`isCut`). One multiplication and a compare per byte, no memory
 * access: about twice as fast as a lookup table here.
 */
interface CutTest {
  d: number;
  /** Inverse of the odd part of d, mod 2^32 (as an int32). */
  inv: number;
  /** floor((2^32 - 1) / odd part of d). */
  lim: number;
}

function cutTest(d: number): CutTest {
  let m = d;
  while (m % 2 === 0) m /= 2;
  // Newton's iteration doubles the correct low bits each step: 3 → 6 → 12 → 24 → 48 ≥ 32.
  let inv = m | 0;
  for (let i = 0; i < 4; i++) inv = Math.imul(inv, 2 - Math.imul(m | 0, inv));
  return { d, inv, lim: Math.floor((2 ** 32 - 1) / m) };
}

/** The exact cut condition, for the rare candidates the fast test lets through. */
function isCut(h: number, d: number): boolean {
  return (h >>> 0) % d === d - 1;
}

/** Where the bytes to scan start in the scanner's memory: after the two tables (wasm/chunker-scan.ts). */
const SCAN_DATA_AT = 2048;
/** Bytes copied into the scanner's memory per call: its 17 pages hold the tables, 48 bytes of window and this. */
const SCAN_SPAN = 1024 * 1024;

// Node 20's WebAssembly, as far as used here: neither @types/node 20 nor the ES lib declare it.
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
};

interface Scanner {
  memory: Uint8Array;
  roll(pos: number, end: number, h: number, inv: number, lim: number): number;
  /** The exported global `rolled`. */
  rolled: { value: number };
}

let scanner: Scanner | undefined;

/** The WebAssembly scanner, instantiated on first use with the tables in its memory (little-endian, as wasm loads). */
function wasmScanner(): Scanner {
  if (scanner) return scanner;
  const { exports } = new WebAssembly.Instance(new WebAssembly.Module(CHUNKER_SCAN_WASM));
  const memory = new Uint8Array((exports.memory as { buffer: ArrayBuffer }).buffer);
  const view = new DataView(memory.buffer);
  for (let i = 0; i < 256; i++) {
    view.setInt32(i * 4, TABLE[i]!, true);
    view.setInt32(1024 + i * 4, TABLE_LEAVE[i]!, true);
  }
  scanner = { memory, roll: exports.roll as Scanner['roll'], rolled: exports.rolled as Scanner['rolled'] };
  return scanner;
}

/** Hash after the last `rollToCut` (a second return value without allocating). */
let rolledHash = 0;

/**
 * Roll the hash over `data[pos..end)` with the window entirely in `data` (`pos >= 48`); returns
 * the position right after the first cut, or `end` when there is none, and leaves the hash in
 * `rolledHash`. The loop runs in WebAssembly on a copy of each span in the scanner's memory (a
 * copy is about a tenth of the hashing's time); it stops at every candidate of the fast test
 * (`CutTest`), which is confirmed here.
 */
function rollToCut(data: Uint8Array, pos: number, end: number, h: number, t: CutTest): number {
  const s = wasmScanner();
  while (pos < end) {
    const spanEnd = Math.min(end, pos + SCAN_SPAN);
    s.memory.set(data.subarray(pos - CHUNKER_WINDOW_SIZE, spanEnd), SCAN_DATA_AT);
    // position in the scanner's memory = position in data + shift
    const shift = SCAN_DATA_AT + CHUNKER_WINDOW_SIZE - pos;
    let at = pos + shift;
    const stop = spanEnd + shift;
    for (;;) {
      at = s.roll(at, stop, h, t.inv, t.lim);
      h = s.rolled.value;
      if (isCut(h, t.d)) {
        rolledHash = h;
        return at - shift;
      }
      if (at === stop) break;
    }
    pos = spanEnd;
  }
  rolledHash = h;
  return end;
}

const cutTests = new Map<number, CutTest>();

/**
 * PBS's discriminator: cutting when `h mod d == d - 1` gives an average of `avg` only with
 * min = avg/4 and max = avg*4, so those are fixed too.
 */
export function chunkerDiscriminator(avg: number): number {
  return Math.trunc(avg / (-1.42888852e-7 * avg + 1.33237515));
}

/** Check a `--chunk-size` as PBS's client does: a power of two from 64 KiB to 4 MiB (§7.1). */
export function validateChunkSize(size: number): number {
  if (!Number.isInteger(size) || size < 64 * 1024 || size > 4 * 1024 * 1024 || (size & (size - 1)) !== 0) {
    throw new BadRequestError(`chunk-size must be a power of two from 64 KiB to 4 MiB, got ${size}`);
  }
  return size;
}

/** The buzhash of one full window, as PBS's `start()` computes it. */
function windowHash(win: Uint8Array, start: number): number {
  let h = 0;
  for (let i = 0; i < CHUNKER_WINDOW_SIZE; i++) {
    const v = TABLE[win[(start + i) % CHUNKER_WINDOW_SIZE]!]!;
    const r = CHUNKER_WINDOW_SIZE - 1 - i;
    h ^= r === 0 ? v : (v << r) | (v >>> (32 - r));
  }
  return h | 0;
}

/**
 * The boundary scanner: feed it consecutive pieces of one stream with `scan`; it returns the
 * position in the piece right after a chunk's last byte, or -1 when the piece holds no boundary
 * (feed the rest of the piece, starting after the boundary, to continue).
 */
export class Chunker {
  readonly avg: number;
  readonly min: number;
  readonly max: number;
  readonly discriminator: number;
  private readonly test: CutTest;
  private readonly window = new Uint8Array(CHUNKER_WINDOW_SIZE);
  /** Bytes of the current chunk consumed so far. */
  private chunkSize = 0;
  /** Bytes of the window filled for the current chunk (0..48). */
  private windowFill = 0;
  /** Ring position of the oldest byte in the window. */
  private idx = 0;
  private h = 0;

  constructor(avg: number = DEFAULT_CHUNK_SIZE) {
    if (!Number.isInteger(avg) || avg < 4 * CHUNKER_WINDOW_SIZE) {
      throw new BadRequestError(`chunker average size ${avg} is too small`);
    }
    this.avg = avg;
    this.min = avg >>> 2;
    this.max = avg * 4;
    this.discriminator = chunkerDiscriminator(avg);
    let t = cutTests.get(this.discriminator);
    if (!t) cutTests.set(this.discriminator, (t = cutTest(this.discriminator)));
    this.test = t;
  }

  /** Size of the chunk in progress (bytes consumed since the last boundary). */
  get pending(): number {
    return this.chunkSize;
  }

  scan(input: Uint8Array, from = 0): number {
    // A plain Uint8Array view: indexing a Buffer (a subclass) in the hot loop is slower in V8.
    const data =
      input.constructor === Uint8Array ? input : new Uint8Array(input.buffer, input.byteOffset, input.length);
    const len = data.length;
    let pos = from;
    // A cut is first possible at chunkSize == min, where the hash covers bytes min-48..min-1;
    // filling the window so it is full at min-1 makes the first rolled byte land on min.
    const skipTo = this.min - CHUNKER_WINDOW_SIZE - 1;
    if (this.chunkSize < skipTo) {
      const n = Math.min(skipTo - this.chunkSize, len - pos);
      this.chunkSize += n;
      pos += n;
      if (pos === len) return -1;
    }
    const win = this.window;
    if (this.windowFill < CHUNKER_WINDOW_SIZE) {
      const n = Math.min(CHUNKER_WINDOW_SIZE - this.windowFill, len - pos);
      win.set(data.subarray(pos, pos + n), this.windowFill);
      this.windowFill += n;
      this.chunkSize += n;
      pos += n;
      if (this.windowFill < CHUNKER_WINDOW_SIZE) return -1;
      this.idx = 0;
      this.h = windowHash(win, 0);
    }
    let h = this.h;
    let idx = this.idx;
    const t = this.test;
    // Never past the maximum chunk size: stop there and cut.
    const end = Math.min(len, pos + (this.max - this.chunkSize));
    const start = pos;
    // Until 48 bytes of this piece are consumed, the leaving byte comes from the ring.
    const ringEnd = Math.min(end, pos + CHUNKER_WINDOW_SIZE);
    while (pos < ringEnd) {
      const enter = data[pos]!;
      const leave = win[idx]!;
      win[idx] = enter;
      idx = idx === CHUNKER_WINDOW_SIZE - 1 ? 0 : idx + 1;
      h = ((h << 1) | (h >>> 31)) ^ TABLE_LEAVE[leave]! ^ TABLE[enter]!;
      pos++;
      if (Math.imul(h + 1, t.inv) >>> 0 <= t.lim && isCut(h, t.d)) return this.cut(pos);
    }
    if (pos - start === CHUNKER_WINDOW_SIZE) {
      // The window is now exactly data[pos-48 .. pos-1]: read leaving bytes straight from `data`.
      pos = rollToCut(data, pos, end, h, t);
      h = rolledHash;
      if (isCut(h, t.d)) return this.cut(pos);
      // Leave the ring in the state the next piece expects: oldest byte at idx.
      win.set(data.subarray(pos - CHUNKER_WINDOW_SIZE, pos), 0);
      idx = 0;
    }
    this.chunkSize += pos - start;
    if (this.chunkSize >= this.max) return this.cut(pos);
    this.h = h;
    this.idx = idx;
    return -1;
  }

  private cut(pos: number): number {
    this.h = 0;
    this.chunkSize = 0;
    this.windowFill = 0;
    this.idx = 0;
    return pos;
  }
}

/**
 * Collects the pieces of one chunk into pooled memory (`chunkBuffers`): each byte is copied once,
 * into memory that was faulted in before, instead of concatenating fresh buffers per chunk (the
 * page faults of which cost as much as the chunking itself). The chunk handed out by `take` is
 * the caller's; give it back to the pool when nothing reads it any more.
 */
export class ChunkAssembler {
  private buf: Buffer | undefined;
  private fill = 0;

  /** Bytes collected for the chunk in progress. */
  get length(): number {
    return this.fill;
  }

  add(piece: Uint8Array): void {
    if (piece.length === 0) return;
    if (!this.buf) this.buf = chunkBuffers.take(chunkBuffers.capacity);
    if (this.fill + piece.length > this.buf.length) {
      // beyond a chunk's maximum size (a fixed chunker's caller may ask for anything): grow
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.fill + piece.length, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.fill);
      chunkBuffers.give(this.buf);
      this.buf = bigger;
    }
    this.buf.set(piece, this.fill);
    this.fill += piece.length;
  }

  /** The chunk collected so far (possibly empty), as a view on its own pooled memory. */
  take(): Buffer {
    const chunk = this.buf ? this.buf.subarray(0, this.fill) : Buffer.alloc(0);
    this.buf = undefined;
    this.fill = 0;
    return chunk;
  }
}

/**
 * A streaming splitter on top of `Chunker`: push pieces of a stream, get whole chunks back (each
 * one Buffer on pooled memory, see `ChunkAssembler`), then `finish()` for the tail. The pieces
 * pushed are copied before `push` returns: their memory may be reused at once.
 */
export class StreamChunker {
  private readonly chunker: Chunker;
  private readonly chunk = new ChunkAssembler();

  constructor(avg: number = DEFAULT_CHUNK_SIZE) {
    this.chunker = new Chunker(avg);
  }

  push(data: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    let from = 0;
    while (from < data.length) {
      const cut = this.chunker.scan(data, from);
      if (cut < 0) {
        this.chunk.add(data.subarray(from));
        break;
      }
      this.chunk.add(data.subarray(from, cut));
      out.push(this.chunk.take());
      from = cut;
    }
    return out;
  }

  /** The last, possibly short chunk; undefined when the stream ended on a boundary. */
  finish(): Buffer | undefined {
    return this.chunk.length === 0 ? undefined : this.chunk.take();
  }
}

/**
 * Fixed-size chunking for images and block devices (PBS uses 4 MiB for `.fidx`, §7.3): every
 * chunk is `size` bytes except the last. Chunks are on pooled memory, as `StreamChunker`'s.
 */
export class FixedChunker {
  readonly size: number;
  private readonly chunk = new ChunkAssembler();

  constructor(size: number = DEFAULT_CHUNK_SIZE) {
    this.size = size;
  }

  push(data: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    let off = 0;
    while (off < data.length) {
      const n = Math.min(this.size - this.chunk.length, data.length - off);
      this.chunk.add(data.subarray(off, off + n));
      off += n;
      if (this.chunk.length === this.size) out.push(this.chunk.take());
    }
    return out;
  }

  finish(): Buffer | undefined {
    return this.chunk.length === 0 ? undefined : this.chunk.take();
  }
}

/**
 * Reference implementation: hashes every byte exactly as PBS's `scan` does, with no skipping.
 * Slow; exported for tests that check `Chunker` cuts at the same places.
 */
export function referenceBoundaries(data: Uint8Array, avg: number = DEFAULT_CHUNK_SIZE): number[] {
  const min = avg >>> 2;
  const max = avg * 4;
  const d = chunkerDiscriminator(avg);
  const cuts: number[] = [];
  let cs = 0;
  let h = 0;
  const win = new Uint8Array(CHUNKER_WINDOW_SIZE);
  for (let pos = 0; pos < data.length; pos++) {
    const b = data[pos]!;
    if (cs < CHUNKER_WINDOW_SIZE) {
      win[cs] = b;
      cs++;
      if (cs === CHUNKER_WINDOW_SIZE) h = windowHash(win, 0);
      continue;
    }
    const idx = cs % CHUNKER_WINDOW_SIZE;
    const leave = win[idx]!;
    win[idx] = b;
    h = ((h << 1) | (h >>> 31)) ^ TABLE_LEAVE[leave]! ^ TABLE[b]!;
    cs++;
    if (cs >= max || (cs >= min && (h >>> 0) % d === d - 1)) {
      cuts.push(pos + 1);
      cs = 0;
      h = 0;
    }
  }
  return cuts;
}
