/**
 * The admission seam (design §2, §3, §6; architecture "Where it grows: two seams"): a datastore's
 * maintenance mode, the operations running on it, and the atomic check-and-register between
 * them, behind one asynchronous interface. `DatastoreAccess` (lookupDatastore), mode changes,
 * datastore removal and the drain wait go through it and nothing else.
 *
 * The local backend (local-admission-backend.ts) keeps the mode in `datastore.cfg`, atomicity in
 * flocks and the operations in SQLite, shared by every process on the host. The cluster backend
 * (etcd-admission-backend.ts) keeps them in etcd: a transaction guarded by the mode key for
 * `admit`, leases for holder liveness, watches for `watch`. One conformance suite (test/suites/admission-conformance.ts)
 * states the contracts below as tests; every backend must pass it.
 */
import { describeOperation as describeOperationLine } from '../api-types/operations.js';
import { StowageError } from '../errors.js';
import type { DatastoreConfig } from '../config/datastore-config.js';
import type { HoldType, MaintenanceMode, OperationClass, SystemHold } from './maintenance-mode.js';
import type { MaintenanceEvent, MaintenanceEventLog } from './maintenance-events.js';
import type { JobStateStore } from '../jobs/job-state.js';
import type { OperationCounts, OperationInfo, OperationRecord } from './operation-registry.js';
import type { LockService } from './lock-service.js';

export type { OperationCounts, OperationInfo, OperationRecord } from './operation-registry.js';

/** What `admit` hands back: the registered operation and what it was checked against. */
export interface Admission<T> {
  readonly record: OperationRecord;
  /** The datastore's configuration the mode was checked against. */
  readonly config: DatastoreConfig;
  /** What `prepare` returned (undefined without one). */
  readonly value: T;
}

/** Hooks that run inside `admit`'s atomic section, after the mode check and before registering. */
export interface AdmitHooks<T> {
  /**
   * Open what the operation needs (the chunk store's files). Runs after the mode admitted the
   * operation and before it is registered, with mode changes still excluded. If it throws,
   * nothing is registered and the error is `admit`'s (invariant 8: a failed open leaks nothing).
   */
  prepare?: (config: DatastoreConfig) => T;
  /** Undo `prepare` when registering fails after it succeeded. */
  abort?: (value: T) => void;
}

export interface SetModeOptions {
  /** Refuse (ConflictingOperationsError, 409) instead of changing the mode while conflicting operations run. */
  ifIdle?: boolean;
  /** Expected config digest; a stale one is refused with ConfigModifiedError ("detected modified configuration"). */
  digest?: string;
  /** Datastore removal only: may set `delete` and leave it, skipping the transition rule. */
  allowDelete?: boolean;
  /**
   * Checked against the datastore's current configuration inside the atomic section, before
   * anything changes; throwing refuses the change (removal: "its data is not ours to delete").
   */
  precondition?: (config: DatastoreConfig) => void;
  /**
   * Other properties to change in the same write as the mode (a datastore update: PBS writes the
   * config once), applied to the section being written.
   */
  alsoApply?: (config: DatastoreConfig) => void;
  /** Who changes the mode, for the history. */
  authId?: string;
}

export interface ModeChange {
  /** The configuration digest after the change. */
  digest: string;
  /** Every operation id above this was admitted under the new mode (invariant 1's witness). */
  sequence: number;
  /** The mode before the change (undefined for none, or for a stored value that did not parse). */
  previous: MaintenanceMode | undefined;
  /** The datastore's configuration before the change. */
  config: DatastoreConfig;
  /** Operations the new mode refuses that were admitted before it and still run. */
  conflicting: OperationRecord[];
  /** The history's record of the change (none when the mode did not change). */
  event?: MaintenanceEvent;
}

/** A system hold to put on a datastore (its source and time are given by `setHold`). */
export interface HoldSpec {
  type: HoldType;
  message: string;
}

export interface HoldChange {
  /** The hold of that source before (undefined: none). */
  previous?: SystemHold;
  /** The hold now (undefined: lifted). */
  hold?: SystemHold;
  /** Every operation id above this was admitted with the hold in force (or gone). */
  sequence: number;
  /** Operations the hold refuses that were admitted before it and still run. */
  conflicting: OperationRecord[];
  /** The history's record (none when nothing but the message changed). */
  event?: MaintenanceEvent;
}

/**
 * A subscription to one datastore's operations and mode. Changes are coalesced: `changed()`
 * resolves once for any number of changes since the previous call.
 */
export interface AdmissionWatch extends Disposable {
  /**
   * Resolves `true` when the datastore's operations (admitted, released, holder died) or mode
   * may have changed since the watch was created or since the previous `changed()` resolved
   * (spurious wake-ups are allowed, lost ones are not); `false` once the watch is closed or its
   * signal aborted. Read the state again after it resolves.
   */
  changed(): Promise<boolean>;
  /** Stop watching; a pending `changed()` resolves `false`. Idempotent. */
  close(): void;
}

/** Held while writing a datastore's configuration outside `setMode`: no admission is mid-check. */
export interface ChangeLock {
  /** Idempotent. */
  release(): void;
}

