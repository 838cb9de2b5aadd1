/** What the tests look at on disk and in /proc. */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/** Paths under `dir` that process `pid` holds open, read from /proc/PID/fd. */
export function openFilesUnder(pid: number | 'self', dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target === dir || target.startsWith(`${dir}/`)) out.push(target);
    } catch {
      // closed while we looked (e.g. the descriptor readdir itself used)
    }
  }
  return out;
}

/** Every path below `root`, relative to it, depth-first in name order. */
export function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      out.push(relative(root, p));
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

/** The kernel's count of file data waiting to be written back to disk, in bytes (all file systems). */
export function dirtyBytes(): number {
  const m = /^Dirty:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  if (!m) throw new Error('no Dirty: line in /proc/meminfo');
  return Number(m[1]) * 1024;
}
