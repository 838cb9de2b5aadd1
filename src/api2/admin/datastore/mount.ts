/**
 * `POST /admin/datastore/{store}/mount` and `…/unmount` (PBS `mount`, `unmount` in
 * `src/api2/admin/datastore.rs`): worker tasks `mount-device` and `unmount-device` answering their
 * UPID. Privileges as PBS: Datastore.Modify on the store and Sys.Modify on `/system/disks`.
 *
 * A datastore that is not removable is refused before a task exists (400, PBS's "datastore 'x'
 * is not removable"), as is unmounting one that is not mounted. Unmount sets the `unmount`
 * maintenance mode before it answers, so nothing new is admitted from then on; the task waits
 * for the running operations (listed in its log), unmounts and clears the mode. See
 * src/maintenance/removable-datastore.ts.
 */
import { Type } from 'typebox';
import { ERR_DATASTORE_NOT_REMOVABLE } from '../../../errors.js';
import { defineRoute, type AllOfPermission, type AnyRoute } from '../../../http/route.js';
import {
  isRemovable,
  mountRemovableDatastore,
  startUnmount,
} from '../../../maintenance/removable-datastore.js';
import { StoreParams } from './common.js';
import { syncJobConfig } from '../../../config/job-config.js';
import type { ServerContext } from '../../../http/context.js';
import { runJobNow } from '../../../jobs/job-runner.js';
import { syncJob } from '../../../jobs/jobs.js';

/**
 * PBS: after a mount, the sync jobs with `run-on-mount` that involve the datastore (its store, or
 * the local source of a local job) run one after the other, by id, in a `mount-sync-jobs` task.
 * A job that cannot start (its last run still going, a mode refusing it) is a warning.
 */
function runSyncJobsOnMount(
  server: ServerContext,
  store: string,
  authId: string,
  log: (line: string) => void,
): void {
  const jobs = [...syncJobConfig(server.paths.configDir).read().jobs.values()]
    .filter(
      (j) =>
        j['run-on-mount'] && (j.store === store || (j.remote === undefined && j['remote-store'] === store)),
    )
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (jobs.length === 0) return;
  log(`starting ${jobs.length} sync jobs`);
  server.tasks.spawnTask('mount-sync-jobs', store, authId, async (task) => {
    task.log(`will run ${jobs.length} sync jobs: ${jobs.map((j) => j.id).join(', ')}`);
    for (const [i, job] of jobs.entries()) {
      task.throwIfAborted();
      task.log(`[${i + 1}/${jobs.length}] starting '${job.id}'...`);
      let upid: string;
      try {
        upid = await runJobNow(server, syncJob(job), authId);
      } catch (err) {
        task.warn(`unable to start sync job ${job.id}: ${(err as Error).message}`);
        continue;
      }
      task.log(`sync job '${job.id}' ended: ${await server.tasks.waitForTask(upid, 500)}`);
    }
  });
}

const MODIFY_AND_DISKS: AllOfPermission = {
  allOf: [
    { path: '/datastore/{store}', privs: ['Datastore.Modify'] },
    { path: '/system/disks', privs: ['Sys.Modify'] },
  ],
};

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/mount',
    params: StoreParams,
    permission: MODIFY_AND_DISKS,
    protected: true,
    returns: Type.String({ description: 'UPID of the mount-device task.' }),
    description:
      "Mount a removable datastore's device (found by its filesystem UUID, `backing-device`) and bind " +
      'its datastore directory at the mount point, as a `mount-device` task. A datastore already ' +
      'mounted is left as it is (the task says so). The directory on the device must hold a datastore. ' +
      'Sync jobs with `run-on-mount` into or out of it then run in a `mount-sync-jobs` task.',
    handler: ({ params, authId, server }) => {
      const cfg = server.datastores.datastoreConfig(params.store);
      if (!isRemovable(cfg)) throw ERR_DATASTORE_NOT_REMOVABLE(params.store);
      return server.tasks.spawnTask('mount-device', params.store, authId, async (task) => {
        const mounted = await mountRemovableDatastore(server.datastores, params.store, {
          runDir: server.paths.runDir,
          log: (line) => task.log(line),
          taskId: task.upid,
        });
        if (mounted) runSyncJobsOnMount(server, params.store, authId, (line) => task.log(line));
      });
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/unmount',
    params: StoreParams,
    permission: MODIFY_AND_DISKS,
    protected: true,
    returns: Type.String({ description: 'UPID of the unmount-device task.' }),
    description:
      'Unmount a removable datastore as an `unmount-device` task (with `gc-on-unmount`, a ' +
      '`garbage_collection` task is started first, as PBS, unless one runs; the unmount waits for it): ' +
      'set maintenance mode `unmount` (from ' +
      'this answer on nothing new is admitted), wait for the running operations to end (the task log ' +
      'lists them), sync, unmount, then put back the maintenance mode that was set before (none as a ' +
      'rule). Clearing the mode while it waits cancels the unmount. If `umount` fails (a process ' +
      'outside Stowage has a file open there), the mode stays `unmount` with the reason as its ' +
      'message: run the unmount again, or clear the mode to use the datastore again.',
    handler: ({ params, authId, server }) =>
      startUnmount(server.datastores, server.tasks, params.store, authId),
  }),
];
