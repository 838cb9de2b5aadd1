/**
 * SipHash-2-4 with a 64-bit result, as pxar's goodbye tables need it (`format::hash_filename`:
 * the Rust `siphasher` crate fed the raw name bytes, no length suffix). The 64-bit lanes are kept
 * as pairs of 32-bit halves so that hashing a million names during an encode stays cheap; BigInt
 * arithmetic would cost an allocation per operation.
 */

/** 64-bit key as two 32-bit halves per word: [k0 low, k0 high, k1 low, k1 high]. */
export type SipKey = readonly [number, number, number, number];

export function sipKey(k0: bigint, k1: bigint): SipKey {
  const mask = 0xffffffffn;
  return [Number(k0 & mask), Number(k0 >> 32n), Number(k1 & mask), Number(k1 >> 32n)];
}

/** SipHash-2-4 of `data` under `key`, as an unsigned 64-bit value. */
export function sipHash24(key: SipKey, data: Uint8Array): bigint {
  // v0..v3 as (low, high) halves; the initial constants spell "somepseudorandomlygeneratedbytes"
  let v0l = (key[0] ^ 0x70736575) >>> 0;
  let v0h = (key[1] ^ 0x736f6d65) >>> 0;
  let v1l = (key[2] ^ 0x6e646f6d) >>> 0;
  let v1h = (key[3] ^ 0x646f7261) >>> 0;
  let v2l = (key[0] ^ 0x6e657261) >>> 0;
  let v2h = (key[1] ^ 0x6c796765) >>> 0;
  let v3l = (key[2] ^ 0x79746573) >>> 0;
  let v3h = (key[3] ^ 0x74656462) >>> 0;

  // One loop over the message blocks (the last one padded with the length) and the finalisation,
  // with the round written once: the state stays in locals (a closure over them would keep them
  // in a heap context, several times slower per name).
  const len = data.length;
  const whole = len - (len % 8);
  for (let i = 0; i <= whole + 8; i += 8) {
    let ml = 0;
    let mh = 0;
    let rounds = 2;
    if (i < whole) {
      ml = (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24)) >>> 0;
      mh = (data[i + 4]! | (data[i + 5]! << 8) | (data[i + 6]! << 16) | (data[i + 7]! << 24)) >>> 0;
    } else if (i === whole) {
      // last block: the remaining bytes, and the length's low byte in the top byte
      mh = ((len & 0xff) << 24) >>> 0;
      for (let j = whole; j < len; j++) {
        const shift = (j - whole) * 8;
        if (shift < 32) ml = (ml | (data[j]! << shift)) >>> 0;
        else mh = (mh | (data[j]! << (shift - 32))) >>> 0;
      }
    } else {
      // finalisation
      v2l = (v2l ^ 0xff) >>> 0;
      rounds = 4;
    }
    v3l = (v3l ^ ml) >>> 0;
    v3h = (v3h ^ mh) >>> 0;
    for (let r = 0; r < rounds; r++) {
      let lo: number;
      let hi: number;
      // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
      lo = (v0l + v1l) >>> 0;
      v0h = (v0h + v1h + (lo < v0l ? 1 : 0)) >>> 0;
      v0l = lo;
      hi = ((v1h << 13) | (v1l >>> 19)) >>> 0;
      lo = ((v1l << 13) | (v1h >>> 19)) >>> 0;
      v1l = (lo ^ v0l) >>> 0;
      v1h = (hi ^ v0h) >>> 0;
      lo = v0l;
      v0l = v0h;
      v0h = lo;
      // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
      lo = (v2l + v3l) >>> 0;
      v2h = (v2h + v3h + (lo < v2l ? 1 : 0)) >>> 0;
      v2l = lo;
      hi = ((v3h << 16) | (v3l >>> 16)) >>> 0;
      lo = ((v3l << 16) | (v3h >>> 16)) >>> 0;
      v3l = (lo ^ v2l) >>> 0;
      v3h = (hi ^ v2h) >>> 0;
      // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
      lo = (v0l + v3l) >>> 0;
      v0h = (v0h + v3h + (lo < v0l ? 1 : 0)) >>> 0;
      v0l = lo;
      hi = ((v3h << 21) | (v3l >>> 11)) >>> 0;
      lo = ((v3l << 21) | (v3h >>> 11)) >>> 0;
      v3l = (lo ^ v0l) >>> 0;
      v3h = (hi ^ v0h) >>> 0;
      // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
      lo = (v2l + v1l) >>> 0;
      v2h = (v2h + v1h + (lo < v2l ? 1 : 0)) >>> 0;
      v2l = lo;
      hi = ((v1h << 17) | (v1l >>> 15)) >>> 0;
      lo = ((v1l << 17) | (v1h >>> 15)) >>> 0;
      v1l = (lo ^ v2l) >>> 0;
      v1h = (hi ^ v2h) >>> 0;
      lo = v2l;
      v2l = v2h;
      v2h = lo;
    }
    v0l = (v0l ^ ml) >>> 0;
    v0h = (v0h ^ mh) >>> 0;
  }
  const lo = (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
  const hi = (v0h ^ v1h ^ v2h ^ v3h) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}
