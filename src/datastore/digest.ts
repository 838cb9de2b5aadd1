/**
 * SHA-256 digests as they appear on disk (32 raw bytes in indexes) and in names and JSON
 * (64 lowercase hex characters: chunk file names, manifest `csum`). Pure helpers.
 */
import { createHash } from 'node:crypto';
import { BadRequestError } from '../errors.js';

export const DIGEST_SIZE = 32;

const HEX_DIGEST = /^[0-9a-f]{64}$/;

/** sha256 over the concatenation of `parts`, without copying them into one buffer first. */
export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** True for exactly 64 lowercase hex characters, the only spelling PBS uses in file names. */
export function isDigestHex(s: string): boolean {
  return HEX_DIGEST.test(s);
}

export function digestToHex(digest: Uint8Array): string {
  if (digest.length !== DIGEST_SIZE) {
    throw new BadRequestError(`digest must be ${DIGEST_SIZE} bytes, got ${digest.length}`);
  }
  return Buffer.from(digest.buffer, digest.byteOffset, digest.length).toString('hex');
}

/**
 * Parse a hex digest from a client or a file name. Upper case is accepted (and normalised),
 * since clients may send it; anything else is a BadRequestError naming `what`.
 */
export function hexToDigest(hex: string, what = 'digest'): Buffer {
  const lower = hex.toLowerCase();
  if (!HEX_DIGEST.test(lower)) {
    throw new BadRequestError(`${what}: expected 64 hex characters, got '${hex.slice(0, 80)}'`);
  }
  return Buffer.from(lower, 'hex');
}
