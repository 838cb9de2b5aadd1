/**
 * A first backup's walk ahead (walk-ahead.ts): a thread lstats the tree and reads its small files
 * in the pxar walk's order; the archive is byte for byte the one the walk makes alone, the main
 * thread making no lstat or open of its own for what the thread saw, and taking over for what it
 * did not (entries created since, other names, excluded subtrees).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { mkdirSync, mkdtempSync, rmSync, writeFileSync, linkSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileExcludes, type ExcludeMatcher } from '../../src/client/tar-archive.js';
import { WalkAhead, walkAheadAfter } from '../../src/client/walk-ahead.js';
import { createArchive } from '../../src/pxar/create.js';
import { makeTree } from './tree-fixture.js';

let work: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'stowage-walk-ahead-'));
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

/** Run `fn` counting this thread's lstat and open calls (the ESM bindings of node:fs included). */
async function counting<T>(fn: () => Promise<T>): Promise<{ result: T; lstats: number; opens: number }> {
  const mutableFs = fs as unknown as { lstatSync: typeof fs.lstatSync; openSync: typeof fs.openSync };
  const { lstatSync, openSync } = fs;
  let lstats = 0;
  let opens = 0;
  mutableFs.lstatSync = ((...args: Parameters<typeof lstatSync>) => {
    lstats++;
    return lstatSync(...args);
  }) as typeof lstatSync;
  mutableFs.openSync = ((...args: Parameters<typeof openSync>) => {
    opens++;
    return openSync(...args);
  }) as typeof openSync;
  syncBuiltinESMExports();
  try {
    return { result: await fn(), lstats, opens };
  } finally {
    mutableFs.lstatSync = lstatSync;
    mutableFs.openSync = openSync;
    syncBuiltinESMExports();
  }
}

async function archive(
  root: string,
  opts: { ahead?: Pick<WalkAhead, 'stat' | 'content' | 'close'>; exclude?: ExcludeMatcher } = {},
): Promise<{ bytes: Buffer; lstats: number; opens: number; warnings: string[] }> {
  // keeps what it is given, as the backup's pipe does until the chunker takes it
  const held: Buffer[] = [];
  const sink = { write: (b: Buffer) => (held.push(b), Promise.resolve()), buffer: () => Buffer.concat(held) };
  const warnings: string[] = [];
  const { lstats, opens } = await counting(() =>
    createArchive(root, sink, {
      xattrs: false,
      ahead: opts.ahead,
      exclude: opts.exclude,
      onWarning: (m) => warnings.push(m),
    }),
  );
  await opts.ahead?.close();
  return { bytes: sink.buffer(), lstats, opens, warnings };
}

test('with the walk ahead, the same archive, and no lstat or small-file open on the main thread', async () => {
  const root = join(work, 'same');
  makeTree(root, { scale: 1024 * 1024 }); // a 341 KiB file, read by the walk itself
  mkdirSync(join(root, 'many'));
  for (let i = 0; i < 3000; i++) writeFileSync(join(root, 'many', `n${i}`), `file ${i}\n`.repeat(i % 50));
  linkSync(join(root, 'many/n7'), join(root, 'many/z-hardlink'));
  // 30 MB of files around the size the encoder stops copying at (64 KiB): the thread's buffers
  // are given back and reused many times over while the archive keeps every byte written
  mkdirSync(join(root, 'sized'));
  for (let i = 0; i < 600; i++)
    writeFileSync(join(root, 'sized', `s${i}`), Buffer.alloc(i % 2 ? 40_000 : 70_000, i % 251));
  writeFileSync(Buffer.from([...Buffer.from(join(root, 'many/')), 0xff, 0x41]), 'a name that is not UTF-8');
  const own = await archive(root);
  const ahead = await archive(root, { ahead: new WalkAhead(root) });
  assert.ok(ahead.bytes.equals(own.bytes), 'the archive is the one the walk makes alone');
  assert.deepEqual(ahead.warnings, []);
  assert.ok(own.lstats > 3000 && own.opens > 3000, `alone: ${own.lstats} lstats, ${own.opens} opens`);
  // the root's lstat (createArchive's own), and the large files' opens (file handles, not openSync)
  assert.equal(ahead.lstats, 1);
  assert.equal(ahead.opens, 0);
});

