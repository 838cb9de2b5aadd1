/** Shapes of the API answers the UI reads (PBS names, kebab-case as on the wire). */

/** The server's own wire types (src/api-types/), not copies. */
export type {
  DatastoreListItem,
  DatastoreStatusReply as DatastoreStatus,
  DatastoreUsageItem as DatastoreUsage,
  GarbageCollectionStatus as GcStatus,
} from '../../src/api-types/datastore-replies.js';
export type { ClusterStatus } from '../../src/api-types/cluster-status.js';
export type {
  ActiveOperationsReply as ActiveOperations,
  OperationItem as ActiveOperation,
} from '../../src/api-types/operations.js';

export interface DatastoreConfig {
  name: string;
  path: string;
  comment?: string;
  'gc-schedule'?: string;
  'maintenance-mode'?: string;
  [key: string]: unknown;
}

export interface BackupGroup {
  'backup-type': string;
  'backup-id': string;
  'last-backup'?: number;
  'backup-count'?: number;
  owner?: string;
  comment?: string;
}

export interface Snapshot {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  size?: number;
  protected?: boolean;
  comment?: string;
  verification?: { state?: string; upid?: string };
  owner?: string;
  /** PBS `BackupContent`: the snapshot's archives (`root.pxar.didx`, `catalog.pcat1.didx`, …). */
  files?: Array<{ filename: string; 'crypt-mode'?: string; size?: number }>;
}

export interface PruneItem {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  keep: boolean;
  protected?: boolean;
}

export type { TaskListItem as Task } from '../../src/api-types/tasks.js';
export type { ArchiveEntry } from '../../src/api-types/file-restore.js';

export interface TaskLogLine {
  n: number;
  t: string;
}

export interface JobStatus {
  id?: string;
  store: string;
  schedule?: string;
  'next-run'?: number;
  'last-run-state'?: string;
  'last-run-endtime'?: number;
  'last-run-upid'?: string;
  comment?: string;
}
