import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DynamicIndexReader } from '../../src/datastore/dynamic-index.js';
import { planTree, type TreePlan } from '../../src/client/tar-archive.js';
import { type PreviousTree, treeChunks } from '../../src/client/tree-reuse.js';

const AVG = 16 * 1024;
/** A clock far ahead: no entry is racy. */
const clock = () => Date.now() + 3_600_000;

interface Cut {
  size: number;
  digest: string;
}

/** The chunks as (size, digest), and how many bytes were appended from `prev` unread. */
async function chunksOf(plan: TreePlan, prev?: PreviousTree): Promise<{ cuts: Cut[]; unread: number }> {
  const cuts: Cut[] = [];
  let unread = 0;
  for await (const c of treeChunks(plan, prev, AVG)) {
    if (Buffer.isBuffer(c))
      cuts.push({ size: c.length, digest: createHash('sha256').update(c).digest('hex') });
    else {
      cuts.push({ size: c.size, digest: c.digest.toString('hex') });
      unread += c.size;
    }
  }
  return { cuts, unread };
}

/** The previous backup as the writer sees it: its index (duck-typed) and the entry map the cache keeps. */
function previousOf(plan: TreePlan, cuts: Cut[]): PreviousTree {
  const starts: number[] = [];
  let off = 0;
  for (const c of cuts) {
    starts.push(off);
    off += c.size;
  }
  const index = {
    count: cuts.length,
    chunkRange: (i: number) => ({ start: starts[i]!, end: starts[i]! + cuts[i]!.size }),
    digest: (i: number) => Buffer.from(cuts[i]!.digest, 'hex'),
  } as unknown as DynamicIndexReader;
  const entries = new Map<string, [number, number]>();
  for (const e of plan.entries) if (e.key) entries.set(e.key, [e.start, e.length]);
  return { index, entries };
}

function makeFiles(root: string): void {
  mkdirSync(join(root, 'a/b'), { recursive: true });
  mkdirSync(join(root, 'c'), { recursive: true });
  for (let i = 0; i < 12; i++) writeFileSync(join(root, 'a', `big${i}.bin`), randomBytes(150_000 + i * 1000));
  for (let i = 0; i < 300; i++)
    writeFileSync(join(root, 'a/b', `s${i}.txt`), `small file ${i}\n`.repeat(i % 40));
  for (let i = 0; i < 6; i++) writeFileSync(join(root, 'c', `mid${i}.bin`), randomBytes(60_000));
}

/** Rewrite a file with new content, mtime kept: only ctime (and content) tell. */
function rewrite(path: string, data: Buffer): void {
  writeFileSync(path, data);
  utimesSync(path, new Date(1_600_000_000_000), new Date(1_600_000_000_000));
}

test('after changes, reusing unchanged entries gives exactly the chunks of a full read, mostly unread', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-reuse-'));
  try {
    makeFiles(dir);
    const plan1 = await planTree(dir, { clock });
    const first = await chunksOf(plan1);
    assert.equal(first.unread, 0);
    assert.ok(first.cuts.length > 50, `${first.cuts.length} chunks`);

    // Nothing changed: everything is reused, nothing is read.
    const same = await chunksOf(await planTree(dir, { clock }), previousOf(plan1, first.cuts));
    assert.deepEqual(same.cuts, first.cuts);
    assert.equal(same.unread, plan1.size);

    // One file in the middle rewritten with the same size, one grown, one removed, one added.
    rewrite(join(dir, 'a/big5.bin'), randomBytes(155_000));
    writeFileSync(join(dir, 'a/b/s17.txt'), 'longer now\n'.repeat(500));
    unlinkSync(join(dir, 'c/mid2.bin'));
    writeFileSync(join(dir, 'c/new.bin'), randomBytes(30_000));
    const plan2 = await planTree(dir, { clock });
    const full = await chunksOf(plan2);
    const reused = await chunksOf(plan2, previousOf(plan1, first.cuts));
    assert.deepEqual(reused.cuts, full.cuts, 'same boundaries and digests as a full read');
    const changedBytes = 155_000 + 5_500 + 30_000;
    assert.ok(
      plan2.size - reused.unread < changedBytes + 4 * 4 * AVG * 4,
      `read ${plan2.size - reused.unread} of ${plan2.size} bytes`,
    );

    // And again from the second backup, with nothing changed since.
    const again = await chunksOf(await planTree(dir, { clock }), previousOf(plan2, full.cuts));
    assert.deepEqual(again.cuts, full.cuts);
    assert.equal(again.unread, plan2.size);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('racy entries are never reused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-reuse-'));
  try {
    makeFiles(dir);
    // The real clock: every entry was just written, so every key is empty.
    const plan = await planTree(dir);
    assert.ok(plan.entries.slice(0, -1).every((e) => e.key === ''));
    const first = await chunksOf(plan);
    const prev = previousOf(plan, first.cuts);
    const second = await chunksOf(await planTree(dir), prev);
    assert.deepEqual(second.cuts, first.cuts);
    // Only the end-of-archive marker could match; it lies inside the last chunk, which is read.
    assert.ok(second.unread <= 1024);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
