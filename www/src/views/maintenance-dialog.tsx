/**
 * Edit a datastore's maintenance mode: None / Read-only / Sealed / Offline plus a message, optionally
 * "set and wait" until the operations that conflict with the new mode have finished.
 * The form checks what the server checks (≤ 64 characters, no control characters) and shows the
 * server's own message when it refuses anyway.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, seg } from '../api.js';
import { ErrorBox, Modal } from '../components.js';
import { duration } from '../format.js';
import {
  formatMaintenance,
  MAX_MESSAGE_LENGTH,
  messageProblem,
  typeLabel,
  type MaintenanceMode,
  type MaintenanceType,
} from '../maintenance.js';
import type { ActiveOperations, DatastoreConfig } from '../types.js';
import { drainSentence, useActiveOperations, liveMode, conflicting } from './active-operations.js';

/** `unmount` and `s3-refresh` are offered only when set (by PBS), so the operator can keep or reset them. */
type Choice = 'none' | Exclude<MaintenanceType, 'delete'>;

const CHOICES: ReadonlyArray<readonly [Choice, string, string]> = [
  ['none', 'None', 'normal service'],
  ['read-only', 'Read-only', 'restores and verification go on; nothing new is written'],
  ['sealed', 'Sealed', 'no new backups; restores, prune, deletion and GC go on to free space'],
  ['offline', 'Offline', 'nothing reads or writes; files are closed once drained'],
];

const SET_BY_PBS: Partial<Record<Choice, string>> = {
  unmount: 'set by PBS while unmounting a removable datastore; nothing reads or writes',
  's3-refresh': "set by PBS while refreshing an S3 datastore's cache; nothing reads or writes",
};

/**
 * One long-poll of wait-drained; the server caps it (300 s), so the dialog loops until drained
 * or the operator stops watching.
 */
const WAIT_POLL_S = 60;

export function MaintenanceDialog({
  store,
  current,
  onClose,
  onSaved,
}: {
  store: string;
  current: MaintenanceMode | undefined;
  onClose: () => void;
  /** Called with the property string now stored (undefined: cleared). */
  onSaved: (raw: string | undefined) => void;
}) {
  const initial: Choice =
    current?.type === 'read-only' ||
    current?.type === 'sealed' ||
    current?.type === 'offline' ||
    current?.type === 'unmount' ||
    current?.type === 's3-refresh'
      ? current.type
      : 'none';
  const extra = initial !== 'none' ? SET_BY_PBS[initial] : undefined;
  const choices: ReadonlyArray<readonly [Choice, string, string]> = extra
    ? [...CHOICES, [initial, typeLabel(initial), extra]]
    : CHOICES;
  const [choice, setChoice] = useState<Choice>(initial);
  const [message, setMessage] = useState(current?.message ?? '');
  const [wait, setWait] = useState(false);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [waiting, setWaiting] = useState<Choice | undefined>(undefined);

  const problem = choice === 'none' ? undefined : messageProblem(message);
  const length = [...message].length;

  const save = async (e: Event) => {
    e.preventDefault();
    if (problem) return;
    setBusy(true);
    setError(undefined);
    try {
      // The digest makes a concurrent edit fail visibly instead of being overwritten (§6.1).
      const cfg = await api.get<DatastoreConfig>(`/config/datastore/${seg(store)}`);
      const digest = typeof cfg.digest === 'string' ? cfg.digest : undefined;
      const raw = choice === 'none' ? undefined : formatMaintenance(choice, message);
      const body =
        raw === undefined ? { delete: ['maintenance-mode'], digest } : { 'maintenance-mode': raw, digest };
      await api.put(`/config/datastore/${seg(store)}`, body);
      onSaved(raw);
      if (wait && choice !== 'none') setWaiting(choice);
      else onClose();
    } catch (err) {
      setError(err as Error);
    } finally {
      setBusy(false);
    }
  };

  if (waiting) return <WaitProgress store={store} onClose={onClose} />;

  return (
    <Modal
      title={`Maintenance mode of ${store}`}
      labelId="maint-title"
      onClose={onClose}
      footer={
        <>
          <button type="button" class="secondary" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" form="maint-form" disabled={busy || !!problem} aria-busy={busy}>
            {wait && choice !== 'none' ? 'Set and wait' : 'Save'}
          </button>
        </>
      }
    >
      <form id="maint-form" onSubmit={save} noValidate>
        <fieldset>
          <legend>Mode</legend>
          {choices.map(([value, label, hint]) => (
            <div key={value} class="radio-row">
              <label>
                <input
                  type="radio"
                  name="maintenance-type"
                  value={value}
                  checked={choice === value}
                  aria-describedby={`maint-hint-${value}`}
                  onChange={() => setChoice(value)}
                />
                {label}
              </label>
              <span id={`maint-hint-${value}`} class="muted small">
                {hint}
              </span>
            </div>
          ))}
        </fieldset>
        <label for="maint-message">
          Message <small class="muted">(shown to refused clients)</small>
          <input
            id="maint-message"
            name="message"
            value={message}
            disabled={choice === 'none'}
            aria-invalid={problem ? 'true' : undefined}
            aria-describedby="maint-message-help"
            onInput={(e) => setMessage(e.currentTarget.value)}
          />
          <small id="maint-message-help" data-testid="message-help" class={problem ? 'field-error' : ''}>
            {problem ?? `${length}/${MAX_MESSAGE_LENGTH} characters, no control characters`}
          </small>
        </label>
        <label>
          <input
            type="checkbox"
            role="switch"
            name="wait"
            checked={wait}
            disabled={choice === 'none'}
            onChange={(e) => setWait(e.currentTarget.checked)}
          />
          Wait until conflicting operations have finished
        </label>
        <p class="muted small">
          Operations that started before the change run to completion; new ones the mode refuses are turned
          away with the message.
        </p>
      </form>
      <ErrorBox error={error} title="The server refused the change" />
    </Modal>
  );
}

