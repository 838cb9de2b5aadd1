/**
 * One datastore: Summary, Content and Options tabs, with the live maintenance status on top.
 * The mode comes from the active-operations answer, which works in every mode (reference §6.2),
 * so an offline datastore shows a maintenance panel rather than a failed status request.
 */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, seg } from '../api.js';
import { ErrorBox, Loading, MaintenanceMarker, UsageBar } from '../components.js';
import { bytes } from '../format.js';
import { useApi } from '../hooks.js';
import { describe, parseMaintenance, type MaintenanceMode } from '../maintenance.js';
import type { DatastoreConfig, DatastoreStatus } from '../types.js';
import { ActiveOperationsTable, DrainStatus, liveMode, useActiveOperations } from './active-operations.js';
import { Content } from './content.js';
import { MaintenanceDialog } from './maintenance-dialog.js';
import { MaintenanceHistory } from './maintenance-history.js';
import { StoreNextWindow } from './next-window.js';
import { StoreSystemHolds } from './system-holds.js';
import { MaintenancePanel, refusesReads } from './maintenance-panel.js';
import { MountControls, NotMountedPanel, UnavailablePanel } from './mount-controls.js';

const TABS = [
  ['summary', 'Summary'],
  ['content', 'Content'],
  ['options', 'Options & maintenance'],
] as const;

