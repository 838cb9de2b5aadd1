/**
 * Live active operations of one datastore (polled every 2.5 s; PBS's UI polls every 3 s,
 * reference §4.2), and the one-line drain status: "N conflicting operations still running: ..."
 * until it reads "drained".
 */
import { api, seg } from '../api.js';
import { CheckIcon, ErrorBox } from '../components.js';
import { clock } from '../format.js';
import { useApi, type Loaded } from '../hooks.js';
import { conflictingClasses, parseMaintenance, typeLabel, type MaintenanceMode } from '../maintenance.js';
import type { ActiveOperation, ActiveOperations } from '../types.js';

export const POLL_MS = 2500;

export function useActiveOperations(store: string, intervalMs = POLL_MS): Loaded<ActiveOperations> {
  return useApi(
    async (signal) =>
      (await api.get<ActiveOperations>(`/admin/datastore/${seg(store)}/active-operations`, undefined, signal))
        .data,
    [store],
    intervalMs,
  );
}

/** The mode as the active-operations answer reports it (live, works in every mode). */
export function liveMode(ops: ActiveOperations | undefined): MaintenanceMode | undefined {
  return parseMaintenance(ops?.['maintenance-mode']);
}

/**
 * Operations holding up `mode`. Prefer the listed operations filtered by the mode's refused
 * classes; fall back to the server's counts when it sends no list.
 */
export function conflicting(
  ops: ActiveOperations,
  mode: MaintenanceMode | undefined,
): { count: number; list: ActiveOperation[] } {
  const classes = conflictingClasses(mode);
  const list = ops.operations.filter((o) => (classes as readonly string[]).includes(o.class));
  return { count: list.length, list };
}

export function describeOperation(o: ActiveOperation): string {
  const what = [o.kind, o.detail].filter(Boolean).join(' ');
  const who = o['auth-id'] ? ` by ${o['auth-id']}` : '';
  const where = !o.node ? '' : o['node-lost'] ? ` (lost with node ${o.node})` : ` on ${o.node}`;
  const since = ` since ${clock(o.started)}`;
  return `${what}${who}${where}${since}`;
}

/** "2 conflicting operations still running: backup host/web01 by alice@pbs since 10:02, …" */
export function drainSentence(ops: ActiveOperations, mode: MaintenanceMode | undefined): string {
  const { count, list } = conflicting(ops, mode);
  if (count === 0) return 'drained: no conflicting operations are running';
  const noun = count === 1 ? 'conflicting operation' : 'conflicting operations';
  const details = list.map(describeOperation).join('; ');
  return `${count} ${noun} still running${details ? `: ${details}` : ''}`;
}

/** The live status line shown under a datastore in maintenance. */
export function DrainStatus({
  ops,
  mode,
}: {
  ops: ActiveOperations | undefined;
  mode: MaintenanceMode | undefined;
}) {
  if (!mode || !ops || mode.type === 'delete') return null;
  const { count } = conflicting(ops, mode);
  return (
    <p
      class={`drain ${count ? 'drain-busy' : 'drain-done'}`}
      role="status"
      aria-live="polite"
      data-testid="drain-status"
    >
      {count ? <span class="spinner" aria-hidden="true" /> : <CheckIcon />} {typeLabel(mode.type)}:{' '}
      {drainSentence(ops, mode)}
    </p>
  );
}

/** Table of every active operation, conflicting ones marked. */
export function ActiveOperationsTable({ store }: { store: string }) {
  const ops = useActiveOperations(store);
  const mode = liveMode(ops.data);
  const classes = conflictingClasses(mode);
  const list = ops.data?.operations;
  // cluster mode: which server each operation runs on
  const withNode = list?.some((o) => o.node !== undefined) ?? false;
  return (
    <section aria-labelledby="ops-heading" class="active-ops">
      <h2 id="ops-heading">Active operations</h2>
      <ErrorBox error={ops.error} title="Could not load the active operations" />
      {ops.data && (
        <p data-testid="ops-counts">
          Reading: <strong>{ops.data.read}</strong> · Writing: <strong>{ops.data.write}</strong>
          {ops.data.ingest !== undefined && (
            <>
              {' '}
              (ingest <strong>{ops.data.ingest}</strong>, reclaim <strong>{ops.data.reclaim}</strong>)
            </>
          )}
          {ops.data.lookup !== undefined && (
            <>
              {' '}
              · Lookup: <strong>{ops.data.lookup}</strong>
            </>
          )}
        </p>
      )}
      {list && list.length === 0 && <p class="muted">No operations are running on this datastore.</p>}
      {list && list.length > 0 && (
        <div class="overflow-auto">
          <table class="striped" data-testid="ops-table">
            <thead>
              <tr>
                <th scope="col">Kind</th>
                <th scope="col">Detail</th>
                <th scope="col">Class</th>
                <th scope="col">User</th>
                {withNode && <th scope="col">Node</th>}
                <th scope="col">Since</th>
                <th scope="col">Task / process</th>
              </tr>
            </thead>
            <tbody>
              {list.map((o) => {
                const blocks = classes.includes(o.class);
                return (
                  <tr key={o.id} class={blocks ? 'op-conflicting' : ''}>
                    <td>
                      {o.kind ?? '–'}
                      {blocks && (
                        <>
                          {' '}
                          <span class="badge">conflicting</span>
                        </>
                      )}
                    </td>
                    <td>{o.detail ?? ''}</td>
                    <td>{o.class}</td>
                    <td>{o['auth-id'] ?? '–'}</td>
                    {withNode && <td>{o['node-lost'] ? `lost with node ${o.node}` : (o.node ?? '–')}</td>}
                    <td>{clock(o.started)}</td>
                    <td>
                      {o['task-id'] ? (
                        <a href={`#/tasks/${encodeURIComponent(o['task-id'])}`}>task</a>
                      ) : (
                        `pid ${o.pid ?? '?'}`
                      )}
                    </td>
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
