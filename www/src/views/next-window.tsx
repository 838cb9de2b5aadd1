/**
 * The scheduled maintenance window of a datastore (`next-maintenance-window` of the datastore
 * list): "offline maintenance in 40 min: MESSAGE", or "in offline maintenance window until 14:30
 * UTC: MESSAGE" while it holds.
 */
import { describeNextWindow, type NextMaintenanceWindow } from '../../../src/api-types/maintenance-window.js';
import { api } from '../api.js';
import { useApi } from '../hooks.js';
import type { DatastoreListItem } from '../types.js';

export function NextWindowLine({ window }: { window: NextMaintenanceWindow | undefined }) {
  if (!window) return null;
  const text = describeNextWindow(window, Math.floor(Date.now() / 1000));
  const when = new Date(window.start * 1000).toISOString().replace(/\.000Z$/, 'Z');
  return (
    <p class="next-window" data-window={window.id} title={`window '${window.id}' starts at ${when}`}>
      {text}
    </p>
  );
}

/** The line for one store, from the datastore list, refreshed every 5 s. */
export function StoreNextWindow({ store }: { store: string }) {
  const list = useApi(
    (signal) => api.get<DatastoreListItem[]>('/admin/datastore', undefined, signal),
    [store],
    5000,
  );
  const item = list.data?.data.find((s) => s.store === store);
  return <NextWindowLine window={item?.['next-maintenance-window']} />;
}
