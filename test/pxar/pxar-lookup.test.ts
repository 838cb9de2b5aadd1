import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PxarAccessor, type PxarFoundEntry } from '../../src/pxar/accessor.js';
import { PxarDecoder } from '../../src/pxar/decoder.js';
import { PxarEncoder } from '../../src/pxar/encoder.js';
import { MODE, metadataOf } from '../../src/pxar/format.js';
import { bufferSink, readAtBuffer, type PxarReadAt } from '../../src/pxar/io.js';
import { archivedTestTree, decodeAll, type TestTree } from './tree.js';

const fixture = archivedTestTree();
let tree: TestTree;
let archive: Buffer;
before(async () => ({ tree, archive } = await fixture()));

async function readAll(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

/** Counts the reads (and bytes) a lookup makes. */
function counting(src: PxarReadAt) {
  const stats = { reads: 0, bytes: 0 };
  return {
    stats,
    src: {
      size: src.size,
      read: (offset: number, length: number) => {
        stats.reads++;
        stats.bytes += length;
        return src.read(offset, length);
      },
    } satisfies PxarReadAt,
  };
}

const strip = ({ range: _range, ...e }: PxarFoundEntry) => e;

test('a goodbye lookup finds every path the decoder yields, with the same entry and contents', async () => {
  const { entries, contents } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(archive)));
  const acc = PxarAccessor.open(readAtBuffer(archive));
  for (const e of entries) {
    const found = await acc.lookup(e.path);
    assert.ok(found, `${e.path} found`);
    const want = { ...e };
    if (e.path === '/') delete want.fileOffset;
    assert.deepEqual(strip(found), want, e.path);
    if (e.kind === 'file') assert.deepEqual(await readAll(acc.contents(found)), contents.get(e.path), e.path);
    if (e.kind === 'hardlink') {
      const target = await acc.followHardlink(found);
      assert.equal(target.path, `/${e.linkTarget!.toString()}`);
      assert.equal(target.kind, 'file');
      assert.equal((await readAll(acc.contents(target))).toString(), 'one inode, three names\n');
    }
  }
  // paths without a leading slash and with '.' components name the same entries
  assert.equal((await acc.lookup('dir/./sub/deeper/note.md'))?.path, '/dir/sub/deeper/note.md');
});

test('a goodbye lookup misses names that do not exist, and does not enter files', async () => {
  const acc = PxarAccessor.open(readAtBuffer(archive));
  for (const missing of [
    '/nope',
    '/dir/nope',
    '/hello.txt/x',
    '/dir/sub/deeper/note.mdx',
    '/HELLO.TXT',
    '/dir/sub/deeper/x/y',
  ])
    assert.equal(await acc.lookup(missing), null, missing);
  await assert.rejects(acc.lookup('/dir/../hello.txt'), /'\.\.' is not allowed/);
});

test('listing a directory through its goodbye table gives its members in name order', async () => {
  const acc = PxarAccessor.open(readAtBuffer(archive));
  const dir = await acc.openDirectory((await acc.lookup('/dir'))!);
  const names: string[] = [];
  for await (const e of acc.readDirectory(dir)) names.push(e.path);
  const expected = tree.hasDevices
    ? ['/dir/a', '/dir/b', '/dir/block-dev', '/dir/linked-3', '/dir/null-dev', '/dir/sub']
    : ['/dir/a', '/dir/b', '/dir/linked-3', '/dir/sub'];
  assert.deepEqual(names, expected);
});

test('a lookup in a directory of 20000 members reads a few dozen small pieces, not the archive', async () => {
  const meta = (mode: number) => metadataOf({ mode, flags: 0n, uid: 0, gid: 0, mtimeSecs: 0, mtimeNanos: 0 });
  const sink = bufferSink();
  const enc = await PxarEncoder.create(sink, meta(MODE.IFDIR | 0o755));
  const names = Array.from({ length: 20_000 }, (_, i) => `file-${String(i).padStart(6, '0')}`);
  for (const name of names) await enc.addFile(meta(MODE.IFREG | 0o644), name, name.length, Buffer.from(name));
  await enc.finish();
  const big = sink.buffer();
  const { src, stats } = counting(readAtBuffer(big));
  const acc = PxarAccessor.open(src);
  for (const name of [names[0]!, names[12_345]!, names[19_999]!]) {
    stats.reads = 0;
    stats.bytes = 0;
    const found = await acc.lookup(`/${name}`);
    assert.equal((await readAll(acc.contents(found!))).toString(), name);
    assert.ok(stats.reads < 40, `${stats.reads} reads for ${name}`);
    assert.ok(stats.bytes < 4096, `${stats.bytes} bytes read for ${name}`);
  }
  stats.reads = 0;
  assert.equal(await acc.lookup('/file-020000'), null);
  assert.ok(stats.reads < 40);
});

test('a damaged goodbye table is reported as corruption, not as a missing file', async () => {
  const bad = Buffer.from(archive);
  bad.writeBigUInt64LE(0n, bad.length - 24); // the root's tail marker
  await assert.rejects(PxarAccessor.open(readAtBuffer(bad)).lookup('/hello.txt'), /no goodbye tail marker/);
  const bad2 = Buffer.from(archive);
  bad2.writeBigUInt64LE(BigInt(bad2.length * 2), bad2.length - 8); // the table's size
  await assert.rejects(PxarAccessor.open(readAtBuffer(bad2)).lookup('/hello.txt'), /goodbye table size/);
});
