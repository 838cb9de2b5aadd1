/**
 * A small mutation fuzzer for Stowage's pure codecs: a seeded PRNG, valid seed inputs produced by
 * the real encoders, and the classic mutations (bit flips, byte sets, truncation, extension,
 * splice, interesting integers at header offsets). Each target runs for `STOWAGE_FUZZ_SECONDS`
 * (default 3) from the seed `STOWAGE_FUZZ_SEED` (default: random, printed on failure), so a
 * failure replays with the seed it printed.
 */
import assert from 'node:assert/strict';
import { StowageError } from '../../src/errors.js';

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Boundary values that parsers get wrong: 0, -1, sign bits, 2^32, 2^53, 2^64-1. */
const INTERESTING_U64: readonly bigint[] = [
  0n,
  1n,
  0x7fn,
  0x80n,
  0xffn,
  0x7fffn,
  0xffffn,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  BigInt(Number.MAX_SAFE_INTEGER),
  BigInt(Number.MAX_SAFE_INTEGER) + 1n,
  0x7fffffffffffffffn,
  0x8000000000000000n,
  0xffffffffffffffffn,
];

export interface MutateOptions {
  /** Byte offsets of integer fields, where interesting integers are written most usefully. */
  intOffsets?: readonly number[];
  /** Other valid inputs to splice from. */
  corpus?: readonly Buffer[];
}

/** One to four random mutations of `input` (never modified in place). */
export function mutate(rng: Prng, input: Buffer, opts: MutateOptions = {}): Buffer {
  let b = Buffer.from(input);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(7)) {
      case 0: // bit flip
        if (b.length > 0) {
          const i = rng.int(b.length);
          b[i] = b[i]! ^ (1 << rng.int(8));
        }
        break;
      case 1: // byte set
        if (b.length > 0) b[rng.int(b.length)] = rng.pick([0, 0xff, 0x7f, 0x80, rng.int(256)]);
        break;
      case 2: // truncation
        b = b.subarray(0, rng.int(b.length + 1));
        break;
      case 3: // extension
        b = Buffer.concat([b, rng.bytes(1 + rng.int(64))]);
        break;
      case 4: {
        // splice: a piece of another input (or of itself) over a random place
        const other = opts.corpus?.length ? rng.pick(opts.corpus) : b;
        if (other.length === 0 || b.length === 0) break;
        const from = rng.int(other.length);
        const piece = other.subarray(from, from + 1 + rng.int(64));
        const at = rng.int(b.length);
        b = Buffer.concat([b.subarray(0, at), piece, b.subarray(at + rng.int(piece.length + 1))]);
        break;
      }
      case 5: {
        // an interesting integer at a header offset (or anywhere)
        const offsets = opts.intOffsets?.length ? opts.intOffsets : [rng.int(Math.max(1, b.length))];
        const at = rng.pick(offsets);
        const width = rng.pick([1, 2, 4, 8]);
        if (at + width > b.length) break;
        const v = rng.pick(INTERESTING_U64) & ((1n << BigInt(width * 8)) - 1n);
        for (let i = 0; i < width; i++) b[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
        break;
      }
      default: {
        // a run of random bytes
        if (b.length === 0) break;
        const at = rng.int(b.length);
        rng.bytes(Math.min(1 + rng.int(16), b.length - at)).copy(b, at);
      }
    }
  }
  return b;
}

/** Text mutations reuse the byte mutations, plus the characters text parsers care about. */
export function mutateText(rng: Prng, input: string, opts: MutateOptions & { alphabet: string }): string {
  if (rng.int(2) === 0) return mutate(rng, Buffer.from(input, 'utf8'), opts).toString('utf8');
  const chars = [...input];
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(chars.length + 1);
    const c = opts.alphabet[rng.int(opts.alphabet.length)]!;
    if (rng.int(2) === 0) chars.splice(at, 0, c);
    else chars.splice(at, 1, c);
  }
  return chars.join('');
}

export function fuzzSeconds(): number {
  const s = Number(process.env.STOWAGE_FUZZ_SECONDS ?? '3');
  return Number.isFinite(s) && s > 0 ? s : 3;
}

function fuzzSeed(): number {
  const fixed = process.env.STOWAGE_FUZZ_SEED;
  if (fixed !== undefined && fixed !== '') return Number(fixed) >>> 0;
  return Math.floor(Math.random() * 2 ** 32);
}

/** How long one decode may take before it counts as a hang. */
const HANG_MS = 2_000;

/**
 * The property every decoder must have: on any input it returns, or throws a StowageError (or
 * one of `allowed`), within HANG_MS. Anything else — a TypeError, a RangeError from a huge
 * allocation, an assertion inside a dependency — is a crash.
 */
export function assertDeclaredOutcome(
  decode: () => unknown,
  allowed: ReadonlyArray<new (...args: never[]) => Error> = [],
): unknown {
  const start = Date.now();
  try {
    return decode();
  } catch (err) {
    if (err instanceof StowageError || allowed.some((E) => err instanceof E)) return err;
    throw err;
  } finally {
    const took = Date.now() - start;
    assert.ok(took < HANG_MS, `decode took ${took} ms (hang)`);
  }
}

/**
 * Run `iteration(rng, n)` for the fuzz time from one seed; each iteration derives its own seed
 * so that a failure names the exact input to replay.
 */
export function runFuzz(name: string, iteration: (rng: Prng, n: number) => void): number {
  const seed = fuzzSeed();
  const until = Date.now() + fuzzSeconds() * 1000;
  const master = new Prng(seed);
  let n = 0;
  while (Date.now() < until) {
    const iterSeed = Math.floor(master.next() * 2 ** 32);
    try {
      iteration(new Prng(iterSeed), n);
    } catch (err) {
      const why = err instanceof Error ? (err.stack ?? err.message) : String(err);
      throw new Error(
        `fuzz target '${name}' failed at iteration ${n}; replay with STOWAGE_FUZZ_SEED=${seed}\n${why}`,
        { cause: err },
      );
    }
    n++;
  }
  return n;
}
