import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { createArchive } from '../../src/pxar/create.js';
import { PxarDecoder } from '../../src/pxar/decoder.js';
import { PxarEncoder } from '../../src/pxar/encoder.js';
import { MODE, emptyAcl, hashFilename, metadataOf } from '../../src/pxar/format.js';
import { bufferSink, readAtBuffer, writableSink } from '../../src/pxar/io.js';
import { sipHash24, sipKey } from '../../src/pxar/siphash.js';
import { binaryTreeOrder } from '../../src/pxar/binary-tree-array.js';
import { archivedTestTree, assertMatchesDisk, decodeAll, richMetadata, type TestTree } from './tree.js';

const fixture = archivedTestTree();
let tree: TestTree;
let archive: Buffer;
before(async () => ({ tree, archive } = await fixture()));

test('SipHash-2-4 gives the reference vectors, and the tree order is casync/pxar order', () => {
  const key = sipKey(0x0706050403020100n, 0x0f0e0d0c0b0a0908n);
  assert.equal(sipHash24(key, Buffer.alloc(0)), 0x726fdb47dd0e0e31n);
  assert.equal(sipHash24(key, Buffer.from([...Array(15).keys()])), 0xa129ca6149be45e5n);
  assert.equal(sipHash24(key, Buffer.from([...Array(8).keys()])), 0x93f5f5799a932462n);
  // the permutations documented in pxar's binary_tree_array.rs
  assert.deepEqual(binaryTreeOrder(0), []);
  assert.deepEqual(binaryTreeOrder(1), [0]);
  assert.deepEqual(binaryTreeOrder(2), [1, 0]);
  assert.deepEqual(binaryTreeOrder(5), [3, 1, 4, 0, 2]);
  assert.deepEqual(binaryTreeOrder(10), [6, 3, 8, 1, 5, 7, 9, 0, 2, 4]);
  assert.deepEqual(binaryTreeOrder(17), [9, 5, 13, 3, 7, 11, 15, 1, 4, 6, 8, 10, 12, 14, 16, 0, 2]);
});

test('a tree with every entry type decodes back with the same paths, types, metadata and contents', async () => {
  const { entries, contents } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(archive)));
  const kinds = new Set(entries.map((e) => e.kind));
  for (const k of ['directory', 'file', 'symlink', 'hardlink', 'fifo', 'socket'] as const)
    assert.ok(kinds.has(k), k);
  if (tree.hasDevices) assert.ok(kinds.has('device'));
  // every path of the tree, once, each directory's members in byte order
  const expected: string[] = ['/'];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(tree.root, rel)).sort()) {
      const p = `${rel}/${name}`;
      expected.push(p);
      if (entries.find((e) => e.path === p)?.kind === 'directory') walk(p);
    }
  };
  walk('');
  assert.deepEqual(
    entries.map((e) => e.path),
    expected,
  );
  assertMatchesDisk(tree.root, entries, contents);
  assert.equal(entries.filter((e) => e.kind === 'hardlink').length, 2);
  assert.equal(contents.get('/sparse.img')!.length, 5 * 1024 * 1024);
});

test('decoding from a stream in odd-sized pieces gives the same entries as random access', async () => {
  const pieces: Buffer[] = [];
  for (let at = 0, n = 1; at < archive.length; at += n, n = (n * 7) % 65_521 || 1)
    pieces.push(archive.subarray(at, at + n));
  const streamed = await decodeAll(PxarDecoder.fromStream(Readable.from(pieces)));
  const direct = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(archive)));
  assert.deepEqual(streamed.entries, direct.entries);
  assert.deepEqual(streamed.contents, direct.contents);
});

test('a file whose contents are not read is skipped, and the next entry still decodes', async () => {
  const d = PxarDecoder.fromReadAt(readAtBuffer(archive));
  const paths: string[] = [];
  for await (const e of d) paths.push(e.path);
  assert.ok(paths.includes('/sparse.img') && paths.includes('/socket'));
});

