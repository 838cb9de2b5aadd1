/** All datastores: usage bars, the maintenance marker and "not mounted", refreshed every 5 s; Add datastore. */
import { useState } from 'preact/hooks';
import { api, seg } from '../api.js';
import { ErrorBox, Loading, MaintenanceMarker, UsageBar } from '../components.js';
import { useApi } from '../hooks.js';
import { parseMaintenance } from '../maintenance.js';
import type { DatastoreListItem, DatastoreUsage } from '../types.js';
import { NextWindowLine } from './next-window.js';
import { SystemHoldLines } from './system-holds.js';
import { EndpointFailingMarker, NotMountedMarker, UnavailableMarker } from './mount-controls.js';
import { AddDatastoreDialog } from './add-datastore.js';

export function DatastoreList() {
  const list = useApi(
    async (signal) => {
      const [stores, usage] = await Promise.all([
        api.get<DatastoreListItem[]>('/admin/datastore', undefined, signal),
        api.get<DatastoreUsage[]>('/status/datastore-usage', undefined, signal).catch(() => undefined),
      ]);
      const byStore = new Map((usage?.data ?? []).map((u) => [u.store, u]));
      return stores.data.map((s) => ({ ...s, usage: byStore.get(s.store) }));
    },
    [],
    5000,
  );

  const [adding, setAdding] = useState(false);
  return (
    <section aria-labelledby="ds-heading">
      <div class="store-head">
        <h1 id="ds-heading">Datastores</h1>
        <button type="button" class="outline small-button" onClick={() => setAdding(true)}>
          Add datastore
        </button>
      </div>
      {adding && <AddDatastoreDialog onClose={() => setAdding(false)} onCreated={list.reload} />}
      <ErrorBox error={list.error} title="Could not load the datastores" />
      {list.data === undefined && !list.error && <Loading what="datastores" />}
      {list.data && list.data.length === 0 && <p>No datastores are configured yet.</p>}
      {list.data && list.data.length > 0 && (
        <div class="overflow-auto">
          <table class="striped datastore-list">
            <thead>
              <tr>
                <th scope="col">Datastore</th>
                <th scope="col">Maintenance</th>
                <th scope="col">Usage</th>
                <th scope="col">Comment</th>
              </tr>
            </thead>
            <tbody>
              {list.data.map((s) => {
                const mode = parseMaintenance(s.maintenance);
                return (
                  <tr
                    key={s.store}
                    class={mode?.type === 'delete' ? 'ds-deleting' : mode || s.holds ? 'ds-maintenance' : ''}
                    data-store={s.store}
                  >
                    <th scope="row">
                      <a href={`#/datastore/${seg(s.store)}/summary`}>{s.store}</a>
                      {s['mount-status'] === 'notmounted' && <NotMountedMarker />}
                      {s.unavailable !== undefined && <UnavailableMarker reason={s.unavailable} />}
                      {s['s3-endpoint-error'] !== undefined && (
                        <EndpointFailingMarker reason={s['s3-endpoint-error']} />
                      )}
                    </th>
                    <td data-label="Maintenance">
                      {mode ? <MaintenanceMarker mode={mode} /> : <span class="muted">none</span>}
                      <NextWindowLine window={s['next-maintenance-window']} />
                      <SystemHoldLines holds={s.holds} modeInForce={mode !== undefined} />
                    </td>
                    <td data-label="Usage">
                      {s.usage?.error ? (
                        <span class="muted" title={s.usage.error}>
                          {mode
                            ? 'not available during maintenance'
                            : s['mount-status'] === 'notmounted'
                              ? 'not available: not mounted'
                              : s.unavailable !== undefined
                                ? 'not available: device failed'
                                : 'not available'}
                        </span>
                      ) : (
                        <UsageBar used={s.usage?.used} total={s.usage?.total} label={`Usage of ${s.store}`} />
                      )}
                    </td>
                    <td data-label="Comment">{s.comment ?? ''}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
