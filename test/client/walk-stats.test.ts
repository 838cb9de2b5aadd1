/**
 * The metadata walk's lstats handed to the pxar walk (walk-stats.ts): the archive is byte for byte
 * the one a walk of its own gives, with one lstat per member instead of two, also when entries
 * were created or removed between the two walks.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureTree } from '../../src/client/tar-archive.js';
import { RecordedStats } from '../../src/client/walk-stats.js';
import { createArchive } from '../../src/pxar/create.js';
import { bufferSink } from '../../src/pxar/io.js';
import { makeTree } from './tree-fixture.js';

let work: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'stowage-walk-stats-'));
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

/** Run `fn` counting the lstat calls made meanwhile (the ESM bindings of node:fs included). */
async function countingLstat<T>(fn: () => Promise<T>): Promise<{ result: T; calls: number }> {
  const mutableFs = fs as unknown as { lstatSync: typeof fs.lstatSync };
  const original = fs.lstatSync;
  let calls = 0;
  mutableFs.lstatSync = ((...args: Parameters<typeof original>) => {
    calls++;
    return original(...args);
  }) as typeof original;
  syncBuiltinESMExports();
  try {
    return { result: await fn(), calls };
  } finally {
    mutableFs.lstatSync = original;
    syncBuiltinESMExports();
  }
}

async function recorded(root: string): Promise<{ stats: RecordedStats; entries: number }> {
  const stats = new RecordedStats();
  let entries = 0;
  await measureTree(root, {
    subsecondMtimes: true,
    record: stats,
    onFingerprint: (f) => (entries = f.entries),
  });
  return { stats, entries };
}

async function archive(root: string, knownStats?: RecordedStats): Promise<{ bytes: Buffer; lstats: number }> {
  const sink = bufferSink();
  const { calls } = await countingLstat(() => createArchive(root, sink, { xattrs: false, knownStats }));
  return { bytes: sink.buffer(), lstats: calls };
}

test('the pxar walk takes the metadata walk lstats: the same archive, one lstat per member instead of two', async () => {
  const root = join(work, 'same');
  makeTree(root, { scale: 64 * 1024 });
  const own = await archive(root);
  const { stats, entries } = await recorded(root);
  const taken = await archive(root, stats);
  assert.ok(taken.bytes.equals(own.bytes), 'the archive is the one a walk of its own gives');
  // the walk of its own lstats the root and every member; with the recorded ones, the root alone
  assert.ok(own.lstats >= entries, `${own.lstats} lstats for ${entries} entries`);
  assert.equal(taken.lstats, 1);
});

test('entries created and removed between the walks: the archive is the tree as the pxar walk finds it', async () => {
  const root = join(work, 'moving');
  makeTree(root, { scale: 64 * 1024 });
  mkdirSync(join(root, 'gone/deep'), { recursive: true });
  writeFileSync(join(root, 'gone/deep/a.txt'), 'a');
  writeFileSync(join(root, 'gone/b.txt'), 'b');
  writeFileSync(join(root, 'docs/removed.txt'), 'removed');
  // the directories' mtimes as the metadata walk sees them (whole seconds, to set them back)
  const keepMtimes = () =>
    ['', 'docs'].forEach((d) => utimesSync(join(root, d), 1_600_000_000, 1_600_000_000));
  keepMtimes();
  const { stats } = await recorded(root);

  rmSync(join(root, 'gone'), { recursive: true });
  rmSync(join(root, 'docs/removed.txt'));
  writeFileSync(join(root, 'docs/created.txt'), 'created');
  mkdirSync(join(root, 'zz-new'));
  writeFileSync(join(root, 'zz-new/c.txt'), 'c');
  keepMtimes(); // archived from the metadata walk's lstats

  const taken = await archive(root, stats);
  const own = await archive(root);
  assert.ok(taken.bytes.equals(own.bytes), 'the archive is the one a walk of its own gives');
  // lstat'ed: the root and the three entries the metadata walk did not see
  assert.equal(taken.lstats, 4);
});

test("a name that is not UTF-8 is lstat'ed, never given the lstat of the file whose name reads the same", async () => {
  const root = join(work, 'names');
  mkdirSync(root);
  writeFileSync(Buffer.from([...Buffer.from(root + '/a'), 0xff]), 'not utf-8');
  writeFileSync(join(root, 'a\uFFFD'), 'U+FFFD, a longer file');
  writeFileSync(join(root, 'b'), 'b');
  const { stats } = await recorded(root);
  const taken = await archive(root, stats);
  const own = await archive(root);
  assert.ok(taken.bytes.equals(own.bytes), 'the archive is the one a walk of its own gives');
  assert.equal(taken.lstats, 2, 'the root and the name that is not UTF-8');
});

test('recorded lstats keep 64-bit inode numbers and times before 1970 exactly', () => {
  const stats = new RecordedStats();
  const st = {
    mode: 0o100644n,
    uid: 4_000_000_000n,
    gid: 7n,
    size: 5n,
    mtimeNs: -1_500_000_000n,
    ctimeNs: 1_700_000_000_123_456_789n,
    ino: 2n ** 64n - 3n,
    dev: 2n ** 63n + 1n,
    nlink: 2n,
    rdev: 0n,
  };
  stats.add('a', st as never);
  const back = stats.take(Buffer.from('a'))!;
  for (const k of Object.keys(st) as Array<keyof typeof st>) assert.equal(back[k], st[k], k);
  assert.ok(back.isFile() && !back.isDirectory() && !back.isSymbolicLink());
  assert.equal(stats.take(Buffer.from('a')), undefined, 'taken once');
});
