/**
 * `GET /admin/datastore/{store}/active-operations` (PBS shape `{read, write}`, reference §6.2),
 * the Stowage drain endpoint `POST /admin/datastore/{store}/wait-drained` and the Stowage
 * deadline endpoint `POST /admin/datastore/{store}/abort-conflicting`.
 *
 * None admits an operation: they read the datastore config and the operation registry only,
 * so they answer in every maintenance mode, `delete` included — which is exactly when an operator
 * needs them (design §3 invariants 4 and 6).
 */
import { Type } from 'typebox';
import type { ActiveOperationsReply } from '../../../api-types/operations.js';
import { BadConfigError } from '../../../errors.js';
import type { DatastoreAccess } from '../../../maintenance/datastore-access.js';
import { storedMaintenanceMode } from '../../../maintenance/datastore-access.js';
import { abortConflicting, waitForDrain } from '../../../maintenance/maintenance-control.js';
import { formatMaintenanceMode } from '../../../maintenance/maintenance-mode.js';
import {
  conflictingClasses,
  holdConflictingClasses,
  OPERATION_CLASSES,
  type MaintenanceMode,
  type OperationClass,
} from '../../../maintenance/maintenance-mode.js';
import { countOperations, type OperationRecord } from '../../../maintenance/operation-registry.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import type { ClusterContext } from '../../../cluster/cluster-context.js';
import { lostLeases } from '../../../cluster/cluster-status.js';
import { MountStatusSchema } from '../../../api-types/datastore-replies.js';
import {
  deviceFailure,
  s3EndpointFailure,
  holdItem,
  mountStatus,
  operationItem,
  OperationItemSchema,
  StoreParams,
  SystemHoldItemSchema,
} from './common.js';

const AUDIT = { path: '/datastore/{store}', privs: ['Datastore.Audit'], partial: true } as const;

/**
 * The classes that block the store's current mode. A stored mode that does not parse refuses every
 * read and write (datastore-access.ts), so those are what an operator waits for then.
 */
function blockingClasses(mode: () => MaintenanceMode | undefined): OperationClass[] {
  try {
    return conflictingClasses(mode());
  } catch (err) {
    if (err instanceof BadConfigError) return OPERATION_CLASSES.filter((c) => c !== 'lookup');
    throw err;
  }
}

/** The active operations of one datastore with the fields the API shows (shared with the config routes). */
export async function activeOperations(
  access: DatastoreAccess,
  store: string,
  cluster?: ClusterContext,
): Promise<ActiveOperationsReply> {
  const cfg = access.datastoreConfig(store); // 404 for an unknown store
  const ops = await access.backend.list(store);
  const lost = cluster
    ? await lostLeases(
        cluster.client,
        ops.flatMap((op) => (op.lease !== undefined ? [op.lease] : [])),
      )
    : new Set<string>();
  const holds = await access.backend.holds(store);
  const blocking = new Set([
    ...blockingClasses(() => storedMaintenanceMode(cfg)),
    ...holds.flatMap(holdConflictingClasses),
  ]);
  const conflicting = ops.filter((op) => blocking.has(op.class));
  const unavailable = deviceFailure(cfg);
  const s3Error = s3EndpointFailure(cfg);
  const counts = countOperations(ops);
  return {
    read: counts.read,
    write: counts.write,
    ingest: counts.ingest,
    reclaim: counts.reclaim,
    lookup: counts.lookup,
    operations: ops.map((op) => operationItem(op, op.lease !== undefined && lost.has(op.lease))),
    conflicting: conflicting.length,
    ...(cfg['maintenance-mode'] !== undefined && { 'maintenance-mode': cfg['maintenance-mode'] }),
    holds: holds.map(holdItem),
    'mount-status': mountStatus(cfg), // after the mode was read: see ActiveOperationsReply
    ...(unavailable !== undefined && { unavailable }),
    ...(s3Error !== undefined && { 's3-endpoint-error': s3Error }),
  };
}

