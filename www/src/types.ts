/** Shapes of the API answers the UI reads (PBS names, kebab-case as on the wire). */

export interface DatastoreListItem {
  store: string;
  comment?: string;
  /** Raw property string, e.g. `read-only,message="disk swap"` (reference §6.2). */
  maintenance?: string;
}

export interface DatastoreUsage {
  store: string;
  total?: number;
  used?: number;
  avail?: number;
  error?: string;
  'gc-status'?: GcStatus;
}

export interface GcStatus {
  upid?: string;
  'index-file-count'?: number;
  'index-data-bytes'?: number;
  'disk-bytes'?: number;
  'disk-chunks'?: number;
  'removed-bytes'?: number;
  'removed-chunks'?: number;
  'pending-bytes'?: number;
  'pending-chunks'?: number;
  'removed-bad'?: number;
  'still-bad'?: number;
}

export interface DatastoreStatus {
  total: number;
  used: number;
  avail: number;
  'gc-status'?: GcStatus;
  counts?: Record<string, { groups?: number; snapshots?: number } | undefined>;
}

/** The server's own wire types (src/api-types/), not copies. */
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
}

export interface PruneItem {
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
  keep: boolean;
  protected?: boolean;
}

export interface Task {
  upid: string;
  node: string;
  starttime: number;
  endtime?: number;
  worker_type: string;
  worker_id?: string;
  user: string;
  status?: string;
}

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
