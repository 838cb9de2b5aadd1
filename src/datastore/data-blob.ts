/**
 * DataBlob, the envelope of every chunk and `.blob` file, byte-compatible with PBS
 * (reference §7.2): `magic[8] || crc32_le[4] || payload`, encrypted variants with
 * `iv[16] || tag[16]` before the ciphertext. The CRC covers everything after the header.
 * Pure: bytes in, bytes out.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { createRequire } from 'node:module';
import { CorruptDataError } from '../errors.js';

/** First 8 bytes of sha256 of the format's name, as PBS defines them. */
export const BLOB_MAGIC = {
  uncompressed: Buffer.from([66, 171, 56, 7, 190, 131, 112, 161]),
  compressed: Buffer.from([49, 185, 88, 66, 111, 182, 163, 127]),
  encrypted: Buffer.from([123, 103, 133, 190, 34, 45, 76, 240]),
  encryptedCompressed: Buffer.from([230, 89, 27, 191, 11, 191, 216, 11]),
} as const;

export type BlobKind = keyof typeof BLOB_MAGIC;

export const BLOB_HEADER_SIZE = 12;
export const ENCRYPTED_BLOB_HEADER_SIZE = 44;
/** PBS MAX_BLOB_SIZE for encoding. */
export const MAX_BLOB_SIZE = 128 * 1024 * 1024;
/** zstd level PBS uses. */
export const ZSTD_LEVEL = 1;

export function blobKind(bytes: Uint8Array): BlobKind | undefined {
  if (bytes.length < 8) return undefined;
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, 8);
  for (const [kind, magic] of Object.entries(BLOB_MAGIC) as Array<[BlobKind, Buffer]>) {
    if (head.equals(magic)) return kind;
  }
  return undefined;
}

export function isEncryptedKind(kind: BlobKind): boolean {
  return kind === 'encrypted' || kind === 'encryptedCompressed';
}

/** Where an encoder or decoder puts its output: a Buffer of exactly `size` bytes. */
export type OutputBuffer = (size: number) => Buffer;

// One compression context for all encodes of this thread (zstd's context reuse).
let cctx: InstanceType<typeof zstd.CCtx> | undefined;

/**
 * Encode plaintext as an unencrypted blob. With `compress`, zstd-1 is kept only when it is
 * smaller (PBS does the same), otherwise the uncompressed variant is written. zstd writes
 * straight behind the header in the output (`into`, e.g. pooled memory): no copy of the
 * compressed body, and incompressible data is found when zstd runs out of the room a smaller
 * result would need. The result may be a view on a larger buffer.
 */
export function encodeBlob(
  payload: Uint8Array,
  opts: { compress?: boolean; into?: OutputBuffer } = {},
): Buffer {
  if (payload.length > MAX_BLOB_SIZE) {
    throw new CorruptDataError(`blob too large: ${payload.length} bytes (max ${MAX_BLOB_SIZE})`);
  }
  const out = (opts.into ?? Buffer.allocUnsafe)(BLOB_HEADER_SIZE + payload.length);
  let magic: Buffer = BLOB_MAGIC.uncompressed;
  let bodyLength = payload.length;
  let compressed = -1;
  if (opts.compress !== false && payload.length > 1) {
    try {
      const room = out.subarray(BLOB_HEADER_SIZE, BLOB_HEADER_SIZE + payload.length - 1);
      compressed = (cctx ??= new zstd.CCtx()).compress(room, payload, ZSTD_LEVEL);
    } catch {
      // "Destination buffer is too small": not smaller compressed, stored as it is
    }
  }
  if (compressed >= 0) {
    magic = BLOB_MAGIC.compressed;
    bodyLength = compressed;
  } else out.set(payload, BLOB_HEADER_SIZE);
  const blob = out.subarray(0, BLOB_HEADER_SIZE + bodyLength);
  magic.copy(blob, 0);
  blob.writeUInt32LE(crc32(blob.subarray(BLOB_HEADER_SIZE)), 8);
  return blob;
}

function headerSize(kind: BlobKind): number {
  return isEncryptedKind(kind) ? ENCRYPTED_BLOB_HEADER_SIZE : BLOB_HEADER_SIZE;
}

/** Check magic and length; returns the kind. */
export function checkBlobHeader(bytes: Uint8Array, what = 'blob'): BlobKind {
  const kind = blobKind(bytes);
  if (!kind) throw new CorruptDataError(`${what}: wrong magic number`);
  if (bytes.length < headerSize(kind)) throw new CorruptDataError(`${what}: truncated header`);
  return kind;
}

/** Check magic, length and CRC; returns the kind. Works for encrypted blobs too (opaque to us). */
export function verifyBlobCrc(bytes: Uint8Array, what = 'blob'): BlobKind {
  const kind = checkBlobHeader(bytes, what);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const stored = buf.readUInt32LE(8);
  const actual = crc32(buf.subarray(BLOB_HEADER_SIZE));
  if (stored !== actual)
    throw new CorruptDataError(`${what}: CRC mismatch (stored ${stored}, computed ${actual})`);
  return kind;
}

/** Recompute and store the CRC (the server does this on chunk upload, reference §7.2). */
export function rewriteBlobCrc(bytes: Buffer): void {
  bytes.writeUInt32LE(crc32(bytes.subarray(BLOB_HEADER_SIZE)), 8);
}

/** Decode an unencrypted blob into its plaintext, verifying the CRC. */
export function decodeBlob(bytes: Uint8Array, what = 'blob'): Buffer {
  const kind = verifyBlobCrc(bytes, what);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (isEncryptedKind(kind)) {
    throw new CorruptDataError(`${what}: encrypted blob cannot be decoded on the server`);
  }
  const body = buf.subarray(BLOB_HEADER_SIZE);
  if (kind === 'uncompressed') return Buffer.from(body);
  return zstdDecompressBounded(body, MAX_BLOB_SIZE, what);
}

