/**
 * A small tree with every entry type this process can make (regular, empty and sparse files,
 * nested and empty directories, symlinks, hardlinks, a FIFO, a unix socket, device nodes when
 * running as root in a place that allows mknod), odd modes, owners and mtimes; and the check that
 * what a decoder yields for it matches the disk.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after } from 'node:test';
import { createArchive } from '../../src/pxar/create.js';
import { bufferSink } from '../../src/pxar/io.js';
import { join } from 'node:path';
import { ACL_NO_MASK, deviceFromDevT, metadataOf, MODE, type PxarMetadata } from '../../src/pxar/format.js';
import type { PxarDecoder, PxarEntry } from '../../src/pxar/decoder.js';
import { parseXattrDump } from '../../src/sys/xattr-dump.js';

export interface TestTree {
  root: string;
  hasDevices: boolean;
  /** The unix socket's server: its file exists while it listens. */
  server: Server;
}

export async function makeTestTree(root: string): Promise<TestTree> {
  mkdirSync(join(root, 'dir/sub/deeper'), { recursive: true });
  mkdirSync(join(root, 'empty-dir'));
  writeFileSync(join(root, 'hello.txt'), 'hello pxar\n');
  writeFileSync(join(root, 'empty'), '');
  // about 5 MiB, mostly a hole, with data at the start, in the middle and at the end
  const fd = openSync(join(root, 'sparse.img'), 'w');
  writeSync(fd, Buffer.from('start'), 0, 5, 0);
  writeSync(fd, Buffer.alloc(70_000, 'm'), 0, 70_000, 2 * 1024 * 1024);
  writeSync(fd, Buffer.from('end'), 0, 3, 5 * 1024 * 1024 - 3);
  closeSync(fd);
  writeFileSync(join(root, 'dir/sub/deeper/note.md'), '# deep\n'.repeat(100));
  writeFileSync(join(root, 'dir/a'), 'a');
  writeFileSync(join(root, 'dir/b'), 'b'.repeat(3000));
  writeFileSync(join(root, 'setuid'), 'x');
  chmodSync(join(root, 'setuid'), 0o4750);
  chmodSync(join(root, 'empty-dir'), 0o1777);
  // a hardlinked file with three names, one in another directory
  writeFileSync(join(root, 'linked'), 'one inode, three names\n');
  linkSync(join(root, 'linked'), join(root, 'linked-2'));
  linkSync(join(root, 'linked'), join(root, 'dir/linked-3'));
  symlinkSync('hello.txt', join(root, 'link-rel'));
  symlinkSync('/does/not/exist', join(root, 'link-dangling'));
  execFileSync('mkfifo', [join(root, 'fifo')]);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(root, 'socket'), resolve));
  let hasDevices = false;
  if (process.getuid?.() === 0) {
    try {
      execFileSync('mknod', [join(root, 'dir/null-dev'), 'c', '1', '3'], { stdio: 'ignore' });
      execFileSync('mknod', [join(root, 'dir/block-dev'), 'b', '7', '200'], { stdio: 'ignore' });
      hasDevices = true;
    } catch {
      // a container without CAP_MKNOD: no device nodes
    }
    chownSync(join(root, 'hello.txt'), 1234, 5678);
    chownSync(join(root, 'dir'), 4000000000, 42);
  }
  // mtimes with sub-second parts, one before 1970; directories last (members change them)
  utimesSync(join(root, 'hello.txt'), 1_600_000_000.25, 1_600_000_000.25);
  utimesSync(join(root, 'empty'), new Date(-86_400_500), new Date(-86_400_500));
  lutimesSync(join(root, 'link-rel'), 1_234_567_890, 1_234_567_890);
  utimesSync(join(root, 'dir'), 1_700_000_000.125, 1_700_000_000.125);
  return { root, hasDevices, server };
}

/**
 * The test tree in a temporary directory and its archive, made on the first call of the
 * returned function and removed after the file's tests.
 */
