import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  Chunker,
  FixedChunker,
  StreamChunker,
  chunkerDiscriminator,
  referenceBoundaries,
  validateChunkSize,
} from '../../src/client/chunker.js';

const AVG = 64 * 1024;

/** Deterministic pseudo-random bytes (so a failure reproduces). */
function prng(seed: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  let off = 0;
  let counter = 0;
  while (off < n) {
    const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

function boundaries(data: Buffer, avg: number, pieceSizes: () => number): number[] {
  const c = new Chunker(avg);
  const cuts: number[] = [];
  let base = 0;
  while (base < data.length) {
    const piece = data.subarray(base, Math.min(data.length, base + pieceSizes()));
    let from = 0;
    for (;;) {
      const cut = c.scan(piece, from);
      if (cut < 0) break;
      cuts.push(base + cut);
      from = cut;
    }
    base += piece.length;
  }
  return cuts;
}

function chunksOf(data: Buffer, avg = AVG): Buffer[] {
  const s = new StreamChunker(avg);
  const out = s.push(data);
  const last = s.finish();
  if (last) out.push(last);
  return out;
}

test('the discriminator for 4 MiB is the one PBS computes', () => {
  // avg / (-1.42888852e-7 * avg + 1.33237515), truncated, as chunker.rs
  assert.equal(
    chunkerDiscriminator(4 * 1024 * 1024),
    Math.trunc(4194304 / (-1.42888852e-7 * 4194304 + 1.33237515)),
  );
  assert.ok(chunkerDiscriminator(4 * 1024 * 1024) > 4 * 1024 * 1024);
});

test('the fast chunker cuts exactly where hashing every byte cuts, whatever the piece sizes', () => {
  const data = prng(1, 3 * 1024 * 1024);
  const expected = referenceBoundaries(data, AVG);
  assert.ok(expected.length > 10, `expected many chunks, got ${expected.length}`);
  assert.deepEqual(
    boundaries(data, AVG, () => data.length),
    expected,
  );
  assert.deepEqual(
    boundaries(data, AVG, () => 1 + Math.floor(Math.random() * 100_000)),
    expected,
  );
  assert.deepEqual(
    boundaries(data, AVG, () => 1 + Math.floor(Math.random() * 60)),
    expected.slice(0, expected.length),
  );
});

test('every chunk size cuts where hashing every byte cuts, odd and even discriminators alike', () => {
  // 256 KiB and 512 KiB have even discriminators, 128 KiB an odd one: the fast divisibility test
  // works on the odd part and must still find exactly the cuts of `h mod d == d - 1`.
  const data = prng(6, 4 * 1024 * 1024 + 13);
  for (const avg of [128 * 1024, 256 * 1024, 512 * 1024]) {
    const expected = referenceBoundaries(data, avg);
    assert.ok(expected.length >= 4, `avg ${avg}: ${expected.length} cuts`);
    assert.deepEqual(
      boundaries(data, avg, () => 1 + Math.floor(Math.random() * 300_000)),
      expected,
      `avg ${avg}`,
    );
  }
});

test('cuts do not depend on how a piece is aligned in memory', () => {
  const data = prng(7, 1024 * 1024);
  const expected = referenceBoundaries(data, AVG);
  for (let shift = 1; shift < 4; shift++) {
    const backing = Buffer.alloc(data.length + shift);
    data.copy(backing, shift);
    assert.deepEqual(
      boundaries(backing.subarray(shift), AVG, () => 128 * 1024 + shift),
      expected,
      `offset ${shift}`,
    );
  }
});

test("chunks longer than the scanner's 1 MiB span cut where hashing every byte cuts (4 MiB average)", () => {
  // The WebAssembly scanner takes a piece in spans of 1 MiB: a chunk of several MiB crosses spans.
  const avg = 4 * 1024 * 1024;
  const data = prng(8, 24 * 1024 * 1024 + 5);
  const expected = referenceBoundaries(data, avg);
  assert.ok(expected.length >= 2, `${expected.length} cuts`);
  assert.ok(
    expected.some((cut, i) => cut - (expected[i - 1] ?? 0) > 2 * 1024 * 1024),
    'a chunk longer than two spans',
  );
  assert.deepEqual(
    boundaries(data, avg, () => data.length),
    expected,
  );
  assert.deepEqual(
    boundaries(data, avg, () => 3 * 1024 * 1024 + 7),
    expected,
  );
});

test('chunk sizes stay between avg/4 and avg*4 and average near avg on random data', () => {
  const data = prng(2, 8 * 1024 * 1024);
  const chunks = chunksOf(data);
  assert.equal(Buffer.concat(chunks).equals(data), true);
  for (const c of chunks.slice(0, -1)) {
    assert.ok(c.length >= AVG / 4 && c.length <= AVG * 4, `chunk of ${c.length} bytes`);
  }
  const mean = data.length / chunks.length;
  assert.ok(mean > AVG * 0.6 && mean < AVG * 1.6, `mean chunk size ${mean}`);
});

test('constant data is cut at the maximum size', () => {
  const data = Buffer.alloc(AVG * 4 * 3 + 100, 0);
  const chunks = chunksOf(data);
  assert.deepEqual(
    chunks.map((c) => c.length),
    [AVG * 4, AVG * 4, AVG * 4, 100],
  );
});

test('boundaries are deterministic: the same stream gives the same chunks', () => {
  const data = prng(3, 2 * 1024 * 1024);
  const a = chunksOf(data).map((c) => createHash('sha256').update(c).digest('hex'));
  const b = chunksOf(Buffer.from(data)).map((c) => createHash('sha256').update(c).digest('hex'));
  assert.deepEqual(a, b);
});

test('inserting one byte only changes the chunks near the insertion', () => {
  const data = prng(4, 4 * 1024 * 1024);
  const at = 2 * 1024 * 1024 + 12345;
  const changed = Buffer.concat([data.subarray(0, at), Buffer.from([0x42]), data.subarray(at)]);
  const digests = (bufs: Buffer[]) => bufs.map((c) => createHash('sha256').update(c).digest('hex'));
  const before = digests(chunksOf(data));
  const after = new Set(digests(chunksOf(changed)));
  const lost = before.filter((d) => !after.has(d));
  assert.ok(before.length > 30);
  assert.ok(lost.length >= 1 && lost.length <= 2, `${lost.length} of ${before.length} chunks changed`);
});

test('the stream chunker reassembles to the input when fed in small pieces', () => {
  const data = prng(5, 1024 * 1024 + 7);
  const s = new StreamChunker(AVG);
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += 1000) out.push(...s.push(data.subarray(off, off + 1000)));
  const last = s.finish();
  if (last) out.push(last);
  assert.ok(Buffer.concat(out).equals(data));
  assert.deepEqual(
    out.map((c) => c.length),
    chunksOf(data).map((c) => c.length),
  );
});

test('fixed chunking gives equal chunks and a short tail', () => {
  const f = new FixedChunker(1000);
  const data = randomBytes(3500);
  const out = [...f.push(data.subarray(0, 1700)), ...f.push(data.subarray(1700))];
  const last = f.finish();
  assert.deepEqual(
    out.map((c) => c.length),
    [1000, 1000, 1000],
  );
  assert.equal(last?.length, 500);
  assert.ok(Buffer.concat([...out, last!]).equals(data));
  assert.equal(f.finish(), undefined);
});

test('chunk sizes are checked as PBS checks --chunk-size', () => {
  assert.equal(validateChunkSize(65536), 65536);
  assert.equal(validateChunkSize(4 * 1024 * 1024), 4 * 1024 * 1024);
  assert.throws(() => validateChunkSize(3 * 65536), /power of two/);
  assert.throws(() => validateChunkSize(8 * 1024 * 1024), /power of two/);
});
