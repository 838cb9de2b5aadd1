import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXED_INDEX_MAGIC, FixedIndexReader, FixedIndexWriter } from '../../src/datastore/fixed-index.js';
import { INDEX_HEADER_SIZE } from '../../src/datastore/index-file.js';
import {
  DYNAMIC_INDEX_MAGIC,
  DynamicIndexReader,
  DynamicIndexWriter,
} from '../../src/datastore/dynamic-index.js';

const sha = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const UUID = Buffer.from([...Array(16).keys()].map((i) => i + 1));
const CTIME = 1_718_000_000;
const d = (s: string) => sha(Buffer.from(s));

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-idx-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const i64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(n));
  return b;
};

test('index magic numbers are the first 8 bytes of sha256 of the PBS format names', () => {
  const magicOf = (text: string) => sha(Buffer.from(text)).subarray(0, 8);
  assert.deepEqual(FIXED_INDEX_MAGIC, magicOf('Proxmox Backup fixed sized chunk index v1.0'));
  assert.deepEqual(DYNAMIC_INDEX_MAGIC, magicOf('Proxmox Backup dynamic sized chunk index v1.0'));
  assert.deepEqual([...FIXED_INDEX_MAGIC], [47, 127, 65, 237, 145, 253, 15, 205]);
  assert.deepEqual([...DYNAMIC_INDEX_MAGIC], [28, 145, 78, 165, 25, 186, 179, 205]);
  assert.equal(INDEX_HEADER_SIZE, 4096);
});

test('a fixed index is written byte for byte in the PBS layout', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'drive-scsi0.img.fidx');
  const digests = [d('one'), d('two'), d('three')];
  const w = FixedIndexWriter.create(path, { size: 10_000, chunkSize: 4096, uuid: UUID, ctime: CTIME });
  assert.equal(w.tmpPath, join(dir, 'drive-scsi0.img.tmp_fidx'));
  w.addChunk(8192, 10_000 - 8192, digests[2]!);
  w.addChunk(0, 4096, digests[0]!);
  w.setDigest(1, digests[1]!);
  assert.deepEqual(readdirSync(dir), ['drive-scsi0.img.tmp_fidx'], 'nothing visible before close');
  const res = w.close();

  const csum = sha(...digests);
  const header = Buffer.concat([
    Buffer.from([47, 127, 65, 237, 145, 253, 15, 205]),
    UUID,
    i64(CTIME),
    csum,
    u64(10_000),
    u64(4096),
    Buffer.alloc(4016),
  ]);
  assert.equal(header.length, 4096);
  assert.deepEqual(readFileSync(path), Buffer.concat([header, ...digests]));
  assert.deepEqual(res, { csum, size: 10_000, chunkCount: 3 });
  assert.deepEqual(readdirSync(dir), ['drive-scsi0.img.fidx']);
});

test('a dynamic index is written byte for byte in the PBS layout', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'root.pxar.didx');
  const entries: Array<[number, Buffer]> = [
    [1000, d('a')],
    [5000, d('b')],
    [5001, d('c')],
  ];
  const w = DynamicIndexWriter.create(path, { uuid: UUID, ctime: CTIME });
  assert.equal(w.tmpPath, join(dir, 'root.pxar.tmp_didx'));
  for (const [end, digest] of entries) w.addChunk(end, digest);
  const res = w.close();

  const body = Buffer.concat(entries.flatMap(([end, digest]) => [u64(end), digest]));
  const csum = sha(...entries.flatMap(([end, digest]) => [u64(end), digest]));
  const header = Buffer.concat([
    Buffer.from([28, 145, 78, 165, 25, 186, 179, 205]),
    UUID,
    i64(CTIME),
    csum,
    Buffer.alloc(4032),
  ]);
  assert.equal(header.length, 4096);
  assert.equal(body.length, 3 * 40);
  assert.deepEqual(readFileSync(path), Buffer.concat([header, body]));
  assert.deepEqual(res, { csum, size: 5001, chunkCount: 3 });
  assert.equal(existsSync(w.tmpPath), false);
});

