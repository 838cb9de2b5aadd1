/**
 * What a server does when its etcd lease expired under running operations (issue 17,
 * docs/cluster.md "Failure behaviour"): the other servers stopped counting them, and a
 * maintenance mode may have been set meanwhile that refuses them, so they must not go on. Their
 * locks went with the lease too. Each one's worker task is aborted with ERR_CLUSTER_LEASE_LOST:
 * the task logs it and fails with it; a backup or reader session ends its work at once (an
 * unfinished snapshot is removed, serveSession in src/protocol/upgrade.ts) and its client gets
 * the message.
 */
import type { FastifyBaseLogger } from 'fastify';
import { ERR_CLUSTER_LEASE_LOST } from '../errors.js';
import type { DatastoreAccess } from '../maintenance/datastore-access.js';
import type { TaskManager } from '../tasks/worker-task.js';
import type { ClusterContext } from './cluster-context.js';

/** Abort the tasks of the operations the cluster lease took with it; returns how to stop. */
export function abortOnLeaseLoss(
  cluster: ClusterContext,
  datastores: DatastoreAccess,
  tasks: Pick<TaskManager, 'abortTask'>,
  log: Pick<FastifyBaseLogger, 'warn'>,
): () => void {
  return cluster.backend.onLeaseLost((ids) => {
    for (const id of ids) {
      const op = datastores.admittedOperation(id);
      if (!op) continue; // ended meanwhile
      const reason = ERR_CLUSTER_LEASE_LOST(op.store, cluster.node, cluster.settings.leaseTtlSeconds);
      log.warn({ operation: id, task: op.taskId }, reason.message);
      if (op.taskId !== undefined) tasks.abortTask(op.taskId, reason);
      // Not started yet (a session still taking its locks): aborted as soon as its task is. One
      // that never gets a task is a single API request, which ends on its own within moments.
      else op.onTaskAttached = (taskId) => tasks.abortTask(taskId, reason);
    }
  });
}