export function archivedTestTree(): () => Promise<{ tree: TestTree; archive: Buffer }> {
  const work = mkdtempSync(join(tmpdir(), 'stowage-pxar-'));
  let made: Promise<{ tree: TestTree; archive: Buffer }> | undefined;
  after(async () => {
    const m = await made?.catch(() => undefined);
    if (m) await new Promise<void>((resolve) => m.tree.server.close(() => resolve()));
    rmSync(work, { recursive: true, force: true });
  });
  return () =>
    (made ??= (async () => {
      const tree = await makeTestTree(join(work, 'src'));
      const sink = bufferSink();
      await createArchive(tree.root, sink);
      return { tree, archive: sink.buffer() };
    })());
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * What the decoder yielded matches the tree: the same paths in byte order per directory, and for
 * each entry its type, mode, owner, mtime to the nanosecond, contents, link targets and device
 * numbers; the hardlinks name an earlier member that is the same file.
 */
export function assertMatchesDisk(root: string, entries: PxarEntry[], contents: Map<string, Buffer>): void {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  for (const e of entries) {
    const onDisk = join(root, e.path);
    const st = lstatSync(onDisk, { bigint: true });
    if (e.kind === 'hardlink') {
      const target = byPath.get(`/${e.linkTarget!.toString()}`);
      assert.ok(target, `${e.path}: hardlink target ${e.linkTarget} was archived`);
      assert.equal(target.kind, 'file');
      assert.equal(e.fileOffset! - e.hardlinkOffset!, target.fileOffset, `${e.path}: hardlink offset`);
      assert.equal(lstatSync(join(root, target.path)).ino, Number(st.ino), `${e.path}: same inode`);
      continue;
    }
    const m = e.metadata.stat;
    assert.equal(m.mode, Number(st.mode), `${e.path}: mode`);
    assert.equal(m.uid, Number(st.uid), `${e.path}: uid`);
    assert.equal(m.gid, Number(st.gid), `${e.path}: gid`);
    const ns = BigInt(m.mtimeSecs) * 1_000_000_000n + BigInt(m.mtimeNanos);
    if (e.kind !== 'directory' || e.path !== '/') assert.equal(ns, st.mtimeNs, `${e.path}: mtime`);
    const type = Number(st.mode) & MODE.IFMT;
    const expectKind = {
      [MODE.IFREG]: 'file',
      [MODE.IFDIR]: 'directory',
      [MODE.IFLNK]: 'symlink',
      [MODE.IFCHR]: 'device',
      [MODE.IFBLK]: 'device',
      [MODE.IFIFO]: 'fifo',
      [MODE.IFSOCK]: 'socket',
    }[type];
    assert.equal(e.kind, expectKind, `${e.path}: kind`);
    if (e.kind === 'file') {
      assert.equal(e.size, Number(st.size), `${e.path}: size`);
      assert.equal(sha(contents.get(e.path)!), sha(readFileSync(onDisk)), `${e.path}: contents`);
    }
    if (e.kind === 'symlink') assert.deepEqual(e.linkTarget, readlinkSync(onDisk, { encoding: 'buffer' }));
    if (e.kind === 'device') assert.deepEqual(e.device, deviceFromDevT(st.rdev), `${e.path}: device`);
  }
}

/** Every entry, and the contents of every regular file, read through `decoder`. */
export async function decodeAll(
  decoder: PxarDecoder,
): Promise<{ entries: PxarEntry[]; contents: Map<string, Buffer> }> {
  const entries: PxarEntry[] = [];
  const contents = new Map<string, Buffer>();
  for await (const e of decoder) {
    entries.push(e);
    if (e.kind === 'file') {
      const parts: Buffer[] = [];
      for await (const c of decoder.contents()) parts.push(c);
      contents.set(e.path, Buffer.concat(parts));
    }
  }
  return { entries, contents };
}

/** Metadata with every optional part: xattrs, each kind of ACL entry, fcaps, a quota project id. */
export function richMetadata(mode: number): PxarMetadata {
  return metadataOf(
    { mode, flags: 0x20n, uid: 1000, gid: 100, mtimeSecs: -5, mtimeNanos: 999_999_999 },
    {
      xattrs: [
        { name: Buffer.from('user.comment'), value: Buffer.from('a value\0with a zero') },
        { name: Buffer.from('user.empty'), value: Buffer.alloc(0) },
      ],
      acl: {
        users: [{ uid: 1001, permissions: 6n }],
        groups: [
          { gid: 20, permissions: 4n },
          { gid: 21, permissions: 5n },
        ],
        groupObj: { permissions: 5n },
        default: { userObj: 7n, groupObj: 5n, other: 0n, mask: ACL_NO_MASK },
        defaultUsers: [{ uid: 1002, permissions: 7n }],
        defaultGroups: [{ gid: 22, permissions: 1n }],
      },
      fcaps: Buffer.from('0100000200200000000000000000000000000000', 'hex'),
      quotaProjectId: 77n,
    },
  );
}

/**
 * Every extended attribute of a tree (getfattr, all namespaces, one line per path) and its ACLs
 * (getfacl blocks), each sorted by path: equal for two trees with the same attributes.
 */
export function attributesOf(root: string): { xattrs: string[]; acls: string[] } {
  const dump = execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-e', 'hex', '-m', '-', '.'], { cwd: root });
  const xattrs = parseXattrDump(dump).map(
    (e) =>
      `${e.path.toString('latin1')}: ${e.attrs.map((a) => `${a.name.toString('latin1')}=${a.value.toString('hex')}`).join(' ')}`,
  );
  const acls = execFileSync('getfacl', ['-R', '-P', '-n', '-E', '.'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .toString()
    .split('\n\n');
  return { xattrs: xattrs.sort(), acls: acls.sort() };
}
