import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import {
  BLOB_MAGIC,
  decodeBlob,
  encodeBlob,
  blobKind,
  verifyBlobCrc,
  rewriteBlobCrc,
  zstdDigestBounded,
} from '../../src/datastore/data-blob.js';

const magicOf = (text: string) => createHash('sha256').update(text).digest().subarray(0, 8);

test('blob magic numbers are the first 8 bytes of sha256 of the PBS format names', () => {
  assert.deepEqual(BLOB_MAGIC.uncompressed, magicOf('Proxmox Backup uncompressed blob v1.0'));
  assert.deepEqual(BLOB_MAGIC.compressed, magicOf('Proxmox Backup zstd compressed blob v1.0'));
  assert.deepEqual(BLOB_MAGIC.encrypted, magicOf('Proxmox Backup encrypted blob v1.0'));
  assert.deepEqual(
    BLOB_MAGIC.encryptedCompressed,
    magicOf('Proxmox Backup zstd compressed encrypted blob v1.0'),
  );
  assert.deepEqual([...BLOB_MAGIC.uncompressed], [66, 171, 56, 7, 190, 131, 112, 161]);
});

test('an uncompressible payload is stored uncompressed with the CRC in bytes 8..12 little-endian', () => {
  const payload = Buffer.from([1, 2, 3]);
  const blob = encodeBlob(payload);
  assert.equal(blobKind(blob), 'uncompressed');
  assert.equal(blob.length, 12 + 3);
  assert.equal(blob.readUInt32LE(8), crc32(payload));
  assert.deepEqual(decodeBlob(blob), payload);
});

test('a compressible payload is stored as zstd and round-trips', () => {
  const payload = Buffer.alloc(100_000, 'stowage ');
  const blob = encodeBlob(payload);
  assert.equal(blobKind(blob), 'compressed');
  assert.ok(blob.length < 1000);
  assert.deepEqual(decodeBlob(blob), payload);
});

test('corrupt blobs are refused with a typed error naming the problem', () => {
  const blob = encodeBlob(Buffer.alloc(1000, 'x'));
  const flipped = Buffer.from(blob);
  flipped[flipped.length - 1]! ^= 0xff;
  assert.throws(() => decodeBlob(flipped), { code: 'CORRUPT_DATA', message: /CRC mismatch/ });
  const badMagic = Buffer.from(blob);
  badMagic[0] = 0;
  assert.throws(() => decodeBlob(badMagic), { code: 'CORRUPT_DATA', message: /wrong magic/ });
  assert.throws(() => decodeBlob(blob.subarray(0, 5)), { code: 'CORRUPT_DATA' });
  rewriteBlobCrc(flipped);
  assert.equal(verifyBlobCrc(flipped), 'compressed');
  assert.throws(() => decodeBlob(flipped), { code: 'CORRUPT_DATA', message: /zstd/ });
});

test('encrypted blobs are recognised, CRC-checked, but never decoded on the server', () => {
  const body = Buffer.alloc(32 + 50, 7);
  const blob = Buffer.concat([BLOB_MAGIC.encrypted, Buffer.alloc(4), body]);
  rewriteBlobCrc(blob);
  assert.equal(verifyBlobCrc(blob), 'encrypted');
  assert.throws(() => decodeBlob(blob), /encrypted/);
});

test('zstdDigestBounded gives the size and SHA-256 of the decoded content, window by window', () => {
  // several 128 KiB windows, a partial last one, and a blob of two concatenated frames
  const plain = Buffer.alloc(1_000_003);
  for (let i = 0; i < plain.length; i++) plain[i] = (i * 7) % 251;
  const body = encodeBlob(plain).subarray(12);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest();
  assert.deepEqual(zstdDigestBounded(body, 4 << 20, 'c'), { size: plain.length, digest: sha(plain) });
  const tail = Buffer.alloc(100, 'a');
  const two = Buffer.concat([body, encodeBlob(tail).subarray(12)]);
  const both = Buffer.concat([plain, tail]);
  assert.deepEqual(zstdDigestBounded(two, 4 << 20, 'c'), { size: both.length, digest: sha(both) });
  // too large, truncated, damaged: refused or other content, and the shared context still decodes afterwards
  assert.throws(() => zstdDigestBounded(body, 500_000, 'c'), { code: 'CORRUPT_DATA', message: /exceeds/ });
  assert.throws(() => zstdDigestBounded(body.subarray(0, body.length - 5), 4 << 20, 'c'), {
    code: 'CORRUPT_DATA',
  });
  const flipped = Buffer.from(body);
  flipped[flipped.length >> 1]! ^= 0xff;
  // a damaged frame either fails to decode or decodes to other content (the digest check's job)
  let damaged: { digest: Buffer } | undefined;
  try {
    damaged = zstdDigestBounded(flipped, 4 << 20, 'c');
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'CORRUPT_DATA');
  }
  assert.ok(!damaged?.digest.equals(sha(plain)));
  assert.deepEqual(zstdDigestBounded(body, 4 << 20, 'c'), { size: plain.length, digest: sha(plain) });
});
