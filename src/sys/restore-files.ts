/**
 * Writing a restored tree to disk, shared by the tar extractor (src/client/tar-archive.ts) and
 * the pxar extractor (src/pxar/extract.ts): the empty-target check, files with their all-zero
 * blocks as holes, FIFOs, device nodes and sockets (Node has no mknod), and owner, mode and mtime
 * set in the order the kernel requires (chown clears setuid, so chmod comes after it).
 */
import {
  chmodSync,
  chownSync,
  closeSync,
  constants as fsConstants,
  lchownSync,
  lutimesSync,
  fchmodSync,
  fchownSync,
  ftruncateSync,
  futimesSync,
  openSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { chmod, chown, lchown, link, lutimes, mkdir, open, readdir, unlink, utimes } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import type { PathLike } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ERR_RESTORE_TARGET_NOT_EMPTY } from '../errors.js';

/** What an extractor restored, for the CLI's summary and progress. */
export interface ExtractResult {
  files: number;
  dirs: number;
  symlinks: number;
  /** Hard links, FIFOs, sockets and devices created. */
  special: number;
  /** Bytes of file contents written (holes included). */
  bytes: number;
}

export function emptyExtractResult(): ExtractResult {
  return { files: 0, dirs: 0, symlinks: 0, special: 0, bytes: 0 };
}

/**
 * An mtime as Node's utimes takes it. A number of seconds is passed on as a double and libuv
 * keeps whole microseconds of it (truncated); a negative number would be replaced with now, so a
 * time before 1970 goes as a Date (to the millisecond).
 */
export type RestoreTime = number | Date;

/**
 * Seconds and nanoseconds (PBS's `StatxTimestamp`) as a `RestoreTime`, exact to the microsecond
 * (truncated) from 1970 to 2106: half a microsecond is added so that the double's rounding error
 * (under 0.5 µs in that range) cannot pull libuv's truncation one microsecond down.
 */
export function restoreTime(seconds: number, nanos = 0): RestoreTime {
  if (seconds < 0) return new Date(seconds * 1000 + Math.floor(nanos / 1e6));
  return seconds + (Math.floor(nanos / 1000) + 0.5) / 1e6;
}

/** Owner, permission bits and mtime of one restored entry. */
export interface RestoredMetadata {
  /** Permission bits, setuid, setgid and sticky (the file type bits are ignored). */
  mode: number;
  uid: number;
  gid: number;
  mtime: RestoreTime;
}

/** Owner (only as root), mode and mtime of an entry opened as `fd`. */
export function setFdMetadata(fd: number, meta: RestoredMetadata, asRoot: boolean): void {
  if (asRoot) fchownSync(fd, meta.uid, meta.gid);
  fchmodSync(fd, meta.mode & 0o7777);
  futimesSync(fd, meta.mtime, meta.mtime);
}

/** Owner (only as root), mode and mtime of a directory or special file by path. */
export async function setPathMetadata(
  path: PathLike,
  meta: RestoredMetadata,
  asRoot: boolean,
): Promise<void> {
  if (asRoot) await chown(path, meta.uid, meta.gid);
  await chmod(path, meta.mode & 0o7777);
  await utimes(path, meta.mtime, meta.mtime);
}

/** `setPathMetadata` with synchronous calls (the restore writer's thread, sys/restore-writer.ts). */
export function setPathMetadataSync(path: PathLike, meta: RestoredMetadata, asRoot: boolean): void {
  if (asRoot) chownSync(path, meta.uid, meta.gid);
  chmodSync(path, meta.mode & 0o7777);
  utimesSync(path, meta.mtime, meta.mtime);
}

/** `setSymlinkMetadata` with synchronous calls. */
export function setSymlinkMetadataSync(path: PathLike, meta: RestoredMetadata, asRoot: boolean): void {
  if (asRoot) lchownSync(path, meta.uid, meta.gid);
  lutimesSync(path, meta.mtime, meta.mtime);
}