test('a fixed index reads back its digests, chunk ranges, size and checksum', (t) => {
  const path = join(tempDir(t), 'disk.img.fidx');
  const digests = Array.from({ length: 5 }, (_, i) => d(`chunk ${i}`));
  const w = FixedIndexWriter.create(path, { size: 4 * 1024 + 17, chunkSize: 1024 });
  digests.forEach((dg, i) => w.setDigest(i, dg));
  const { csum } = w.close();

  const r = FixedIndexReader.open(path, { verifyCsum: true });
  assert.equal(r.count, 5);
  assert.equal(r.totalSize, 4 * 1024 + 17);
  assert.equal(r.chunkSize, 1024);
  assert.deepEqual(r.csum, csum);
  assert.deepEqual(r.computeCsum(), csum);
  assert.deepEqual([...r.digests()], digests);
  assert.deepEqual(r.digest(3), digests[3]);
  assert.deepEqual(r.chunkRange(0), { start: 0, end: 1024 });
  assert.deepEqual(r.chunkRange(4), { start: 4096, end: 4113 });
  assert.equal(r.chunkIndexAt(4100), 4);
  assert.throws(() => r.digest(5), { code: 'BAD_REQUEST' });
});

test('a dynamic index reads back its digests, chunk ranges, size and checksum', (t) => {
  const path = join(tempDir(t), 'root.pxar.didx');
  const ends = [100, 350, 351, 2000];
  const w = DynamicIndexWriter.create(path);
  ends.forEach((end, i) => w.addChunk(end, d(`c${i}`)));
  const { csum } = w.close();

  const r = DynamicIndexReader.open(path, { verifyCsum: true });
  assert.equal(r.count, 4);
  assert.equal(r.totalSize, 2000);
  assert.deepEqual(r.csum, csum);
  assert.deepEqual(
    [...r.digests()],
    ends.map((_, i) => d(`c${i}`)),
  );
  assert.deepEqual(r.chunkRange(0), { start: 0, end: 100 });
  assert.deepEqual(r.chunkRange(2), { start: 350, end: 351 });
  assert.equal(r.chunkIndexAt(0), 0);
  assert.equal(r.chunkIndexAt(350), 2);
  assert.equal(r.chunkIndexAt(351), 3);
  assert.throws(() => r.chunkIndexAt(2000), { code: 'BAD_REQUEST' });
});

test('empty indexes round-trip with the checksum of nothing', (t) => {
  const dir = tempDir(t);
  const f = FixedIndexWriter.create(join(dir, 'e.fidx'), { size: 0, chunkSize: 4096 }).close();
  const dy = DynamicIndexWriter.create(join(dir, 'e.didx')).close();
  const empty = sha();
  assert.deepEqual(f.csum, empty);
  assert.deepEqual(dy.csum, empty);
  assert.equal(FixedIndexReader.open(join(dir, 'e.fidx'), { verifyCsum: true }).count, 0);
  assert.equal(DynamicIndexReader.open(join(dir, 'e.didx'), { verifyCsum: true }).totalSize, 0);
});

test('corrupt fixed indexes are refused with CORRUPT_DATA naming the problem', (t) => {
  const path = join(tempDir(t), 'x.fidx');
  const w = FixedIndexWriter.create(path, { size: 3000, chunkSize: 1000 });
  for (let i = 0; i < 3; i++) w.setDigest(i, d(`${i}`));
  w.close();
  const good = readFileSync(path);

  const badMagic = Buffer.from(good);
  badMagic[0] = 0;
  assert.throws(() => FixedIndexReader.fromBuffer(badMagic), { code: 'CORRUPT_DATA', message: /magic/ });
  assert.throws(() => DynamicIndexReader.fromBuffer(good), { code: 'CORRUPT_DATA', message: /magic/ });
  assert.throws(() => FixedIndexReader.fromBuffer(good.subarray(0, good.length - 1)), {
    code: 'CORRUPT_DATA',
    message: /wrong file size/,
  });
  assert.throws(() => FixedIndexReader.fromBuffer(good.subarray(0, 100)), {
    code: 'CORRUPT_DATA',
    message: /too small/,
  });

  const flipped = Buffer.from(good);
  flipped[4096 + 40]! ^= 1;
  assert.equal(FixedIndexReader.fromBuffer(flipped).count, 3, 'csum is only checked on request');
  assert.throws(() => FixedIndexReader.fromBuffer(flipped, { verifyCsum: true }), {
    code: 'CORRUPT_DATA',
    message: /checksum mismatch/,
  });
  writeFileSync(path, flipped);
  assert.throws(() => FixedIndexReader.open(path, { verifyCsum: true }), { message: new RegExp(path) });
});

