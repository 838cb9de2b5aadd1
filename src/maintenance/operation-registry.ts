/**
 * The records of admitted operations, and the registry the local admission backend keeps them in,
 * shared by every process on the host (design §3 invariants 2, 3); sqlite-operation-registry.ts
 * implements it. The seam another backend (etcd) plugs into is AdmissionBackend
 * (admission-backend.ts), which owns the atomicity this registry alone cannot give.
 */
import type { OperationClass } from './maintenance-mode.js';

/** What the caller says about an operation when it asks for admission. */
export interface OperationInfo {
  /** backup, restore, reader, verify, prune, gc, sync, delete-snapshot, download, status, ... */
  kind: string;
  /** e.g. `host/web01` or a snapshot path */
  detail?: string;
  authId?: string;
  taskId?: string;
}

export interface OperationRecord extends OperationInfo {
  /** Monotonic across all processes: ids order admissions globally. */
  id: number;
  store: string;
  class: OperationClass;
  pid: number;
  /** Field 22 of /proc/PID/stat at registration: tells a live holder from a reused pid. */
  pstart: number;
  /** Milliseconds since the epoch. */
  startedAt: number;
  /** Cluster mode: the name of the server (node) the holder runs on; absent for the local backend. */
  node?: string;
  /** Cluster mode: the etcd lease (decimal id) the operation counts under: its server's. */
  lease?: string;
}

export interface OperationCounts {
  read: number;
  ingest: number;
  reclaim: number;
  lookup: number;
  /** ingest + reclaim: PBS's `write` count. */
  write: number;
}

export interface OperationRegistry {
  /** Record an admitted operation of this process; returns its record. */
  register(store: string, cls: OperationClass, info: OperationInfo): OperationRecord;
  /**
   * Record the worker task an operation runs in, once the task exists (admission comes first so
   * that a refusal creates no task). Unknown ids are ignored.
   */
  attachTask(id: number, taskId: string): void;
  /** Remove an operation. Unknown ids are ignored, so a double release counts once. */
  unregister(id: number): void;
  /** Live operations (of processes that still exist with the recorded start time), oldest first. */
  list(store?: string): OperationRecord[];
  counts(store: string): OperationCounts;
  /** The highest operation id handed out so far (0 when none): a point in the admission order. */
  sequence(): number;
  /** Remove every record of `store` (after the datastore was removed). */
  forgetStore(store: string): void;
  close(): void;
}

export function countOperations(ops: readonly OperationRecord[]): OperationCounts {
  const counts: OperationCounts = { read: 0, ingest: 0, reclaim: 0, lookup: 0, write: 0 };
  for (const op of ops) counts[op.class]++;
  counts.write = counts.ingest + counts.reclaim;
  return counts;
}
