/**
 * `GET/POST /admin/datastore/{store}/gc` (PBS `garbage_collection_status` and
 * `start_garbage_collection`, reference §2, §6.2).
 *
 * Starting GC is a `write` operation admitted before the task exists (PBS "pre-task"): in
 * maintenance the caller gets the 503 at once and no task appears. The status is a `read`
 * (it reads `.gc-status` from the datastore).
 *
 * GC protects the chunks of running backups by their writers' start time (gc.ts). Backups may run
 * in any process (a second server during a reload, a CLI), so the oldest write operation comes
 * from the shared registry, not from this process's memory.
 */
import { Type } from 'typebox';
import type { DatastoreConfig } from '../../../config/datastore-config.js';
import { emptyGcStatus, type GarbageCollectionStatus } from '../../../datastore/index.js';
import { oldestWriteStart } from '../../../maintenance/oldest-writer.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import type { TaskManager } from '../../../tasks/worker-task.js';
import { spawnAdmittedTask, StoreParams, withDatastore } from './common.js';

/** PBS `GarbageCollectionJobStatus`: the store's last GC result plus its job state. */
export interface GarbageCollectionJobStatus extends GarbageCollectionStatus {
  store: string;
  schedule?: string;
  'next-run'?: number;
  'last-run-endtime'?: number;
  'last-run-state'?: string;
  duration?: number;
}

/** Combine the stored GC result with what the task index knows about the task that produced it. */
export function gcJobStatus(
  cfg: DatastoreConfig,
  status: GarbageCollectionStatus | undefined,
  tasks: TaskManager,
): GarbageCollectionJobStatus {
  const out: GarbageCollectionJobStatus = { store: cfg.name, ...(status ?? emptyGcStatus()) };
  if (cfg['gc-schedule'] !== undefined) out.schedule = cfg['gc-schedule'];
  if (status?.upid) {
    try {
      const item = tasks.item(status.upid);
      if (item.endtime !== undefined) {
        out['last-run-endtime'] = item.endtime;
        out.duration = item.endtime - item.starttime;
      }
      if (item.status !== undefined) out['last-run-state'] = item.status;
    } catch {
      // a task of another installation (datastore moved here): its result is all we know
    }
  }
  return out;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/gc',
    params: StoreParams,
    permission: { path: '/datastore/{store}', privs: ['Datastore.Audit'] },
    description:
      'Garbage collection status (read operation), PBS GarbageCollectionJobStatus: the last result ' +
      'stored in `.gc-status` with the schedule and the state, end time and duration of its task.',
    handler: ({ params, authId, server }) =>
      withDatastore({ server, authId }, params.store, 'read', { kind: 'gc-status' }, (ds) =>
        gcJobStatus(server.datastores.datastoreConfig(params.store), ds.gcStatus(), server.tasks),
      ),
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/gc',
    params: StoreParams,
    permission: { path: '/datastore/{store}', privs: ['Datastore.Modify'] },
    protected: true,
    returns: Type.String({ description: 'UPID of the garbage_collection task.' }),
    description:
      'Start garbage collection as a `garbage_collection` task (write operation, admitted before the ' +
      'task is created: refused at once with 503 in maintenance). Returns the UPID.',
    handler: ({ params, authId, server }) =>
      spawnAdmittedTask(
        { server, authId },
        params.store,
        'reclaim',
        { kind: 'gc' },
        { type: 'garbage_collection', id: params.store },
        async (task, handle) => {
          await handle.datastore.garbageCollection({
            upid: task.upid,
            oldestWriterStartMs: await oldestWriteStart(
              server.datastores.backend,
              params.store,
              handle.record.id,
            ),
            log: (line) => task.log(line),
            signal: task.signal,
          });
        },
      ),
  }),
];
