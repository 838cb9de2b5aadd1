/**
 * Changing a datastore's maintenance mode, seeing what blocks it, and waiting for it to drain
 * (design §3 invariants 4–6).
 */
import { describeOperation as describeOperationLine } from '../api-types/operations.js';
import { StowageError } from '../errors.js';
import type { DatastoreAccess } from './datastore-access.js';
import { storedMaintenanceMode } from './datastore-access.js';
import {
  checkTransition,
  conflictingClasses,
  formatMaintenanceMode,
  type MaintenanceMode,
} from './maintenance-mode.js';
import type { OperationRecord } from './operation-registry.js';

/** Operations on `name` that the mode refuses and that therefore block the transition into it. */
export function conflictingOperations(
  access: DatastoreAccess,
  name: string,
  mode: MaintenanceMode | undefined,
): OperationRecord[] {
  const classes = conflictingClasses(mode);
  return access.registry.list(name).filter((op) => classes.includes(op.class));
}

/** One line per operation, for errors and logs: `backup host/web01 by alice@pbs since 10:02:11Z (pid 123)`. */
export function describeOperation(op: OperationRecord): string {
  return describeOperationLine({ ...op, startedMs: op.startedAt });
}

export class ConflictingOperationsError extends StowageError {
  readonly operations: OperationRecord[];
  constructor(message: string, operations: OperationRecord[]) {
    super(
      'CONFLICT',
      `${message}: ${operations.length} conflicting operation(s) active: ${operations.map(describeOperation).join('; ')}`,
      {
        details: { operations },
      },
    );
    this.operations = operations;
  }
}

export interface SetModeOptions {
  /** Refuse (409) instead of changing the mode while conflicting operations are active. */
  ifIdle?: boolean;
  /** Expected config digest; a stale one is refused (PBS "detected modified configuration"). */
  digest?: string;
  /** Internal: datastore removal may set `delete` and restore from it. */
  allowDelete?: boolean;
}

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
  if (mode?.type === 'delete' && !opts.allowDelete) {
    throw new StowageError(
      'BAD_REQUEST',
      "maintenance-mode: type 'delete' is set only by removing the datastore",
    );
  }
  const lock = await access.lockConfig('change');
  try {
    let sequence = 0;
    const snapshot = await access.config.update(
      (stores) => {
        const cfg = stores.get(name);
        if (!cfg) throw new StowageError('NOT_FOUND', `datastore '${name}' does not exist`);
        let current: MaintenanceMode | undefined;
        try {
          current = storedMaintenanceMode(cfg);
        } catch {
          current = undefined; // an unparsable stored value may be overwritten by a valid one
        }
        if (!opts.allowDelete) checkTransition(name, current, mode);
        if (opts.ifIdle) {
          const blocking = conflictingOperations(access, name, mode);
          if (blocking.length > 0) {
            throw new ConflictingOperationsError(
              `datastore '${name}' is not idle, mode not changed`,
              blocking,
            );
          }
        }
        if (mode) cfg['maintenance-mode'] = formatMaintenanceMode(mode);
        else delete cfg['maintenance-mode'];
        // Taken under the exclusive lock: no admission is in flight, so this splits the order exactly.
        sequence = access.registry.sequence();
      },
      { digest: opts.digest, lockHeld: true },
    );
    return { digest: snapshot.digest, sequence, conflicting: conflictingOperations(access, name, mode) };
  } finally {
    lock.release();
  }
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
 * `drained: false` with the operations still running when the timeout passes. The mode is re-read
 * on every poll, so clearing it ends the wait at once.
 */
export async function waitForDrain(
  access: DatastoreAccess,
  name: string,
  opts: DrainOptions = {},
): Promise<DrainResult> {
  const start = Date.now();
  const pollMs = opts.pollMs ?? 200;
  let lastKey: string | undefined;
  for (;;) {
    const mode = storedMaintenanceMode(access.datastoreConfig(name));
    const remaining = conflictingOperations(access, name, mode);
    const elapsedMs = Date.now() - start;
    const key = remaining.map((o) => o.id).join(',');
    if (key !== lastKey) opts.onProgress?.({ remaining, elapsedMs });
    lastKey = key;
    if (remaining.length === 0) return { drained: true, remaining, mode, elapsedMs };
    if (opts.timeoutMs !== undefined && elapsedMs >= opts.timeoutMs) {
      return { drained: false, remaining, mode, elapsedMs };
    }
    if (opts.signal?.aborted) return { drained: false, remaining, mode, elapsedMs };
    const wait = opts.timeoutMs === undefined ? pollMs : Math.min(pollMs, opts.timeoutMs - elapsedMs);
    await new Promise((r) => setTimeout(r, Math.max(1, wait)));
  }
}
