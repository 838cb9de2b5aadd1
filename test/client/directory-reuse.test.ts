/**
 * Whole directories taken from the previous archive (directory-reuse.ts): after a change, the
 * directories whose members are as they were are not walked (no readdir), and the archive and the
 * catalog are byte for byte those a walk of the whole tree gives, whether the reused pieces' bytes
 * come from the previous archive (their old chunks) or are encoded again (`read`, at the edges).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs, { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pxarStream } from '../../src/client/pxar-backup.js';
import { measureTree, RACY_MARGIN_MS } from '../../src/client/tar-archive.js';
import {
  encodeDirectories,
  encodeEntries,
  previousPxarRecords,
  type TreeCacheEntry,
} from '../../src/client/tree-cache.js';
import { RecordedStats } from '../../src/client/walk-stats.js';
import { CatalogWriter } from '../../src/pxar/catalog.js';
import { ERR_PXAR_CHANGED_WHILE_ARCHIVING } from '../../src/errors.js';
import { makeTree } from './tree-fixture.js';

let work: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'stowage-directory-reuse-'));
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

const age = () => new Promise((r) => setTimeout(r, RACY_MARGIN_MS + 200));

/** Run `fn` recording the directories listed meanwhile (the ESM bindings of node:fs included). */
async function listing<T>(fn: () => Promise<T>): Promise<{ result: T; listed: string[] }> {
  const mutableFs = fs as unknown as { readdirSync: typeof fs.readdirSync };
  const original = fs.readdirSync;
  const listed: string[] = [];
  mutableFs.readdirSync = ((path: fs.PathLike, ...rest: unknown[]) => {
    listed.push(path.toString());
    return (original as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof original;
  syncBuiltinESMExports();
  try {
    return { result: await fn(), listed };
  } finally {
    mutableFs.readdirSync = original;
    syncBuiltinESMExports();
  }
}

interface Backup {
  /** The archive, reused pieces as the previous archive's bytes. */
  bytes: Buffer;
  /** The same, reused pieces encoded again (their `read`). */
  reencoded: Buffer;
  catalog: Buffer;
  /** What the tree cache would keep of it. */
  cached: TreeCacheEntry;
  pieces: number;
  /** The directories the pxar walk listed, relative to the root ('' for the root). */
  walked: string[];
}

/** A pxar backup of `root` as the backup command runs it: with the metadata walk's record and the previous backup's layout. */
async function backup(root: string, previous?: Backup): Promise<Backup> {
  let knownStats: RecordedStats | undefined;
  if (previous) {
    knownStats = new RecordedStats();
    await measureTree(root, { subsecondMtimes: true, record: knownStats });
  }
  const catalog = new CatalogWriter();
  const { result, listed } = await listing(() => encode(root, catalog, previous, knownStats));
  return {
    ...result,
    walked: listed
      .filter((p) => p.startsWith(root))
      .map((p) => p.slice(root.length + 1))
      .sort(),
  };
}

async function encode(
  root: string,
  catalog: CatalogWriter,
  previous: Backup | undefined,
  knownStats: RecordedStats | undefined,
): Promise<Omit<Backup, 'walked'>> {
  const records = previous && previousPxarRecords(previous.cached)!;
  const stream = pxarStream(root, {
    archive: 'root.pxar.didx',
    catalog,
    previous: records?.previous.entries,
    previousLayout: records?.layout,
    knownStats,
  });
  const bytes: Buffer[] = [];
  const reencoded: Buffer[] = [];
  let pieces = 0;
  for await (const p of stream.bytes) {
    if (Buffer.isBuffer(p)) {
      bytes.push(p);
      reencoded.push(p);
      continue;
    }
    pieces++;
    bytes.push(previous!.bytes.subarray(p.oldStart, p.oldStart + p.length));
    for await (const b of p.read(0, p.length)) reencoded.push(Buffer.from(b));
    // a window inside, as the chunker asks for at a piece's edges
    const [from, to] = [Math.floor(p.length / 3), Math.floor((2 * p.length) / 3) + 1];
    const window: Buffer[] = [];
    for await (const b of p.read(from, to)) window.push(Buffer.from(b));
    assert.ok(
      Buffer.concat(window).equals(previous!.bytes.subarray(p.oldStart + from, p.oldStart + to)),
      `bytes ${from} to ${to} of a piece of ${p.length}`,
    );
  }
  const { size } = await stream.done;
  return {
    bytes: Buffer.concat(bytes),
    reencoded: Buffer.concat(reencoded),
    catalog: catalog.finish(),
    cached: {
      fingerprint: '',
      csum: '',
      size,
      entries: encodeEntries(stream.spans()),
      dirs: encodeDirectories(stream.directories()),
    },
    pieces,
  };
}

test('directories whose members are as before are taken whole, not walked: the archive and catalog a full walk gives', async () => {
  const root = join(work, 'tree');
  makeTree(root, { scale: 256 * 1024 });
  mkdirSync(join(root, 'hard'));
  writeFileSync(join(root, 'hard/a'), 'linked\n');
  linkSync(join(root, 'hard/a'), join(root, 'hard/b'));
  mkdirSync(join(root, 'many/x/y'), { recursive: true });
  for (let i = 0; i < 50; i++) writeFileSync(join(root, `many/x/f${i}`), `file ${i}\n`.repeat(i * 100));
  symlinkSync('../f1', join(root, 'many/x/y/up'));
  await age();
  const first = await backup(root);

  // one file changes, two directories deep
  writeFileSync(join(root, 'docs/nested/dup-a.bin'), 'changed\n');
  await age();
  const second = await backup(root, first);
  const full = await backup(root);
  assert.ok(second.bytes.equals(full.bytes), 'the archive a full walk gives');
  assert.ok(second.reencoded.equals(full.bytes), 'the reused pieces encoded again are their old bytes');
  assert.ok(second.catalog.equals(full.catalog), 'the catalog a full walk gives');
  // walked: the root, the directories down to the change, and the one holding hard links
  // (never keyed); every other directory is taken whole from the first archive
  assert.deepEqual(second.walked, ['', 'docs', 'docs/nested', 'hard']);

  // what the second backup recorded serves the third: the directories it took whole are kept,
  // with what they hold, at their new places
  writeFileSync(join(root, 'many/x/f7'), 'changed too\n');
  await age();
  const third = await backup(root, second);
  const full3 = await backup(root);
  assert.ok(third.bytes.equals(full3.bytes));
  assert.ok(third.reencoded.equals(full3.bytes));
  assert.ok(third.catalog.equals(full3.catalog));
  assert.deepEqual(third.walked, ['', 'hard', 'many', 'many/x']);
  assert.ok(third.pieces > 0);
});

test('a directory with a member changed within the racy margin is walked, also by the next backup', async () => {
  const root = join(work, 'racy');
  mkdirSync(join(root, 'a/b'), { recursive: true });
  mkdirSync(join(root, 'c'), { recursive: true });
  writeFileSync(join(root, 'a/b/f'), 'f\n');
  writeFileSync(join(root, 'c/g'), 'g\n');
  // written just now: the first backup keys neither `a` nor `a/b`
  const first = await backup(root);
  await age();
  writeFileSync(join(root, 'c/g'), 'g changed\n');
  await age();
  const second = await backup(root, first);
  assert.ok(second.bytes.equals((await backup(root)).bytes));
  assert.deepEqual(second.walked, ['', 'a', 'a/b', 'c']);
});

test('a symlink changed between the metadata walk and its directory encoded again fails the backup, naming it', async () => {
  const root = join(work, 'symlink-race');
  mkdirSync(join(root, 'links'), { recursive: true });
  mkdirSync(join(root, 'other'));
  symlinkSync('short', join(root, 'links/l'));
  writeFileSync(join(root, 'links/f'), 'x'.repeat(1000));
  writeFileSync(join(root, 'other/g'), 'g\n');
  await age();
  const first = await backup(root);
  writeFileSync(join(root, 'other/g'), 'g changed\n');
  await age();
  // the metadata walk's record says `links` is as before; then the link changes, before the
  // pxar walk encodes that directory again from the record (as at a chunker's edge)
  const knownStats = new RecordedStats();
  await measureTree(root, { subsecondMtimes: true, record: knownStats });
  rmSync(join(root, 'links/l'));
  symlinkSync('a much longer target', join(root, 'links/l'));
  await assert.rejects(encode(root, new CatalogWriter(), first, knownStats), (err: Error) => {
    assert.ok(ERR_PXAR_CHANGED_WHILE_ARCHIVING.is(err), String(err));
    assert.match(err.message, /links\/l' changed while it was archived: run the backup again/);
    return true;
  });
});

test('a directory holding a mount point is walked by every backup, never taken whole', async (t) => {
  const root = join(work, 'mounts');
  const mnt = join(root, 'host/mnt');
  mkdirSync(mnt, { recursive: true });
  writeFileSync(join(root, 'host/h'), 'h\n');
  mkdirSync(join(root, 'plain'));
  writeFileSync(join(root, 'plain/p'), 'p\n');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
    return t.skip(`cannot mount a tmpfs here (${why})`);
  }
  t.after(() => execFileSync('umount', ['-l', mnt]));
  writeFileSync(join(mnt, 'inside'), 'on another file system\n');
  await age();
  const first = await backup(root);
  writeFileSync(join(root, 'plain/p'), 'p changed\n');
  await age();
  const second = await backup(root, first);
  assert.ok(second.bytes.equals((await backup(root)).bytes), 'the archive a full walk gives');
  // `host` holds a member on another device: never keyed, so walked although unchanged; the
  // mount point itself is archived as an empty directory, as by every walk. (The attribute read
  // lists the directories leading to a mount point once more: `xattrReadTargets`.)
  assert.deepEqual([...new Set(second.walked)], ['', 'host', 'plain']);
});
