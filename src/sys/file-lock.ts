/**
 * Cross-process advisory locks: `flock(2)` on a dedicated `.lck` file. The kernel drops the lock
 * when the holder dies, so a crashed process can never leave a stale lock behind. Each
 * acquisition opens its own file description, so two holders in one process exclude each other
 * just like two processes do.
 */
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import fsExt from 'fs-ext';
import { LockTimeoutError } from '../errors.js';

export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

export interface FileLock {
  readonly path: string;
  /** Idempotent: releasing twice is harmless. */
  release(): void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function tryFlock(fd: number, mode: 'exnb' | 'shnb'): boolean {
  try {
    fsExt.flockSync(fd, mode);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false;
    throw err;
  }
}

function openLockFile(path: string): number {
  mkdirSync(dirname(path), { recursive: true });
  return openSync(path, 'a', 0o660);
}

function makeLock(path: string, fd: number): FileLock {
  let open = true;
  return {
    path,
    release() {
      if (!open) return;
      open = false;
      closeSync(fd); // closing the last descriptor drops the flock
    },
  };
}

/**
 * Take an exclusive (or shared) lock on `path`, waiting at most `timeoutMs`; PBS waits 10 s for
 * its config locks (reference §1.4) and so do we. Polls with a short back-off because a blocking
 * flock cannot be interrupted from JavaScript.
 */
export async function acquireFileLock(
  path: string,
  opts: { shared?: boolean; timeoutMs?: number } = {},
): Promise<FileLock> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const mode = opts.shared ? 'shnb' : 'exnb';
  const fd = openLockFile(path);
  const deadline = Date.now() + timeoutMs;
  let backoff = 1;
  try {
    while (!tryFlock(fd, mode)) {
      if (Date.now() >= deadline) throw new LockTimeoutError(path, timeoutMs);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 20);
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return makeLock(path, fd);
}

/** Non-blocking attempt: returns undefined when another holder has the lock. */
export function tryAcquireFileLock(path: string, opts: { shared?: boolean } = {}): FileLock | undefined {
  const fd = openLockFile(path);
  try {
    if (tryFlock(fd, opts.shared ? 'shnb' : 'exnb')) return makeLock(path, fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  closeSync(fd);
  return undefined;
}

/** Run `fn` while holding the lock; the lock is released however `fn` ends. */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T> | T,
  opts: { shared?: boolean; timeoutMs?: number } = {},
): Promise<T> {
  const lock = await acquireFileLock(path, opts);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