export interface AdmissionBackend {
  /** The group, snapshot, manifest, job and GC locks, shared by the same processes as the operations. */
  readonly locks: LockService;

  /** The maintenance history every process of the instance appends to. */
  readonly events: MaintenanceEventLog;

  /** The scheduled jobs' last runs, kept where the same processes (or cluster) see them. */
  readonly jobStates: JobStateStore;

  /**
   * Admit an operation of class `cls` on `store`: read the datastore's configuration, mode and
   * system holds, refuse with MaintenanceError (503) when the mode or a hold refuses `cls` (the
   * drain hold looks at `info.kind`), run `hooks.prepare`, and
   * register the operation — atomically with respect to `setMode`: once `setMode` returns, no
   * process admits what the new mode refuses, and every operation admitted before it is counted
   * (invariant 1). NotFoundError for an unknown store, BadConfigError for an unparsable mode
   * (never treated as "no maintenance"). The record's id is above every `sequence()` returned
   * before, in any process.
   */
  admit<T = undefined>(
    store: string,
    cls: OperationClass,
    info: OperationInfo,
    hooks?: AdmitHooks<T>,
  ): Promise<Admission<T>>;

  /** End an operation. Unknown or already released ids are ignored: a double release counts once. */
  release(id: number): Promise<void>;

  /** Record the worker task an operation runs in (admission comes before the task). Unknown ids are ignored. */
  attachTask(id: number, taskId: string): Promise<void>;

  /**
   * Set (`undefined`: clear) the maintenance mode of `store`, atomically with respect to `admit`.
   * Graceful: operations admitted before keep running and are returned as `conflicting`. Refused,
   * changing nothing, with BadRequestError for `delete` without `allowDelete` or a transition the
   * rule forbids (leaving `delete`), ConfigModifiedError for a stale `digest`,
   * ConflictingOperationsError listing the conflicting operations with `ifIdle`, NotFoundError
   * for an unknown store, or what `precondition` throws.
   */
  setMode(store: string, mode: MaintenanceMode | undefined, opts?: SetModeOptions): Promise<ModeChange>;

  /** The mode in force for `store` (NotFoundError when unknown, BadConfigError when unparsable). */
  mode(store: string): Promise<MaintenanceMode | undefined>;

  /**
   * Put (or with `undefined` lift) the system hold of `source` on `store`, atomically with respect
   * to `admit`, like `setMode`; graceful the same way. Independent of the operator's mode: clearing
   * the mode leaves holds in place. A hold of the same type put again only takes the new message
   * (no event); a change of type or a lift is recorded in the history (`forced`: an operator's
   * forced release). NotFoundError for an unknown store.
   */
  setHold(
    store: string,
    source: string,
    hold: HoldSpec | undefined,
    opts?: { authId?: string; forced?: boolean },
  ): Promise<HoldChange>;

  /** The system holds on `store`, oldest first (NotFoundError when unknown). */
  holds(store: string): Promise<SystemHold[]>;

  /**
   * Live operations, oldest first (all stores without `store`). An operation whose holder died
   * (process gone, or its pid reused by another process) is never listed (invariant 3).
   */
  list(store?: string): Promise<OperationRecord[]>;

  /** Counts of `list(store)` by class, exact across every process (invariant 2). */
  counts(store: string): Promise<OperationCounts>;

  /** The highest operation id handed out so far, by any process (0 when none): a point in the global admission order. */
  sequence(): Promise<number>;

  /**
   * Watch `store`'s operations and mode; wakes on admit, release, a holder's death and mode
   * changes (see AdmissionWatch). Aborting `signal` closes the watch. Close it when done.
   */
  watch(store: string, opts?: { signal?: AbortSignal }): AdmissionWatch;

  /** Whether the process that holds `record` still runs (the same process, not a reused pid). */
  holderAlive(record: OperationRecord): Promise<boolean>;

  /**
   * Exclude admissions and mode changes until released, for writers of the datastore
   * configuration other than `setMode` (create, other properties, removing the section).
   */
  lockChanges(): Promise<ChangeLock>;

  /** Drop every operation and hold of `store` (after the datastore was removed); its history stays. */
  forgetStore(store: string): Promise<void>;

  /** Release this process's resources (not its operations' records). */
  close(): void;
}

/** One line per operation, for errors and logs: `backup host/web01 by alice@pbs since 10:02:11Z (pid 123)`. */
export function describeOperation(op: OperationRecord): string {
  return describeOperationLine({ ...op, startedMs: op.startedAt });
}

/** A change refused because operations it conflicts with are running (if-idle): 409 with the list. */
export class ConflictingOperationsError extends StowageError {
  readonly operations: OperationRecord[];
  /** `code` TIMEOUT when a wait for them ran out (the CLI exits 6, as for any timeout). */
  constructor(message: string, operations: OperationRecord[], code: 'CONFLICT' | 'TIMEOUT' = 'CONFLICT') {
    super(
      code,
      `${message}: ${operations.length} conflicting operation(s) active: ${operations.map(describeOperation).join('; ')}`,
      {
        details: { operations },
      },
    );
    this.operations = operations;
  }
}
