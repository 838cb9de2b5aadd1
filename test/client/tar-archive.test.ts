import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import {
  byteOrder,
  RACY_MARGIN_MS,
  compileExcludes,
  extractTar,
  measureTree,
  tarDirectory,
  WalkFingerprint,
  type TreeFingerprint,
} from '../../src/client/tar-archive.js';
import { createArchive } from '../../src/pxar/create.js';
import { TreeCache } from '../../src/client/tree-cache.js';
import { bufferSink } from '../../src/pxar/io.js';
import { describeTree, makeTree } from './tree-fixture.js';

async function collect(r: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('a tree survives tar and extract with content, modes, mtimes, symlinks and empty dirs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    const src = join(dir, 'src');
    makeTree(src, { scale: 512 * 1024 });
    const stream = await collect(tarDirectory(src));
    const dst = join(dir, 'dst');
    const res = await extractTar(Readable.from([stream]), dst);
    assert.deepEqual(describeTree(dst, { rootMeta: true }), describeTree(src, { rootMeta: true }));
    assert.ok(res.files > 200 && res.symlinks === 4 && res.dirs >= 8);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unchanged tree gives a byte-identical tar stream', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    makeTree(dir, { scale: 64 * 1024 });
    rmSync(join(dir, 'random-each-time.bin'));
    const a = await collect(tarDirectory(dir));
    const b = await collect(tarDirectory(dir));
    assert.ok(a.equals(b));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('excluded paths are neither archived nor counted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    mkdirSync(join(dir, 'cache/sub'), { recursive: true });
    mkdirSync(join(dir, 'keep/cache'), { recursive: true });
    writeFileSync(join(dir, 'cache/sub/x'), 'x');
    writeFileSync(join(dir, 'keep/cache/y'), 'y');
    writeFileSync(join(dir, 'keep/a.log'), 'log');
    writeFileSync(join(dir, 'keep/important.log'), 'keep me');
    writeFileSync(join(dir, 'keep/b.txt'), 'b');
    const excludes = ['/cache', '*.log', '!important.log'];
    const names: string[] = [];
    const extract = tar.extract();
    const done = (async () => {
      for await (const e of extract) {
        names.push(e.header.name);
        e.resume();
      }
    })();
    tarDirectory(dir, { exclude: excludes }).pipe(extract);
    await done;
    assert.deepEqual(names, [
      './',
      'keep/',
      'keep/b.txt',
      'keep/cache/',
      'keep/cache/y',
      'keep/important.log',
    ]);
    assert.equal((await measureTree(dir, { exclude: excludes })).files, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('exclude patterns follow gitignore rules', () => {
  const m = compileExcludes(['*.tmp', '/top-only', 'build/', 'a/**/z', 'file?.txt']);
  assert.equal(m('x.tmp', false), true);
  assert.equal(m('deep/dir/x.tmp', false), true);
  assert.equal(m('top-only', true), true);
  assert.equal(m('sub/top-only', true), false);
  assert.equal(m('build', true), true);
  assert.equal(m('build', false), false);
  assert.equal(m('a/z', false), true);
  assert.equal(m('a/b/c/z', false), true);
  assert.equal(m('file1.txt', false), true);
  assert.equal(m('file10.txt', false), false);
});

test('an archive entry pointing outside the target is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    for (const name of ['../evil', '/abs/evil']) {
      const pack = tar.pack();
      pack.entry({ name, type: 'file' }, 'bad');
      pack.finalize();
      const t = join(dir, `t${name.length}`);
      await assert.rejects(
        extractTar(pack as unknown as AsyncIterable<Uint8Array>, t),
        /outside the restore target/,
      );
    }
    const pack = tar.pack();
    pack.entry({ name: 'link', type: 'symlink', linkname: '/tmp' });
    pack.entry({ name: 'link/evil', type: 'file' }, 'bad');
    pack.finalize();
    await assert.rejects(
      extractTar(pack as unknown as AsyncIterable<Uint8Array>, join(dir, 'sym')),
      /below the symlink/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a hard link entry may only name a path inside the target, and one not archived is warned about', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    for (const [i, linkname, expected] of [
      [1, '../outside', /outside the restore target/],
      [2, 'sym/passwd', /below the symlink/],
    ] as const) {
      const pack = tar.pack();
      pack.entry({ name: 'sym', type: 'symlink', linkname: '/etc' });
      pack.entry({ name: 'hard', type: 'link', linkname });
      pack.finalize();
      await assert.rejects(
        extractTar(pack as unknown as AsyncIterable<Uint8Array>, join(dir, `t${i}`)),
        expected,
      );
    }
    const pack = tar.pack();
    pack.entry({ name: 'hard', type: 'link', linkname: 'missing' });
    pack.finalize();
    const warnings: string[] = [];
    await extractTar(pack as unknown as AsyncIterable<Uint8Array>, join(dir, 'missing'), {
      onWarning: (m) => warnings.push(m),
    });
    assert.deepEqual(warnings, ["skipping hard link 'hard': its target 'missing' is not in the archive"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a node that cannot be created costs a warning for that entry, not the restore', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    const pack = tar.pack();
    // The second FIFO of the same name: mkfifo fails (File exists), as a tool missing would.
    pack.entry({ name: 'pipe', type: 'fifo' });
    pack.entry({ name: 'pipe', type: 'fifo' });
    pack.entry({ name: 'after', type: 'file' }, 'still restored');
    pack.finalize();
    const warnings: string[] = [];
    const res = await extractTar(pack as unknown as AsyncIterable<Uint8Array>, join(dir, 't'), {
      onWarning: (m) => warnings.push(m),
    });
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(warnings[0]!, /^unable to create FIFO 'pipe': .*File exists/);
    assert.equal(res.files, 1);
    assert.equal(readFileSync(join(dir, 't', 'after'), 'utf8'), 'still restored');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('all-zero blocks of small and large files are restored as holes, the content unchanged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    const pack = tar.pack();
    const small = Buffer.alloc(200 * 1024);
    small.write('head', 0);
    small.write('tail', small.length - 4);
    const large = Buffer.alloc(3 * 1024 * 1024 + 100);
    large.write('middle', 1024 * 1024 + 5);
    pack.entry({ name: 'small', type: 'file' }, small);
    pack.entry({ name: 'large', type: 'file' }, large);
    pack.finalize();
    const t = join(dir, 't');
    await extractTar(pack as unknown as AsyncIterable<Uint8Array>, t);
    for (const [name, content] of [
      ['small', small],
      ['large', large],
    ] as const) {
      assert.ok(readFileSync(join(t, name)).equals(content), name);
      assert.ok(
        statSync(join(t, name)).blocks * 512 <= 16 * 1024,
        `${name}: ${statSync(join(t, name)).blocks} blocks`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a restore into a non-empty directory is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    writeFileSync(join(dir, 'existing'), 'x');
    symlinkSync('x', join(dir, 'l'));
    const pack = tar.pack();
    pack.finalize();
    await assert.rejects(extractTar(pack as unknown as AsyncIterable<Uint8Array>, dir), /not empty/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The fingerprint a measuring walk computes, with the clock `aheadMs` in the future. */
async function fingerprintOf(root: string, aheadMs = 3_600_000): Promise<TreeFingerprint> {
  let fp: TreeFingerprint | undefined;
  await measureTree(root, { clock: () => Date.now() + aheadMs, onFingerprint: (f) => (fp = f) });
  assert.ok(fp);
  return fp;
}

test('the tar walk and the measuring walk fingerprint an unchanged tree alike', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    makeTree(dir, { scale: 64 * 1024 });
    let fromTar: TreeFingerprint | undefined;
    await collect(
      tarDirectory(dir, { clock: () => Date.now() + 3_600_000, onFingerprint: (f) => (fromTar = f) }),
    );
    const measured = await fingerprintOf(dir);
    assert.ok(fromTar?.usable && measured.usable);
    assert.equal(fromTar.digest, measured.digest);
    assert.equal(fromTar.entries, measured.entries);
    assert.equal((await fingerprintOf(dir)).digest, measured.digest);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The fingerprint of a pxar archive's own walk of `root` (a first backup's, see WalkFingerprint). */
async function archiveWalkFingerprint(root: string, exclude: string[] = []): Promise<TreeFingerprint> {
  const fp = new WalkFingerprint(() => Date.now() + 3_600_000);
  await createArchive(root, bufferSink(), {
    exclude: exclude.length > 0 ? compileExcludes(exclude) : undefined,
    onMember: (rel, st) => fp.add(rel.toString('utf8'), st),
    onWarning: () => fp.spoil(),
  });
  return fp.result();
}

test('the walk of a pxar archive and the measuring walk fingerprint a tree alike (names in byte order, excludes)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    makeTree(dir, { scale: 64 * 1024 });
    // names whose byte order is not their order as JavaScript strings compare them, nested
    for (const name of ['B', 'a', 'é', 'z~', '_', 'Z.txt']) writeFileSync(join(dir, name), name);
    mkdirSync(join(dir, 'ü-dir/inner'), { recursive: true });
    writeFileSync(join(dir, 'ü-dir/inner/€'), 'euro');
    writeFileSync(join(dir, 'ü-dir/skip.log'), 'left out');
    symlinkSync('a', join(dir, 'link-to-a'));
    // the backup client's measuring walk, with nanosecond mtimes as pxar archives them
    const measure = async (exclude: string[] = []) => {
      let fp: TreeFingerprint | undefined;
      await measureTree(dir, {
        exclude,
        subsecondMtimes: true,
        clock: () => Date.now() + 3_600_000,
        onFingerprint: (f) => (fp = f),
      });
      return fp!;
    };
    const measured = await measure();
    const archived = await archiveWalkFingerprint(dir);
    assert.ok(measured.usable && archived.usable);
    assert.equal(archived.digest, measured.digest);
    assert.equal(archived.entries, measured.entries);

    const withExcludes = await measure(['*.log']);
    assert.equal((await archiveWalkFingerprint(dir, ['*.log'])).digest, withExcludes.digest);
    assert.notEqual(withExcludes.digest, measured.digest);

    writeFileSync(join(dir, 'a'), 'changed');
    assert.notEqual((await archiveWalkFingerprint(dir)).digest, measured.digest);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file rewritten with the same size and its mtime put back changes the fingerprint', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    const file = join(dir, 'data.bin');
    writeFileSync(file, Buffer.alloc(4096, 1));
    utimesSync(file, new Date(1_600_000_000_000), new Date(1_600_000_000_000));
    const before = await fingerprintOf(dir);
    await new Promise((r) => setTimeout(r, 50)); // past the kernel's timestamp granularity
    writeFileSync(file, Buffer.alloc(4096, 2));
    utimesSync(file, new Date(1_600_000_000_000), new Date(1_600_000_000_000));
    assert.equal(statSync(file).mtimeMs, 1_600_000_000_000);
    const after = await fingerprintOf(dir);
    assert.notEqual(after.digest, before.digest);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the measuring walk tells, once, that an entry changed after a given time (its ctime), before its end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a/old'), 'old\n');
    writeFileSync(join(dir, 'b'), 'b\n');
    const calls = (ms: number) => {
      const at: number[] = [];
      let entries = 0;
      return measureTree(dir, {
        changedSince: { ms, onChanged: () => at.push(entries) },
        onFingerprint: (f) => (entries = f.entries),
      }).then(() => ({ at, entries }));
    };
    // every entry changed after a time long past: told once, at the first entry (the root)
    assert.deepEqual((await calls(0)).at, [0]);
    // nothing changed after now
    assert.deepEqual((await calls(Date.now() + 60_000)).at, []);
    // a file deleted since: its directory's ctime moved
    const since = lstatSync(join(dir, 'a')).ctimeMs;
    await new Promise((r) => setTimeout(r, 50)); // past the kernel's timestamp granularity
    rmSync(join(dir, 'a/old'));
    const { at } = await calls(Math.max(since, lstatSync(dir).ctimeMs, lstatSync(join(dir, 'b')).ctimeMs));
    assert.equal(at.length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a tree cache entry keeps the time its walk began', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tree-cache-'));
  try {
    const cache = new TreeCache(dir);
    const key = {
      server: 'h:8007',
      store: 's',
      ns: '',
      backupType: 'host',
      backupId: 'x',
      archive: 'root.pxar.didx',
      root: '/r',
      exclude: [],
      chunkSize: 4 << 20,
    };
    cache.store(key, { fingerprint: 'f', csum: 'c', size: 1, walkedAtMs: 1_700_000_000_123 });
    assert.equal(cache.lookup(key)?.walkedAtMs, 1_700_000_000_123);
    cache.store(key, { fingerprint: 'f', csum: 'c', size: 1 });
    assert.equal(cache.lookup(key)?.walkedAtMs, undefined, 'an entry from before has none');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a tree changed within the racy margin before the walk gives an unusable fingerprint', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    writeFileSync(join(dir, 'fresh'), 'just written\n');
    assert.equal((await fingerprintOf(dir, 0)).usable, false);
    assert.equal((await fingerprintOf(dir, RACY_MARGIN_MS + 1000)).usable, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a walk that could not read everything gives an unusable fingerprint', async (t) => {
  if (process.getuid?.() === 0) return t.skip('root reads unreadable directories');
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    mkdirSync(join(dir, 'closed'));
    chmodSync(join(dir, 'closed'), 0);
    assert.equal((await fingerprintOf(dir)).usable, false);
  } finally {
    chmodSync(join(dir, 'closed'), 0o700);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sub-second mtimes come back to the microsecond, and before 1970 to the millisecond', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tar-'));
  try {
    const src = join(dir, 'src');
    mkdirSync(src);
    const times = { recent: 1_600_000_000.123456, old: new Date(-86_400_500) };
    for (const [name, t] of Object.entries(times)) {
      writeFileSync(join(src, name), name);
      utimesSync(join(src, name), t, t);
    }
    const dst = join(dir, 'dst');
    await extractTar(Readable.from([await collect(tarDirectory(src, { subsecondMtimes: true }))]), dst);
    for (const name of Object.keys(times)) {
      const ns = (p: string) => lstatSync(join(p, name), { bigint: true }).mtimeNs;
      assert.equal(ns(dst), ns(src), name);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the walks' name order is the names' UTF-8 byte order, also past U+FFFF", () => {
  const chars = [
    '',
    'a',
    'Z',
    '.',
    '\u00e9',
    '\u0800',
    '\ud7ff',
    '\ue000',
    '\ufffd',
    '\uffff',
    '\u{10000}',
    '\u{1f600}',
    '\u{10ffff}',
  ];
  const names = chars.flatMap((a) => chars.flatMap((b) => ['', 'x', '\u{1f600}'].map((c) => a + b + c)));
  for (const a of names)
    for (const b of names)
      assert.equal(
        Math.sign(byteOrder(a, b)),
        Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))),
        `${JSON.stringify(a)} against ${JSON.stringify(b)}`,
      );
});
