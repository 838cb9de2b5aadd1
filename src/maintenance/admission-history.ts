/**
 * What the maintenance history records for a mode or hold change, and the hold a change leaves:
 * the same for every admission backend, so the local and the etcd backend write the same history.
 * Pure; the backend appends the event once its change is stored.
 */
import {
  formatMaintenanceMode,
  type HoldType,
  type MaintenanceMode,
  type SystemHold,
} from './maintenance-mode.js';
import type { NewMaintenanceEvent } from './maintenance-events.js';

/** The history's record of a mode change; none when the stored mode does not change. */
export function modeChangeEvent(
  store: string,
  storedBefore: string | undefined,
  previous: MaintenanceMode | undefined,
  mode: MaintenanceMode | undefined,
  authId: string | undefined,
): NewMaintenanceEvent | undefined {
  const after = mode ? formatMaintenanceMode(mode) : undefined;
  if ((storedBefore || undefined) === after) return undefined;
  return {
    store,
    type: mode ? 'mode-set' : 'mode-cleared',
    source: 'operator',
    ...(authId !== undefined && { authId }),
    from: previous?.type ?? 'none',
    to: mode?.type ?? 'none',
    ...((mode ?? previous)?.message !== undefined && { message: (mode ?? previous)!.message }),
  };
}

/**
 * The hold of `source` after putting `spec` (undefined: lifting it), and the history's record:
 * a hold of the same type put again only takes the new message (same `since`, no event).
 */
export function holdChange(
  store: string,
  source: string,
  previous: SystemHold | undefined,
  spec: { type: HoldType; message: string } | undefined,
  opts: { authId?: string; forced?: boolean; now?: number } = {},
): { hold?: SystemHold; event?: NewMaintenanceEvent } {
  const who = opts.authId !== undefined ? { authId: opts.authId } : {};
  if (spec) {
    const sameType = previous?.type === spec.type;
    const hold: SystemHold = {
      source,
      type: spec.type,
      message: spec.message,
      since: sameType ? previous.since : (opts.now ?? Date.now()),
      ...who,
    };
    if (sameType) return { hold };
    return {
      hold,
      event: {
        store,
        type: 'hold-engaged',
        source,
        ...who,
        from: previous?.type ?? 'none',
        to: spec.type,
        message: spec.message,
      },
    };
  }
  if (!previous) return {};
  return {
    event: {
      store,
      type: 'hold-released',
      source,
      ...who,
      from: previous.type,
      to: 'none',
      message: previous.message,
      ...(opts.forced && { detail: { forced: true } }),
    },
  };
}
