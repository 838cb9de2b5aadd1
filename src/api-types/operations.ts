/** An admitted datastore operation as the API shows it (Stowage extension of `active-operations`). */
export interface OperationItem {
  id: number;
  /** read, write or lookup */
  class: string;
  kind: string;
  detail?: string;
  'auth-id'?: string;
  /** UPID of the worker task the operation belongs to. */
  'task-id'?: string;
  pid: number;
  /** Epoch seconds. */
  started: number;
}
