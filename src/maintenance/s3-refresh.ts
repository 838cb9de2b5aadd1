/**
 * PBS 4's `s3-refresh` (`PUT /admin/datastore/{store}/s3-refresh`, `do_s3_refresh`): refill an S3
 * datastore's local cache with the bucket's snapshot metadata (`.cnt/`), e.g. after the cache was
 * lost or another server wrote to the bucket. The mode `s3-refresh` is set before the call
 * answers, so from then on nothing new is admitted (reads and writes are refused with PBS's
 * "S3 refresh maintenance mode"); the task waits for the running operations, downloads everything
 * into a temp directory and swaps it in (datastore.ts `refreshFromBucket`), then puts back the
 * mode that was set before (none as a rule; PBS clears it). Clearing the mode while it waits
 * cancels the refresh; a failed download leaves the cache as it was and the mode put back.
 */
import { datastoreAbsolutePath } from '../config/datastore-config.js';
import { Datastore } from '../datastore/datastore.js';
import { ERR_NOT_S3_DATASTORE, ERR_S3_REFRESH_MODE_CHANGED, ERR_TASK_ABORTED } from '../errors.js';
import { isS3Datastore, openChunkBackend, syncLevelOf } from './chunk-backend-for.js';
import type { DatastoreAccess } from './datastore-access.js';
import { replaceModeIfStill, waitForDrain } from './maintenance-control.js';
import { formatMaintenanceMode, type MaintenanceMode } from './maintenance-mode.js';
import type { TaskSpawner, UnmountTaskContext } from './removable-datastore.js';

/** Put `mode` back in place of `s3-refresh` (CONFLICT when someone changed it meanwhile). */
function replaceRefreshMode(
  access: DatastoreAccess,
  name: string,
  mode: MaintenanceMode | undefined,
  authId: string,
): Promise<void> {
  return replaceModeIfStill(access, name, 's3-refresh', mode, {
    authId,
    changed: (now) => ERR_S3_REFRESH_MODE_CHANGED(name, now),
  });
}

async function runRefresh(
  access: DatastoreAccess,
  name: string,
  previous: MaintenanceMode | undefined,
  authId: string,
  task: UnmountTaskContext,
): Promise<void> {
  const restore = () =>
    replaceRefreshMode(access, name, previous, authId).catch((err: unknown) =>
      task.warn(`maintenance mode not restored: ${(err as Error).message}`),
    );
  const drain = await waitForDrain(access, name, {
    ...(task.signal && { signal: task.signal }),
    onProgress: ({ remaining }) => {
      if (remaining.length === 0) return;
      const reads = remaining.filter((op) => op.class === 'read').length;
      // PBS's line (its spelling fixed)
      task.log(
        `waiting for active operations to finish before continuing: read ${reads}, write ${remaining.length - reads}`,
      );
    },
  });
  if (!drain.drained) {
    await restore();
    throw ERR_TASK_ABORTED();
  }
  if (drain.mode?.type !== 's3-refresh') {
    throw ERR_S3_REFRESH_MODE_CHANGED(name, drain.mode ? formatMaintenanceMode(drain.mode) : 'none');
  }
  const cfg = access.datastoreConfig(name);
  // no admission can be made in this mode: the task opens the datastore itself, as the creation does
  const datastore = Datastore.open(name, datastoreAbsolutePath(cfg), {
    chunks: openChunkBackend(cfg, { configDir: access.config.configDir, locks: access.backend.locks }),
    syncLevel: syncLevelOf(cfg),
    locks: access.backend.locks,
  });
  try {
    task.log(`refreshing the cache of '${name}' from the bucket`);
    const files = await datastore.refreshFromBucket((line) => task.log(line));
    task.log(`fetched ${files} files`);
  } finally {
    datastore.close();
    await restore();
  }
}

/**
 * Start an `s3-refresh` task on the S3 datastore `name` and return its UPID; 400 for a datastore
 * that is not on S3. The mode is in force when this returns.
 */
export async function startS3Refresh(
  access: DatastoreAccess,
  tasks: TaskSpawner,
  name: string,
  authId: string,
): Promise<string> {
  if (!isS3Datastore(access.datastoreConfig(name))) throw ERR_NOT_S3_DATASTORE(name);
  const change = await access.backend.setMode(name, { type: 's3-refresh' }, { authId });
  // a retry of a refresh that did not end: what was before it is not known any more
  const previous = change.previous?.type === 's3-refresh' ? undefined : change.previous;
  try {
    return tasks.spawnTask('s3-refresh', name, authId, (task) =>
      runRefresh(access, name, previous, authId, task),
    );
  } catch (err) {
    await replaceRefreshMode(access, name, previous, authId);
    throw err;
  }
}
