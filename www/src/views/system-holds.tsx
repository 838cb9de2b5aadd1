/**
 * The system holds on a datastore (low space, maintenance windows), shown beside the operator's
 * maintenance mode and apart from it: "System hold (low-space): Sealed — low space: 4% free".
 * Clearing the mode does not lift them; a hold refuses on its own, and when both refuse an
 * operation the mode's message is the one clients get (docs/maintenance.md "System holds").
 */
import { HOLD_TYPE_LABELS, type HoldType } from '../../../src/api-types/maintenance.js';
import { api } from '../api.js';
import { useApi } from '../hooks.js';
import type { DatastoreListItem } from '../types.js';

type Hold = NonNullable<DatastoreListItem['holds']>[number];

export function SystemHoldLines({ holds, modeInForce }: { holds: Hold[] | undefined; modeInForce: boolean }) {
  if (!holds || holds.length === 0) return null;
  return (
    <>
      {holds.map((h) => (
        <p
          class="system-hold"
          data-source={h.source}
          key={h.source}
          title={`since ${new Date(h.since * 1000).toISOString().replace(/\.000Z$/, 'Z')}${
            modeInForce
              ? '; the maintenance mode is in force too, and its message is the one refused clients get'
              : ''
          }`}
        >
          System hold ({h.source}): {HOLD_TYPE_LABELS[h.type as HoldType] ?? h.type} — {h.message}
        </p>
      ))}
    </>
  );
}

/** The holds of one store, from the datastore list, refreshed every 5 s. */
export function StoreSystemHolds({ store, modeInForce }: { store: string; modeInForce: boolean }) {
  const list = useApi(
    (signal) => api.get<DatastoreListItem[]>('/admin/datastore', undefined, signal),
    [store],
    5000,
  );
  return (
    <SystemHoldLines
      holds={list.data?.data.find((s) => s.store === store)?.holds}
      modeInForce={modeInForce}
    />
  );
}
