/**
 * Changing a datastore's maintenance mode, seeing what blocks it, and waiting for it to drain
 * (design §3 invariants 4–6). The atomicity lives in the admission backend (admission-backend.ts);
 * these are the operations the API, the CLI and datastore removal call.
 */
import type { DatastoreAccess } from './datastore-access.js';
import {
  conflictingClasses,
  formatMaintenanceMode,
  holdConflictingClasses,
  MaintenanceError,
  type MaintenanceMode,
} from './maintenance-mode.js';
import { storedMaintenanceMode } from './local-admission-backend.js';
import type { OperationRecord } from './operation-registry.js';
import { drainsAfter, type MaintenanceEvent } from './maintenance-events.js';
import type { SetModeOptions as BackendSetModeOptions } from './admission-backend.js';

export { ConflictingOperationsError, describeOperation } from './admission-backend.js';

/** Operations on `name` that the mode refuses and that therefore block the transition into it. */
export async function conflictingOperations(
  access: DatastoreAccess,
  name: string,
  mode: MaintenanceMode | undefined,
): Promise<OperationRecord[]> {
  const classes = conflictingClasses(mode);
  return (await access.backend.list(name)).filter((op) => classes.includes(op.class));
}

export type SetModeOptions = Omit<BackendSetModeOptions, 'precondition'>;

export interface SetModeResult {
  /** The new datastore.cfg digest. */
  digest: string;
  /** Every operation with an id above this was admitted under the new mode. */
  sequence: number;
  /** Conflicting operations still running (admitted before the change); empty when drained. */
  conflicting: OperationRecord[];
}

/**
 * Set (or with `undefined`, clear) the maintenance mode. Graceful by default: operations already
 * admitted run to completion, new conflicting ones are refused from the moment this returns.
 * With `ifIdle`, the change is refused atomically while conflicting operations are active.
 */
export async function setMaintenanceMode(
  access: DatastoreAccess,
  name: string,
  mode: MaintenanceMode | undefined,
  opts: SetModeOptions = {},
): Promise<SetModeResult> {
  const { digest, sequence, conflicting } = await access.backend.setMode(name, mode, opts);
  return { digest, sequence, conflicting };
}

/**
 * Replace the mode a task set for itself (`unmount`, `s3-refresh`) with `mode`, only while it is
 * still that type: an operator who changed it meanwhile cancelled the task, and `changed(now)`
 * (the mode found, formatted, or 'none') is the error saying so. The check and the change are one
 * backend transaction.
 */
export async function replaceModeIfStill(
  access: DatastoreAccess,
  name: string,
  type: MaintenanceMode['type'],
  mode: MaintenanceMode | undefined,
  opts: { authId?: string; changed: (now: string) => Error },
): Promise<void> {
  await access.backend.setMode(name, mode, {
    ...(opts.authId !== undefined && { authId: opts.authId }),
    precondition: (cfg) => {
      const now = storedMaintenanceMode(cfg);
      if (now?.type !== type) throw opts.changed(now ? formatMaintenanceMode(now) : 'none');
    },
  });
}

export interface DrainProgress {
  /** Conflicting operations still running. */
  remaining: OperationRecord[];
  elapsedMs: number;
}

export interface DrainOptions {
  timeoutMs?: number;
  /** Called at the start and whenever the set of remaining operations changes. */
  onProgress?: (p: DrainProgress) => void;
  /** No longer used: the backend's watch wakes the wait (kept so callers compile). */
  pollMs?: number;
  signal?: AbortSignal;
}

export interface DrainResult {
  drained: boolean;
  remaining: OperationRecord[];
  mode: MaintenanceMode | undefined;
  elapsedMs: number;
}

/**
 * Wait until no operation that the datastore's current mode refuses is still running. Returns
 * `drained: false` with the operations still running when the timeout passes or `signal` aborts.
 * Woken by the backend's watch on every release, admission, holder death and mode change, so
 * clearing the mode ends the wait at once.
 */