// zstd-napi's low-level binding is a native CommonJS module: ESM sees no named exports in it.
const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof import('zstd-napi/binding.js');

// One context for all decodes (creating one per chunk costs more than the decode of a small one).
let dctx: InstanceType<typeof zstd.DCtx> | undefined;

/** The content size the frames of `body` declare, or null when a frame does not say. */
function declaredContentSize(body: Uint8Array): number | null {
  let total = 0;
  for (let frame = body; frame.length > 0; frame = frame.subarray(zstd.findFrameCompressedSize(frame))) {
    const size = zstd.getFrameContentSize(frame);
    if (size === null) return null;
    total += size;
  }
  return total;
}

/** The error for zstd content beyond `maxSize` (declared, or found while decoding). */
function zstdTooLarge(what: string, maxSize: number): CorruptDataError {
  return new CorruptDataError(`${what}: zstd data exceeds ${maxSize} bytes`);
}

/**
 * After a failed decode: reset the shared context (zstd-napi leaves it in its failed state, and
 * it refused every later, valid, decode) and name `what` in the error.
 */
function zstdFailed(ctx: InstanceType<typeof zstd.DCtx>, err: unknown, what: string): CorruptDataError {
  ctx.reset(zstd.ResetDirective.sessionOnly);
  if (err instanceof CorruptDataError) return err;
  return new CorruptDataError(`${what}: zstd data is corrupt (${(err as Error).message})`);
}

/** The reused output window of `zstdDigestBounded` (zstd's recommended streaming output size). */
let digestWindow: Buffer | undefined;

/**
 * The size and SHA-256 of what zstd `body` decodes to, without keeping it: decoded window by
 * window (128 KiB, reused) and each window hashed while it is still in the CPU cache, instead of
 * decoding the whole chunk into memory and reading it again for the hash. Bounds and errors as
 * `zstdDecompressBounded` (content beyond `maxSize` is refused as it is produced).
 */
export function zstdDigestBounded(
  body: Uint8Array,
  maxSize: number,
  what: string,
): { size: number; digest: Buffer } {
  const ctx = (dctx ??= new zstd.DCtx());
  const window = (digestWindow ??= Buffer.allocUnsafeSlow(zstd.dStreamOutSize()));
  const hash = createHash('sha256');
  let total = 0;
  let input = body;
  try {
    // A frame that claims more than the limit is refused for that, before anything is decoded
    // (as zstdDecompressBounded does): zstd itself would fail it on its window size instead.
    const declared = declaredContentSize(body);
    if (declared !== null && declared > maxSize) throw zstdTooLarge(what, maxSize);
    for (;;) {
      const [hint, produced, consumed] = ctx.decompressStream(window, input);
      total += produced;
      if (total > maxSize) throw zstdTooLarge(what, maxSize);
      hash.update(window.subarray(0, produced));
      input = input.subarray(consumed);
      // 0: the frame is decoded and flushed whole (the next one starts with the input left)
      if (hint === 0 && input.length === 0) return { size: total, digest: hash.digest() };
      if (produced === 0 && consumed === 0) {
        const why = input.length === 0 ? 'truncated frame' : 'no progress';
        throw new CorruptDataError(`${what}: zstd data is corrupt (${why})`);
      }
    }
  } catch (err) {
    throw zstdFailed(ctx, err, what);
  }
}

/**
 * zstd-decode `body`, refusing content beyond `maxSize` bytes before it is allocated: a 20-byte
 * frame may claim 4 GiB (zstd-napi's `decompress` allocates what the frame claims), and a frame
 * without a declared size may expand a thousandfold. PBS likewise caps a blob at MAX_BLOB_SIZE.
 * CorruptDataError names `what` on any damage; the shared context is reset after a failure
 * (`zstdFailed`). A frame that declares its size (PBS's and ours do) is decoded straight into
 * `into(size)`, e.g. pooled memory.
 */
export function zstdDecompressBounded(
  body: Uint8Array,
  maxSize: number,
  what: string,
  into: OutputBuffer = Buffer.allocUnsafe,
): Buffer {
  const ctx = (dctx ??= new zstd.DCtx());
  try {
    const declared = declaredContentSize(body);
    if (declared !== null) {
      if (declared > maxSize) throw zstdTooLarge(what, maxSize);
      const out = into(declared);
      const written = ctx.decompress(out, body);
      if (written !== declared) {
        throw new CorruptDataError(`${what}: zstd data is corrupt (${written} of ${declared} bytes)`);
      }
      return out;
    }
    const parts: Buffer[] = [];
    let total = 0;
    let input = body;
    for (;;) {
      const piece = Buffer.allocUnsafe(zstd.dStreamOutSize());
      const [hint, produced, consumed] = ctx.decompressStream(piece, input);
      total += produced;
      if (total > maxSize) throw zstdTooLarge(what, maxSize);
      parts.push(piece.subarray(0, produced));
      input = input.subarray(consumed);
      // a full piece may leave output pending even when all input is consumed
      if (input.length === 0 && produced < piece.length) {
        if (hint !== 0) throw new CorruptDataError(`${what}: zstd data is corrupt (truncated frame)`);
        break;
      }
      if (produced === 0 && consumed === 0) {
        throw new CorruptDataError(`${what}: zstd data is corrupt (no progress)`);
      }
    }
    return Buffer.concat(parts, total);
  } catch (err) {
    throw zstdFailed(ctx, err, what);
  }
}
