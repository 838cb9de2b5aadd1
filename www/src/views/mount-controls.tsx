/**
 * Removable datastores in the UI (issue 18): whether the disk is mounted (`mount-status`, PBS's
 * values, in the datastore list and the active-operations answer), and Mount / Unmount buttons
 * that start PBS's `mount-device` and `unmount-device` tasks. While an unmount waits, the maintenance mode is `unmount`, so the drain
 * line above the tabs lists what it waits for; the task's outcome (a busy disk) shows here.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, seg } from '../api.js';
import { ErrorBox } from '../components.js';
import type { MountStatus } from '../../../src/api-types/datastore-replies.js';

/** The list's marker for a removable datastore whose disk is not mounted. */
export function NotMountedMarker() {
  return (
    <span
      class="not-mounted"
      data-testid="not-mounted"
      title="The disk of this removable datastore is not mounted"
    >
      not mounted
    </span>
  );
}

interface TaskStatus {
  status: string;
  exitstatus?: string;
}

/** Poll a task until it stops; its exit status (`OK`, or the error). */
export async function taskOutcome(upid: string): Promise<string> {
  const node = upid.split(':')[1] ?? 'localhost';
  for (;;) {
    const s = (await api.get<TaskStatus>(`/nodes/${seg(node)}/tasks/${seg(upid)}/status`)).data;
    if (s.status !== 'running') return s.exitstatus ?? 'unknown';
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Mount or Unmount, as the datastore's disk is; the running task's outcome below it. */
export function MountControls({
  store,
  status,
  onChanged,
}: {
  store: string;
  status: MountStatus | undefined;
  onChanged: () => void;
}) {
  const [running, setRunning] = useState<'mount' | 'unmount' | undefined>(undefined);
  const [failure, setFailure] = useState<Error | undefined>(undefined);
  useEffect(() => setFailure(undefined), [store]);
  if (status === undefined || status === 'nonremovable') return null;
  const start = async (action: 'mount' | 'unmount') => {
    setFailure(undefined);
    setRunning(action);
    try {
      const upid = (await api.post<string>(`/admin/datastore/${seg(store)}/${action}`)).data;
      onChanged(); // the unmount mode is set already: the drain line shows what it waits for
      const outcome = await taskOutcome(upid);
      if (outcome !== 'OK' && !outcome.startsWith('WARNINGS')) setFailure(new Error(outcome));
    } catch (err) {
      setFailure(err as Error);
    } finally {
      setRunning(undefined);
      onChanged();
    }
  };
  const mounted = status === 'mounted';
  return (
    <div class="mount-controls" data-testid="mount-controls">
      {mounted ? (
        <button
          type="button"
          class="outline small-button"
          disabled={running !== undefined}
          onClick={() => void start('unmount')}
        >
          {running === 'unmount' ? 'Unmounting…' : 'Unmount'}
        </button>
      ) : (
        <button
          type="button"
          class="small-button"
          disabled={running !== undefined}
          onClick={() => void start('mount')}
        >
          {running === 'mount' ? 'Mounting…' : 'Mount'}
        </button>
      )}
      <ErrorBox
        error={failure}
        title={`Could not ${running ?? (mounted ? 'unmount' : 'mount')} the datastore`}
      />
    </div>
  );
}

/** The list's marker for a removable datastore whose disk failed while mounted; the reason on hover. */
export function UnavailableMarker({ reason }: { reason: string }) {
  return (
    <span class="not-mounted" data-testid="unavailable" title={reason}>
      unavailable
    </span>
  );
}

/** The list's marker for an S3 datastore whose object store is failing; the reason on hover. */
export function EndpointFailingMarker({ reason }: { reason: string }) {
  return (
    <span class="not-mounted" data-testid="s3-endpoint-error" title={reason}>
      object store failing
    </span>
  );
}

/** Shown instead of the contents of a removable datastore whose disk failed while mounted. */
export function UnavailablePanel({ reason }: { reason: string }) {
  return (
    <article class="maintenance-panel" data-testid="unavailable-panel" role="status">
      <div>
        <h2>Datastore is unavailable</h2>
        <p class="panel-message">{reason}</p>
        <p class="muted">
          Its disk failed while mounted. Use Unmount above, reconnect or check the disk, then Mount it again;
          backups and restores are refused until then.
        </p>
      </div>
    </article>
  );
}

/** Shown instead of the contents of a removable datastore whose disk is not mounted. */
export function NotMountedPanel({ store }: { store: string }) {
  return (
    <article class="maintenance-panel" data-testid="not-mounted-panel" role="status">
      <div>
        <h2>Datastore is not mounted</h2>
        <p class="panel-message">datastore '{store}' is not mounted</p>
        <p class="muted">
          Connect its disk and use Mount above; backups and restores are refused until then.
        </p>
      </div>
    </article>
  );
}
