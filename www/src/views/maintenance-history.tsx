/**
 * The datastore's latest maintenance events (`admin/datastore/{store}/maintenance-history`),
 * newest first: who set or cleared which mode when, holds and windows, and how long each drain
 * took. Reads no datastore, so it shows in every mode, offline included.
 */
import { api, seg } from '../api.js';
import { ErrorBox, Loading } from '../components.js';
import { clock } from '../format.js';
import { useApi } from '../hooks.js';
import {
  formatDrainDuration,
  historyTime,
  historyTransition,
  historyWho,
  type MaintenanceHistoryItem,
} from '../../../src/api-types/maintenance-history.js';

/** What the list shows; the CLI and the API page further. */
const SHOWN = 20;

const EVENT_LABELS: Readonly<Record<string, string>> = {
  'mode-set': 'Mode set',
  'mode-cleared': 'Mode cleared',
  drained: 'Drained',
  'hold-engaged': 'Hold engaged',
  'hold-released': 'Hold released',
  'window-starting': 'Window starting',
  'job-skipped': 'Job skipped',
  'job-failed': 'Job failed',
};

export function MaintenanceHistory({ store }: { store: string }) {
  const history = useApi(
    async (signal) =>
      (
        await api.get<MaintenanceHistoryItem[]>(
          `/admin/datastore/${seg(store)}/maintenance-history`,
          { limit: SHOWN },
          signal,
        )
      ).data,
    [store],
    5000,
  );
  const items = history.data;
  return (
    <section aria-labelledby="history-heading" class="maintenance-history">
      <h2 id="history-heading">Maintenance history</h2>
      <ErrorBox error={history.error} title="Could not load the maintenance history" />
      {!items && !history.error && <Loading what="maintenance history" />}
      {items && items.length === 0 && <p class="muted">No maintenance changes recorded yet.</p>}
      {items && items.length > 0 && (
        <div class="overflow-auto">
          <table class="striped" data-testid="history-table">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Event</th>
                <th scope="col">From → to</th>
                <th scope="col">By</th>
                <th scope="col">Message</th>
                <th scope="col">Drain</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.id} data-event={e.type} class={`severity-${e.severity}`}>
                  <td title={historyTime(e)}>{clock(e.time)}</td>
                  <td>{EVENT_LABELS[e.type] ?? e.type}</td>
                  <td>{historyTransition(e)}</td>
                  <td>{historyWho(e)}</td>
                  <td>{e.message ?? ''}</td>
                  <td>{formatDrainDuration(e.duration)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
