/**
 * Prune: which snapshots of a group to keep, with PBS's semantics exactly
 * (`pbs-datastore/src/prune.rs` `compute_prune_info`, `docs/maintenance.rst`):
 *
 * - Snapshots are considered newest first.
 * - Unfinished snapshots (no manifest) are removed, except the newest one when it is newer than
 *   every finished snapshot ("keep-partial": probably a backup still running). They never count
 *   for any keep option.
 * - The options apply in the order last, hourly, daily, weekly, monthly, yearly. Each one walks
 *   the snapshots not yet marked and keeps the newest of each period, until it has N periods; a
 *   period already covered by a snapshot an earlier option kept is skipped, so later options only
 *   reach further back. Other snapshots in a period it selected are marked for removal.
 * - Protected snapshots are always kept and never count towards an option.
 * - With no option above zero, everything is kept ("keep-all", as the PBS prune API does).
 *
 * Periods are computed in UTC. PBS uses the server's local time zone (`strftime_local`); UTC
 * makes the result independent of where the server runs, and is the same on servers set to UTC.
 * Weeks are ISO weeks (Monday to Sunday, ISO week-numbering year, PBS `%G/%V`).
 */
import { BadRequestError, isStowageError } from '../errors.js';
import {
  type BackupDir,
  type BackupGroup,
  type BackupStore,
  deleteSnapshot,
  listSnapshots,
} from './backup-info.js';

import { KEEP_OPTION_NAMES, type KeepOptionName, type KeepOptions } from '../api-types/prune-options.js';

export { KEEP_OPTION_NAMES, type KeepOptionName, type KeepOptions };

export interface PruneCandidate {
  /** Backup time, epoch seconds; unique within a group. */
  time: number;
  protected: boolean;
  finished: boolean;
}

/**
 * Why a snapshot is kept (`keep-*` option that selected it, `keep-partial`, `protected`,
 * `keep-all`) or removed (`remove`: not selected or superseded in its period; `incomplete`: an
 * unfinished snapshot that is not the newest, or older than a finished one).
 */
export type PruneReason =
  KeepOptionName | 'keep-partial' | 'protected' | 'keep-all' | 'remove' | 'incomplete';

export interface PruneMark {
  time: number;
  keep: boolean;
  reason: PruneReason;
}

/** True when at least one option is above zero (PBS `keeps_something`). */
export function keepsSomething(opts: KeepOptions): boolean {
  return KEEP_OPTION_NAMES.some((name) => (opts[name] ?? 0) > 0);
}

/** Check options from a request: each given option a positive integer (PBS schema minimum 1). */
export function validateKeepOptions(opts: Record<string, unknown>): KeepOptions {
  const out: KeepOptions = {};
  for (const name of KEEP_OPTION_NAMES) {
    const v = opts[name];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
      throw new BadRequestError(`invalid ${name} '${String(v)}': must be an integer of at least 1`, {
        param: name,
      });
    }
    out[name] = v;
  }
  return out;
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** ISO 8601 week-numbering year and week of a UTC time, as strftime's `%G/%V`. */
export function isoWeekId(epoch: number): string {
  const d = new Date(epoch * 1000);
  const dayFromMonday = (d.getUTCDay() + 6) % 7;
  // The ISO year and week are those of the Thursday of the same week.
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - dayFromMonday + 3);
  const isoYear = new Date(thursday).getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(isoYear, 0, 1)) / (7 * 86400_000));
  return `${pad(isoYear, 4)}/${pad(week)}`;
}

const PERIOD_ID: Record<KeepOptionName, (epoch: number) => string> = {
  'keep-last': (t) => String(t),
  'keep-hourly': (t) => {
    const d = new Date(t * 1000);
    return `${pad(d.getUTCFullYear(), 4)}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}/${pad(d.getUTCHours())}`;
  },
  'keep-daily': (t) => {
    const d = new Date(t * 1000);
    return `${pad(d.getUTCFullYear(), 4)}/${pad(d.getUTCMonth() + 1)}/${pad(d.getUTCDate())}`;
  },
  'keep-weekly': isoWeekId,
  'keep-monthly': (t) => {
    const d = new Date(t * 1000);
    return `${pad(d.getUTCFullYear(), 4)}/${pad(d.getUTCMonth() + 1)}`;
  },
  'keep-yearly': (t) => pad(new Date(t * 1000).getUTCFullYear(), 4),
};

