/**
 * Thread of the walk ahead (walk-ahead.ts): walks the tree in the pxar walk's order (depth first,
 * names sorted bytewise, a directory before its members), lstats every entry and reads every
 * small regular file, and sends them in batches. It descends where the pxar walk would, except
 * into other file systems (the walk decides those, and lstats them itself); excluded entries are
 * sent (the walk asks for them before it tests them) but neither read nor descended into.
 *
 * At most `MAX_AHEAD` batches are sent and not yet used up: the thread then waits on the shared
 * counter the main thread raises for each batch it is done with.
 */
import { closeSync, constants, lstatSync, openSync, readdirSync, readSync, type BigIntStats } from 'node:fs';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { compileExcludes } from './tar-archive.js';
import { RecordedStats, walksBefore } from './walk-stats.js';
import type { WalkAheadBatch, WalkAheadData } from './walk-ahead.js';
import { CONSUMED, MAX_AHEAD, SENT } from './walk-ahead.js';

const port = parentPort;
if (!port) throw new Error('walk-ahead-worker must run in a worker thread');
const data = workerData as WalkAheadData;
const exclude = data.excludePatterns ? compileExcludes(data.excludePatterns) : undefined;
const counters = new Int32Array(data.counters);

/** Entries and content bytes per batch; the first batches are small, to start the walk early. */
const BATCH_ENTRIES = 1024;
const BATCH_BYTES = 1024 * 1024;

let stats = new RecordedStats(BATCH_ENTRIES);
const CONTENTS_BYTES = BATCH_BYTES + data.smallFile + 1;
/** Contents buffers the main thread gave back (their files were archived): reused, not made anew. */
const spare: ArrayBuffer[] = [];
function contentsBuffer(): Buffer {
  for (let m = receiveMessageOnPort(data.giveBack); m; m = receiveMessageOnPort(data.giveBack))
    spare.push(m.message as ArrayBuffer);
  return Buffer.from(spare.pop() ?? new ArrayBuffer(CONTENTS_BYTES));
}
let contents = contentsBuffer();
let used = 0;
let contentAt: number[] = [];
let batches = 0;

function send(): void {
  if (stats.size === 0) return;
  const a = stats.arrays();
  const batch: WalkAheadBatch = {
    stats: a,
    contents: contents.buffer as ArrayBuffer,
    contentAt: Int32Array.from(contentAt),
  };
  while (Atomics.load(counters, SENT) - Atomics.load(counters, CONSUMED) >= MAX_AHEAD)
    Atomics.wait(counters, CONSUMED, Atomics.load(counters, CONSUMED));
  Atomics.add(counters, SENT, 1);
  port!.postMessage(batch, [
    a.paths.buffer as ArrayBuffer,
    a.pathEnds.buffer as ArrayBuffer,
    a.nums.buffer as ArrayBuffer,
    batch.contents,
    batch.contentAt.buffer as ArrayBuffer,
  ]);
  batches++;
  stats = new RecordedStats(BATCH_ENTRIES);
  contents = contentsBuffer();
  used = 0;
  contentAt = [];
}

/** A small file's first `size` + 1 bytes into the batch (one more, to notice that it grew): [start, length], or length -1 when it could not be read. */
function read(full: Buffer, size: number): [number, number] {
  let fd: number;
  try {
    // not through a symlink, and never waiting: a FIFO put in the file's place since its lstat
    // would block the thread, and the walk waiting for it
    fd = openSync(full, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return [0, -1]; // the walk opens it again and warns as it does
  }
  const start = used;
  try {
    let got = 0;
    while (got < size + 1) {
      const n = readSync(fd, contents, start + got, size + 1 - got, got);
      if (n === 0) break;
      got += n;
    }
    used += got;
    return [start, got];
  } catch {
    return [0, -1];
  } finally {
    closeSync(fd);
  }
}

/** Where the walk was when it started the thread: entries before it are passed unread. */
const from = data.from ? Buffer.from(data.from) : undefined;
let reached = from === undefined;

/** Whether `rel` is a directory on the way to `from` (a proper prefix of it, by whole names). */
function leadsToFrom(rel: Buffer): boolean {
  return from!.length > rel.length && from![rel.length] === 0x2f && from!.subarray(0, rel.length).equals(rel);
}

function visit(dir: Buffer, rel: Buffer, dev: bigint): void {
  let names: Buffer[];
  try {
    names = readdirSync(dir, { encoding: 'buffer' });
  } catch {
    return;
  }
  names.sort(Buffer.compare);
  for (const name of names) {
    const full = Buffer.concat([dir, SLASH, name]);
    const relPath = rel.length === 0 ? name : Buffer.concat([rel, SLASH, name]);
    if (!reached) {
      if (relPath.equals(from!) || !walksBefore(relPath, 0, relPath.length, from!)) reached = true;
      else if (!leadsToFrom(relPath)) continue;
    }
    let st: BigIntStats | undefined;
    try {
      st = lstatSync(full, { bigint: true, throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    if (st === undefined) continue;
    const excluded = exclude?.(relPath.toString('utf8'), st.isDirectory()) ?? false;
    const small = !excluded && st.isFile() && st.size <= BigInt(data.smallFile);
    const at = small ? read(full, Number(st.size)) : [0, -1];
    stats.add(relPath, st);
    contentAt.push(at[0]!, at[1]!);
    if (stats.size >= (batches < 2 ? 64 : BATCH_ENTRIES) || used > BATCH_BYTES) send();
    if (st.isDirectory() && !excluded && st.dev === dev) visit(full, relPath, dev);
  }
}

const SLASH = Buffer.from('/');
const root = Buffer.from(data.root);
const rootDev = lstatSync(root, { bigint: true }).dev;
visit(root, Buffer.alloc(0), rootDev);
send();
port.postMessage({ done: true });