export async function waitForDrain(
  access: DatastoreAccess,
  name: string,
  opts: DrainOptions = {},
): Promise<DrainResult> {
  const start = Date.now();
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = opts.timeoutMs === undefined ? undefined : setTimeout(onAbort, Math.max(0, opts.timeoutMs));
  // Subscribed before the first read, so no change between the read and the wait is lost.
  const watch = access.backend.watch(name, { signal: stop.signal });
  try {
    let lastKey: string | undefined;
    for (;;) {
      const mode = await access.backend.mode(name);
      const remaining = await conflictingOperations(access, name, mode);
      const elapsedMs = Date.now() - start;
      const key = remaining.map((o) => o.id).join(',');
      if (key !== lastKey) opts.onProgress?.({ remaining, elapsedMs });
      lastKey = key;
      if (remaining.length === 0) {
        await recordDrainedIfIdle(access, name);
        return { drained: true, remaining, mode, elapsedMs };
      }
      if (stop.signal.aborted || (opts.timeoutMs !== undefined && elapsedMs >= opts.timeoutMs)) {
        return { drained: false, remaining, mode, elapsedMs };
      }
      // false: timed out or aborted (or closed); the next round reads the state once more and returns
      if (!(await watch.changed())) stop.abort();
    }
  } finally {
    watch.close();
    if (timer) clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

export interface AbortConflictingResult {
  /** The mode in force, whose refusal the aborted operations fail with. */
  mode: MaintenanceMode | undefined;
  /** Conflicting operations whose worker task was asked to stop (in whichever process runs it). */
  aborted: OperationRecord[];
  /**
   * Conflicting operations that run in no worker task (a single API request) or whose task had
   * already ended: nothing to abort, they end by themselves and the drain waits for them.
   */
  waiting: OperationRecord[];
}

/**
 * Ask every worker task holding an operation that the current mode refuses to stop, failing with
 * the mode's refusal (`datastore 'x' is unavailable: offline maintenance mode: MSG`): GC, verify,
 * prune and sync end at their next check, a backup session ends without a snapshot and its client
 * gets the refusal. `abortTask` reaches tasks of other processes through the shared task index.
 * Nothing conflicts without a mode, so then nothing is aborted.
 */
export async function abortConflicting(
  access: DatastoreAccess,
  name: string,
  abortTask: (taskId: string, reason: MaintenanceError) => boolean,
): Promise<AbortConflictingResult> {
  const mode = await access.backend.mode(name);
  const result: AbortConflictingResult = { mode, aborted: [], waiting: [] };
  if (!mode) return result;
  const reason = new MaintenanceError(name, mode);
  for (const op of await conflictingOperations(access, name, mode)) {
    const stopped = op.taskId !== undefined && abortTask(op.taskId, reason);
    (stopped ? result.aborted : result.waiting).push(op);
  }
  return result;
}

/** How far back the drain bookkeeping looks for the change it records (newest events first). */
const DRAIN_LOOKBACK = 50;

/**
 * Record in the history that the latest change of the operator's mode, and of each system hold in
 * force, has drained — nothing it refuses still runs — once per change, with how long it took.
 * `waitForDrain` calls it when it sees the drain; the server's drain monitor calls it every few
 * seconds, so the history has the duration even when nobody waits.
 */
export async function recordDrainedIfIdle(
  access: DatastoreAccess,
  store: string,
): Promise<MaintenanceEvent[]> {
  const backend = access.backend;
  const recent = await backend.events.history(store, { limit: DRAIN_LOOKBACK });
  const drained = new Set(recent.filter((e) => e.type === 'drained').map((e) => e.detail?.ref));
  const pending = (e: MaintenanceEvent | undefined): e is MaintenanceEvent =>
    e !== undefined && drainsAfter(e) && !drained.has(e.id);
  const recorded: MaintenanceEvent[] = [];
  const ops = await backend.list(store);
  const idle = (classes: readonly string[]) => !ops.some((op) => classes.includes(op.class));

  const modeEvent = recent.find(
    (e) => e.source === 'operator' && (e.type === 'mode-set' || e.type === 'mode-cleared'),
  );
  if (pending(modeEvent) && idle(conflictingClasses(await backend.mode(store)))) {
    const e = await backend.events.recordDrained(store, modeEvent);
    if (e) recorded.push(e);
  }
  for (const hold of await backend.holds(store)) {
    const engaged = recent.find(
      (e) => e.type === 'hold-engaged' && e.source === hold.source && e.to === hold.type,
    );
    if (pending(engaged) && idle(holdConflictingClasses(hold))) {
      const e = await backend.events.recordDrained(store, engaged);
      if (e) recorded.push(e);
    }
  }
  return recorded;
}
