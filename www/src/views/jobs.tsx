/**
 * Scheduled jobs (GC, prune, verify) with their next run and last state. A job that hit a
 * maintenance mode shows "skipped: maintenance: ..." (design invariant 9), highlighted so it is
 * not mistaken for a success or an error.
 */
import { api, ApiError } from '../api.js';
import { ErrorBox, Loading } from '../components.js';
import { dateTime } from '../format.js';
import { useApi } from '../hooks.js';
import type { JobStatus } from '../types.js';

const KINDS = [
  ['gc', 'Garbage collection'],
  ['prune', 'Prune'],
  ['verify', 'Verify'],
] as const;

export function lastStateClass(state: string | undefined): string {
  if (!state) return 'muted';
  if (/^skipped/i.test(state)) return 'task-skipped';
  if (state === 'OK' || state === 'ok') return 'task-ok';
  if (/^warn/i.test(state)) return 'task-warn';
  return 'task-error';
}

function JobTable({ kind, label }: { kind: string; label: string }) {
  const jobs = useApi(
    async (signal) => (await api.get<JobStatus[]>(`/admin/${kind}`, undefined, signal)).data,
    [kind],
    10000,
  );
  const missing = jobs.error instanceof ApiError && jobs.error.status === 404;
  return (
    <section aria-labelledby={`jobs-${kind}`}>
      <h2 id={`jobs-${kind}`}>{label}</h2>
      {missing ? (
        <p class="muted">This server does not offer {label.toLowerCase()} jobs.</p>
      ) : (
        <ErrorBox error={jobs.error} title={`Could not load the ${label.toLowerCase()} jobs`} />
      )}
      {!jobs.data && !jobs.error && <Loading what="jobs" />}
      {jobs.data?.length === 0 && <p class="muted">No {label.toLowerCase()} jobs are scheduled.</p>}
      {jobs.data && jobs.data.length > 0 && (
        <div class="overflow-auto">
          <table class="striped jobs" data-testid={`jobs-${kind}`}>
            <thead>
              <tr>
                <th scope="col">{kind === 'gc' ? 'Datastore' : 'Job'}</th>
                {kind !== 'gc' && <th scope="col">Datastore</th>}
                <th scope="col">Schedule</th>
                <th scope="col">Next run</th>
                <th scope="col">Last run</th>
                <th scope="col">Last state</th>
              </tr>
            </thead>
            <tbody>
              {jobs.data.map((j) => (
                <tr key={j.id ?? j.store}>
                  <td>{kind === 'gc' ? j.store : j.id}</td>
                  {kind !== 'gc' && <td>{j.store}</td>}
                  <td>{j.schedule ?? <span class="muted">none</span>}</td>
                  <td>{j['next-run'] ? dateTime(j['next-run']) : '–'}</td>
                  <td>
                    {j['last-run-upid'] ? (
                      <a href={`#/tasks/${encodeURIComponent(j['last-run-upid'])}`}>
                        {dateTime(j['last-run-endtime'])}
                      </a>
                    ) : (
                      dateTime(j['last-run-endtime'])
                    )}
                  </td>
                  <td>
                    <span class={lastStateClass(j['last-run-state'])}>
                      {j['last-run-state'] ?? 'never run'}
                    </span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function Jobs() {
  return (
    <section aria-labelledby="jobs-heading">
      <h1 id="jobs-heading">Jobs</h1>
      {KINDS.map(([kind, label]) => (
        <JobTable key={kind} kind={kind} label={label} />
      ))}
    </section>
  );
}
