/**
 * Backup groups → snapshots, with size, verify state, protection and notes; deleting, protecting
 * and pruning ask for confirmation first. Writes are disabled (with the reason) in maintenance.
 * A snapshot with pxar archives opens in the file browser.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, seg } from '../api.js';
import { Confirm, ErrorBox, Loading, Modal } from '../components.js';
import { bytes, dateTime, snapshotName } from '../format.js';
import { useApi } from '../hooks.js';
import { describe, type MaintenanceMode } from '../maintenance.js';
import { KEEP_OPTION_NAMES } from '../../../src/api-types/prune-options.js';
import type { BackupGroup, PruneItem, Snapshot } from '../types.js';
import { browseSource, FileBrowser, type BrowseSource } from './file-browser.js';
import { MaintenancePanel, refusesReads } from './maintenance-panel.js';

function snapshotParams(s: Snapshot) {
  return { 'backup-type': s['backup-type'], 'backup-id': s['backup-id'], 'backup-time': s['backup-time'] };
}

/** What a verify task covers: a group, or one snapshot of it. */
interface VerifyTarget {
  label: string;
  params: Record<string, string | number>;
}

interface VerifyRun {
  target: VerifyTarget;
  upid?: string;
  /** The task's exit status once it stopped (`OK`, or the error). */
  result?: string;
  error?: Error;
}

interface TaskStatus {
  status: 'running' | 'stopped';
  exitstatus?: string;
}

/**
 * Start a verify task (`POST /admin/datastore/{store}/verify`) and follow it until it stops;
 * `onFinished` then lets the snapshot lists show the new verify state. Only one at a time.
 */
function useVerify(store: string, onFinished: () => void) {
  const [run, setRun] = useState<VerifyRun | undefined>(undefined);
  const upid = run?.upid;
  const done = run?.result !== undefined;
  useEffect(() => {
    if (!upid || done) return;
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const st = (
          await api.get<TaskStatus>(
            `/nodes/localhost/tasks/${encodeURIComponent(upid)}/status`,
            undefined,
            ctl.signal,
          )
        ).data;
        if (ctl.signal.aborted) return;
        if (st.status === 'stopped') {
          setRun((r) => r && { ...r, result: st.exitstatus ?? 'stopped' });
          onFinished();
          return;
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        setRun((r) => r && { ...r, error: err as Error });
        return;
      }
      timer = setTimeout(poll, 1000);
    };
    void poll();
    return () => {
      ctl.abort();
      if (timer) clearTimeout(timer);
    };
  }, [upid, done]);

  const start = async (target: VerifyTarget) => {
    setRun({ target });
    try {
      const res = await api.post<string>(`/admin/datastore/${seg(store)}/verify`, target.params);
      setRun({ target, upid: res.data });
    } catch (err) {
      setRun({ target, error: err as Error });
    }
  };
  const busy = run !== undefined && run.result === undefined && run.error === undefined;
  return { run, busy, start, dismiss: () => setRun(undefined) };
}

function VerifyStatus({ run, onDismiss }: { run: VerifyRun | undefined; onDismiss: () => void }) {
  if (!run) return null;
  const task = run.upid && (
    <a href={`#/tasks/${encodeURIComponent(run.upid)}`} class="small">
      task log
    </a>
  );
  let text;
  if (run.error) {
    text = (
      <span class="verify-failed">
        Verify of {run.target.label} could not run: {run.error.message}
      </span>
    );
  } else if (run.result === undefined) {
    text = (
      <span aria-busy="true">
        Verifying {run.target.label}… {task}
      </span>
    );
  } else {
    text = (
      <span>
        Verify of {run.target.label}:{' '}
        <span class={run.result === 'OK' ? 'verify-ok' : 'verify-failed'}>{run.result}</span> {task}
      </span>
    );
  }
  return (
    <p role="status" class="verify-status" data-testid="verify-status">
      {text}
      {(run.error || run.result !== undefined) && (
        <button type="button" class="link-button small" onClick={onDismiss}>
          Dismiss
        </button>
      )}
    </p>
  );
}