test('entries created, removed, grown and excluded after the thread walked: the archive holds what the walk found', async () => {
  const root = join(work, 'moving');
  mkdirSync(join(root, 'keep'), { recursive: true });
  mkdirSync(join(root, 'skip/deep'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(root, 'keep', `k${i}`), `keep ${i}\n`);
  for (let i = 0; i < 50; i++) writeFileSync(join(root, 'skip/deep', `s${i}`), `skip ${i}\n`);
  writeFileSync(join(root, 'keep/removed'), 'removed');
  const exclude = compileExcludes(['skip/']);
  const walkAhead = new WalkAhead(root, exclude.patterns);
  await walkAhead.walked;
  rmSync(join(root, 'keep/removed'));
  writeFileSync(join(root, 'keep/created'), 'created since');
  writeFileSync(join(root, 'keep/k1'), 'keep 1 and more since the thread read it\n');

  const res = await archive(root, { ahead: walkAhead, exclude });
  const { PxarDecoder } = await import('../../src/pxar/decoder.js');
  const { readAtBuffer } = await import('../../src/pxar/io.js');
  const decoder = PxarDecoder.fromReadAt(readAtBuffer(res.bytes));
  const files = new Map<string, string>();
  for await (const e of decoder) {
    if (e.kind !== 'file') continue;
    const parts: Buffer[] = [];
    for await (const c of decoder.contents()) parts.push(Buffer.from(c));
    files.set(e.path, Buffer.concat(parts).toString());
  }
  assert.equal(
    files.get('/keep/created'),
    'created since',
    'a file created since: lstat and read by the walk',
  );
  assert.equal(files.has('/keep/removed'), false, 'a file removed since: not archived');
  // k1 grew after the thread's lstat and read: archived as the thread saw it, as a walk alone
  // archives a file that grows after its lstat (its first `size` bytes)
  assert.equal(files.get('/keep/k1'), 'keep 1\n');
  assert.equal([...files.keys()].filter((p) => p.startsWith('/skip')).length, 0, 'excluded');
  assert.equal(res.lstats, 2, 'the root and the file created since');
  assert.equal(res.opens, 1, 'the file created since');
});

test('started part way (a first backup starts it past its first entries), the same archive', async () => {
  const root = join(work, 'part-way');
  makeTree(root, { scale: 64 * 1024 });
  const own = await archive(root);
  const ahead = walkAheadAfter(40, root);
  const partWay = await archive(root, { ahead });
  assert.ok(partWay.bytes.equals(own.bytes), 'the archive is the one the walk makes alone');
  // the root and the 40 entries before the thread started
  assert.equal(partWay.lstats, 41);
  // the thread started where the walk was: it lstat'ed what comes after and the directories
  // leading there, not the 40 entries before
  const all = own.lstats - 1;
  assert.ok(ahead.started, 'started');
  assert.ok(
    ahead.started.entries <= all - 40 + 3 && ahead.started.entries > all - 60,
    `${ahead.started.entries} of ${all} entries`,
  );
  const never = await archive(root, { ahead: walkAheadAfter(1_000_000, root) });
  assert.ok(never.bytes.equals(own.bytes));
  assert.equal(never.lstats, own.lstats, 'a tree smaller than the threshold starts no thread');
});

test('a thread that fails leaves the walk to do everything itself: the same archive', async () => {
  const root = join(work, 'failing');
  makeTree(root, { scale: 64 * 1024 });
  const own = await archive(root);
  // patterns that are no list make the thread throw before its first batch
  const failing = new WalkAhead(root, 42 as unknown as string[]);
  const taken = await archive(root, { ahead: failing });
  assert.ok(taken.bytes.equals(own.bytes), 'the archive is the one the walk makes alone');
  assert.deepEqual(taken.warnings, []);
  assert.equal(taken.lstats, own.lstats, "the walk lstat'ed every entry itself");
  assert.equal(failing.entries, 0);
});
