/**
 * `stowage-client backup root.pxar:DIR` end to end: a pxar archive and its catalog; an unchanged
 * tree's next backup reads no file (its archive and catalog are the previous snapshot's indexes,
 * the same ones a full encode gives); a changed tree is encoded again; `restore` gives back the
 * tree with its metadata, and `--pattern` a part of it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { decodeBlob } from '../../src/datastore/data-blob.js';
import { RACY_MARGIN_MS } from '../../src/client/tar-archive.js';
import { attributesOf } from '../pxar/tree.js';
import { describeTree, makeTree } from '../client/tree-fixture.js';
import { runClient, startE2eServer, type E2eServer } from './backup-helpers.js';

let srv: E2eServer;
let src: string;

interface Summary {
  bytes: number;
  uploadedBytes: number;
  cachedBytes: number;
  archives: Array<{ archive: string; 'index-reused'?: boolean }>;
}

const age = () => new Promise((r) => setTimeout(r, RACY_MARGIN_MS + 200));
const iso = (time: number) => new Date(time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

before(async () => {
  srv = await startE2eServer('stowage-e2e-pxar-backup-');
  src = join(srv.root, 'src');
  mkdirSync(join(src, 'a', 'b'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(src, 'a', `f${i}.txt`), `file ${i}\n`.repeat(i * 50));
  writeFileSync(join(src, 'a', 'b', 'big.bin'), randomBytes(2 * 1024 * 1024));
  await age();
});

after(async () => {
  await srv?.stop();
});

async function backup(time: number, extra: string[] = []): Promise<Summary> {
  const res = await runClient(
    [
      'backup',
      `root.pxar:${src}`,
      '--backup-id',
      'px',
      '--backup-time',
      String(time),
      '--output-format',
      'json',
      ...extra,
    ],
    srv.env,
  );
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as Summary;
}

/** The manifest's checksums of the snapshot's files, read from the datastore. */
function csums(time: number): Record<string, string> {
  const raw = readFileSync(join(srv.storePath, 'host', 'px', iso(time), 'index.json.blob'));
  const manifest = JSON.parse(decodeBlob(raw).toString()) as {
    files: Array<{ filename: string; csum: string }>;
  };
  return Object.fromEntries(manifest.files.map((f) => [f.filename, f.csum]));
}

test('an unchanged tree is not read again; its archive and catalog are the indexes a full encode gives', async () => {
  const first = await backup(1_700_000_000);
  assert.equal(first.cachedBytes, 0);
  assert.deepEqual(
    first.archives.map((a) => a.archive),
    ['root.pxar.didx'],
  );
  const one = csums(1_700_000_000);
  assert.ok(one['catalog.pcat1.didx'], 'the catalog is in the manifest');

  const second = await backup(1_700_000_100);
  assert.equal(second.archives[0]!['index-reused'], true);
  assert.equal(second.uploadedBytes, 0);
  assert.equal(second.cachedBytes, second.bytes, 'no byte of the archive was read');
  assert.deepEqual(csums(1_700_000_100), one);

  // without the cache the tree is read and encoded again: the very same indexes
  const full = await backup(1_700_000_200, ['--no-tree-cache']);
  assert.equal(full.cachedBytes, 0);
  assert.deepEqual(csums(1_700_000_200), one);
});

test('a changed file means the tree is encoded again, and the catalog shows the change', async () => {
  writeFileSync(join(src, 'a', 'f3.txt'), 'changed\n');
  await age();
  const changed = await backup(1_700_000_300);
  // (unchanged files' old chunks may still be taken, where the chunker provably cuts the same:
  // whether one lies wholly inside big.bin depends on its random bytes)
  assert.ok(!changed.archives[0]!['index-reused']);
  const before = csums(1_700_000_200);
  const after = csums(1_700_000_300);
  assert.notEqual(after['root.pxar.didx'], before['root.pxar.didx']);
  assert.notEqual(after['catalog.pcat1.didx'], before['catalog.pcat1.didx']);
  const find = await runClient(
    ['catalog', 'find', `host/px/${iso(1_700_000_300)}`, 'f3.txt', '--output-format', 'json'],
    srv.env,
  );
  assert.equal((JSON.parse(find.stdout) as Array<{ size: number }>)[0]!.size, 8);

  // the next unchanged backup reuses the new state
  const again = await backup(1_700_000_400);
  assert.equal(again.archives[0]!['index-reused'], true);
  assert.deepEqual(csums(1_700_000_400), after);
});

test('a file written within the racy margin is never trusted: the next backup reads the tree', async () => {
  // Written every 50 ms while the backup runs, so its ctime is within the margin of any walk
  // however slow the machine: that backup's walk can vouch for nothing.
  const fresh = join(src, 'a', 'fresh.txt');
  const writer = setInterval(() => writeFileSync(fresh, `${Date.now()}\n`), 50);
  let racy: Summary;
  try {
    racy = await backup(1_700_000_500);
  } finally {
    clearInterval(writer);
  }
  assert.notEqual(racy.archives[0]!['index-reused'], true);
  await age();
  const next = await backup(1_700_000_600);
  assert.notEqual(next.archives[0]!['index-reused'], true, 'the racy walk left no fingerprint to trust');
  const settled = await backup(1_700_000_700);
  assert.equal(settled.cachedBytes, settled.bytes, 'once the tree is quiet, it is reused again');
  assert.deepEqual(csums(1_700_000_700), csums(1_700_000_600));
});