test('xattrs, POSIX ACLs (user, group, group_obj, default entries), fcaps and quota project ids round-trip', async () => {
  const sink = bufferSink();
  const enc = await PxarEncoder.create(sink, richMetadata(MODE.IFDIR | 0o755));
  await enc.createDirectory('d', richMetadata(MODE.IFDIR | 0o2775));
  await enc.addFile(richMetadata(MODE.IFREG | 0o644), 'f', 3, Buffer.from('abc'));
  await enc.finishDirectory();
  await enc.addDevice(richMetadata(MODE.IFCHR | 0o600), 'tty', { major: 4, minor: 64 });
  await enc.addFifo(richMetadata(MODE.IFIFO | 0o600), 'z-fifo');
  await enc.finish();
  const { entries } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())));
  assert.deepEqual(
    entries.map((e) => [e.path, e.kind]),
    [
      ['/', 'directory'],
      ['/d', 'directory'],
      ['/d/f', 'file'],
      ['/tty', 'device'],
      ['/z-fifo', 'fifo'],
    ],
  );
  for (const e of entries) {
    const want = richMetadata(e.metadata.stat.mode);
    assert.deepEqual(e.metadata, want, e.path);
  }
  assert.deepEqual(entries[3]!.device, { major: 4, minor: 64 });
});

test('the encoder refuses what would make an invalid archive', async () => {
  const dirMeta = metadataOf({
    mode: MODE.IFDIR | 0o755,
    flags: 0n,
    uid: 0,
    gid: 0,
    mtimeSecs: 0,
    mtimeNanos: 0,
  });
  const fileMeta = { ...dirMeta, stat: { ...dirMeta.stat, mode: MODE.IFREG | 0o644 }, acl: emptyAcl() };
  const enc = await PxarEncoder.create(bufferSink(), dirMeta);
  await enc.addFile(fileMeta, 'b', 1, Buffer.from('x'));
  await assert.rejects(enc.addFile(fileMeta, 'a', 1, Buffer.from('x')), /names must increase/);
  await assert.rejects(enc.addFile(fileMeta, 'b', 1, Buffer.from('x')), /names must increase/);
  for (const bad of ['', '.', '..', 'a/b', 'nul\0'])
    await assert.rejects(enc.addFile(fileMeta, bad, 0, Buffer.alloc(0)), /invalid file name/);
  await assert.rejects(enc.addFile(dirMeta, 'e', 0, Buffer.alloc(0)), /addFile needs mode type/);
  await assert.rejects(enc.finishDirectory(), /no open subdirectory/);
  await assert.rejects(enc.addFile(fileMeta, 'f', 5, Buffer.from('abc')), /shrank to 3 of 5 bytes/);
  // the payload header promised 5 bytes: the archive can no longer be completed
  await assert.rejects(
    enc.addFile(fileMeta, 'g', 1, Buffer.from('x')),
    /failed earlier: this archive is incomplete/,
  );
  await assert.rejects(enc.finish(), /failed earlier/);
  const enc2 = await PxarEncoder.create(bufferSink(), dirMeta);
  await assert.rejects(enc2.addFile(fileMeta, 'd', 1, Buffer.from('abc')), /grew beyond 1 bytes/);
  assert.equal(typeof hashFilename(Buffer.from('x')), 'bigint');
});

