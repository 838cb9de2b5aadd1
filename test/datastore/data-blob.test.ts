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