/** A symlink's owner (only as root) and mtime; Linux has no mode of a symlink to set. */
export async function setSymlinkMetadata(
  path: PathLike,
  meta: RestoredMetadata,
  asRoot: boolean,
): Promise<void> {
  if (asRoot) await lchown(path, meta.uid, meta.gid);
  await lutimes(path, meta.mtime, meta.mtime);
}

/**
 * Start a restore into `target`: create it if missing and refuse one that holds anything
 * (restore never merges into or overwrites an existing tree). Owners are restored only as
 * root (chown needs it); `warn` is the caller's warning sink or a no-op.
 */
export async function beginRestore(
  target: string,
  onWarning?: (message: string) => void,
): Promise<{ asRoot: boolean; warn: (message: string) => void }> {
  await mkdir(target, { recursive: true });
  if ((await readdir(target)).length > 0) throw ERR_RESTORE_TARGET_NOT_EMPTY(target);
  return { asRoot: process.getuid?.() === 0, warn: onWarning ?? (() => {}) };
}

/** Files up to this size are collected and written with synchronous calls: no thread-pool round trips. */
export const SMALL_FILE = 256 * 1024;
/** Aligned all-zero blocks of this size are left as holes when a file is restored. */
const HOLE_BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(HOLE_BLOCK);

/**
 * The writes that put `data` at file offset `pos` (a multiple of `HOLE_BLOCK`) with every
 * all-zero block left out, so it becomes a hole once the file is truncated to its size: a sparse
 * file comes back sparse (GNU tar's --sparse and PBS's `sparse_copy` do the same on extraction).
 * Whole runs of data blocks are one write each.
 */
export function dataRuns(data: Buffer, pos: number): Array<{ buf: Buffer; pos: number }> {
  const runs: Array<{ buf: Buffer; pos: number }> = [];
  let runStart = -1;
  for (let off = 0; off < data.length; off += HOLE_BLOCK) {
    const end = Math.min(off + HOLE_BLOCK, data.length);
    // compared in place, and most data blocks told by their first or last byte: a view and a
    // call per 4 KiB block were about 0.1 s of a 1 GiB restore's main thread
    const zero =
      end - off === HOLE_BLOCK &&
      data[off] === 0 &&
      data[end - 1] === 0 &&
      data.compare(ZERO_BLOCK, 0, HOLE_BLOCK, off, end) === 0;
    if (!zero && runStart < 0) runStart = off;
    if (zero && runStart >= 0) {
      runs.push({ buf: data.subarray(runStart, off), pos: pos + runStart });
      runStart = -1;
    }
  }
  if (runStart >= 0) runs.push({ buf: data.subarray(runStart), pos: pos + runStart });
  return runs;
}

/**
 * `data` as pieces that each start at a multiple of `HOLE_BLOCK` and, but for the last, hold
 * whole blocks: the bulk of every piece the source hands out is passed on as it is, only the few
 * bytes that complete a block across two pieces are copied.
 */
export async function* alignedPieces(data: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let carry: Buffer | undefined;
  for await (let d of data) {
    if (carry) {
      const fill = Math.min(HOLE_BLOCK - carry.length, d.length);
      carry = Buffer.concat([carry, d.subarray(0, fill)]);
      d = d.subarray(fill);
      if (carry.length < HOLE_BLOCK) continue;
      yield carry;
      carry = undefined;
    }
    const whole = d.length - (d.length % HOLE_BLOCK);
    if (whole > 0) yield d.subarray(0, whole);
    // Copied: the source (tar-stream, a decoder) may reuse the memory of what it handed out.
    if (whole < d.length) carry = Buffer.from(d.subarray(whole));
  }
  if (carry) yield carry;
}

/** How an extracted file is created: exclusively (a restore never overwrites), write only. */
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL;

/**
 * Write a file whose whole `content` is at hand with synchronous calls: created exclusively
 * (0600 until `finish` sets its metadata on the open descriptor), its all-zero blocks as holes,
 * truncated to `size`.
 */
