import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ERR_PXAR_BELOW_SYMLINK,
  ERR_PXAR_UNSAFE_ENTRY,
  ERR_RESTORE_TARGET_NOT_EMPTY,
} from '../../src/errors.js';
import { createArchive } from '../../src/pxar/create.js';
import { PxarDecoder, type PxarEntry } from '../../src/pxar/decoder.js';
import { PxarEncoder } from '../../src/pxar/encoder.js';
import { extractPxar, type PxarEntrySource } from '../../src/pxar/extract.js';
import { encodeFilename, metadataOf, MODE, type PxarMetadata } from '../../src/pxar/format.js';
import { bufferSink, readAtBuffer } from '../../src/pxar/io.js';
import { buildFixture, buildSplitFixture } from './pbs-fixtures.js';
import { makeTestTree, richMetadata, type TestTree } from './tree.js';

const work = mkdtempSync(join(tmpdir(), 'stowage-pxar-extract-'));
let tree: TestTree;
let archive: Buffer;
let restoreSerial = 0;

before(async () => {
  tree = await makeTestTree(join(work, 'src'));
  // odd directory modes: private, and read-only with a member (set last: it cannot take members after)
  mkdirSync(join(tree.root, 'private'));
  writeFileSync(join(tree.root, 'private/secret'), 'only mine\n');
  chmodSync(join(tree.root, 'private'), 0o700);
  mkdirSync(join(tree.root, 'read-only'));
  writeFileSync(join(tree.root, 'read-only/fixed'), 'cannot add to my directory\n');
  chmodSync(join(tree.root, 'read-only'), 0o555);
  utimesSync(join(tree.root, 'read-only'), 1_500_000_000.123456, 1_500_000_000.123456);
  const sink = bufferSink();
  await createArchive(tree.root, sink);
  archive = sink.buffer();
});

after(async () => {
  await new Promise<void>((resolve) => tree?.server.close(() => resolve()));
  rmSync(work, { recursive: true, force: true });
});

const decoderOf = (bytes: Buffer) => PxarDecoder.fromReadAt(readAtBuffer(bytes));
const freshTarget = () => join(work, `restore-${restoreSerial++}`);

/** Every path below `root` ('' for the root itself), depth first. */
function walk(root: string, rel = ''): string[] {
  const out = [rel];
  const st = lstatSync(join(root, rel));
  if (st.isDirectory())
    for (const name of readdirSync(join(root, rel)).sort())
      out.push(...walk(root, rel ? `${rel}/${name}` : name));
  return out;
}

/**
 * The mtime restored for one archived with `ns` nanoseconds: whole microseconds (truncated) from
 * 1970 on, whole milliseconds (floor) before (the precision extract.ts documents).
 */
