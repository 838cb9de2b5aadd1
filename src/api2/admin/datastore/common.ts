/**
 * What the datastore routes share: PBS's parameter schemas, the admission helpers every handler
 * goes through (nothing here or in the routes opens a datastore any other way, design §2), and
 * the wire shape of an admitted operation.
 *
 * Admission order, as PBS (`check_privs_and_load_store`): the privilege check needs no disk and
 * comes first, so a caller without rights gets 403 whatever the mode; then the admission (503 in
 * maintenance); then ownership, which reads the group's owner file and so needs the admitted
 * handle.
 */
import type { OperationItem, SystemHoldItem } from '../../../api-types/operations.js';
import type { SystemHold } from '../../../api-types/maintenance.js';
import { Type, type Static } from 'typebox';
import { MAX_BACKUP_TIME, SAFE_ID_REGEX_STR } from '../../../api-types/names.js';
import { BackupDir, BackupGroup, BackupNamespace } from '../../../datastore/index.js';
import type { DataClass, DatastoreFor, DatastoreHandleFor } from '../../../maintenance/datastore-access.js';
import type { OperationRecord } from '../../../maintenance/operation-registry.js';
import type { ServerContext } from '../../../http/context.js';
import type { WorkerTask } from '../../../tasks/worker-task.js';
import { spawnTaskOwning } from '../../../tasks/admitted-task.js';
import { datastoreAbsolutePath, type DatastoreConfig } from '../../../config/datastore-config.js';
import type { MountStatus } from '../../../api-types/datastore-replies.js';
import { isMountedAt } from '../../../sys/mount-status.js';

export { SystemHoldItemSchema } from '../../../api-types/datastore-replies.js';

export { deviceFailure } from '../../../maintenance/removable-datastore.js';
export { s3EndpointFailure } from '../../../maintenance/chunk-backend-for.js';

/** PBS `get_datastore_mount_status`: looks at /dev and /proc/self/mountinfo, never under the path. */
export function mountStatus(cfg: DatastoreConfig): MountStatus {
  const device = cfg['backing-device'];
  if (device === undefined) return 'nonremovable';
  return isMountedAt(datastoreAbsolutePath(cfg), device) ? 'mounted' : 'notmounted';
}

/** PBS `DATASTORE_SCHEMA`: a safe-id of 3 to 32 characters. */
export const StoreSchema = Type.String({
  pattern: `^${SAFE_ID_REGEX_STR}$`,
  minLength: 3,
  maxLength: 32,
  description: 'Datastore name.',
});
export const StoreParams = Type.Object({ store: StoreSchema });

/** Checked fully by `BackupNamespace.parse` (400 naming `ns`); the schema only bounds the length. */
export const NsSchema = Type.String({ maxLength: 256, description: 'Namespace (a/b/c); empty is the root.' });
export const BackupTypeSchema = Type.Union([Type.Literal('vm'), Type.Literal('ct'), Type.Literal('host')]);
export const BackupIdSchema = Type.String({ pattern: `^${SAFE_ID_REGEX_STR}$`, maxLength: 128 });
export const BackupTimeSchema = Type.Integer({ minimum: 1, maximum: MAX_BACKUP_TIME });

export const GroupQuery = {
  ns: Type.Optional(NsSchema),
  'backup-type': BackupTypeSchema,
  'backup-id': BackupIdSchema,
};
export const SnapshotQuery = { ...GroupQuery, 'backup-time': BackupTimeSchema };

/**
 * PBS `BackupGroupDeleteStats`, what deleting a group or a namespace answers. PBS's client
 * deserializes it with all three fields required (a PBS 4 push job reads it from 3.2.11 on).
 */
export const BackupGroupDeleteStatsSchema = Type.Object({
  'removed-groups': Type.Integer(),
  'protected-snapshots': Type.Integer(),
  'removed-snapshots': Type.Integer(),
});

export function deleteStatsOf(s: {
  removedGroups: number;
  protectedSnapshots: number;
  removedSnapshots: number;
}): Static<typeof BackupGroupDeleteStatsSchema> {
  return {
    'removed-groups': s.removedGroups,
    'protected-snapshots': s.protectedSnapshots,
    'removed-snapshots': s.removedSnapshots,
  };
}

/** PBS's `error-on-protected` (default true): fail when protected snapshots keep something. */
export const ErrorOnProtectedSchema = Type.Optional(
  Type.Boolean({
    default: true,
    description:
      'Return an error when protected snapshots keep the group or namespace; the rest is deleted either way.',
  }),
);