export function writeSmallFileSync(
  path: PathLike,
  content: Buffer,
  size: number,
  finish: (fd: number) => void,
): void {
  let written = 0;
  const fd = openSync(path, CREATE_FLAGS, 0o600);
  try {
    for (const run of dataRuns(content, 0)) {
      for (let off = 0; off < run.buf.length;) off += writeSync(fd, run.buf, off, undefined, run.pos + off);
      written = run.pos + run.buf.length;
    }
    if (written < size) ftruncateSync(fd, size);
    finish(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write one extracted file (created exclusively, 0600 until `finish` sets its metadata on the
 * open descriptor), its all-zero blocks as holes (`dataRuns`). Small files are written with
 * synchronous calls (a handful of syscalls, none of the thread-pool round trips that dominate
 * restoring many small files); larger ones stream through a file handle.
 */
export async function writeFileEntryOut(
  data: AsyncIterable<Buffer>,
  path: PathLike,
  size: number,
  finish: (fd: number) => void,
): Promise<void> {
  let pos = 0;
  let written = 0;
  if (size <= SMALL_FILE) {
    // Copied as they come: a source may reuse a piece's memory once the next is asked for (a
    // restore gives its chunks back to the workers).
    let content = Buffer.allocUnsafe(size);
    let filled = 0;
    for await (const d of data) {
      if (filled + d.length > content.length) {
        const grown = Buffer.allocUnsafe(filled + d.length);
        content.copy(grown, 0, 0, filled);
        content = grown;
      }
      filled += d.copy(content, filled);
    }
    writeSmallFileSync(path, content.subarray(0, filled), size, finish);
    return;
  }
  const fh = await open(path, CREATE_FLAGS, 0o600);
  try {
    for await (const piece of alignedPieces(data)) {
      for (const run of dataRuns(piece, pos)) {
        for (let off = 0; off < run.buf.length;)
          off += (await fh.write(run.buf, off, run.buf.length - off, run.pos + off)).bytesWritten;
        written = run.pos + run.buf.length;
      }
      pos += piece.length;
    }
    if (written < size) await fh.truncate(size);
    finish(fh.fd);
  } finally {
    await fh.close();
  }
}

/** Run a system tool (`mkfifo`, `mknod`: Node has no call for either); its stderr on failure. */
export function runTool(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, _stdout, stderr) =>
      err ? reject(new Error(stderr.trim() || err.message)) : resolve(),
    ),
  );
}

/** A special file to create: a FIFO, a device node (as root), or a unix socket. */
export type SpecialNode =
  | { kind: 'fifo' }
  | { kind: 'device'; type: 'c' | 'b'; major: number; minor: number }
  | { kind: 'socket'; scratchDir: string };

let socketSerial = 0;

/**
 * Create a special file at `path` and give it its metadata. A tool that is missing or refused (no
 * CAP_MKNOD in a container), or a socket that cannot be bound, costs that entry with a warning,
 * not the restore; returns whether it was created.
 *
 * A socket is what PBS makes with mknod(S_IFSOCK): here a listening socket is bound at a short
 * scratch name in `scratchDir` (bind takes at most 107 bytes of path), hard-linked to `path`,
 * and closed; the link keeps the socket file, which no process listens on, as after PBS.
 */
export async function makeSpecialNode(
  path: PathLike,
  node: SpecialNode,
  meta: RestoredMetadata,
  asRoot: boolean,
  warn: (message: string) => void,
  what: string,
): Promise<boolean> {
  try {
    // the tools take the path as an argument: a name that is not UTF-8 cannot be passed exactly
    if (node.kind === 'fifo') await runTool('mkfifo', ['-m', '600', path.toString()]);
    else if (node.kind === 'device')
      await runTool('mknod', [
        '-m',
        '600',
        path.toString(),
        node.type,
        String(node.major),
        String(node.minor),
      ]);
    else
      await bindSocketFile(path, join(node.scratchDir, `.stowage-socket-${process.pid}-${socketSerial++}`));
  } catch (err) {
    warn(`unable to create ${what}: ${(err as Error).message}`);
    return false;
  }
  await setPathMetadata(path, meta, asRoot);
  return true;
}

async function bindSocketFile(path: PathLike, scratch: string): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(scratch, resolve);
  });
  try {
    await link(scratch, path);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await unlink(scratch).catch(() => {});
  }
}