function restoredMtimeNs(ns: bigint): bigint {
  if (ns >= 0n) return ns - (ns % 1000n);
  const ms = ns / 1_000_000n - (ns % 1_000_000n !== 0n ? 1n : 0n);
  return ms * 1_000_000n;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function assertSameTree(source: string, restored: string): void {
  const paths = walk(source);
  assert.deepEqual(walk(restored), paths, 'the same paths');
  const inodeGroups = (root: string) => {
    const byIno = new Map<bigint, string[]>();
    for (const p of paths) {
      const st = lstatSync(join(root, p), { bigint: true });
      if (st.isFile()) byIno.set(st.ino, [...(byIno.get(st.ino) ?? []), p]);
    }
    return [...byIno.values()].map((g) => g.join(' ')).sort();
  };
  assert.deepEqual(inodeGroups(restored), inodeGroups(source), 'hardlinks link the same names');
  for (const p of paths) {
    const a = lstatSync(join(source, p), { bigint: true });
    const b = lstatSync(join(restored, p), { bigint: true });
    const what = `'${p || '/'}'`;
    assert.equal(b.mode, a.mode, `${what}: mode`);
    assert.equal(b.uid, a.uid, `${what}: uid`);
    assert.equal(b.gid, a.gid, `${what}: gid`);
    assert.equal(b.mtimeNs, restoredMtimeNs(a.mtimeNs), `${what}: mtime`);
    if (a.isFile()) {
      assert.equal(b.size, a.size, `${what}: size`);
      assert.equal(
        sha(readFileSync(join(restored, p))),
        sha(readFileSync(join(source, p))),
        `${what}: contents`,
      );
    }
    if (a.isSymbolicLink()) assert.equal(readlinkSync(join(restored, p)), readlinkSync(join(source, p)));
    if (a.isCharacterDevice() || a.isBlockDevice()) assert.equal(b.rdev, a.rdev, `${what}: device`);
  }
}

test('a tree with every entry type is restored byte-, mode-, owner-, mtime- and link-identical', async () => {
  const target = freshTarget();
  const warnings: string[] = [];
  const progress: string[] = [];
  const res = await extractPxar(decoderOf(archive), target, {
    onWarning: (m) => warnings.push(m),
    onEntry: (e) => progress.push(e.path),
  });
  assertSameTree(tree.root, target);
  assert.deepEqual(warnings, []);
  assert.ok(lstatSync(join(target, 'socket')).isSocket(), 'the socket is a socket');
  assert.ok(lstatSync(join(target, 'fifo')).isFIFO(), 'the FIFO is a FIFO');
  if (tree.hasDevices) assert.ok(lstatSync(join(target, 'dir/null-dev')).isCharacterDevice());
  const sourceFiles = walk(tree.root).filter((p) => lstatSync(join(tree.root, p)).isFile());
  // hardlinks count as special entries, not as files of their own
  assert.equal(res.files + 2, sourceFiles.length);
  assert.equal(res.symlinks, 2);
  assert.equal(res.special, 2 + 2 + (tree.hasDevices ? 2 : 0)); // two hardlinks, the FIFO and the socket
  assert.equal(
    res.dirs,
    walk(tree.root).filter((p) => p && lstatSync(join(tree.root, p)).isDirectory()).length,
  );
  const sparseSize = lstatSync(join(tree.root, 'sparse.img')).size;
  assert.ok(res.bytes >= sparseSize, 'bytes count what the files hold');
  assert.ok(
    progress.includes('/dir/sub/deeper/note.md') && progress.includes('/linked-2'),
    'progress per entry',
  );
});

test('a stream whose chunks are overwritten as soon as the decoder gives them back restores the same tree', async () => {
  // A restore gives each chunk back to the chunk workers, which decode later chunks into its
  // memory. Poisoning a chunk the moment it is given back (sooner than any worker could) shows
  // that nothing the extractor writes or keeps (names, metadata, link targets, file contents)
  // still reads it. Odd chunk sizes put items and file contents across chunk boundaries.
  const sizes = [1, 7, 100, 4095, 70_001, 1_048_583, 13];
  let given = 0;
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let off = 0, i = 0; off < archive.length; i++) {
      const n = Math.min(sizes[i % sizes.length]!, archive.length - off);
      yield Buffer.from(archive.subarray(off, off + n));
      off += n;
    }
  }
  const target = freshTarget();
  const decoder = PxarDecoder.fromStream(chunks(), {
    releaseChunk: (c) => {
      given++;
      c.fill(0xee);
    },
  });
  await extractPxar(decoder, target);
  assertSameTree(tree.root, target);
  assert.ok(given > 10, `chunks given back: ${given}`);
});

test('with the writer thread from the first file, the same tree is restored, also from chunks overwritten when given back', async () => {
  // directories, small files and symlinks go to the writer thread; large files, hard links,
  // devices, the FIFO and the socket are made here after it ran what was queued before them
  const target = freshTarget();
  const warnings: string[] = [];
  const res = await extractPxar(decoderOf(archive), target, {
    writerAfterFiles: 0,
    onWarning: (m) => warnings.push(m),
  });
  assertSameTree(tree.root, target);
  assert.deepEqual(warnings, []);
  assert.equal(res.symlinks, 2);
  let given = 0;
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let off = 0; off < archive.length; off += 997)
      yield Buffer.from(archive.subarray(off, Math.min(off + 997, archive.length)));
  }
  const poisoned = freshTarget();
  const decoder = PxarDecoder.fromStream(chunks(), {
    releaseChunk: (c) => {
      given++;
      c.fill(0xee);
    },
  });
  await extractPxar(decoder, poisoned, { writerAfterFiles: 0 });
  assertSameTree(tree.root, poisoned);
  assert.ok(given > 10, `chunks given back: ${given}`);
});