test('restore gives back every entry with its metadata: modes, mtimes, hard links, symlinks, FIFOs, sparse files', async () => {
  const tree = join(srv.root, 'rich');
  makeTree(tree, { scale: 512 * 1024 });
  linkSync(join(tree, 'random.bin'), join(tree, 'small', 'random-link.bin'));
  symlinkSync('../nowhere', join(tree, 'bin', 'dangling'));
  execFileSync('mkfifo', [join(tree, 'pipe')]);
  const sparse = openSync(join(tree, 'sparse.img'), 'w');
  writeSync(sparse, Buffer.from('head'), 0, 4, 0);
  writeSync(sparse, Buffer.from('tail'), 0, 4, 8 * 1024 * 1024);
  closeSync(sparse);
  mkdirSync(join(tree, 'private'), { mode: 0o700 });
  writeFileSync(join(tree, 'private', 'key'), 'secret', { mode: 0o600 });
  utimesSync(join(tree, 'private', 'key'), 1_500_000_000.123456, 1_500_000_000.123456);
  // extended attributes (a binary value, a name with '=' and a backslash), an access and a
  // default ACL, a file capability: setting them moves no mtime
  execFileSync('setfattr', ['-n', 'user.binary', '-v', '0x00ff0a5c3d0d', join(tree, 'random.bin')]);
  execFileSync('setfattr', ['-n', 'user.odd=name\\x', '-v', 'text', join(tree, 'private')]);
  execFileSync('setfacl', ['-m', 'u:1234:rx,g:4321:r', '-m', 'd:g:77:rwx', join(tree, 'small')]);
  execFileSync('setcap', ['cap_net_bind_service+ep', join(tree, 'private', 'key')]);
  await age();
  const b = await runClient(
    ['backup', `root.pxar:${tree}`, '--backup-id', 'rich', '--backup-time', '1700000000'],
    srv.env,
  );
  assert.equal(b.code, 0, b.stderr);

  const target = join(srv.root, 'rich-restored');
  const r = await runClient(['restore', 'host/rich', 'root.pxar', target], srv.env);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(describeTree(target), describeTree(tree));
  assert.deepEqual(attributesOf(target), attributesOf(tree), 'xattrs, ACLs and the capability came back');
  assert.ok(attributesOf(target).acls.some((a) => a.includes('default:group:77:rwx')));
  assert.ok(attributesOf(target).xattrs.some((x) => x.includes('security.capability=')));
  const st = (p: string) => lstatSync(join(target, p));
  assert.equal(st('small/random-link.bin').ino, st('random.bin').ino, 'the hard link is one inode again');
  assert.ok(st('pipe').isFIFO());
  assert.equal(readFileSync(join(target, 'sparse.img')).length, 8 * 1024 * 1024 + 4);
  assert.ok(statSync(join(target, 'sparse.img')).blocks * 512 < 1024 * 1024, 'the zeros are holes again');
  assert.equal(st('private').mode & 0o7777, 0o700);
  assert.equal(
    Math.round(st('private/key').mtimeMs * 1000),
    Math.round(lstatSync(join(tree, 'private', 'key')).mtimeMs * 1000),
    'the mtime to the microsecond',
  );
  const again = await runClient(['restore', 'host/rich', 'root.pxar', target], srv.env);
  assert.notEqual(again.code, 0, 'a restore never writes into a non-empty directory');
  assert.match(again.stderr, /not empty|exists/);
});

test('--pattern restores only the matching part, with the directories leading to it', async () => {
  const target = join(srv.root, 'part');
  const r = await runClient(
    ['restore', 'host/rich', 'root.pxar', target, '--pattern', '/docs/nested/**', '--pattern', '!*.txt'],
    srv.env,
  );
  assert.equal(r.code, 0, r.stderr);
  const rich = join(srv.root, 'rich');
  const want = [...describeTree(rich).keys()]
    .filter((k) => k === 'docs' || k.startsWith('docs/nested'))
    .filter((k) => !k.endsWith('.txt'));
  assert.deepEqual([...describeTree(target).keys()].sort(), want.sort());
  assert.deepEqual(readdirSync(target), ['docs']);

  const tar = await runClient(
    ['restore', 'host/px', 'root.pxar', join(srv.root, 'x'), '--pattern', 'a'],
    srv.env,
  );
  assert.equal(tar.code, 0, tar.stderr);
  const notPxar = await runClient(
    ['backup', `etc.tar:${join(rich, 'docs')}`, '--backup-id', 'tar1'],
    srv.env,
  );
  assert.equal(notPxar.code, 0, notPxar.stderr);
  const refused = await runClient(
    ['restore', 'host/tar1', 'etc.tar', join(srv.root, 'y'), '--pattern', 'x'],
    srv.env,
  );
  assert.notEqual(refused.code, 0);
  assert.match(
    refused.stderr,
    /^error: --pattern selects files of pxar archives; 'etc\.tar\.didx' is not one\n$/,
  );
});
