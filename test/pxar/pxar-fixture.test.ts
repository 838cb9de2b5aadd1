/**
 * An archive built byte by byte from the format's documentation (the pxar crate's format/mod.rs
 * and PBS's docs), not by our encoder: it stands for an archive from proxmox-backup-client or a
 * third-party PBS client. It has a legacy ENTRY_V1 entry, an xattr, ACL entries, a
 * subdirectory, a hardlink and a symlink, and goodbye tables whose order is written out from the
 * permutations documented in binary_tree_array.rs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PxarAccessor } from '../../src/pxar/accessor.js';
import { PxarDecoder } from '../../src/pxar/decoder.js';
import { PxarEncoder } from '../../src/pxar/encoder.js';
import { emptyAcl, metadataOf, type PxarStat } from '../../src/pxar/format.js';
import { bufferSink, readAtBuffer } from '../../src/pxar/io.js';
import { decodeAll } from './tree.js';
import { buildFixture, buildSplitFixture } from './pbs-fixtures.js';

test('an archive built by hand from the documented format decodes as expected', async () => {
  const fixture = buildFixture();
  const { entries, contents } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(fixture)));
  const summary = entries.map((e) => [
    e.path,
    e.kind,
    e.metadata.stat.mode.toString(8),
    e.metadata.stat.uid,
    e.metadata.stat.gid,
    e.metadata.stat.mtimeSecs,
    e.metadata.stat.mtimeNanos,
  ]);
  assert.deepEqual(summary, [
    ['/', 'directory', '40755', 0, 0, 1_700_000_000, 5],
    ['/a.txt', 'file', '100640', 1000, 1000, 1_600_000_000, 123_456_789],
    ['/dir', 'directory', '40750', 0, 33, 1_650_000_000, 0],
    ['/dir/f', 'file', '100600', 0, 0, 0, 0],
    ['/hl', 'hardlink', '0', 0, 0, 0, 0],
    ['/sym', 'symlink', '120777', 0, 0, -1, 999_999_999],
  ]);
  assert.equal(contents.get('/a.txt')!.toString(), 'hello from pbs\n');
  assert.equal(contents.get('/dir/f')!.length, 0);
  assert.deepEqual(entries[1]!.metadata.xattrs, [
    { name: Buffer.from('user.origin'), value: Buffer.from('pbs') },
  ]);
  assert.deepEqual(entries[2]!.metadata.acl.users, [{ uid: 1001, permissions: 7n }]);
  assert.deepEqual(entries[2]!.metadata.acl.groupObj, { permissions: 5n });
  assert.equal(entries[4]!.linkTarget!.toString(), 'a.txt');
  assert.equal(entries[5]!.linkTarget!.toString(), 'a.txt');
});

test('the hand-built archive is searchable through its goodbye tables', async () => {
  const acc = PxarAccessor.open(readAtBuffer(buildFixture()));
  for (const p of ['/a.txt', '/dir', '/dir/f', '/hl', '/sym']) assert.equal((await acc.lookup(p))?.path, p);
  assert.equal(await acc.lookup('/dir/g'), null);
  assert.equal(await acc.lookup('/b.txt'), null);
  const target = await acc.followHardlink((await acc.lookup('/hl'))!);
  assert.equal(target.path, '/a.txt');
  const parts: Buffer[] = [];
  for await (const b of acc.contents(target)) parts.push(b);
  assert.equal(Buffer.concat(parts).toString(), 'hello from pbs\n');
  const root: string[] = [];
  for await (const e of acc.readDirectory(await acc.root())) root.push(e.path);
  assert.deepEqual(root, ['/a.txt', '/dir', '/hl', '/sym']);
});

test('a lookup walks past members whose hash collides, comparing the stored names', async () => {
  const acc = PxarAccessor.open(readAtBuffer(buildFixture({ legacyEntry: true, collide: true })));
  // three slots carry the hash of 'a.txt': whichever the walk meets first, it finds the right one
  assert.equal((await acc.lookup('/a.txt'))?.kind, 'file');
  assert.equal((await acc.lookup('/dir/f'))?.kind, 'file');
  // 'hl' is filed under another hash, so a hash lookup cannot find it (nor any wrong member)
  assert.equal(await acc.lookup('/hl'), null);
  // listing does not depend on hashes
  const names: string[] = [];
  for await (const e of acc.readDirectory(await acc.root())) names.push(e.path);
  assert.deepEqual(names, ['/a.txt', '/dir', '/hl', '/sym']);
});

test('our encoder writes the same bytes as the hand-built archive', async () => {
  const st = (mode: number, uid: number, gid: number, mtimeSecs: number, mtimeNanos: number): PxarStat => ({
    mode,
    flags: 0n,
    uid,
    gid,
    mtimeSecs,
    mtimeNanos,
  });
  const sink = bufferSink();
  const enc = await PxarEncoder.create(sink, metadataOf(st(0o40755, 0, 0, 1_700_000_000, 5)));
  const a = await enc.addFile(
    metadataOf(st(0o100640, 1000, 1000, 1_600_000_000, 123_456_789), {
      xattrs: [{ name: Buffer.from('user.origin'), value: Buffer.from('pbs') }],
    }),
    'a.txt',
    15,
    Buffer.from('hello from pbs\n'),
  );
  await enc.createDirectory(
    'dir',
    metadataOf(st(0o40750, 0, 33, 1_650_000_000, 0), {
      acl: { ...emptyAcl(), users: [{ uid: 1001, permissions: 7n }], groupObj: { permissions: 5n } },
    }),
  );
  await enc.addFile(metadataOf(st(0o100600, 0, 0, 0, 0)), 'f', 0, Buffer.alloc(0));
  await enc.finishDirectory();
  await enc.addHardlink('hl', 'a.txt', a);
  await enc.addSymlink(metadataOf(st(0o120777, 0, 0, -1, 999_999_999)), 'sym', 'a.txt');
  await enc.finish();
  assert.deepEqual(sink.buffer(), buildFixture({ legacyEntry: false }));
});

test('a split (format version 2) archive decodes with its payload stream, and is searchable', async () => {
  const { meta, payload } = buildSplitFixture();
  const decoder = PxarDecoder.fromReadAt(readAtBuffer(meta), { payload: readAtBuffer(payload) });
  const { entries, contents } = await decodeAll(decoder);
  assert.equal(decoder.version, 2);
  assert.deepEqual(
    entries.map((e) => [e.path, e.kind, e.size, e.metadata.stat.mtimeSecs]),
    [
      ['/', 'directory', undefined, 100],
      ['/f', 'file', 3, 101],
      ['/g', 'file', 4, 102],
    ],
  );
  assert.equal(contents.get('/f')!.toString(), 'abc');
  assert.equal(contents.get('/g')!.toString(), 'defg');

  const acc = PxarAccessor.open(readAtBuffer(meta), { payload: readAtBuffer(payload) });
  assert.equal((await acc.rootEntry()).metadata.stat.mtimeSecs, 100);
  const g = (await acc.lookup('/g'))!;
  const parts: Buffer[] = [];
  for await (const b of acc.contents(g)) parts.push(b);
  assert.equal(Buffer.concat(parts).toString(), 'defg');
  assert.equal(await acc.lookup('/h'), null);

  // without the payload stream the references are reported, not read
  const metaOnly = PxarDecoder.fromReadAt(readAtBuffer(meta));
  await metaOnly.next();
  const f = (await metaOnly.next())!;
  assert.deepEqual(f.payloadRef, { offset: 16, size: 3 });
  // a reference that does not match the payload stream is corruption
  const wrong = Buffer.from(payload);
  wrong.writeBigUInt64LE(99n, 16 + 8);
  const bad = PxarAccessor.open(readAtBuffer(meta), { payload: readAtBuffer(wrong) });
  await assert.rejects(async () => {
    for await (const _ of bad.contents((await bad.lookup('/f'))!));
  }, /PAYLOAD of 83 bytes where 3 are referenced/);
});
