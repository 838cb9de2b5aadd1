/**
 * Extended attributes, POSIX ACLs and file capabilities through createArchive (getfattr) and
 * extractPxar (setfattr) on the real filesystem under /tmp (ext4 with user xattrs and ACLs).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createArchive, readArchiveXattrs } from '../../src/pxar/create.js';
import { PxarDecoder } from '../../src/pxar/decoder.js';
import { extractPxar } from '../../src/pxar/extract.js';
import { bufferSink, readAtBuffer } from '../../src/pxar/io.js';
import { attributesOf, decodeAll } from './tree.js';

const work = mkdtempSync(join(tmpdir(), 'stowage-pxar-xattr-'));
after(() => rmSync(work, { recursive: true, force: true }));

const ODD_NAME = Buffer.from('user.odd=name\\with\nnewline');
const BINARY = Buffer.from([0, 1, 2, 0xff, 0x0a, 0x0d, 0x5c, 0x3d]);

/** A tree with user xattrs (binary values, an odd name), ACLs and a file capability. */
function makeXattrTree(root: string): void {
  mkdirSync(join(root, 'shared'));
  writeFileSync(join(root, 'plain'), 'no attributes');
  writeFileSync(join(root, 'tagged'), 'with attributes');
  writeFileSync(join(root, 'ping'), 'a capability');
  symlinkSync('tagged', join(root, 'link'));
  const set = (path: string, name: Buffer | string, value: Buffer) =>
    execFileSync('setfattr', ['-h', '-n', name.toString('latin1'), '-v', `0x${value.toString('hex')}`, path]);
  set(join(root, 'tagged'), 'user.binary', BINARY);
  set(join(root, 'tagged'), 'user.empty', Buffer.alloc(0));
  set(join(root, 'tagged'), ODD_NAME, Buffer.from('odd'));
  set(root, 'user.root', Buffer.from('on the root'));
  execFileSync('chmod', ['0750', join(root, 'shared')]);
  execFileSync('setfacl', ['-m', 'u:1234:rwx,g:4321:rx', join(root, 'shared')]);
  execFileSync('setfacl', ['-d', '-m', 'u:1234:rx,g:77:r', join(root, 'shared')]);
  execFileSync('setfacl', ['-m', 'u:99:r', join(root, 'plain')]);
  // made after the default ACL: they inherit it
  mkdirSync(join(root, 'shared/inner'));
  writeFileSync(join(root, 'shared/inner/doc'), 'inherits');
  execFileSync('setcap', ['cap_net_raw+ep', join(root, 'ping')]);
}

test('a backup keeps user xattrs with binary values and odd names, access and default ACLs and file capabilities', async () => {
  const root = join(work, 'backup-src');
  mkdirSync(root);
  makeXattrTree(root);
  const sink = bufferSink();
  const warnings: string[] = [];
  await createArchive(root, sink, { onWarning: (w) => warnings.push(w) });
  assert.deepEqual(warnings, []);
  const { entries } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())));
  const meta = (path: string) => entries.find((e) => e.path === path)!.metadata;

  assert.deepEqual(meta('/').xattrs, [{ name: Buffer.from('user.root'), value: Buffer.from('on the root') }]);
  assert.deepEqual(
    meta('/tagged').xattrs,
    [
      { name: Buffer.from('user.binary'), value: BINARY },
      { name: Buffer.from('user.empty'), value: Buffer.alloc(0) },
      { name: ODD_NAME, value: Buffer.from('odd') },
    ],
    'sorted by name bytes',
  );
  assert.deepEqual(meta('/shared').acl, {
    users: [{ uid: 1234, permissions: 7n }],
    groups: [{ gid: 4321, permissions: 5n }],
    groupObj: { permissions: 5n },
    // setfacl completes the default ACL from the access one; its mask is r-x | r-- | r-x
    default: { userObj: 7n, groupObj: 5n, other: 0n, mask: 5n },
    defaultUsers: [{ uid: 1234, permissions: 5n }],
    defaultGroups: [{ gid: 77, permissions: 4n }],
  });
  assert.deepEqual(meta('/plain').acl.users, [{ uid: 99, permissions: 4n }]);
  assert.equal(meta('/plain').acl.default, undefined);
  assert.equal(
    meta('/shared/inner').acl.default?.mask,
    5n,
    'a subdirectory made after it inherited the default ACL',
  );
  // VFS_CAP_REVISION_2 with CAP_NET_RAW (13) permitted and the effective flag
  const fcaps = meta('/ping').fcaps!;
  assert.equal(fcaps.readUInt32LE(0), 0x02000001);
  assert.equal(fcaps.readUInt32LE(4), 1 << 13);
  assert.equal(meta('/ping').xattrs.length, 0, 'the capability is FCAPS, not an XATTR item');
  assert.deepEqual(meta('/link').xattrs, [], 'a symlink carries none (PBS)');
  assert.equal(meta('/link').fcaps, undefined);
});

