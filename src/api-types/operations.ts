import type { MountStatus } from './datastore-replies.js';

/** An admitted datastore operation as the API shows it (Stowage extension of `active-operations`). */
export interface OperationItem {
  id: number;
  /** read, ingest, reclaim or lookup */
  class: string;
  kind: string;
  detail?: string;
  'auth-id'?: string;
  /** UPID of the worker task the operation belongs to. */
  'task-id'?: string;
  pid: number;
  /** Epoch seconds. */
  started: number;
  /** Cluster mode: the server (node name) the operation runs on. */
  node?: string;
  /**
   * Cluster mode: its server missed its lease's keep-alives (died or lost etcd): the operation
   * still counts until the lease expires ("lost with node N").
   */
  'node-lost'?: boolean;
}

/** `GET admin/datastore/{store}/active-operations`: PBS's counts plus Stowage's details. */
export interface ActiveOperationsReply {
  read: number;
  /** ingest + reclaim, as PBS counts writes. */
  write: number;
  ingest: number;
  reclaim: number;
  lookup: number;
  operations: OperationItem[];
  /** How many of `operations` the current maintenance mode or a system hold refuses. */
  conflicting: number;
  /** The raw stored mode, when one is set. */
  'maintenance-mode'?: string;
  /** The system holds on the store (low space, maintenance windows), oldest first. */
  holds: SystemHoldItem[];
  /**
   * PBS 4's mount status, looked at after the mode was read: once the mode of an unmount is gone,
   * this says `notmounted`, so a client never sees the one without the other.
   */
  'mount-status': MountStatus;
  /**
   * Stowage: why a removable datastore's device cannot be used though it is mounted (it failed: a
   * pulled disk, I/O errors); every read and write is refused with it until unmounted and mounted
   * again. Absent when usable.
   */
  unavailable?: string;
  /** Stowage: why an S3 datastore's object store is failing (see the datastore list); absent when answering. */
  's3-endpoint-error'?: string;
}

/** A system hold as the API shows it. */
export interface SystemHoldItem {
  /** `low-space` or `window:<id>`. */
  source: string;
  /** read-only, sealed, offline or drain. */
  type: string;
  message: string;
  /** Epoch seconds. */
  since: number;
  'auth-id'?: string;
}

/**
 * One line per operation, the same in server errors, logs and the CLI:
 * `backup host/web01 by alice@pbs since 10:02:11Z (pid 123)`.
 */
export function describeOperation(op: {
  kind: string;
  detail?: string;
  authId?: string;
  startedMs: number;
  pid: number;
}): string {
  const since = new Date(op.startedMs).toISOString().slice(11, 19);
  return [op.kind, op.detail, op.authId && `by ${op.authId}`, `since ${since}Z`, `(pid ${op.pid})`]
    .filter(Boolean)
    .join(' ');
}