test('members that vanish while the tree is archived are skipped with a warning, as PBS does', async () => {
  const root = mkdtempSync(join(tmpdir(), 'stowage-pxar-vanish-'));
  try {
    for (const n of ['a', 'b', 'c']) writeFileSync(join(root, n), n);
    mkdirSync(join(root, 'd'));
    writeFileSync(join(root, 'd', 'inner'), 'x');
    const warnings: string[] = [];
    const sink = bufferSink();
    await createArchive(root, sink, {
      onEntry: (rel) => {
        if (rel.toString() === 'a') {
          rmSync(join(root, 'b'));
          rmSync(join(root, 'd'), { recursive: true });
        }
      },
      onWarning: (m) => warnings.push(m),
    });
    const { entries } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())));
    assert.deepEqual(
      entries.map((e) => e.path),
      ['/', '/a', '/c'],
    );
    assert.deepEqual(warnings, [
      `file vanished while reading: ${root}/b`,
      `file vanished while reading: ${root}/d`,
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a file that shrinks or grows after its lstat is archived at the lstat size, padded or cut, with PBS warnings', async () => {
  const root = mkdtempSync(join(tmpdir(), 'stowage-pxar-resize-'));
  try {
    const big = 300 * 1024; // read in pieces with asynchronous calls (small files: synchronously)
    const original = (n: number, fill: number) => Buffer.alloc(n, fill);
    writeFileSync(join(root, 'big-grows'), original(big, 1));
    writeFileSync(join(root, 'big-shrinks'), original(big, 2));
    writeFileSync(join(root, 'small-grows'), original(10, 3));
    writeFileSync(join(root, 'small-shrinks'), original(10, 4));
    const warnings: string[] = [];
    const sink = bufferSink();
    await createArchive(root, sink, {
      // after the member's lstat, before its contents are read
      onMember: (rel) => {
        const name = rel.toString();
        if (name.endsWith('-grows')) appendFileSync(join(root, name), 'more bytes');
        if (name === 'big-shrinks') truncateSync(join(root, name), 1000);
        if (name === 'small-shrinks') truncateSync(join(root, name), 4);
      },
      onWarning: (m) => warnings.push(m),
    });
    const { contents } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())));
    const content = (path: string) => contents.get(path);
    assert.deepEqual(content('/big-grows'), original(big, 1));
    assert.deepEqual(content('/small-grows'), original(10, 3));
    assert.deepEqual(content('/big-shrinks'), Buffer.concat([original(1000, 2), Buffer.alloc(big - 1000)]));
    assert.deepEqual(content('/small-shrinks'), Buffer.concat([original(4, 4), Buffer.alloc(6)]));
    assert.deepEqual(warnings.sort(), [
      `file size increased while reading: ${root}/big-grows, file will be truncated!`,
      `file size increased while reading: ${root}/small-grows, file will be truncated!`,
      `file size shrunk while reading: ${root}/big-shrinks, file will be padded with zeros!`,
      `file size shrunk while reading: ${root}/small-shrinks, file will be padded with zeros!`,
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a slow sink is waited for (memory stays bounded), and a failing sink fails the encode', async () => {
  const parts: Buffer[] = [];
  let maxQueued = 0;
  const slow = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      maxQueued = Math.max(maxQueued, slow.writableLength);
      setTimeout(cb, 1);
    },
  });
  await createArchive(tree.root, writableSink(slow));
  await new Promise<void>((resolve) => slow.end(resolve));
  assert.deepEqual(Buffer.concat(parts), archive);
  // the 5 MiB sparse file went through a 64 KiB stream: at most one batch or payload piece waits
  assert.ok(maxQueued <= 1024 * 1024 + 256 * 1024, `${maxQueued} bytes queued`);

  let written = 0;
  const failing = new Writable({
    write(chunk: Buffer, _enc, cb) {
      written += chunk.length;
      cb(written > 1024 * 1024 ? new Error('disk full') : null);
    },
  });
  await assert.rejects(createArchive(tree.root, writableSink(failing)), /disk full/);
});

test('a virtual filesystem is refused as the root, as PBS refuses it', async () => {
  await assert.rejects(createArchive('/proc', bufferSink()), /refusing to backup a virtual file system/);
});

test('other filesystems below the root are archived as empty mount points unless asked for', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'stowage-pxar-mounts-'));
  const mnt = join(root, 'mnt');
  mkdirSync(mnt);
  writeFileSync(join(root, 'a'), 'a');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'none', mnt], { stdio: 'ignore' });
  } catch {
    rmSync(root, { recursive: true, force: true });
    t.skip('cannot mount a tmpfs here');
    return;
  }
  try {
    writeFileSync(join(mnt, 'inner'), 'on another filesystem');
    const paths = async (options: Parameters<typeof createArchive>[2]) => {
      const sink = bufferSink();
      await createArchive(root, sink, options);
      const { entries } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())));
      return entries.map((e) => e.path);
    };
    const warnings: string[] = [];
    assert.deepEqual(await paths({ onWarning: (m) => warnings.push(m) }), ['/', '/a', '/mnt']);
    assert.deepEqual(warnings, [`skipping mount point: ${mnt}`]);
    assert.deepEqual(await paths({ allFileSystems: true }), ['/', '/a', '/mnt', '/mnt/inner']);
    const dev = lstatSync(mnt, { bigint: true }).dev;
    assert.deepEqual(await paths({ includeDevices: [dev] }), ['/', '/a', '/mnt', '/mnt/inner']);
  } finally {
    execFileSync('umount', [mnt]);
    rmSync(root, { recursive: true, force: true });
  }
});

test('excluded members are left out, and excluded directories not entered', async () => {
  const sink = bufferSink();
  const seen: string[] = [];
  await createArchive(tree.root, sink, {
    exclude: (rel, isDir) => {
      seen.push(rel);
      return rel === 'dir/sub' || (!isDir && rel.endsWith('.txt'));
    },
  });
  const { entries } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())));
  const paths = entries.map((e) => e.path);
  assert.ok(!paths.includes('/hello.txt') && !paths.includes('/dir/sub'));
  assert.ok(paths.includes('/dir/a') && paths.includes('/sparse.img'));
  assert.ok(!seen.some((p) => p.startsWith('dir/sub/')), 'an excluded directory is not walked');
});