/** A snapshot open in the file browser, and how its tree is listed. */
interface Browsing {
  snapshot: Snapshot;
  source: BrowseSource;
}

export function Content({ store, mode }: { store: string; mode: MaintenanceMode | undefined }) {
  // Held here, not in the snapshot list: when the datastore goes offline while the browser is
  // open, the list gives way to the maintenance panel but the browser stays and shows the
  // server's refusal of the next listing or download.
  const [browsing, setBrowsing] = useState<Browsing | undefined>(undefined);
  return (
    <>
      {refusesReads(mode) ? (
        <MaintenancePanel mode={mode!} />
      ) : (
        <Groups store={store} mode={mode} onBrowse={setBrowsing} />
      )}
      {browsing && (
        <FileBrowser
          store={store}
          snapshot={browsing.snapshot}
          source={browsing.source}
          onClose={() => setBrowsing(undefined)}
        />
      )}
    </>
  );
}

function Groups({
  store,
  mode,
  onBrowse,
}: {
  store: string;
  mode: MaintenanceMode | undefined;
  onBrowse: (b: Browsing) => void;
}) {
  const groups = useApi(
    async (signal) =>
      (await api.get<BackupGroup[]>(`/admin/datastore/${seg(store)}/groups`, undefined, signal)).data,
    [store],
  );
  const [open, setOpen] = useState<string | undefined>(undefined);
  const [pruning, setPruning] = useState<BackupGroup | undefined>(undefined);
  // bumped when a prune or verify changed snapshots, so an open snapshot list loads them again
  const [version, setVersion] = useState(0);
  const changed = () => {
    setVersion((v) => v + 1);
    groups.reload();
  };
  const verify = useVerify(store, changed);
  const readOnly = mode !== undefined;
  const why = readOnly ? `not possible: ${describe(mode!)}` : undefined;

  return (
    <section aria-labelledby="content-heading">
      <h2 id="content-heading">Backup groups</h2>
      {readOnly && <p class="muted">Changes are disabled while the datastore is in {describe(mode!)}.</p>}
      <ErrorBox error={groups.error} title="Could not load the backup groups" />
      {!groups.data && !groups.error && <Loading what="backup groups" />}
      <VerifyStatus run={verify.run} onDismiss={verify.dismiss} />
      {groups.data?.length === 0 && <p>This datastore holds no backups yet.</p>}
      {groups.data && groups.data.length > 0 && (
        <div class="overflow-auto">
          <table class="groups">
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Snapshots</th>
                <th scope="col">Last backup</th>
                <th scope="col">Owner</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {groups.data.map((g) => {
                const key = `${g['backup-type']}/${g['backup-id']}`;
                const expanded = open === key;
                return [
                  <tr key={key}>
                    <th scope="row">
                      <button
                        type="button"
                        class="link-button"
                        aria-expanded={expanded}
                        aria-controls={`snapshots-${key}`}
                        onClick={() => setOpen(expanded ? undefined : key)}
                      >
                        <span aria-hidden="true">{expanded ? '▾' : '▸'}</span> {key}
                      </button>
                    </th>
                    <td>{g['backup-count'] ?? '–'}</td>
                    <td>{g['last-backup'] ? dateTime(g['last-backup']) : '–'}</td>
                    <td>{g.owner ?? '–'}</td>
                    <td class="actions">
                      <button
                        type="button"
                        class="outline small-button"
                        disabled={readOnly || verify.busy}
                        title={why}
                        aria-label={`Verify ${key}`}
                        onClick={() =>
                          void verify.start({
                            label: key,
                            params: { 'backup-type': g['backup-type'], 'backup-id': g['backup-id'] },
                          })
                        }
                      >
                        Verify
                      </button>
                      <button
                        type="button"
                        class="outline small-button"
                        disabled={readOnly}
                        title={why}
                        aria-label={`Prune ${key}`}
                        onClick={() => setPruning(g)}
                      >
                        Prune…
                      </button>
                    </td>
                  </tr>,
                  expanded && (
                    <tr key={`${key}-snapshots`} id={`snapshots-${key}`}>
                      <td colSpan={5}>
                        <Snapshots
                          store={store}
                          group={g}
                          readOnly={readOnly}
                          mode={mode}
                          version={version}
                          verifying={verify.busy}
                          onVerify={(s) =>
                            void verify.start({ label: snapshotName(s), params: snapshotParams(s) })
                          }
                          onChange={groups.reload}
                          onBrowse={onBrowse}
                        />
                      </td>
                    </tr>
                  ),
                ];
              })}
            </tbody>
          </table>
        </div>
      )}
      {pruning && (
        <PruneDialog
          store={store}
          group={pruning}
          onClose={() => setPruning(undefined)}
          onDone={() => {
            setPruning(undefined);
            changed();
          }}
        />
      )}
    </section>
  );
}

