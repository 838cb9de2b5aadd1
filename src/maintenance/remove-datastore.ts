/**
 * Datastore removal (design §3 invariant 10). Unlike PBS (reference §4.3), which sets `delete`
 * first and then fails "datastore is currently in use" leaving the datastore stranded in a mode
 * no command can leave, removal here either completes or puts the previous mode back:
 *
 * 1. atomically with admissions (the backend's setMode): with `ifIdle`, refuse while operations
 *    are active (nothing changes); otherwise set `delete`, so nothing new is admitted, not even
 *    lookups;
 * 2. wait for the running operations to drain (with a timeout);
 * 3. timed out or aborted → restore the previous mode and report the operations still running;
 * 4. remove the data when asked, then the config section.
 *
 * If the process dies between 1 and 4, the datastore stays in `delete`; running the removal
 * again resumes it (delete → delete is allowed), so there is always a way forward.
 */
import { destroyDatastoreData, type DestroyReport } from '../datastore/destroy.js';
import { removeS3InUseMarker } from '../datastore/s3-datastore.js';
import { ERR_S3_DESTROY_DATA } from '../errors.js';
import { isS3Datastore, s3LocationOf } from './chunk-backend-for.js';
import type { DatastoreAccess } from './datastore-access.js';
import {
  ConflictingOperationsError,
  setMaintenanceMode,
  waitForDrain,
  type DrainProgress,
} from './maintenance-control.js';
import { formatMaintenanceMode, type MaintenanceMode } from './maintenance-mode.js';
import { checkSupportedDatastore } from './unsupported-datastore.js';
import { checkDestroyable, detachRemovedDatastore } from './removable-datastore.js';
import { datastoreAbsolutePath } from '../config/datastore-config.js';

export interface RemoveDatastoreOptions {
  destroyData?: boolean;
  ifIdle?: boolean;
  /** How long to wait for running operations (default 60 s). */
  timeoutMs?: number;
  digest?: string;
  onProgress?: (p: DrainProgress) => void;
  log?: (line: string) => void;
  signal?: AbortSignal;
}

export interface RemoveDatastoreResult {
  path: string;
  destroyed?: DestroyReport;
}

export async function removeDatastore(
  access: DatastoreAccess,
  name: string,
  opts: RemoveDatastoreOptions = {},
): Promise<RemoveDatastoreResult> {
  const log = opts.log ?? (() => {});
  const deleting: MaintenanceMode = { type: 'delete' };
  const change = await access.backend
    .setMode(name, deleting, {
      allowDelete: true,
      ifIdle: opts.ifIdle,
      digest: opts.digest,
      precondition: (cfg) => {
        // an S3 datastore's files are not ours to delete; a removable one's only while mounted
        if (opts.destroyData) {
          checkSupportedDatastore(cfg);
          if (isS3Datastore(cfg)) throw ERR_S3_DESTROY_DATA(cfg.name);
          checkDestroyable(cfg);
        }
      },
    })
    .catch((err: unknown) => {
      if (err instanceof ConflictingOperationsError) {
        throw new ConflictingOperationsError(`datastore '${name}' is in use, not removed`, err.operations);
      }
      throw err;
    });
  let previous = change.previous;
  // a removable datastore's `path` is relative to its device: its files are at the mount point
  const path = datastoreAbsolutePath(change.config);
  if (previous?.type === 'delete') {
    log(`resuming an interrupted removal of datastore '${name}'`);
    previous = undefined; // the mode before the interrupted removal is unknown: restore to none
  }
  log(`datastore '${name}' set to maintenance mode delete`);

  const drain = await waitForDrain(access, name, {
    timeoutMs: opts.timeoutMs ?? 60_000,
    onProgress: (p) => {
      if (p.remaining.length > 0) log(`waiting for ${p.remaining.length} active operation(s) to finish`);
      opts.onProgress?.(p);
    },
    signal: opts.signal,
  });
  if (!drain.drained) {
    await setMaintenanceMode(access, name, previous, { allowDelete: true });
    const restored = previous ? formatMaintenanceMode(previous) : 'none';
    throw new ConflictingOperationsError(
      `datastore '${name}' is still in use after ${Math.round(drain.elapsedMs / 1000)}s, removal aborted and maintenance mode restored to ${restored}`,
      drain.remaining,
      'TIMEOUT',
    );
  }

  let destroyed: DestroyReport | undefined;
  if (opts.destroyData) {
    destroyed = destroyDatastoreData(path);
    for (const w of destroyed.warnings) log(`warning: ${w}`);
    log(`removed ${destroyed.removed.join(', ') || 'nothing'} from ${path}`);
  }

  const lock2 = await access.lockConfig('change');
  try {
    await access.config.update(
      (stores) => {
        stores.delete(name);
      },
      { lockHeld: true },
    );
  } finally {
    lock2.release();
  }
  await access.backend.forgetStore(name);
  log(`datastore '${name}' removed from the configuration`);
  if (isS3Datastore(change.config)) {
    // PBS: only the in-use marker goes, so the bucket's store can be reused by another server
    try {
      await removeS3InUseMarker(s3LocationOf(change.config, { configDir: access.config.configDir }));
      log('in-use marker removed from the bucket');
    } catch (err) {
      log(`warning: could not remove the bucket's in-use marker: ${(err as Error).message}`);
    }
  }
  await detachRemovedDatastore(change.config, destroyed !== undefined, log);
  return { path, ...(destroyed && { destroyed }) };
}
