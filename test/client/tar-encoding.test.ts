/**
 * Stowage writes its tar streams itself (tar-archive.ts); they must stay byte for byte what
 * tar-stream's `pack` wrote for the same tree before, or chunk boundaries and the tree cache
 * would change. The reference below is the former tar-stream implementation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
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

/** The entries of a tar stream as tar-stream reads them (headers with their pax records). */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tarenc-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

type ParsedEntry = Omit<tar.Header, 'pax'> & { pax?: Record<string, string> | null };

async function entriesOf(stream: Buffer): Promise<Map<string, ParsedEntry>> {
  const out = new Map<string, ParsedEntry>();
  const extract = tar.extract();
  extract.end(stream);
  for await (const e of extract) {
    out.set(e.header.name, e.header as ParsedEntry);
    e.resume();
  }
  return out;
}

test('mtimes outside the octal range get a pax mtime and a base-256 field; others stay plain ustar', () =>
  inTempDir(async (dir) => {
    const times: Record<string, number> = {
      y2040: 2_222_208_000,
      y2300: 10_413_792_000,
      y1960: -315_619_200,
    };
    for (const [name, t] of Object.entries(times)) {
      writeFileSync(join(dir, name), name);
      utimesSync(join(dir, name), new Date(t * 1000), new Date(t * 1000));
    }
    const plan = await planTree(dir);
    const entries = await entriesOf(await collect(treeBytes(plan)));
    // 2040 fits 11 octal digits: one ustar block, no pax header (layout 1 wrapped it negative).
    const y2040 = plan.entries.find((e) => e.abs.endsWith('y2040'))!;
    assert.equal(y2040.header.length, 512);
    assert.equal(entries.get('y2040')!.mtime!.getTime(), times.y2040! * 1000);
    assert.ok(!entries.get('y2040')!.pax);
    for (const name of ['y2300', 'y1960']) {
      const e = plan.entries.find((p) => p.abs.endsWith(name))!;
      assert.equal(entries.get(name)!.pax?.mtime, String(times[name]), name);
      // the ustar header after the pax header: base-256, first byte 0x80 or 0xff
      const ustar = e.header.subarray(e.header.length - 512);
      assert.equal(ustar[136], times[name]! < 0 ? 0xff : 0x80, name);
      assert.equal(ustar.subarray(0, name.length).toString(), name);
    }
  }));

test('sub-second mtimes go in a pax mtime record only when asked', () =>
  inTempDir(async (dir) => {
    writeFileSync(join(dir, 'f'), 'x');
    utimesSync(join(dir, 'f'), 1_700_000_000.25, 1_700_000_000.25);
    const plain = await entriesOf(await collect(tarDirectory(dir)));
    assert.ok(!plain.get('f')!.pax);
    const exact = await entriesOf(await collect(tarDirectory(dir, { subsecondMtimes: true })));
    const ns = lstatSync(join(dir, 'f'), { bigint: true }).mtimeNs;
    const fraction = (ns % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
    assert.equal(exact.get('f')!.pax?.mtime, `${ns / 1_000_000_000n}.${fraction}`);
  }));

test('hard links, FIFOs and devices are link, fifo and device entries', () =>
  inTempDir(async (dir) => {
    writeFileSync(join(dir, 'a'), 'content');
    mkdirSync(join(dir, 'z'));
    linkSync(join(dir, 'a'), join(dir, 'z', 'b'));
    execFileSync('mkfifo', [join(dir, 'pipe')]);
    const asRoot = process.getuid?.() === 0;
    if (asRoot) execFileSync('mknod', [join(dir, 'disk'), 'b', '259', '65537']);
    const entries = await entriesOf(await collect(tarDirectory(dir)));
    assert.equal(entries.get('a')!.type, 'file');
    assert.equal(entries.get('a')!.size, 7);
    assert.equal(entries.get('z/b')!.type, 'link');
    assert.equal(entries.get('z/b')!.linkname, 'a');
    assert.equal(entries.get('z/b')!.size, 0);
    assert.equal(entries.get('pipe')!.type, 'fifo');
    if (asRoot) {
      assert.equal(entries.get('disk')!.type, 'block-device');
      assert.equal(entries.get('disk')!.devmajor, 259);
      assert.equal(entries.get('disk')!.devminor, 65537);
    }
  }));
