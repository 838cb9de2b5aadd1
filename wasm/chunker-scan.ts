/**
 * The chunker's hot loop in AssemblyScript, compiled to WebAssembly (`npm run build:wasm`, which
 * writes src/client/chunker-scan-wasm.ts): the same rolling hash and cut test as `roll` in
 * src/client/chunker.ts described there, about 1.2-1.6 times as fast as V8 runs it in JavaScript
 * (docs/performance.md, tenth round, h54).
 *
 * Memory layout, written by the caller: the buzhash table at byte 0, the table of leaving bytes at
 * 1024, the bytes to scan from 2048 on, the 48 bytes before the first one included (`pos` >= 2096).
 * No runtime, no static data: nothing else lives in the memory.
 */

/** The hash after the last `roll`. */
export let rolled: i32 = 0;

// @ts-expect-error: AssemblyScript's decorator
@inline function step(h: i32, enter: u32, leave: u32): i32 {
  return rotl<i32>(h, 1) ^ load<i32>(1024 + (leave << 2)) ^ load<i32>(enter << 2);
}

/**
 * Roll the hash over memory [pos, end); returns the position after the first cut candidate
 * (`(h + 1) * inv <= lim`, unsigned, mod 2^32), or `end` when there is none. The hash is left in
 * `rolled`. Aligned words are read four bytes at a time: the leaving byte is 48 bytes (12 words)
 * behind the entering one, so both stay aligned together.
 */
export function roll(pos: i32, end: i32, h: i32, inv: i32, lim: u32): i32 {
  while (pos < end && (pos & 3) != 0) {
    h = step(h, <u32>load<u8>(pos), <u32>load<u8>(pos - 48));
    pos++;
    if (<u32>((h + 1) * inv) <= lim) {
      rolled = h;
      return pos;
    }
  }
  const wordsEnd = pos + ((end - pos) & ~3);
  while (pos < wordsEnd) {
    const a = load<u32>(pos);
    const b = load<u32>(pos - 48);
    h = step(h, a & 255, b & 255);
    if (<u32>((h + 1) * inv) <= lim) {
      rolled = h;
      return pos + 1;
    }
    h = step(h, (a >> 8) & 255, (b >> 8) & 255);
    if (<u32>((h + 1) * inv) <= lim) {
      rolled = h;
      return pos + 2;
    }
    h = step(h, (a >> 16) & 255, (b >> 16) & 255);
    if (<u32>((h + 1) * inv) <= lim) {
      rolled = h;
      return pos + 3;
    }
    h = step(h, a >> 24, b >> 24);
    pos += 4;
    if (<u32>((h + 1) * inv) <= lim) {
      rolled = h;
      return pos;
    }
  }
  while (pos < end) {
    h = step(h, <u32>load<u8>(pos), <u32>load<u8>(pos - 48));
    pos++;
    if (<u32>((h + 1) * inv) <= lim) {
      rolled = h;
      return pos;
    }
  }
  rolled = h;
  return end;
}
