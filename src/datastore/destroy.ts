/**
 * Removing a datastore's contents from disk, in PBS's order (reference §4.3): backup data first,
 * the chunk store last, so an interruption never leaves indexes pointing at deleted chunks.
 * Only datastore removal calls this, after the datastore is in `delete` mode and has drained.
 */
import { existsSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

export interface DestroyReport {
  removed: string[];
  /** Why the top directory stayed (a mount point, or files that are not ours). */
  warnings: string[];
}

export function destroyDatastoreData(basePath: string): DestroyReport {
  const removed: string[] = [];
  const warnings: string[] = [];
  for (const entry of ['ns', 'ct', 'vm', 'host', '.gc-status', '.chunks', '.lock']) {
    const p = join(basePath, entry);
    if (!existsSync(p)) continue;
    rmSync(p, { recursive: true, force: true });
    removed.push(entry);
  }
  try {
    rmdirSync(basePath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY') warnings.push(`${basePath} is a mount point; left in place`);
    else if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      warnings.push(`${basePath} still contains ${readdirSync(basePath).join(', ')}; left in place`);
    } else if (code !== 'ENOENT') throw err;
  }
  return { removed, warnings };
}
