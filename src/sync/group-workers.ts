/**
 * PBS 4's `worker-threads` for sync (pull and push): the groups of a namespace synced N at a time.
 * With more than one at a time, each group's task log lines are prefixed with the group and
 * written in blocks (PBS `BufferedLogger`: up to 5 lines, or what one second gathered), so
 * that parallel groups do not interleave line by line; with one, the log is as before.
 */
import type { BackupGroup } from '../datastore/index.js';

const BLOCK_LINES = 5;
const BLOCK_MS = 1000;

/**
 * Run `sync(group, log)` for each group, at most `workers` at once, in the groups' order. Waits
 * for every started group before it returns or throws, so nothing of the sync runs on after it:
 * the first error any group threw is rethrown (a group's own failures are the callee's to catch).
 */
export async function syncGroups(
  groups: readonly BackupGroup[],
  workers: number,
  log: (line: string) => void,
  sync: (group: BackupGroup, log: (line: string) => void) => Promise<void>,
): Promise<void> {
  if (workers <= 1) {
    for (const group of groups) await sync(group, log);
    return;
  }
  const buffers = new Map<string, { since: number; lines: string[] }>();
  const flush = (label: string) => {
    const b = buffers.get(label);
    buffers.delete(label);
    for (const line of b?.lines ?? []) log(line);
  };
  const timer = setInterval(() => {
    const now = Date.now();
    for (const [label, b] of buffers) if (now - b.since >= BLOCK_MS) flush(label);
  }, BLOCK_MS);
  timer.unref();
  let next = 0;
  const worker = async () => {
    while (next < groups.length) {
      const group = groups[next++]!;
      const label = `${group}`;
      const groupLog = (line: string) => {
        let b = buffers.get(label);
        if (!b) buffers.set(label, (b = { since: Date.now(), lines: [] }));
        b.lines.push(`[${label}]: ${line}`);
        if (b.lines.length >= BLOCK_LINES) flush(label);
      };
      try {
        await sync(group, groupLog);
      } finally {
        flush(label);
      }
    }
  };
  try {
    const results = await Promise.allSettled(
      Array.from({ length: Math.min(workers, groups.length) }, worker),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    clearInterval(timer);
  }
}
