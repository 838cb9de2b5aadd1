/**
 * When a maintenance window holds (pure: the window's configuration and a time in, an occurrence
 * out). Windows are [start, start + duration) after a drain-before period; the runtime that sets
 * the holds is maintenance-windows.ts, and the datastore list and status show `nextWindows`.
 */
import { nextEvent, parseCalendarEvent } from '../api-types/calendar-event.js';
import {
  drainHoldMessage,
  windowHoldMessage,
  type MaintenanceWindowConfig,
  type NextMaintenanceWindow,
  type WindowType,
} from '../api-types/maintenance-window.js';
import { parseTimeSpan } from '../api-types/time-span.js';
import { maintenanceWindowConfig } from '../config/maintenance-window-config.js';

/** The hold a window asks for: its own type while in force, `drain` during drain-before. */
export interface WindowHold {
  type: WindowType | 'drain';
  message: string;
}

export type WindowPhase = 'idle' | 'draining' | 'active';

/** One occurrence of a window, and where `now` is in it. */
export interface WindowOccurrence {
  phase: WindowPhase;
  drainStart: Date;
  start: Date;
  end: Date;
}

/**
 * The occurrence of `window` that `now` is in (draining or active), or else the next one;
 * undefined when the schedule has no event left. Windows are [start, start + duration): a job due
 * at the end already runs.
 */
export function windowOccurrence(
  window: Pick<MaintenanceWindowConfig, 'schedule' | 'duration' | 'drain-before'>,
  now: Date,
): WindowOccurrence | undefined {
  const event = parseCalendarEvent(window.schedule);
  const durationMs = parseTimeSpan(window.duration, 'duration');
  const drainMs = window['drain-before'] ? parseTimeSpan(window['drain-before'], 'drain-before') : 0;
  // the first start whose window has not ended by now
  let start = nextEvent(event, new Date(now.getTime() - durationMs));
  if (!start) return undefined;
  // a window longer than its period: the latest start that has come is the one in force
  for (let i = 0; i < 1000 && start.getTime() <= now.getTime(); i++) {
    const later = nextEvent(event, start);
    if (!later || later.getTime() > now.getTime()) break;
    start = later;
  }
  const drainStart = new Date(start.getTime() - drainMs);
  const phase: WindowPhase =
    start.getTime() <= now.getTime() ? 'active' : drainStart.getTime() <= now.getTime() ? 'draining' : 'idle';
  return { phase, drainStart, start, end: new Date(start.getTime() + durationMs) };
}

/** The hold a window asks for at `now` (undefined: none). */
export function windowHold(window: MaintenanceWindowConfig, now: Date): WindowHold | undefined {
  if (window.disable) return undefined;
  const occ = windowOccurrence(window, now);
  if (occ?.phase === 'active') return { type: window.type, message: windowHoldMessage(window) };
  if (occ?.phase === 'draining') return { type: 'drain', message: drainHoldMessage(window, occ.start) };
  return undefined;
}

/** The current or next window of `store` at `now`, the earliest to start (or already in force). */
export function nextWindowOf(
  windows: Iterable<MaintenanceWindowConfig>,
  store: string,
  now: Date,
): NextMaintenanceWindow | undefined {
  let best: NextMaintenanceWindow | undefined;
  for (const w of windows) {
    if (w.store !== store || w.disable) continue;
    let occ: WindowOccurrence | undefined;
    try {
      occ = windowOccurrence(w, now);
    } catch {
      continue; // a hand-edited schedule that does not parse has no next window
    }
    if (!occ) continue;
    const start = Math.floor(occ.start.getTime() / 1000);
    if (best && best.start <= start) continue;
    best = {
      id: w.id,
      start,
      end: Math.floor(occ.end.getTime() / 1000),
      type: w.type,
      ...(w.message !== undefined && { message: w.message }),
      'drain-start': Math.floor(occ.drainStart.getTime() / 1000),
      ...(w['drain-before'] !== undefined && { 'drain-before': w['drain-before'] }),
    };
  }
  return best;
}

/** The next window of every store that has one, for the datastore list and status. */
export function nextWindows(configDir: string, now = new Date()): Map<string, NextMaintenanceWindow> {
  const out = new Map<string, NextMaintenanceWindow>();
  let windows: MaintenanceWindowConfig[];
  try {
    windows = [...maintenanceWindowConfig(configDir).read().jobs.values()];
  } catch {
    return out; // an unreadable window file shows no window; the scheduler logs why
  }
  for (const store of new Set(windows.map((w) => w.store))) {
    const next = nextWindowOf(windows, store, now);
    if (next) out.set(store, next);
  }
  return out;
}
