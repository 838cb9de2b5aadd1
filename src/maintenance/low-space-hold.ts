/**
 * The low-space hold (Elasticsearch's flood stage, with its hysteresis): when a datastore's
 * filesystem has less than `low-space-hold` percent free, Stowage itself puts a `sealed` system
 * hold on the store (source `low-space`, message `low space: N% free`): no new data comes in, while
 * prune, deletes, GC and restores go on so that space can be freed. Once more than
 * `low-space-release` percent is free the hold lifts by itself. Between the two nothing changes,
 * so a store near the line does not flap.
 *
 * This file is the rule, pure but for one statfs; low-space-monitor.ts applies it: before each
 * ingest admission (on a statfs sample at most STATFS_CACHE_MS old, before `admit` and outside
 * its atomic section; the hold itself is enforced by `admit`) and periodically in the server, so
 * the hold also lifts on a store nobody writes to.
 *
 * An operator may lift the hold by force (`maintenance clear --force`): the store then stays
 * writable until its free space has once risen above the release level — the next check must not
 * take back what the operator just decided — and normal hysteresis resumes from there.
 */
import { statfs } from 'node:fs/promises';
import { LOW_SPACE_DEFAULTS, type DatastoreConfig } from '../config/datastore-config.js';

/** The system hold's source: one low-space hold per store. */
export const LOW_SPACE_SOURCE = 'low-space';

export interface LowSpaceThresholds {
  /** Hold below this percent free; 0: never. */
  hold: number;
  /** Lift above this percent free. */
  release: number;
}

/** A datastore's thresholds, its configuration's or the defaults. */
export function lowSpaceThresholds(cfg: DatastoreConfig): LowSpaceThresholds {
  return {
    hold: cfg['low-space-hold'] ?? LOW_SPACE_DEFAULTS['low-space-hold'],
    release: cfg['low-space-release'] ?? LOW_SPACE_DEFAULTS['low-space-release'],
  };
}

/**
 * The percent of the filesystem at `path` that is free, as `df` shows it (100 − Use%): available
 * blocks over used plus available, so blocks reserved for root count as neither.
 */
export async function freePercent(path: string): Promise<number> {
  const s = await statfs(path);
  const total = s.blocks - s.bfree + s.bavail;
  return total <= 0 ? 100 : (s.bavail / total) * 100;
}

/** The hold's message, shown to every refused client: `low space: 4% free`. */
export function lowSpaceMessage(free: number): string {
  return `low space: ${Math.floor(free)}% free`;
}

/** What the operator's forced release warns of. */
export function forcedReleaseWarning(free: number): string {
  return `writing with ${Math.floor(free)}% free may fill the disk`;
}

export interface LowSpaceState {
  /** The low-space hold is on the store now. */
  held: boolean;
  /** An operator lifted it by force and free space has not risen above the release level since. */
  overridden: boolean;
}

export interface LowSpaceDecision {
  action: 'engage' | 'release' | 'none';
  /** Whether the operator's override still stands after this sample. */
  overridden: boolean;
}

/**
 * The hysteresis, pure: engage below `hold`, release above `release`, nothing in between. An
 * override ends once free space rises above `release`; until then nothing engages. A disabled
 * hold (0) releases a hold still on the store.
 */
export function decideLowSpace(free: number, t: LowSpaceThresholds, state: LowSpaceState): LowSpaceDecision {
  const overridden = state.overridden && free <= t.release;
  if (t.hold === 0) return { action: state.held ? 'release' : 'none', overridden: false };
  if (state.held) return { action: free > t.release ? 'release' : 'none', overridden: false };
  if (!overridden && free < t.hold) return { action: 'engage', overridden };
  return { action: 'none', overridden };
}