/** `fn` run where getfattr cannot be found (PATH emptied of it until `fn` settles). */
async function withoutGetfattr<T>(fn: () => Promise<T>): Promise<T> {
  const savedPath = process.env.PATH;
  try {
    process.env.PATH = '/nonexistent';
    return await fn();
  } finally {
    process.env.PATH = savedPath;
  }
}

test('a backup with xattrs switched off, or without getfattr, archives none and says so once', async () => {
  const root = join(work, 'no-tool');
  mkdirSync(root);
  writeFileSync(join(root, 'f'), 'x');
  execFileSync('setfattr', ['-n', 'user.a', '-v', '1', join(root, 'f')]);
  const off = bufferSink();
  await createArchive(root, off, { xattrs: false });
  const warnings: string[] = [];
  const sink = bufferSink();
  await withoutGetfattr(() => createArchive(root, sink, { onWarning: (w) => warnings.push(w) }));
  for (const archive of [off.buffer(), sink.buffer()]) {
    const { entries } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(archive)));
    assert.deepEqual(entries.find((e) => e.path === '/f')!.metadata.xattrs, []);
  }
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /getfattr \(Debian package attr\) is not available/);
});

test('attributes read before the walk (readArchiveXattrs) give the same archive, and its warnings come through the walk', async () => {
  const root = join(work, 'read-before');
  mkdirSync(root);
  makeXattrTree(root);
  const own = bufferSink();
  await createArchive(root, own);
  const early = bufferSink();
  await createArchive(root, early, { xattrs: readArchiveXattrs(root) });
  assert.ok(early.buffer().equals(own.buffer()), 'byte for byte the archive whose walk read them');
  const { entries } = await decodeAll(PxarDecoder.fromReadAt(readAtBuffer(early.buffer())));
  assert.ok(entries.find((e) => e.path === '/tagged')!.metadata.xattrs.length > 0);

  const warnings: string[] = [];
  let read!: ReturnType<typeof readArchiveXattrs>;
  await withoutGetfattr(() => (read = readArchiveXattrs(root)));
  assert.equal(warnings.length, 0, 'nothing said before the walk');
  await createArchive(root, bufferSink(), { xattrs: read, onWarning: (w) => warnings.push(w) });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /getfattr \(Debian package attr\) is not available/);
});

test('backup then restore gives back every attribute, ACL and capability, and the mtimes', async () => {
  const root = join(work, 'round-src');
  mkdirSync(root);
  makeXattrTree(root);
  const sink = bufferSink();
  await createArchive(root, sink);
  const target = join(work, 'round-dst');
  const warnings: string[] = [];
  const res = await extractPxar(PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())), target, {
    onWarning: (w) => warnings.push(w),
  });
  assert.deepEqual(warnings, []);
  assert.deepEqual(
    [res.skipped.xattrs, res.skipped.acls, res.skipped.fcaps, res.attributeErrors],
    [0, 0, 0, 0],
  );
  const want = attributesOf(root);
  assert.deepEqual(attributesOf(target), want);
  assert.ok(want.xattrs.some((l) => l.startsWith('ping: security.capability=')));
  assert.ok(want.acls.some((a) => a.includes('default:group:77:r--')));
  // to the microsecond, what the extractor restores
  const micros = (p: string) => lstatSync(p, { bigint: true }).mtimeNs / 1000n;
  for (const p of ['', 'shared', 'shared/inner', 'tagged', 'ping'])
    assert.equal(micros(join(target, p)), micros(join(root, p)), `${p}: mtime`);
});