const ActiveOperationsSchema = Type.Object({
  read: Type.Integer(),
  write: Type.Integer({ description: 'ingest + reclaim, as PBS counts writes' }),
  ingest: Type.Integer(),
  reclaim: Type.Integer(),
  lookup: Type.Integer(),
  operations: Type.Array(OperationItemSchema),
  conflicting: Type.Integer(),
  'maintenance-mode': Type.Optional(Type.String()),
  holds: Type.Array(SystemHoldItemSchema),
  'mount-status': MountStatusSchema,
  unavailable: Type.Optional(Type.String()),
  's3-endpoint-error': Type.Optional(Type.String()),
});

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/active-operations',
    params: StoreParams,
    permission: AUDIT,
    returns: ActiveOperationsSchema,
    description:
      'Operations running on the datastore: `read` and `write` counts as PBS, plus (Stowage) `write` ' +
      'split into `ingest` and `reclaim`, `lookup`, the `operations` themselves (class, kind, detail, ' +
      'auth-id, task-id, pid, started), how many of them the current maintenance mode or a system ' +
      "hold refuses (`conflicting`), the raw `maintenance-mode`, the system `holds` and PBS 4's " +
      '`mount-status` (read after the mode, so a finished unmount shows as `notmounted`), and (Stowage) ' +
      '`unavailable`, why a mounted removable datastore cannot be used (its device failed), and ' +
      "`s3-endpoint-error`, why an S3 datastore's object store is failing (its last request). " +
      'Reads no datastore, so it works in every maintenance mode.',
    handler: ({ params, server }) => activeOperations(server.datastores, params.store, server.cluster),
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/wait-drained',
    params: StoreParams,
    body: Type.Object({
      timeout: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 300,
          description: 'Seconds to wait at most (default 30).',
        }),
      ),
    }),
    permission: AUDIT,
    returns: Type.Object({
      drained: Type.Boolean(),
      remaining: Type.Array(OperationItemSchema),
      mode: Type.Optional(Type.String()),
    }),
    description:
      'Stowage: wait (long-poll, at most `timeout` seconds) until no operation that the current ' +
      'maintenance mode refuses is still running. Returns `drained`, the `remaining` operations and ' +
      'the raw `mode`. Clients loop on it to wait longer (`stowage datastore maintenance set --wait`).',
    handler: async ({ params, body, server, reply }) => {
      const access = server.datastores;
      access.datastoreConfig(params.store); // 404 before waiting
      const gone = new AbortController();
      // the response's close before we answer means the client went away: stop polling for it
      const onClose = () => gone.abort();
      reply.raw.once('close', onClose);
      try {
        const result = await waitForDrain(access, params.store, {
          timeoutMs: (body.timeout ?? 30) * 1000,
          signal: gone.signal,
        });
        const raw = access.datastoreConfig(params.store)['maintenance-mode'];
        return {
          drained: result.drained,
          remaining: result.remaining.map((op: OperationRecord) => operationItem(op)),
          ...(raw !== undefined && { mode: raw }),
        };
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/abort-conflicting',
    params: StoreParams,
    // the same privilege as setting the mode: whoever may take the store offline may end what
    // keeps it from getting there (only operations on this store, only those the mode refuses)
    permission: { path: '/datastore/{store}', privs: ['Datastore.Modify'] },
    protected: true,
    returns: Type.Object({
      aborted: Type.Array(OperationItemSchema),
      waiting: Type.Array(OperationItemSchema),
      mode: Type.Optional(Type.String()),
    }),
    description:
      'Stowage (`maintenance set --on-timeout abort`): abort the worker tasks of every operation the ' +
      'current maintenance mode refuses, in every process on the host: GC, verify, prune and sync ' +
      "tasks fail with the mode's refusal and log it; backup sessions end without a snapshot and " +
      'their clients get the refusal. Returns the operations whose task was asked to stop ' +
      '(`aborted`) and those that run in no task and end by themselves (`waiting`). Without a mode ' +
      'nothing conflicts and nothing is aborted. Follow with wait-drained.',
    handler: async ({ params, server }) => {
      const result = await abortConflicting(server.datastores, params.store, (taskId, reason) =>
        server.tasks.abortTask(taskId, reason),
      );
      return {
        aborted: result.aborted.map((op) => operationItem(op)),
        waiting: result.waiting.map((op) => operationItem(op)),
        ...(result.mode && { mode: formatMaintenanceMode(result.mode) }),
      };
    },
  }),
];