test('corrupt dynamic indexes are refused with CORRUPT_DATA naming the problem', (t) => {
  const path = join(tempDir(t), 'x.didx');
  const w = DynamicIndexWriter.create(path);
  w.addChunk(10, d('a'));
  w.addChunk(20, d('b'));
  w.close();
  const good = readFileSync(path);

  assert.throws(() => FixedIndexReader.fromBuffer(good), { code: 'CORRUPT_DATA', message: /magic/ });
  assert.throws(() => DynamicIndexReader.fromBuffer(good.subarray(0, good.length - 5)), {
    code: 'CORRUPT_DATA',
    message: /40-byte entries/,
  });
  const decreasing = Buffer.from(good);
  decreasing.writeBigUInt64LE(5n, 4096 + 40);
  assert.throws(() => DynamicIndexReader.fromBuffer(decreasing), {
    code: 'CORRUPT_DATA',
    message: /end offset/,
  });
  const flipped = Buffer.from(good);
  flipped[4096 + 8]! ^= 1;
  assert.throws(() => DynamicIndexReader.fromBuffer(flipped, { verifyCsum: true }), {
    code: 'CORRUPT_DATA',
    message: /checksum mismatch/,
  });
});

test('writers refuse inconsistent input and abort leaves no file behind', (t) => {
  const dir = tempDir(t);
  const fw = FixedIndexWriter.create(join(dir, 'h.fidx'), { size: 2048, chunkSize: 1024 });
  assert.throws(() => fw.addChunk(100, 1024, d('x')), { code: 'BAD_REQUEST', message: /aligned/ });
  assert.throws(() => fw.addChunk(1024, 10, d('x')), { code: 'BAD_REQUEST', message: /size/ });
  fw.setDigest(0, d('x'));
  assert.throws(() => fw.close(), { code: 'BAD_REQUEST', message: /1 of 2 chunks not written/ });
  fw.abort();

  const dw = DynamicIndexWriter.create(join(dir, 'h.didx'));
  dw.addChunk(10, d('a'));
  assert.throws(() => dw.addChunk(10, d('b')), { code: 'BAD_REQUEST', message: /greater/ });
  dw.abort();
  dw.abort();
  assert.deepEqual(readdirSync(dir), []);
});

test('a fixed index can reuse the digests of the previous backup of the same image', (t) => {
  const dir = tempDir(t);
  const w1 = FixedIndexWriter.create(join(dir, 'a.fidx'), { size: 3000, chunkSize: 1000 });
  for (let i = 0; i < 3; i++) w1.setDigest(i, d(`old ${i}`));
  w1.close();
  const prev = FixedIndexReader.open(join(dir, 'a.fidx'));
  const w2 = FixedIndexWriter.create(join(dir, 'b.fidx'), { size: 3000, chunkSize: 1000 });
  w2.cloneFrom(prev);
  w2.setDigest(1, d('new 1'));
  w2.close();
  const r = FixedIndexReader.open(join(dir, 'b.fidx'), { verifyCsum: true });
  assert.deepEqual([...r.digests()], [d('old 0'), d('new 1'), d('old 2')]);
});

test('indexes larger than the write buffer keep a correct checksum', (t) => {
  const path = join(tempDir(t), 'big.didx');
  const w = DynamicIndexWriter.create(path, { syncLevel: 'file' });
  const h = createHash('sha256');
  for (let i = 1; i <= 10_000; i++) {
    const dg = d(`${i}`);
    w.addChunk(i * 7, dg);
    h.update(u64(i * 7)).update(dg);
  }
  const { csum, chunkCount } = w.close();
  assert.equal(chunkCount, 10_000);
  assert.deepEqual(csum, h.digest());
  assert.equal(DynamicIndexReader.open(path, { verifyCsum: true }).totalSize, 70_000);
});
