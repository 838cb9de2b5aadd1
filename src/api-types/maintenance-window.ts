/**
 * Scheduled maintenance windows as server, CLI and web UI see them (a Stowage extension; design:
 * docs/maintenance.md "Maintenance windows"). A window puts its datastore into a system hold of
 * its type from each `schedule` event for `duration`, after a `drain-before` period in which no
 * new long operation (backup, verify, GC, sync) starts. Pure, no runtime dependencies (the web UI
 * imports it).
 */
import type { NextMaintenanceWindowReply } from './datastore-replies.js';

/** The hold types a window may have (the `drain` hold is its drain-before period). */
export const WINDOW_TYPES = ['read-only', 'sealed', 'offline'] as const;
export type WindowType = (typeof WINDOW_TYPES)[number];

export function isWindowType(type: unknown): type is WindowType {
  return (WINDOW_TYPES as readonly unknown[]).includes(type);
}

/** A configured window (`maintenance-window.cfg`, `config/maintenance-window`). */
export interface MaintenanceWindowConfig {
  id: string;
  store: string;
  /** Calendar event of each start (UTC, like the job schedules). */
  schedule: string;
  /** Time span, e.g. `2h 30min`. */
  duration: string;
  type: WindowType;
  /** At most 64 characters, shown to every refused client. */
  message?: string;
  /** Time span before each start in which no new long operation is admitted. */
  'drain-before'?: string;
  comment?: string;
  disable?: boolean;
}

/**
 * The current or next occurrence of a store's windows, as `admin/datastore` and the status show
 * it (`next-maintenance-window`, epoch seconds; schema in datastore-replies.ts).
 */
export type NextMaintenanceWindow = NextMaintenanceWindowReply;

/** The refusal text of the hold during drain-before: names the window's start. */
export function drainHoldMessage(
  window: Pick<MaintenanceWindowConfig, 'type' | 'message'>,
  start: Date,
): string {
  const at = start.toISOString().replace(/\.000Z$/, 'Z');
  const base = `${window.type} maintenance window at ${at}`;
  return window.message ? `${base}: ${window.message}` : base;
}

/** The refusal text of the hold during the window. */
export function windowHoldMessage(window: Pick<MaintenanceWindowConfig, 'type' | 'message'>): string {
  const base = `${window.type} maintenance window`;
  return window.message ? `${base}: ${window.message}` : base;
}

/**
 * The line the UI and CLI show for a store's next window at `nowSec`: `offline maintenance in 40
 * min: MESSAGE`, or `in offline maintenance window until 14:30: MESSAGE` (UTC) while inside.
 */
export function describeNextWindow(w: NextMaintenanceWindow, nowSec: number): string {
  const suffix = w.message ? `: ${w.message}` : '';
  if (nowSec >= w.start) {
    const until = new Date(w.end * 1000).toISOString().slice(11, 16);
    return `in ${w.type} maintenance window until ${until} UTC${suffix}`;
  }
  const minutes = Math.ceil((w.start - nowSec) / 60);
  const when =
    minutes < 120
      ? `${minutes} min`
      : minutes < 48 * 60
        ? `${Math.round(minutes / 60)} h`
        : `${Math.round(minutes / 1440)} days`;
  const draining = nowSec >= w['drain-start'] ? ' (draining)' : '';
  return `${w.type} maintenance in ${when}${draining}${suffix}`;
}
