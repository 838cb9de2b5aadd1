/**
 * Stowage writes its tar streams itself (tar-archive.ts); they must stay byte for byte what
 * tar-stream's `pack` wrote for the same tree before, or chunk boundaries and the tree cache
 * would change. The reference below is the former tar-stream implementation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import * as tar from 'tar-stream';
import { planTree, tarDirectory, treeBytes } from '../../src/client/tar-archive.js';
import { makeTree } from './tree-fixture.js';

async function collect(r: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** The former implementation: walk in byte order, tar-stream's pack. */
async function referenceTar(root: string): Promise<Buffer> {
  const pack = tar.pack();
  const out = collect(pack as unknown as AsyncIterable<Buffer>);
  const visit = async (abs: string): Promise<void> => {
    const st = lstatSync(abs);
    const rel = relative(root, abs).split(sep).join('/') || '.';
    const header = {
      name: rel === '.' ? './' : st.isDirectory() ? `${rel}/` : rel,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: new Date(Math.floor(st.mtimeMs / 1000) * 1000),
    };
    const entry = (h: Record<string, unknown>, data?: Buffer) =>
      new Promise<void>((res, rej) => {
        const cb = (err?: Error | null) => (err ? rej(err) : res());
        if (data) pack.entry(h as unknown as tar.Header, data, cb);
        else pack.entry(h as unknown as tar.Header, cb);
      });
    if (st.isDirectory()) {
      await entry({ ...header, type: 'directory' });
      const names = readdirSync(abs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      for (const n of names) await visit(join(abs, n));
    } else if (st.isSymbolicLink()) {
      await entry({ ...header, type: 'symlink', linkname: readlinkSync(abs) });
    } else if (st.isFile()) {
      await entry({ ...header, type: 'file', size: st.size }, readFileSync(abs));
    }
  };
  await visit(root);
  pack.finalize();
  return out;
}

test('the tar stream is byte-identical to tar-stream pack for odd names, modes, owners and links', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tarenc-'));
  try {
    makeTree(dir, { scale: 256 * 1024 });
    const deep = join(dir, 'd'.repeat(60), 'e'.repeat(60), 'f'.repeat(60));
    mkdirSync(deep, { recursive: true });
    writeFileSync(join(deep, 'long-prefix.txt'), 'prefix split\n');
    writeFileSync(join(dir, 'x'.repeat(150)), 'no slash, pax\n');
    writeFileSync(join(dir, 'ünïcødé-名前.txt'), 'utf-8 name, pax\n');
    symlinkSync('t'.repeat(180), join(dir, 'long-link'));
    symlinkSync('ziel-ä', join(dir, 'utf8-link'));
    writeFileSync(join(dir, 'mode-zero'), 'mode 0 is written as 0644\n');
    chmodSync(join(dir, 'mode-zero'), 0);
    writeFileSync(join(dir, 'block-exact'), Buffer.alloc(1024, 7));
    writeFileSync(join(dir, 'empty-file'), '');
    if (process.getuid?.() === 0) {
      writeFileSync(join(dir, 'big-uid'), 'uid beyond 6 octal digits\n');
      chownSync(join(dir, 'big-uid'), 300_000, 70_000);
    }
    const expected = await referenceTar(dir);
    assert.ok(expected.equals(await collect(tarDirectory(dir))), 'tarDirectory');
    const plan = await planTree(dir);
    assert.equal(plan.size, expected.length);
    // Any range, whatever the block boundaries, is the same bytes.
    for (const [from, to] of [
      [0, plan.size],
      [1, 513],
      [700, plan.size - 3],
      [plan.size - 1024, plan.size],
    ] as Array<[number, number]>) {
      assert.ok(
        expected.subarray(from, to).equals(await collect(treeBytes(plan, from, to))),
        `${from}..${to}`,
      );
    }
    for (const e of plan.entries) {
      assert.ok(e.header.equals(expected.subarray(e.start, e.start + e.header.length)));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