type Mark = { kind: 'keep' | 'keep-partial' | 'protected' | 'remove'; reason: PruneReason };

/**
 * Decide for each snapshot whether it is kept, and why. Pure. The result lists every input
 * snapshot once, newest first.
 */
export function computePrune(snapshots: readonly PruneCandidate[], opts: KeepOptions): PruneMark[] {
  const list = [...snapshots].sort((a, b) => b.time - a.time);
  if (!keepsSomething(opts)) {
    return list.map((s) => ({ time: s.time, keep: true, reason: s.protected ? 'protected' : 'keep-all' }));
  }
  const marks = new Map<number, Mark>(); // index in `list` -> mark

  // PBS `remove_incomplete_snapshots`
  let keepUnfinished = true;
  list.forEach((s, i) => {
    if (s.finished) {
      keepUnfinished = false;
    } else {
      marks.set(
        i,
        keepUnfinished
          ? { kind: 'keep-partial', reason: 'keep-partial' }
          : { kind: 'remove', reason: 'incomplete' },
      );
      keepUnfinished = false;
    }
  });

  // PBS `mark_selections`, once per option in order
  for (const option of KEEP_OPTION_NAMES) {
    const keep = opts[option];
    if (keep === undefined) continue;
    const periodOf = PERIOD_ID[option];
    // Only snapshots kept by an earlier option cover a period; protected or partial ones do not.
    const alreadyIncluded = new Set<string>();
    list.forEach((s, i) => {
      if (marks.get(i)?.kind === 'keep') alreadyIncluded.add(periodOf(s.time));
    });
    const included = new Set<string>();
    for (let i = 0; i < list.length; i++) {
      const s = list[i]!;
      if (marks.has(i)) continue;
      if (s.protected) {
        marks.set(i, { kind: 'protected', reason: 'protected' });
        continue;
      }
      const period = periodOf(s.time);
      if (alreadyIncluded.has(period)) continue;
      if (!included.has(period)) {
        if (included.size >= keep) break;
        included.add(period);
        marks.set(i, { kind: 'keep', reason: option });
      } else {
        marks.set(i, { kind: 'remove', reason: 'remove' });
      }
    }
  }

  return list.map((s, i) => {
    if (s.protected) return { time: s.time, keep: true, reason: 'protected' };
    const mark = marks.get(i);
    if (!mark) return { time: s.time, keep: false, reason: 'remove' };
    return { time: s.time, keep: mark.kind !== 'remove', reason: mark.reason };
  });
}

export interface PruneResult extends PruneMark {
  dir: BackupDir;
  protected: boolean;
  /** Set when removal was attempted and failed (e.g. the snapshot is in use); others go on. */
  error?: string;
}

/**
 * Prune one group. With `dryRun` nothing on disk changes. Otherwise each snapshot marked for
 * removal is deleted under its own exclusive lock; one that is in use (a restore, or the base of
 * a running backup) is left in place and reported with `error`, and the others are still pruned,
 * as PBS logs and continues.
 */
export async function pruneGroup(
  store: BackupStore,
  group: BackupGroup,
  opts: KeepOptions,
  runOpts: { dryRun?: boolean } = {},
): Promise<PruneResult[]> {
  const keepOptions = validateKeepOptions(opts);
  const snapshots = listSnapshots(store, group);
  const byTime = new Map(snapshots.map((s) => [s.dir.time, s]));
  const marks = computePrune(
    snapshots.map((s) => ({ time: s.dir.time, protected: s.protected, finished: s.finished })),
    keepOptions,
  );
  const results: PruneResult[] = [];
  for (const mark of marks) {
    const info = byTime.get(mark.time)!;
    const result: PruneResult = { ...mark, dir: info.dir, protected: info.protected };
    if (!mark.keep && !runOpts.dryRun) {
      try {
        await deleteSnapshot(store, info.dir);
      } catch (err) {
        if (!isStowageError(err) && (err as NodeJS.ErrnoException).code === undefined) throw err;
        result.error = (err as Error).message;
      }
    }
    results.push(result);
  }
  return results;
}
