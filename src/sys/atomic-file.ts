/**
 * Never-half-written files: data goes to a temp file in the same directory, is fsynced when asked,
 * and is renamed over the target, so a reader (or a crash) sees either the old or the new content.
 */
import { closeSync, fsyncSync, linkSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

export interface ReplaceFileOptions {
  /** fsync the file before the rename and the directory after it. */
  fsync?: boolean;
  mode?: number;
  /** Temp file to write first (same directory as `path`); defaults to `tempPathFor(path)`. */
  tempPath?: string;
}

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp_${randomBytes(6).toString('hex')}`);
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Write `data` to a new temp file (fsynced when asked) and close it. */
function writeTempFile(tmp: string, data: Uint8Array | string, opts: ReplaceFileOptions): void {
  const fd = openSync(tmp, 'wx', opts.mode ?? 0o644);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    if (opts.fsync) fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
}

/** Atomically replace `path` with `data`. */
export function replaceFile(path: string, data: Uint8Array | string, opts: ReplaceFileOptions = {}): void {
  const tmp = opts.tempPath ?? tempPathFor(path);
  writeTempFile(tmp, data, opts);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  if (opts.fsync) fsyncDir(dirname(path));
}

/**
 * Atomically create `path` with `data`, failing with EEXIST when it exists: like `replaceFile`,
 * but published with link(2), which never replaces a file, so of two concurrent writers exactly
 * one wins and a reader sees no file or the whole one.
 */
export function createFileExclusive(
  path: string,
  data: Uint8Array | string,
  opts: ReplaceFileOptions = {},
): void {
  const tmp = opts.tempPath ?? tempPathFor(path);
  writeTempFile(tmp, data, opts);
  try {
    linkSync(tmp, path);
  } finally {
    unlinkSync(tmp);
  }
  if (opts.fsync) fsyncDir(dirname(path));
}