/** "Set and wait": asks the server to wait for the drain while showing the live operations. */
function WaitProgress({ store, onClose }: { store: string; onClose: () => void }) {
  const ops = useActiveOperations(store, 1000);
  const [state, setState] = useState<'waiting' | 'drained' | 'failed'>('waiting');
  const [error, setError] = useState<Error | undefined>(undefined);
  const [elapsed, setElapsed] = useState(0);
  const initial = useRef<number | undefined>(undefined);
  const last = useRef<ActiveOperations | undefined>(undefined);
  if (ops.data) last.current = ops.data;

  useEffect(() => {
    const ctl = new AbortController();
    const started = Date.now();
    const tick = setInterval(() => setElapsed((Date.now() - started) / 1000), 1000);
    const loop = async () => {
      try {
        for (;;) {
          const res = await api.post<{ drained: boolean }>(
            `/admin/datastore/${seg(store)}/wait-drained`,
            { timeout: WAIT_POLL_S },
            ctl.signal,
          );
          if (res.data.drained) break;
        }
        setState('drained');
      } catch (err) {
        if (ctl.signal.aborted) return;
        setError(err as Error);
        setState('failed');
      } finally {
        clearInterval(tick);
      }
    };
    void loop();
    return () => {
      ctl.abort();
      clearInterval(tick);
    };
  }, [store]);

  const data = last.current;
  const mode = liveMode(data);
  const count = data ? conflicting(data, mode).count : undefined;
  if (count !== undefined && initial.current === undefined) initial.current = count;
  const total = initial.current ?? 0;
  const done = state === 'drained' ? total : Math.max(0, total - (count ?? total));

  return (
    <Modal
      title={`Waiting for ${store} to drain`}
      labelId="wait-title"
      onClose={onClose}
      footer={
        <button type="button" class={state === 'waiting' ? 'secondary' : ''} onClick={onClose}>
          {state === 'waiting' ? 'Stop waiting' : 'Close'}
        </button>
      }
    >
      {total > 0 && <progress value={done} max={total} aria-label="Finished conflicting operations" />}
      {state === 'waiting' && (
        <p role="status" aria-live="polite" data-testid="wait-status">
          <span class="spinner" aria-hidden="true" /> Waiting ({duration(elapsed)}):{' '}
          {data ? drainSentence(data, mode) : 'checking active operations…'}
        </p>
      )}
      {state === 'drained' && (
        <p role="status" class="drain-done" data-testid="wait-status">
          Drained: no conflicting operations remain on {store}. The maintenance mode is fully in effect.
        </p>
      )}
      {state === 'failed' && <ErrorBox error={error} title="Waiting failed" />}
      {state === 'waiting' && (
        <p class="muted small">
          The mode is already set; closing this only stops watching, running operations still finish.
        </p>
      )}
    </Modal>
  );
}
