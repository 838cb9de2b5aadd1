import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { compileExcludes, extractTar, measureTree, tarDirectory } from '../../src/client/tar-archive.js';
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