test('a restore without setfattr writes the tree and counts each kind of attribute it could not set', async () => {
  const root = join(work, 'no-setfattr-src');
  mkdirSync(root);
  makeXattrTree(root);
  const sink = bufferSink();
  await createArchive(root, sink);
  const savedPath = process.env.PATH;
  const warnings: string[] = [];
  let res;
  try {
    process.env.PATH = '/nonexistent';
    res = await extractPxar(
      PxarDecoder.fromReadAt(readAtBuffer(sink.buffer())),
      join(work, 'no-setfattr-dst'),
      {
        onWarning: (w) => warnings.push(w),
      },
    );
  } finally {
    process.env.PATH = savedPath;
  }
  // entries: the root and tagged (xattrs); shared, inner, doc and plain (ACLs); ping (capability)
  assert.deepEqual([res.skipped.xattrs, res.skipped.acls, res.skipped.fcaps], [2, 4, 1]);
  assert.equal(res.files, 4);
  assert.equal(warnings.length, 3);
  assert.match(warnings.join('\n'), /setfattr \(Debian package attr\) is not available/);
});

const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** What a restore by `nobody` runs: extractPxar on an archive file, its result as JSON on stdout. */
const EXTRACT_SCRIPT = `
const [repo, archive, target] = process.argv.slice(1);
(async () => {
  const { extractPxar } = await import(repo + 'src/pxar/extract.ts');
  const { PxarDecoder } = await import(repo + 'src/pxar/decoder.ts');
  const { readAtBuffer } = await import(repo + 'src/pxar/io.ts');
  const { readFileSync } = await import('node:fs');
  const warnings = [];
  const source = PxarDecoder.fromReadAt(readAtBuffer(readFileSync(archive)));
  const res = await extractPxar(source, target, { onWarning: (w) => warnings.push(w) });
  process.stdout.write(JSON.stringify({ skipped: res.skipped, attributeErrors: res.attributeErrors, warnings }));
})();
`;

test(
  'a restore by a user who is not root sets user xattrs (read-only files too) and ACLs, and counts what needs root',
  { skip: process.getuid?.() !== 0 && 'needs root to switch to nobody' },
  async () => {
    const root = join(work, 'nonroot-src');
    mkdirSync(root);
    makeXattrTree(root);
    execFileSync('setfattr', ['-n', 'trusted.secret', '-v', 'root only', join(root, 'tagged')]);
    execFileSync('setfattr', ['-n', 'trusted.second', '-v', 'counted with the first', join(root, 'tagged')]);
    writeFileSync(join(root, 'frozen'), 'read-only');
    execFileSync('setfattr', ['-n', 'user.frozen', '-v', 'still set', join(root, 'frozen')]);
    chmodSync(join(root, 'frozen'), 0o444);
    const sink = bufferSink();
    await createArchive(root, sink);
    const archive = join(work, 'nonroot.pxar');
    writeFileSync(archive, sink.buffer());
    const target = join(work, 'nonroot-dst');
    mkdirSync(target);
    chownSync(target, 65534, 65534);
    chmodSync(work, 0o755);
    const out = execFileSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '--',
        process.execPath,
        '--import',
        'tsx',
        '-e',
        EXTRACT_SCRIPT,
        REPO,
        archive,
        target,
      ],
      { cwd: REPO },
    );
    const res = JSON.parse(out.toString()) as {
      skipped: Record<string, number>;
      attributeErrors: number;
      warnings: string[];
    };
    assert.deepEqual(
      [res.skipped.xattrs, res.skipped.acls, res.skipped.fcaps, res.attributeErrors],
      [1, 0, 1, 0],
    );
    assert.equal(res.warnings.length, 2, res.warnings.join('\n'));
    assert.match(
      res.warnings.join('\n'),
      /extended attributes are not restored \(setting them needs root\): first on '\/tagged'/,
    );
    assert.match(
      res.warnings.join('\n'),
      /file capabilities are not restored \(setting them needs root\): first on '\/ping'/,
    );
    const got = attributesOf(target);
    assert.ok(got.xattrs.includes(`frozen: user.frozen=${Buffer.from('still set').toString('hex')}`));
    assert.ok(got.xattrs.some((x) => x.startsWith('tagged: user.binary=')));
    assert.ok(!got.xattrs.some((x) => x.includes('trusted.secret')));
    assert.ok(got.acls.some((a) => a.includes('default:group:77:r--')));
    assert.equal(lstatSync(join(target, 'frozen')).mode & 0o7777, 0o444, 'made writable for the run only');
    assert.equal(
      lstatSync(join(target, 'frozen'), { bigint: true }).mtimeNs / 1000n,
      lstatSync(join(root, 'frozen'), { bigint: true }).mtimeNs / 1000n,
    );
  },
);
