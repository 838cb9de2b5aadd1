/** Process identity as Linux sees it, for telling a live holder from a dead one or a reused pid. */
import { readFileSync } from 'node:fs';

/**
 * Field 22 of `/proc/PID/stat` (start time in clock ticks since boot), or undefined when the
 * process does not exist or is a zombie. The comm field (2) may contain spaces and parentheses,
 * so parse from the last ')'.
 */
export function processStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 is rest[19]
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  const start = Number(rest[19]);
  return Number.isFinite(start) ? start : undefined;
}

let ownStart: number | undefined;
/** This process's own start time, read once. */
export function ownStartTime(): number {
  ownStart ??= processStartTime(process.pid);
  if (ownStart === undefined) throw new Error('cannot read /proc/self/stat');
  return ownStart;
}

/** True when `pid` is alive and is still the process that started at `startTime`. */
export function isSameProcessAlive(pid: number, startTime: number): boolean {
  return processStartTime(pid) === startTime;
}