test('a tree of 3 000 files is restored identical when the writer thread takes over part way', async () => {
  // more files than the extractor writes itself, in batches of many calls, around files too
  // large for the writer, hard links to files it wrote, and read-only directories it finishes
  const src = join(work, 'many');
  for (let d = 0; d < 30; d++) {
    const dir = join(src, `d${d}`, `sub${d % 3}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 100; f++) {
      const n = d * 100 + f;
      const size = n % 500 === 7 ? 256 * 1024 + (n % 2) : (n * 37) % 3000;
      const data = Buffer.alloc(size, n % 251);
      if (size > 4096) data.fill(0, 4096, 8192); // a hole
      writeFileSync(join(dir, `f${f}`), data, { mode: 0o600 + (n % 8) * 8 });
      utimesSync(join(dir, `f${f}`), 1_400_000_000 + n, 1_400_000_000 + n + 0.25);
    }
    if (d % 7 === 0) execFileSync('ln', [join(dir, 'f1'), join(dir, 'hard')]);
    if (d % 5 === 0) execFileSync('ln', ['-s', `../sub${d % 3}/f2`, join(dir, 'link')]);
    if (d % 4 === 0) chmodSync(dir, 0o555);
    utimesSync(join(src, `d${d}`), 1_300_000_000 + d, 1_300_000_000 + d);
  }
  const sink = bufferSink();
  await createArchive(src, sink);
  const target = freshTarget();
  const res = await extractPxar(decoderOf(sink.buffer()), target);
  assertSameTree(src, target);
  assert.equal(res.files, 3000);
  for (let d = 0; d < 30; d += 4) chmodSync(join(src, `d${d}`, `sub${d % 3}`), 0o755);
});

test('a file system call that fails in the writer thread fails the restore with the same error as on the main thread', async () => {
  // a 300-byte name: the pxar format takes it, ext4 refuses it (ENAMETOOLONG) at the create
  const sink = bufferSink();
  const enc = await PxarEncoder.create(sink, dirMeta());
  for (let i = 0; i < 50; i++)
    await enc.addFile(fileMeta(), `f${String(i).padStart(2, '0')}`, 2, Buffer.from('ok'));
  await enc.addFile(fileMeta(), `g${'n'.repeat(299)}`, 4, Buffer.from('long'));
  await enc.addFile(fileMeta(), 'h-after', 5, Buffer.from('after'));
  await enc.finish();
  const errors: Array<{ code?: string; message: string }> = [];
  for (const writerAfterFiles of [Infinity, 0, 10]) {
    const target = freshTarget();
    await assert.rejects(extractPxar(decoderOf(sink.buffer()), target, { writerAfterFiles }), (err) => {
      const e = err as NodeJS.ErrnoException;
      errors.push({ code: e.code, message: e.message.replace(target, '<target>') });
      return true;
    });
    assert.equal(
      existsSync(join(target, 'h-after')),
      false,
      `nothing after the failure (${writerAfterFiles})`,
    );
  }
  assert.equal(errors[0]!.code, 'ENAMETOOLONG');
  assert.deepEqual(errors[1], errors[0]);
  assert.deepEqual(errors[2], errors[0]);
});

test('a sparse file keeps its holes', async () => {
  const target = freshTarget();
  await extractPxar(decoderOf(archive), target, { patterns: ['/sparse.img'] });
  const src = lstatSync(join(tree.root, 'sparse.img'));
  const got = lstatSync(join(target, 'sparse.img'));
  assert.equal(got.size, src.size);
  assert.ok(got.blocks <= src.blocks + 8, `restored ${got.blocks} blocks, source ${src.blocks}`);
  assert.ok(got.blocks * 512 < got.size / 4, 'mostly a hole');
});

test('patterns restore only the matched subtree, with the directories leading to it', async () => {
  const target = freshTarget();
  const res = await extractPxar(decoderOf(archive), target, { patterns: ['/dir/sub'] });
  assert.deepEqual(walk(target), ['', 'dir', 'dir/sub', 'dir/sub/deeper', 'dir/sub/deeper/note.md']);
  // the directory on the way has its archived metadata
  assert.equal(lstatSync(join(target, 'dir')).mtimeMs, lstatSync(join(tree.root, 'dir')).mtimeMs);
  assert.equal(res.files, 1);

  const negated = freshTarget();
  await extractPxar(decoderOf(archive), negated, {
    patterns: ['/dir', '!/dir/b', '!/dir/sub', '/dir/sub/deeper/*.md'],
  });
  const names = walk(negated);
  assert.ok(names.includes('dir/a') && names.includes('dir/linked-3'), 'the included directory');
  assert.ok(!names.includes('dir/b'), "'!' excludes what an earlier pattern included");
  assert.ok(names.includes('dir/sub/deeper/note.md'), 'a later pattern decides over an earlier one');
  assert.ok(!names.includes('hello.txt'));
});

test('a hardlink whose target a pattern left out is skipped with a warning', async () => {
  const target = freshTarget();
  const warnings: string[] = [];
  // '/dir/linked-3' is archived first (byte order), '/linked' and '/linked-2' as hardlinks to it
  await extractPxar(decoderOf(archive), target, {
    patterns: ['/linked-2'],
    onWarning: (m) => warnings.push(m),
  });
  assert.deepEqual(walk(target), ['']);
  assert.match(
    warnings.join('\n'),
    /skipping hardlink '\/linked-2': its target '\/dir\/linked-3' was not restored/,
  );
});

test('xattrs, ACLs and file capabilities are set; chattr flags and quota ids are counted and warned about once per kind', async () => {
  const sink = bufferSink();
  const enc = await PxarEncoder.create(sink, metadataOf({ ...stat(MODE.IFDIR | 0o755) }));
  await enc.addFile(richMetadata(MODE.IFREG | 0o640), 'a', 1, Buffer.from('a'));
  await enc.addFile(richMetadata(MODE.IFREG | 0o640), 'b', 1, Buffer.from('b'));
  await enc.createDirectory('d', richMetadata(MODE.IFDIR | 0o750));
  await enc.finishDirectory();
  await enc.finish();
  const warnings: string[] = [];
  const target = freshTarget();
  const res = await extractPxar(decoderOf(sink.buffer()), target, {
    onWarning: (m) => warnings.push(m),
  });
  assert.deepEqual(res.skipped, { xattrs: 0, acls: 0, fcaps: 0, flags: 3, quotaProjectIds: 3 });
  // richMetadata's default ACL has named entries but no mask: the kernel refuses it (PBS too),
  // the directory's other attributes are set, and the restore goes on
  assert.equal(res.attributeErrors, 1);
  assert.equal(warnings.length, 3, warnings.join('\n'));
  assert.match(warnings[2]!, /^setting extended attributes: setfattr: d: Invalid argument/);
  assert.match(warnings.join('\n'), /file attribute flags \(chattr\) are not restored .*first on '\/a'/);
  const dump = (p: string) =>
    execFileSync('getfattr', ['-d', '-e', 'hex', '-m', '-', p], { cwd: target }).toString();
  assert.match(
    dump('a'),
    new RegExp(`user\\.comment=0x${Buffer.from('a value\0with a zero').toString('hex')}\n`),
  );
  assert.match(dump('a'), /security\.capability=0x0100000200200000000000000000000000000000/);
  const acl = (p: string) => execFileSync('getfacl', ['-n', '-p', '-E', p], { cwd: target }).toString();
  assert.match(acl('b'), /user:1001:rw-\ngroup::r-x\ngroup:20:r--\ngroup:21:r-x\nmask::r--/);
  assert.doesNotMatch(acl('b'), /default:/, 'a default ACL of a file is not set');
  assert.match(acl('d'), /user:1001:rw-/);
  assert.match(dump('d'), /user\.empty=0x\n/);
  assert.equal(lstatSync(join(target, 'a')).mtimeMs, -4001, 'setting them left the mtime');
});

test("archives in a PBS client's format (1, and 2 split with its payload stream) are restored", async () => {
  const target = freshTarget();
  const warnings: string[] = [];
  const res = await extractPxar(decoderOf(buildFixture()), target, { onWarning: (m) => warnings.push(m) });
  const st = (p: string) => lstatSync(join(target, p), { bigint: true });
  assert.equal(readFileSync(join(target, 'a.txt'), 'utf8'), 'hello from pbs\n');
  assert.deepEqual([st('a.txt').mode, st('a.txt').uid, st('a.txt').gid], [0o100640n, 1000n, 1000n]);
  assert.equal(st('a.txt').mtimeNs, 1_600_000_000_123_456_000n, 'mtime to the microsecond');
  assert.equal(st('hl').ino, st('a.txt').ino, 'the hardlink is the same file');
  assert.equal(readlinkSync(join(target, 'sym')), 'a.txt');
  assert.equal(st('sym').mtimeNs, -1_000_000n, 'before 1970: to the millisecond');
  assert.deepEqual([st('dir').mode, st('dir').gid, st('dir/f').mode], [0o40750n, 33n, 0o100600n]);
  assert.equal(st('').mode, 0o40755n, "the root's metadata goes to the target");
  assert.deepEqual([res.files, res.dirs, res.symlinks, res.special], [2, 1, 1, 1]);
  assert.deepEqual([res.skipped.xattrs, res.skipped.acls, res.attributeErrors], [0, 0, 0]);
  assert.equal(warnings.length, 0, warnings.join('\n'));
  assert.equal(
    execFileSync('getfattr', ['--only-values', '-n', 'user.origin', 'a.txt'], { cwd: target }).toString(),
    'pbs',
  );
  assert.match(
    execFileSync('getfacl', ['-n', '-p', '-E', 'dir'], { cwd: target }).toString(),
    /user:1001:rwx\ngroup::r-x\nmask::r-x\n/,
  );

  const { meta, payload } = buildSplitFixture();
  const split = freshTarget();
  await extractPxar(PxarDecoder.fromReadAt(readAtBuffer(meta), { payload: readAtBuffer(payload) }), split);
  assert.deepEqual(
    ['f', 'g'].map((n) => readFileSync(join(split, n), 'utf8')),
    ['abc', 'defg'],
  );
});

test('a target that is not empty is refused and left as it was', async () => {
  const target = freshTarget();
  mkdirSync(target);
  writeFileSync(join(target, 'keep'), 'mine');
  await assert.rejects(extractPxar(decoderOf(archive), target), (err) =>
    ERR_RESTORE_TARGET_NOT_EMPTY.is(err),
  );
  assert.deepEqual(readdirSync(target), ['keep']);
});

// ---- hostile archives ----

function stat(mode: number): PxarMetadata['stat'] {
  return { mode, flags: 0n, uid: 0, gid: 0, mtimeSecs: 1_600_000_000, mtimeNanos: 0 };
}
const dirMeta = () => metadataOf(stat(MODE.IFDIR | 0o755));
const fileMeta = () => metadataOf(stat(MODE.IFREG | 0o644));

/** An archive made by `build`, with the FILENAME `from` replaced by `to` (same length). */
async function patchedArchive(build: (enc: PxarEncoder) => Promise<void>, from: string, to: string) {
  const sink = bufferSink();
  const enc = await PxarEncoder.create(sink, dirMeta());
  await build(enc);
  await enc.finish();
  const bytes = sink.buffer();
  const was = encodeFilename(Buffer.from(from));
  const at = bytes.indexOf(was);
  assert.ok(at > 0 && bytes.indexOf(was, at + 1) < 0, `one FILENAME '${from}'`);
  encodeFilename(Buffer.from(to)).copy(bytes, at);
  return bytes;
}

/** A sandbox: `outside` must stay empty whatever the archive does to `inside`. */
function sandbox() {
  const base = freshTarget();
  const outside = join(base, 'outside');
  mkdirSync(outside, { recursive: true });
  return { base, inside: join(base, 'inside'), outside };
}

test("an archive with a '..' or a '/' in a name is refused and writes nothing outside the target", async () => {
  for (const [from, to] of [
    ['xx', '..'],
    ['a_outside', 'a/outside'],
  ]) {
    const { base, inside, outside } = sandbox();
    const bytes = await patchedArchive(
      async (enc) => {
        await enc.addFile(fileMeta(), from!, 4, Buffer.from('evil'));
      },
      from!,
      to!,
    );
    await assert.rejects(extractPxar(decoderOf(bytes), inside), /invalid file name/);
    assert.deepEqual(readdirSync(outside), []);
    assert.deepEqual(readdirSync(base).sort(), ['inside', 'outside']);
    assert.deepEqual(readdirSync(inside), []);
  }
});

/** Entries as a decoder other than ours might yield them: the extractor checks them itself. */
function entrySource(
  entries: Array<Partial<PxarEntry> & { path: string; kind: PxarEntry['kind'] }>,
): PxarEntrySource {
  return {
    async *[Symbol.asyncIterator]() {
      for (const e of entries) {
        const mode = { directory: MODE.IFDIR, file: MODE.IFREG, symlink: MODE.IFLNK }[e.kind as string] ?? 0;
        yield { pathBytes: Buffer.from(e.path), metadata: metadataOf(stat(mode | 0o755)), ...e };
      }
    },
    async *contents() {
      yield Buffer.from('evil');
    },
  };
}

test('entries naming a parent, a directory the archive never opened or a path outside are refused by name', async () => {
  const root = { path: '/', kind: 'directory' } as const;
  const cases = (outside: string): Array<[RegExp, Parameters<typeof entrySource>[0]]> => [
    [/'\/\.\.': '\.\.' is not a file name/, [root, { path: '/..', kind: 'file', size: 4 }]],
    [/'\/outside\/x': its parent is not a directory/, [root, { path: '/outside/x', kind: 'file', size: 4 }]],
    [
      /'\/h': its hardlink target '\.\.\/outside\/victim' leaves the archive/,
      [
        root,
        { path: '/f', kind: 'file', size: 4 },
        { path: '/h', kind: 'hardlink', linkTarget: Buffer.from('../outside/victim') },
      ],
    ],
    [
      /'\/h': its hardlink target is below the symlink '\/s'/,
      [
        root,
        { path: '/s', kind: 'symlink', linkTarget: Buffer.from(outside) },
        { path: '/h', kind: 'hardlink', linkTarget: Buffer.from('s/victim') },
      ],
    ],
  ];
  for (let i = 0; i < 4; i++) {
    const { inside, outside } = sandbox();
    const [message, entries] = cases(outside)[i]!;
    writeFileSync(join(outside, 'victim'), 'untouched');
    await assert.rejects(extractPxar(entrySource(entries), inside), (err) => {
      assert.ok(ERR_PXAR_UNSAFE_ENTRY.is(err), String(err));
      assert.match((err as Error).message, message);
      return true;
    });
    assert.deepEqual(readdirSync(outside), ['victim'], String(message));
    assert.equal(lstatSync(join(outside, 'victim')).nlink, 1, String(message));
  }
});

test('an entry below a symlink the archive made is refused and nothing is written through it', async () => {
  const { inside, outside } = sandbox();
  const bytes = await patchedArchive(
    async (enc) => {
      await enc.addSymlink(metadataOf(stat(MODE.IFLNK | 0o777)), 'a', outside);
      await enc.createDirectory('b', dirMeta());
      await enc.addFile(fileMeta(), 'evil', 4, Buffer.from('evil'));
      await enc.finishDirectory();
    },
    'b',
    'a',
  );
  await assert.rejects(extractPxar(decoderOf(bytes), inside), (err) => {
    assert.ok(ERR_PXAR_BELOW_SYMLINK.is(err), String(err));
    assert.match((err as Error).message, /'\/a\/evil'.*symlink '\/a'/);
    return true;
  });
  assert.deepEqual(readdirSync(outside), []);
});
