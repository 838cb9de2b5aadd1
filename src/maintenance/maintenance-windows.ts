/**
 * The maintenance windows' runtime: puts on each datastore the system holds its windows ask for
 * at a given time (window-schedule.ts says which), and lifts the ones no window asks for any
 * more. Each window holds under its own source `window:<id>`: `drain` during its drain-before
 * period (no new backup, verify, GC or sync; the refusal names the start), then its own type
 * (`read-only`, `sealed`, `offline`) until it ends.
 *
 * The scheduler applies the windows at each pass, before it starts the jobs that are due, so a
 * job due at a window's start is skipped with the window's message; the window API applies them
 * at once after a change. Holds are only written when they change, and `setHold` is atomic with
 * respect to admission, so two processes applying the same windows (a graceful restart) agree and
 * record each change once.
 */
import type { MaintenanceWindowConfig } from '../api-types/maintenance-window.js';
import { maintenanceWindowConfig } from '../config/maintenance-window-config.js';
import type { DatastoreAccess } from './datastore-access.js';
import { windowHold, windowOccurrence, type WindowHold } from './window-schedule.js';

/** The system hold source of a window. */
export const WINDOW_SOURCE_PREFIX = 'window:';
export const windowSource = (id: string) => `${WINDOW_SOURCE_PREFIX}${id}`;

export interface WindowLog {
  warn(obj: object, msg: string): void;
}

/** What one application changed, for logs and tests. */
export interface WindowChange {
  store: string;
  source: string;
  /** The hold type now (undefined: lifted). */
  type?: WindowHold['type'];
}

/**
 * Apply every configured window at `now`. An unreadable window file changes nothing (the holds in
 * force stay, rather than a maintenance window silently ending); a window whose schedule does not
 * parse (hand-edited) holds nothing. Errors on one datastore are logged and the others go on.
 */
export async function applyMaintenanceWindows(
  access: DatastoreAccess,
  configDir: string,
  now: Date = new Date(),
  log?: WindowLog,
): Promise<WindowChange[]> {
  let windows: MaintenanceWindowConfig[];
  try {
    windows = [...maintenanceWindowConfig(configDir).read().jobs.values()];
  } catch (err) {
    log?.warn({ err }, 'maintenance windows: cannot read maintenance-window.cfg; holds left as they are');
    return [];
  }
  const changes: WindowChange[] = [];
  for (const store of access.config.readCached().stores.keys()) {
    try {
      changes.push(...(await applyStoreWindows(access, store, windows, now)));
    } catch (err) {
      log?.warn({ err, store }, `maintenance windows: cannot apply the windows of datastore '${store}'`);
    }
  }
  return changes;
}

/** The holds `store`'s windows ask for at `now`, by source. */
function wantedHolds(store: string, windows: MaintenanceWindowConfig[], now: Date): Map<string, WindowHold> {
  const wanted = new Map<string, WindowHold>();
  for (const w of windows) {
    if (w.store !== store) continue;
    let hold: WindowHold | undefined;
    try {
      hold = windowHold(w, now);
    } catch {
      continue; // a schedule or span that does not parse: the config API refuses those; a hand edit holds nothing
    }
    if (hold) wanted.set(windowSource(w.id), hold);
  }
  return wanted;
}

async function applyStoreWindows(
  access: DatastoreAccess,
  store: string,
  windows: MaintenanceWindowConfig[],
  now: Date,
): Promise<WindowChange[]> {
  const backend = access.backend;
  const wanted = wantedHolds(store, windows, now);
  const current = (await backend.holds(store)).filter((h) => h.source.startsWith(WINDOW_SOURCE_PREFIX));
  const changes: WindowChange[] = [];
  for (const [source, hold] of wanted) {
    const held = current.find((h) => h.source === source);
    if (held?.type === hold.type && held.message === hold.message) continue;
    const change = await backend.setHold(store, source, hold);
    changes.push({ store, source, type: hold.type });
    // The first hold of an occurrence (its drain, or the window itself without drain-before) is
    // the heads-up operators subscribe to: one `window-starting` per occurrence.
    if (change.event && !change.previous) {
      const id = source.slice(WINDOW_SOURCE_PREFIX.length);
      const w = windows.find((x) => x.id === id && x.store === store);
      const occ = w && windowOccurrence(w, now);
      await backend.events.append({
        store,
        type: 'window-starting',
        source,
        to: w?.type ?? hold.type,
        message: hold.message,
        ...(occ && {
          detail: {
            window: id,
            start: Math.floor(occ.start.getTime() / 1000),
            end: Math.floor(occ.end.getTime() / 1000),
          },
        }),
      });
    }
  }
  for (const held of current) {
    if (wanted.has(held.source)) continue;
    await backend.setHold(store, held.source, undefined);
    changes.push({ store, source: held.source });
  }
  return changes;
}