export const KeepSchemas = {
  'keep-last': Type.Optional(Type.Integer({ minimum: 1 })),
  'keep-hourly': Type.Optional(Type.Integer({ minimum: 1 })),
  'keep-daily': Type.Optional(Type.Integer({ minimum: 1 })),
  'keep-weekly': Type.Optional(Type.Integer({ minimum: 1 })),
  'keep-monthly': Type.Optional(Type.Integer({ minimum: 1 })),
  'keep-yearly': Type.Optional(Type.Integer({ minimum: 1 })),
};

export function parseNs(ns: string | undefined): BackupNamespace {
  return BackupNamespace.parse(ns ?? '', 'ns');
}

export function groupOf(q: { ns?: string; 'backup-type': string; 'backup-id': string }): BackupGroup {
  return new BackupGroup(parseNs(q.ns), q['backup-type'], q['backup-id']);
}

export function snapshotOf(q: {
  ns?: string;
  'backup-type': string;
  'backup-id': string;
  'backup-time': number;
}): BackupDir {
  return groupOf(q).snapshot(q['backup-time']);
}

export type { OperationItem };

export const OperationItemSchema = Type.Object({
  id: Type.Integer(),
  class: Type.String(),
  kind: Type.String(),
  detail: Type.Optional(Type.String()),
  'auth-id': Type.Optional(Type.String()),
  'task-id': Type.Optional(Type.String()),
  pid: Type.Integer(),
  started: Type.Integer(),
  node: Type.Optional(Type.String({ description: 'Cluster mode: the server the operation runs on.' })),
  'node-lost': Type.Optional(
    Type.Boolean({
      description: 'Cluster mode: its server missed its keep-alives; it counts until its lease expires.',
    }),
  ),
});

export function holdItem(hold: SystemHold): SystemHoldItem {
  return {
    source: hold.source,
    type: hold.type,
    message: hold.message,
    since: Math.floor(hold.since / 1000),
    ...(hold.authId !== undefined && { 'auth-id': hold.authId }),
  };
}

/** `lost`: the operation's server missed its lease's keep-alives (cluster mode). */
export function operationItem(op: OperationRecord, lost = false): OperationItem {
  return {
    id: op.id,
    class: op.class,
    kind: op.kind,
    ...(op.detail !== undefined && { detail: op.detail }),
    ...(op.authId !== undefined && { 'auth-id': op.authId }),
    ...(op.taskId !== undefined && { 'task-id': op.taskId }),
    pid: op.pid,
    started: Math.floor(op.startedAt / 1000),
    ...(op.node !== undefined && { node: op.node }),
    ...(lost && { 'node-lost': true }),
  };
}

/** What an operation says about itself when it asks for admission. */
export interface AdmissionInfo {
  kind: string;
  detail?: string;
}

/** Who asks: the operation is registered under its auth id. */
export interface Caller {
  server: ServerContext;
  authId: string;
}

/**
 * Run `fn` under an admitted `read` or `write` operation on `store`, released in every exit path.
 * A refusal is the MaintenanceError (503) of `lookupDatastore`. `fn` gets the datastore as the
 * class admits it: read-only under `read` (and under a class only known at run time).
 */
export async function withDatastore<Op extends DataClass, T>(
  caller: Caller,
  store: string,
  op: Op,
  info: AdmissionInfo,
  fn: (datastore: DatastoreFor<Op>) => T | Promise<T>,
): Promise<T> {
  const handle = await caller.server.datastores.lookupDatastore(store, op, {
    ...info,
    authId: caller.authId,
  });
  try {
    return await fn(handle.datastore);
  } finally {
    await handle.release();
  }
}

/**
 * Admit first, then start a worker task that owns the admitted operation (PBS "pre-task",
 * reference §2): a refusal is a synchronous 503 and no task is created. The operation is released
 * when the task function ends, however it ends, or at once if `task.check` (run on the admitted
 * datastore before the task exists) throws or the task cannot be started (`spawnTaskOwning`, which
 * the job runner uses too).
 *
 * The registry record carries no task id: the UPID exists only once the task does, and the
 * registry cannot amend a record (see the report; `kind`, `detail`, auth id and pid identify it).
 */
export async function spawnAdmittedTask<Op extends DataClass>(
  caller: Caller,
  store: string,
  op: Op,
  info: AdmissionInfo,
  task: { type: string; id?: string; check?: (datastore: DatastoreFor<Op>) => void },
  fn: (task: WorkerTask, handle: DatastoreHandleFor<Op>) => Promise<void>,
): Promise<string> {
  const handle = await caller.server.datastores.lookupDatastore(store, op, {
    ...info,
    authId: caller.authId,
  });
  try {
    task.check?.(handle.datastore); // e.g. ownership: a refusal is synchronous, no task appears
  } catch (err) {
    await handle.release();
    throw err;
  }
  return spawnTaskOwning(
    caller.server.tasks,
    handle,
    { type: task.type, id: task.id, authId: caller.authId },
    fn,
  );
}