type Pending =
  | { action: 'delete'; snapshot: Snapshot }
  | { action: 'protect'; snapshot: Snapshot; value: boolean }
  | { action: 'notes'; snapshot: Snapshot };

function Snapshots({
  store,
  group,
  readOnly,
  mode,
  version,
  verifying,
  onVerify,
  onChange,
  onBrowse,
}: {
  store: string;
  group: BackupGroup;
  readOnly: boolean;
  mode: MaintenanceMode | undefined;
  /** Changes when snapshots of the group changed elsewhere (prune, verify). */
  version: number;
  verifying: boolean;
  onVerify: (s: Snapshot) => void;
  onChange: () => void;
  onBrowse: (b: Browsing) => void;
}) {
  const snaps = useApi(
    async (signal) =>
      (
        await api.get<Snapshot[]>(
          `/admin/datastore/${seg(store)}/snapshots`,
          { 'backup-type': group['backup-type'], 'backup-id': group['backup-id'] },
          signal,
        )
      ).data.sort((a, b) => b['backup-time'] - a['backup-time']),
    [store, group['backup-type'], group['backup-id'], version],
  );
  const [pending, setPending] = useState<Pending | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | undefined>(undefined);
  const why = readOnly ? `not possible: ${describe(mode!)}` : undefined;

  const run = async (fn: () => Promise<unknown>) => {
    setBusy(true);
    setError(undefined);
    try {
      await fn();
      setPending(undefined);
      snaps.reload();
      onChange();
    } catch (err) {
      setError(err as Error);
      // the refusal may come from a change made elsewhere (protected meanwhile): show it
      snaps.reload();
    } finally {
      setBusy(false);
    }
  };
  const ask = (p: Pending) => {
    setError(undefined);
    setPending(p);
  };

  const base = `/admin/datastore/${seg(store)}`;
  return (
    <div class="snapshots">
      <ErrorBox error={snaps.error} title="Could not load the snapshots" />
      {!snaps.data && !snaps.error && <Loading what="snapshots" />}
      {snaps.data && (
        <table class="striped" aria-label={`Snapshots of ${group['backup-type']}/${group['backup-id']}`}>
          <thead>
            <tr>
              <th scope="col">Snapshot</th>
              <th scope="col">Size</th>
              <th scope="col">Verify state</th>
              <th scope="col">Protected</th>
              <th scope="col">Notes</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {snaps.data.map((s) => (
              <tr key={s['backup-time']} data-snapshot={snapshotName(s)}>
                <th scope="row">
                  <time dateTime={new Date(s['backup-time'] * 1000).toISOString()}>
                    {dateTime(s['backup-time'])}
                  </time>
                </th>
                <td>{bytes(s.size)}</td>
                <td>
                  <span class={`verify verify-${s.verification?.state ?? 'none'}`}>
                    {s.verification?.state ?? 'not verified'}
                  </span>
                </td>
                <td>{s.protected ? 'yes' : 'no'}</td>
                <td>{s.comment ?? ''}</td>
                <td class="actions">
                  <BrowseButton snapshot={s} onBrowse={onBrowse} />
                  <button
                    type="button"
                    class="outline small-button"
                    disabled={readOnly}
                    title={why}
                    onClick={() => ask({ action: 'notes', snapshot: s })}
                  >
                    Notes…
                  </button>
                  <button
                    type="button"
                    class="outline small-button"
                    disabled={readOnly}
                    title={why}
                    onClick={() => ask({ action: 'protect', snapshot: s, value: !s.protected })}
                  >
                    {s.protected ? 'Unprotect' : 'Protect'}
                  </button>
                  <button
                    type="button"
                    class="outline small-button"
                    disabled={readOnly || verifying}
                    title={why}
                    onClick={() => onVerify(s)}
                  >
                    Verify
                  </button>
                  <button
                    type="button"
                    class="outline small-button danger"
                    disabled={readOnly || s.protected}
                    title={why ?? (s.protected ? 'protected snapshots cannot be deleted' : undefined)}
                    onClick={() => ask({ action: 'delete', snapshot: s })}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {pending?.action === 'delete' && (
        <Confirm
          title="Delete snapshot"
          confirmLabel="Delete"
          busy={busy}
          error={error}
          errorTitle="The server refused to delete it"
          onCancel={() => setPending(undefined)}
          onConfirm={() => run(() => api.delete(`${base}/snapshots`, snapshotParams(pending.snapshot)))}
        >
          <p>
            Delete <code>{snapshotName(pending.snapshot)}</code>? Its data is freed by the next garbage
            collection; this cannot be undone.
          </p>
        </Confirm>
      )}
      {pending?.action === 'protect' && (
        <Confirm
          title={pending.value ? 'Protect snapshot' : 'Remove protection'}
          confirmLabel={pending.value ? 'Protect' : 'Remove protection'}
          busy={busy}
          error={error}
          errorTitle="The server refused the change"
          onCancel={() => setPending(undefined)}
          onConfirm={() =>
            run(() =>
              api.put(`${base}/protected`, { ...snapshotParams(pending.snapshot), protected: pending.value }),
            )
          }
        >
          <p>
            {pending.value
              ? 'A protected snapshot is kept by prune and cannot be deleted.'
              : 'Without protection, prune may remove this snapshot.'}{' '}
            <code>{snapshotName(pending.snapshot)}</code>
          </p>
        </Confirm>
      )}
      {pending?.action === 'notes' && (
        <NotesDialog
          store={store}
          snapshot={pending.snapshot}
          onClose={() => setPending(undefined)}
          onSaved={() => {
            setPending(undefined);
            snaps.reload();
          }}
        />
      )}
    </div>
  );
}

/**
 * "File browser" on a snapshot with pxar archives (none on tar or image backups). Browsing is a
 * read, so read-only maintenance leaves it enabled.
 */
function BrowseButton({ snapshot, onBrowse }: { snapshot: Snapshot; onBrowse: (b: Browsing) => void }) {
  const source = browseSource(snapshot);
  if (!source) return null;
  const refused = 'refused' in source ? source.refused : undefined;
  return (
    <button
      type="button"
      class="outline small-button"
      disabled={refused !== undefined}
      title={refused}
      onClick={() => !('refused' in source) && onBrowse({ snapshot, source })}
    >
      File browser
    </button>
  );
}

function NotesDialog({
  store,
  snapshot,
  onClose,
  onSaved,
}: {
  store: string;
  snapshot: Snapshot;
  onClose: () => void;
  onSaved: () => void;
}) {
  const base = `/admin/datastore/${seg(store)}/notes`;
  const notes = useApi(
    async (signal) => (await api.get<string>(base, snapshotParams(snapshot), signal)).data,
    [],
  );
  const [text, setText] = useState<string | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const value = text ?? notes.data ?? '';
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await api.put(base, { ...snapshotParams(snapshot), notes: value });
      onSaved();
    } catch (err) {
      setError(err as Error);
    }
  };
  return (
    <Modal
      title="Snapshot notes"
      labelId="notes-title"
      onClose={onClose}
      footer={
        <>
          <button type="button" class="secondary" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" form="notes-form">
            Save
          </button>
        </>
      }
    >
      <form id="notes-form" onSubmit={save}>
        <label for="notes-text">
          Notes for <code>{snapshotName(snapshot)}</code>
          <textarea id="notes-text" rows={6} value={value} onInput={(e) => setText(e.currentTarget.value)} />
        </label>
      </form>
      <ErrorBox error={notes.error ?? error} />
    </Modal>
  );
}

function PruneDialog({
  store,
  group,
  onClose,
  onDone,
}: {
  store: string;
  group: BackupGroup;
  onClose: () => void;
  onDone: () => void;
}) {
  const [keep, setKeep] = useState<Record<string, string>>({ 'keep-last': '3' });
  const [preview, setPreview] = useState<PruneItem[] | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [busy, setBusy] = useState(false);

  const params = (dryRun: boolean) => {
    const p: Record<string, unknown> = {
      'backup-type': group['backup-type'],
      'backup-id': group['backup-id'],
      'dry-run': dryRun,
    };
    for (const k of KEEP_OPTION_NAMES) if (keep[k]) p[k] = Number(keep[k]);
    return p;
  };
  const call = async (dryRun: boolean) => {
    setBusy(true);
    setError(undefined);
    try {
      const res = await api.post<PruneItem[]>(`/admin/datastore/${seg(store)}/prune`, params(dryRun));
      if (dryRun) setPreview(res.data);
      else onDone();
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };
  const removed = preview?.filter((p) => !p.keep) ?? [];

  return (
    <Modal
      title={`Prune ${group['backup-type']}/${group['backup-id']}`}
      labelId="prune-title"
      onClose={onClose}
      footer={
        <>
          <button type="button" class="secondary" onClick={onClose}>
            Cancel
          </button>
          <button type="button" class="outline" onClick={() => call(true)} aria-busy={busy && !preview}>
            Preview
          </button>
          <button
            type="button"
            class="danger"
            disabled={!preview || busy}
            onClick={() => call(false)}
            title={preview ? undefined : 'preview first'}
          >
            Prune {preview ? `(remove ${removed.length})` : ''}
          </button>
        </>
      }
    >
      <div class="grid keep-grid">
        {KEEP_OPTION_NAMES.map((k) => (
          <label key={k} for={`prune-${k}`}>
            {k.replace('keep-', 'Keep ')}
            <input
              id={`prune-${k}`}
              type="number"
              min={0}
              value={keep[k] ?? ''}
              onInput={(e) => {
                setKeep({ ...keep, [k]: e.currentTarget.value });
                setPreview(undefined);
              }}
            />
          </label>
        ))}
      </div>
      {preview && (
        <p role="status">
          {removed.length === 0
            ? 'Nothing would be removed.'
            : `${removed.length} of ${preview.length} snapshots would be removed; this cannot be undone.`}
        </p>
      )}
      {preview && (
        <ul class="prune-preview">
          {preview.map((p) => (
            <li key={p['backup-time']} class={p.keep ? 'keep' : 'remove'}>
              {dateTime(p['backup-time'])}: {p.keep ? (p.protected ? 'keep (protected)' : 'keep') : 'remove'}
            </li>
          ))}
        </ul>
      )}
      <ErrorBox error={error} title="Prune refused" />
    </Modal>
  );
}
