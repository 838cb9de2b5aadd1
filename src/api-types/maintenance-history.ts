/**
 * The maintenance history as server, CLI and web UI see it (`GET
 * admin/datastore/{store}/maintenance-history`, a Stowage extension; the log itself is
 * src/maintenance/maintenance-events.ts). Pure, no runtime dependencies (the web UI imports it), so
 * the CLI's table and the UI's list describe an event in the same words.
 */

/** One event, newest first in the reply; times in epoch seconds as PBS answers them. */
export interface MaintenanceHistoryItem {
  /** Increasing over the whole instance; `before` pages on by it. */
  id: number;
  /** Epoch seconds. */
  time: number;
  /** mode-set, mode-cleared, drained, hold-engaged, hold-released, window-starting, job-skipped, job-failed */
  type: string;
  /** info, notice, warning or error (proxmox-notify's severities, which matchers test). */
  severity: string;
  /** `operator`, `low-space`, `window:<id>`, `job:<id>`. */
  source: string;
  /** Who changed the mode (operator changes and forced releases). */
  'auth-id'?: string;
  /** The mode or hold type before (`none`: no mode). */
  from?: string;
  /** The mode or hold type after. */
  to?: string;
  message?: string;
  /** Drained: seconds from the change until nothing it refuses still ran. */
  duration?: number;
  /** Drained: the id of the change that drained. */
  ref?: number;
  /** Job events: the job's id and type (gc, prune, verify, sync). */
  'job-id'?: string;
  'job-type'?: string;
  /** Job events: the UPID of the job's task (a skipped job's records its skip). */
  upid?: string;
  /** Cluster mode: the server (node name) that made the change. */
  node?: string;
}

export const HISTORY_DEFAULT_LIMIT = 50;
export const HISTORY_MAX_LIMIT = 1000;

/** `none → read-only`, or '' for an event without a transition. */
export function historyTransition(item: Pick<MaintenanceHistoryItem, 'from' | 'to'>): string {
  if (item.from === undefined && item.to === undefined) return '';
  return `${item.from ?? '?'} → ${item.to ?? '?'}`;
}

/** Who or what caused the event: `root@pam`, `low-space`, `window:fw`, `job:gc1 (gc)`. */
export function historyWho(item: Pick<MaintenanceHistoryItem, 'source' | 'auth-id' | 'job-type'>): string {
  if (item['auth-id'])
    return item.source === 'operator' ? item['auth-id'] : `${item.source} (${item['auth-id']})`;
  return item['job-type'] ? `${item.source} (${item['job-type']})` : item.source;
}

/** A drain's duration for people: `0.42 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`. */
export function formatDrainDuration(seconds: number | undefined): string {
  if (seconds === undefined) return '';
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)} min ${two(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${two(Math.floor((s % 3600) / 60))} min`;
}

/** `2026-12-04T00:10:05Z`: the time as the CLI prints and the UI shows it (UTC). */
export function historyTime(item: Pick<MaintenanceHistoryItem, 'time'>): string {
  return new Date(item.time * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
