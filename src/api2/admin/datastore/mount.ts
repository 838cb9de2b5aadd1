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
  abandonUnmount,
  beginUnmount,
  checkMounted,
  collectGarbageBeforeUnmount,
  finishUnmount,
  gcOnUnmount,
  isRemovable,
  mountRemovableDatastore,
} from '../../../maintenance/removable-datastore.js';
import { StoreParams } from './common.js';

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
      'mounted is left as it is (the task says so). The directory on the device must hold a datastore.',
    handler: ({ params, authId, server }) => {
      const cfg = server.datastores.datastoreConfig(params.store);
      if (!isRemovable(cfg)) throw ERR_DATASTORE_NOT_REMOVABLE(params.store);
      return server.tasks.spawnTask('mount-device', params.store, authId, async (task) => {
        await mountRemovableDatastore(server.datastores, params.store, {
          runDir: server.paths.runDir,
          log: (line) => task.log(line),
        });
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
      'Unmount a removable datastore as an `unmount-device` task (with `gc-on-unmount`, garbage ' +
      'collection runs first, while the datastore is in service): set maintenance mode `unmount` (from ' +
      'this answer on nothing new is admitted), wait for the running operations to end (the task log ' +
      'lists them), sync, unmount, then put back the maintenance mode that was set before (none as a ' +
      'rule). Clearing the mode while it waits cancels the unmount. If `umount` fails (a process ' +
      'outside Stowage has a file open there), the mode stays `unmount` with the reason as its ' +
      'message: run the unmount again, or clear the mode to use the datastore again.',
    handler: async ({ params, authId, server }) => {
      const access = server.datastores;
      const cfg = access.datastoreConfig(params.store);
      if (isRemovable(cfg) && gcOnUnmount(cfg)) {
        // GC first, while the datastore is in service; then the unmount as without it
        checkMounted(cfg);
        return server.tasks.spawnTask('unmount-device', params.store, authId, async (task) => {
          await collectGarbageBeforeUnmount(access, params.store, task);
          const start = await beginUnmount(access, params.store, authId);
          await finishUnmount(access, start, {
            log: (line) => task.log(line),
            warn: (line) => task.warn(line),
            signal: task.signal,
            authId,
          });
        });
      }
      const start = await beginUnmount(access, params.store, authId);
      try {
        return server.tasks.spawnTask('unmount-device', params.store, authId, (task) =>
          finishUnmount(access, start, {
            log: (line) => task.log(line),
            warn: (line) => task.warn(line),
            signal: task.signal,
            authId,
          }),
        );
      } catch (err) {
        await abandonUnmount(access, start, authId);
        throw err;
      }
    },
  }),
];