export function DatastoreView({ store, tab }: { store: string; tab: string }) {
  const ops = useActiveOperations(store);
  // The mode just saved, until an answer to a poll sent after the save reports it: a tab must not
  // ask an offline store for its status in between (that would be a refused request, and an error
  // in the console). A poll sent before the save may still answer after it (its abort by the
  // reload only comes with the next effect run), so the answer's send time decides, not its
  // arrival.
  const [saved, setSaved] = useState<{ raw: string | undefined; at: number } | undefined>(undefined);
  useEffect(() => {
    if (saved && (ops.requestedAt ?? -Infinity) > saved.at) setSaved(undefined);
  }, [saved, ops.requestedAt]);
  const mode = saved ? parseMaintenance(saved.raw) : liveMode(ops.data);
  const [editing, setEditing] = useState(false);
  const [version, setVersion] = useState(0);
  const current = TABS.some(([t]) => t === tab) ? tab : 'summary';
  // from the same answer as the mode, and read after it on the server: when the mode of a finished
  // unmount is gone, the disk shows as not mounted (no status request to a store just unmounted)
  const mountStatus = ops.data?.['mount-status'];
  // the mode is checked first, as the server does: an unmount in progress shows as maintenance
  const notMounted = mountStatus === 'notmounted' && !refusesReads(mode);
  // a failed disk, still mounted: its reason instead of status requests that would all fail
  const unavailable = refusesReads(mode) ? undefined : ops.data?.unavailable;
  const away = notMounted ? (
    <NotMountedPanel store={store} />
  ) : unavailable !== undefined ? (
    <UnavailablePanel reason={unavailable} />
  ) : undefined;

  return (
    <section aria-labelledby="store-heading">
      <nav aria-label="breadcrumb">
        <ul>
          <li>
            <a href="#/">Datastores</a>
          </li>
          <li>{store}</li>
        </ul>
      </nav>
      <div class="store-head">
        <h1 id="store-heading">{store}</h1>
        {mode && <MaintenanceMarker mode={mode} />}
        <button
          type="button"
          class="outline small-button"
          onClick={() => setEditing(true)}
          disabled={mode?.type === 'delete'}
        >
          Edit maintenance
        </button>
        <MountControls store={store} status={mountStatus} onChanged={ops.reload} />
      </div>
      <ErrorBox error={ops.error} title="Could not load the datastore's operations" />
      <StoreNextWindow store={store} />
      <StoreSystemHolds store={store} modeInForce={mode !== undefined} />
      <DrainStatus ops={ops.data} mode={mode} />
      <nav class="tabs" aria-label="Datastore views">
        <ul>
          {TABS.map(([t, label]) => (
            <li key={t}>
              <a href={`#/datastore/${seg(store)}/${t}`} aria-current={t === current ? 'page' : undefined}>
                {label}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      {ops.data === undefined && !ops.error ? (
        <Loading what="datastore" />
      ) : (
        <div key={`${current}-${version}`}>
          {current === 'summary' && (away ?? <Summary store={store} mode={mode} />)}
          {current === 'content' && (away ?? <Content store={store} mode={mode} />)}
          {current === 'options' && <Options store={store} mode={mode} onEdit={() => setEditing(true)} />}
        </div>
      )}
      {editing && (
        <MaintenanceDialog
          store={store}
          current={mode}
          onClose={() => setEditing(false)}
          onSaved={(raw) => {
            setSaved({ raw, at: performance.now() });
            ops.reload();
            setVersion((v) => v + 1);
          }}
        />
      )}
    </section>
  );
}

function Summary({ store, mode }: { store: string; mode: MaintenanceMode | undefined }) {
  if (refusesReads(mode)) return <MaintenancePanel mode={mode!} />;
  return <StatusSummary store={store} mode={mode} />;
}

function StatusSummary({ store, mode }: { store: string; mode: MaintenanceMode | undefined }) {
  const status = useApi(
    async (signal) =>
      (await api.get<DatastoreStatus>(`/admin/datastore/${seg(store)}/status`, { verbose: true }, signal))
        .data,
    [store],
    10000,
  );
  const [gcError, setGcError] = useState<Error | undefined>(undefined);
  const [gcTask, setGcTask] = useState<string | undefined>(undefined);

  // A refusal that races a mode change: show the maintenance message, not a bare error.
  if (status.error instanceof ApiError && status.error.status === 503) {
    return <MaintenancePanel mode={mode ?? { type: 'offline', message: status.error.message }} />;
  }
  const s = status.data;
  const gc = s?.['gc-status'];
  const startGc = async () => {
    setGcError(undefined);
    try {
      setGcTask((await api.post<string>(`/admin/datastore/${seg(store)}/gc`)).data);
    } catch (err) {
      setGcError(err as Error);
    }
  };
  return (
    <div class="grid summary">
      <article>
        <header>
          <h2>Usage</h2>
        </header>
        <ErrorBox error={status.error} title="Could not load the status" />
        {!s && !status.error && <Loading what="status" />}
        {s && (
          <>
            <UsageBar used={s.used} total={s.total} label={`Usage of ${store}`} />
            <dl class="kv">
              <dt>Used</dt>
              <dd>{bytes(s.used)}</dd>
              <dt>Available</dt>
              <dd>{bytes(s.avail)}</dd>
              <dt>Total</dt>
              <dd>{bytes(s.total)}</dd>
            </dl>
          </>
        )}
      </article>
      <article>
        <header>
          <h2>Contents</h2>
        </header>
        {s?.counts ? (
          <table>
            <thead>
              <tr>
                <th scope="col">Type</th>
                <th scope="col">Groups</th>
                <th scope="col">Snapshots</th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(s.counts).map(([type, c]) => (
                <tr key={type}>
                  <td>{type}</td>
                  <td>{c?.groups ?? 0}</td>
                  <td>{c?.snapshots ?? 0}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">{s ? 'No backups yet.' : '–'}</p>
        )}
      </article>
      <article>
        <header>
          <h2>Garbage collection</h2>
        </header>
        {gc?.upid ? (
          <dl class="kv">
            <dt>Last run</dt>
            <dd>
              <a href={`#/tasks/${encodeURIComponent(gc.upid)}`}>task log</a>
            </dd>
            <dt>Removed</dt>
            <dd>
              {bytes(gc['removed-bytes'])} ({gc['removed-chunks'] ?? 0} chunks)
            </dd>
            <dt>Pending</dt>
            <dd>
              {bytes(gc['pending-bytes'])} ({gc['pending-chunks'] ?? 0} chunks)
            </dd>
            <dt>On disk</dt>
            <dd>
              {bytes(gc['disk-bytes'])} ({gc['disk-chunks'] ?? 0} chunks)
            </dd>
          </dl>
        ) : (
          <p class="muted">Garbage collection has not run yet.</p>
        )}
        <button
          type="button"
          class="outline"
          onClick={startGc}
          disabled={mode !== undefined}
          title={mode ? `not possible: ${describe(mode)}` : undefined}
        >
          Start garbage collection
        </button>
        {gcTask && (
          <p>
            Started: <a href={`#/tasks/${encodeURIComponent(gcTask)}`}>view the task log</a>
          </p>
        )}
        <ErrorBox error={gcError} title="Garbage collection refused" />
      </article>
      {s?.['s3-statistics'] && <S3Traffic stats={s['s3-statistics']} failure={s['s3-endpoint-error']} />}
    </div>
  );
}

/**
 * An S3 datastore's requests and traffic (PBS 4's S3 statistics): what the store's provider
 * bills. Counted since the server started; the status refresh keeps them current.
 */
function S3Traffic({
  stats,
  failure,
}: {
  stats: NonNullable<DatastoreStatus['s3-statistics']>;
  /** Why the object store is failing, as the server last found it. */
  failure: string | undefined;
}) {
  const requests: Array<[string, number]> = [
    ['GET', stats.get],
    ['PUT', stats.put],
    ['HEAD', stats.head],
    ['DELETE', stats.delete],
    ['POST', stats.post],
  ];
  return (
    <article>
      <header>
        <h2>Object storage</h2>
      </header>
      {failure !== undefined && (
        <div class="error-box" role="alert" data-testid="s3-endpoint-error">
          <strong>Endpoint failing: </strong>
          {failure}
        </div>
      )}
      <dl class="kv" aria-label="S3 traffic">
        <dt>Uploaded</dt>
        <dd>{bytes(stats.uploaded)}</dd>
        <dt>Downloaded</dt>
        <dd>{bytes(stats.downloaded)}</dd>
        {requests.map(([method, n]) => (
          <Fragment key={method}>
            <dt>{method} requests</dt>
            <dd>{n}</dd>
          </Fragment>
        ))}
      </dl>
      <p class="muted">Since the server started. POST requests are batched deletes.</p>
    </article>
  );
}

function Options({
  store,
  mode,
  onEdit,
}: {
  store: string;
  mode: MaintenanceMode | undefined;
  onEdit: () => void;
}) {
  const cfg = useApi(
    async (signal) =>
      (await api.get<DatastoreConfig>(`/config/datastore/${seg(store)}`, undefined, signal)).data,
    [store],
  );
  const stored = parseMaintenance(cfg.data?.['maintenance-mode']);
  return (
    <>
      <section aria-labelledby="options-heading">
        <h2 id="options-heading">Options</h2>
        <ErrorBox error={cfg.error} title="Could not load the configuration" />
        {!cfg.data && !cfg.error && <Loading what="configuration" />}
        {cfg.data && (
          <table class="options">
            <tbody>
              <tr>
                <th scope="row">Path</th>
                <td>
                  <code>{cfg.data.path}</code>
                </td>
              </tr>
              <tr>
                <th scope="row">Comment</th>
                <td>{cfg.data.comment ?? ''}</td>
              </tr>
              <tr>
                <th scope="row">GC schedule</th>
                <td>{cfg.data['gc-schedule'] ?? <span class="muted">none</span>}</td>
              </tr>
              <tr>
                <th scope="row">Maintenance mode</th>
                <td>
                  {(stored ?? mode) ? <MaintenanceMarker mode={(stored ?? mode)!} /> : 'None'}{' '}
                  <button
                    type="button"
                    class="outline small-button"
                    onClick={onEdit}
                    disabled={mode?.type === 'delete'}
                  >
                    Edit
                  </button>
                </td>
              </tr>
            </tbody>
          </table>
        )}
      </section>
      <ActiveOperationsTable store={store} />
      <MaintenanceHistory store={store} />
    </>
  );
}
