/**
 * Removable datastores (PBS 3.3+, `docs/storage.rst` "Removable Datastores"; issue 18): a datastore
 * on a device identified by its filesystem UUID (`backing-device`), whose `path` is relative to the
 * device's root. Mounted, its content is at `<mount dir>/NAME` (datastoreAbsolutePath) and it is
 * served like any other; not mounted, every read and write is refused with PBS's `datastore 'NAME'
 * is not mounted` (400), lookups still answer.
 *
 * Mounting is PBS's `do_mount_device`: the device is mounted at a private temporary directory,
 * `<path>` on it bind-mounted at the datastore's mount point, and the temporary mount undone, so
 * only the datastore's directory is visible and two mounts cannot meet at one path.
 *
 * Unmounting is PBS's `unmount`/`do_unmount_device`, with the drain Stowage does for every mode
 * change: the `unmount` maintenance mode is set atomically with admission (nothing new is
 * admitted from then on), the running operations drain — listed in the task log whenever the set
 * changes — then the filesystem is synced and unmounted, and the mode cleared (to the mode the
 * operator had set before, where PBS clears it to none). Clearing or changing the mode while the
 * unmount waits cancels it, as in PBS. A failed `umount` (a process outside Stowage holds a file
 * there: "target is busy") leaves the mode `unmount` with the reason as its message: nothing is
 * admitted, and the unmount can be run again, or the mode cleared to use the datastore again.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { datastoreAbsolutePath, type DatastoreConfig } from '../config/datastore-config.js';
import {
  ERR_DATASTORE_DEVICE_FAILED,
  ERR_DATASTORE_NOT_MOUNTED,
  ERR_DATASTORE_NOT_REMOVABLE,
  ERR_DESTROY_NOT_MOUNTED,
  ERR_MOUNT_COMMAND_FAILED,
  ERR_NO_DATASTORE_ON_DEVICE,
  ERR_TASK_ABORTED,
  ERR_UNMOUNT_FAILED,
  ERR_UNMOUNT_MODE_CHANGED,
  BadRequestError,
} from '../errors.js';
import { isMountedAt, mountFailure } from '../sys/mount-status.js';
import { bindMount, findDeviceByUuid, mountDevice, syncFilesystem, unmountDir } from '../sys/mount.js';
import { describeOperation } from './admission-backend.js';
import type { DatastoreAccess } from './datastore-access.js';
import { replaceModeIfStill, waitForDrain } from './maintenance-control.js';
import { oldestWriteStart } from './oldest-writer.js';
import { formatMaintenanceMode, MAX_MESSAGE_LENGTH, type MaintenanceMode } from './maintenance-mode.js';
import { storedMaintenanceMode } from './local-admission-backend.js';

/** Whether `cfg` is a removable datastore (it has a `backing-device`). */
export function isRemovable(cfg: DatastoreConfig): boolean {
  return cfg['backing-device'] !== undefined;
}

/** Whether `cfg`'s content can be reached: always for a plain datastore, when mounted for a removable one. */
export function isDatastoreMounted(cfg: DatastoreConfig): boolean {
  const uuid = cfg['backing-device'];
  return uuid === undefined || isMountedAt(datastoreAbsolutePath(cfg), uuid);
}

/**
 * Why a removable datastore's mounted filesystem cannot be used (its device failed: a pulled
 * disk, I/O errors), or undefined. Plain datastores: always undefined.
 */
export function deviceFailure(cfg: DatastoreConfig): string | undefined {
  return isRemovable(cfg) ? mountFailure(datastoreAbsolutePath(cfg)) : undefined;
}

/**
 * Refuse (400) a removable datastore whose device is not mounted at its mount point
 * (ERR_DATASTORE_NOT_MOUNTED, PBS's lookup wording) or whose device failed while mounted
 * (ERR_DATASTORE_DEVICE_FAILED, naming the failure: PBS admits it, and every access fails with
 * EIO). Admission calls it after the mode check, as PBS checks the mount.
 */
export function checkMounted(cfg: DatastoreConfig): void {
  if (!isDatastoreMounted(cfg)) throw ERR_DATASTORE_NOT_MOUNTED(cfg.name);
  const failure = deviceFailure(cfg);
  if (failure !== undefined) throw ERR_DATASTORE_DEVICE_FAILED(cfg.name, failure);
}

/**
 * What an unmount needs: something of the datastore's is mounted, a healthy or a failed device
 * (whose device node may be gone, so that PBS's check says not mounted).
 */
function checkUnmountable(cfg: DatastoreConfig): void {
  if (!isRemovable(cfg)) throw ERR_DATASTORE_NOT_REMOVABLE(cfg.name);
  if (!isDatastoreMounted(cfg) && deviceFailure(cfg) === undefined) throw ERR_DATASTORE_NOT_MOUNTED(cfg.name);
}

/** PBS `delete_datastore`: a removable datastore's data can only be destroyed while mounted. */
export function checkDestroyable(cfg: DatastoreConfig): void {
  if (!isDatastoreMounted(cfg)) throw ERR_DESTROY_NOT_MOUNTED(cfg.name);
}

/**
 * After a removable datastore left the configuration (PBS `delete_datastore`): unmount it if it
 * is mounted, and with its data destroyed remove the empty mount point. Failures are warnings:
 * the removal itself is done.
 */
export async function detachRemovedDatastore(
  cfg: DatastoreConfig,
  destroyed: boolean,
  log: (line: string) => void,
): Promise<void> {
  if (!isRemovable(cfg)) return;
  const mountPoint = datastoreAbsolutePath(cfg);
  if (isDatastoreMounted(cfg)) {
    try {
      await unmountDir(mountPoint);
      log(`unmounted '${mountPoint}'`);
    } catch (err) {
      log(`warning: could not unmount device after deletion: ${(err as Error).message}`);
    }
  }
  if (destroyed) {
    try {
      rmdirSync(mountPoint);
    } catch (err) {
      log(`warning: could not remove directory after deletion: ${(err as Error).message}`);
    }
  }
}

/**
 * Refuse a removable datastore's `path` that is not a plain relative path inside the device (PBS:
 * "expected a relative on-device path"); `..` could reach outside the device's filesystem.
 */
export function checkOnDevicePath(path: string): void {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (isAbsolute(path) || parts.includes('..')) {
    throw new BadRequestError(
      `parameter verification failed - 'path': expected a relative on-device path, '${path}' is not`,
      { param: 'path' },
    );
  }
}

export interface AttachOptions {
  /** Where the temporary device mounts go (`<runDir>/mount/<random>`). */
  runDir: string;
  log?: (line: string) => void;
  /**
   * Create the datastore's directory on the device when missing (creating a datastore). Without,
   * the directory must hold a datastore (`.chunks`), or the device is unmounted again and the
   * mount fails with ERR_NO_DATASTORE_ON_DEVICE.
   */
  createPath?: boolean;
}

/**
 * Mount a removable datastore's device and bind its directory at the mount point (PBS
 * `do_mount_device`). Returns false, changing nothing, when it is mounted already.
 */
export async function attachRemovableDatastore(cfg: DatastoreConfig, opts: AttachOptions): Promise<boolean> {
  const log = opts.log ?? (() => {});
  const uuid = cfg['backing-device'];
  if (uuid === undefined) throw ERR_DATASTORE_NOT_REMOVABLE(cfg.name);
  checkOnDevicePath(cfg.path);
  const mountPoint = datastoreAbsolutePath(cfg);
  // a failed device is still mounted there: it must be unmounted first, not hidden by a new mount
  const failure = mountFailure(mountPoint);
  if (failure !== undefined) throw ERR_DATASTORE_DEVICE_FAILED(cfg.name, failure);
  if (isMountedAt(mountPoint, uuid)) {
    log(`device is already mounted at '${mountPoint}'`);
    return false;
  }
  const device = await findDeviceByUuid(uuid);
  const tmp = join(opts.runDir, 'mount', randomUUID().replaceAll('-', ''));
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  log(`temporarily mounting '${uuid}' (${device}) to '${tmp}'`);
  try {
    await mountDevice(device, tmp);
  } catch (err) {
    rmdirSync(tmp);
    throw err;
  }
  try {
    const full = resolve(tmp, cfg.path); // inside tmp: checkOnDevicePath refused '..'
    if (!opts.createPath && !existsSync(join(full, '.chunks'))) {
      throw ERR_NO_DATASTORE_ON_DEVICE(cfg.name, cfg.path, uuid);
    }
    mkdirSync(mountPoint, { recursive: true });
    mkdirSync(full, { recursive: true });
    log(`bind mount '${cfg.name}'(${cfg.path}) to '${mountPoint}'`);
    await bindMount(full, mountPoint);
  } finally {
    // the bind mount keeps the filesystem mounted; only the temporary view goes
    try {
      await unmountDir(tmp);
      rmdirSync(tmp);
    } catch (err) {
      log(`warning: unmounting from tmp path '${tmp}' failed: ${(err as Error).message}`);
    }
  }
  return true;
}

/**
 * PBS `mount`: the datastore must exist and be removable; mounts its device (a no-op when
 * mounted). Then, as the server does for every datastore when it starts, the unfinished snapshots
 * no live backup owns are removed: a disk pulled during a backup comes back with that backup's
 * directory, which must not show as a snapshot.
 */
export async function mountRemovableDatastore(
  access: DatastoreAccess,
  name: string,
  opts: Omit<AttachOptions, 'createPath'> & { taskId?: string },
): Promise<boolean> {
  const log = opts.log ?? (() => {});
  const cfg = access.datastoreConfig(name);
  if (!isRemovable(cfg)) throw ERR_DATASTORE_NOT_REMOVABLE(name);
  const mounted = await attachRemovableDatastore(cfg, opts);
  if (!mounted) return false;
  log(`datastore '${name}' mounted at '${datastoreAbsolutePath(cfg)}'`);
  try {
    const handle = await access.lookupDatastore(name, 'reclaim', {
      kind: 'cleanup',
      detail: 'unfinished snapshots',
      ...(opts.taskId !== undefined && { taskId: opts.taskId }),
    });
    try {
      await handle.datastore.removeAbandonedSnapshots(log);
    } finally {
      await handle.release();
    }
  } catch (err) {
    // a mode refusing it (read-only, offline): the start-up cleanup or GC does it later
    log(`unfinished snapshots not checked: ${(err as Error).message}`);
  }
  return true;
}

/** What `beginUnmount` hands to `finishUnmount`. */
export interface UnmountStart {
  name: string;
  /** The operator's mode before `unmount`, put back once unmounted (none after a failed unmount). */
  previous: MaintenanceMode | undefined;
}

/**
 * The synchronous part of PBS's `unmount`: refuse a datastore that is not removable or not
 * mounted, else set the `unmount` mode (atomically with admission: from now on nothing is
 * admitted on it). Run it before starting the task, so the refusals are the request's answer.
 */
export async function beginUnmount(
  access: DatastoreAccess,
  name: string,
  authId?: string,
): Promise<UnmountStart> {
  const change = await access.backend.setMode(
    name,
    { type: 'unmount' },
    {
      ...(authId !== undefined && { authId }),
      precondition: checkUnmountable,
    },
  );
  // a retry after a failed unmount: what was before that one is not known any more
  const previous = change.previous?.type === 'unmount' ? undefined : change.previous;
  return { name, previous };
}

/** Give up an unmount whose task could not be started: put back the mode `beginUnmount` replaced. */
export async function abandonUnmount(
  access: DatastoreAccess,
  start: UnmountStart,
  authId?: string,
): Promise<void> {
  await replaceUnmountMode(access, start.name, start.previous, authId);
}

/** PBS `gc-on-unmount` (stored as PBS writes booleans; unknown to the typed config). */
export function gcOnUnmount(cfg: DatastoreConfig): boolean {
  const value = cfg.extra?.find(([key]) => key === 'gc-on-unmount')?.[1];
  return value !== undefined && /^(1|true|yes|on)$/i.test(value);
}

/**
 * `gc-on-unmount`, PBS's `do_unmount`: before the `unmount` mode is set, garbage collection is
 * started as its own `garbage_collection` task — or, when one is running already, left to run. Its
 * operation is admitted before this returns, so the unmount's drain waits for it to end. Returns
 * the line for the unmount task's log. A GC that cannot be started (a mode or hold refusing
 * reclaim) is a warning in that line, where PBS refuses the unmount: the operator asked for the
 * disk, and GC can run next time.
 */
export async function startGcBeforeUnmount(
  access: DatastoreAccess,
  tasks: TaskSpawner,
  name: string,
  authId: string,
): Promise<{ line: string; warning?: boolean }> {
  const running = (await access.backend.list(name)).find((op) => op.class === 'reclaim' && op.kind === 'gc');
  if (running) {
    return {
      line: 'gc-on-unmount: garbage collection is already running, unmount will wait for it to finish',
    };
  }
  let handle;
  try {
    handle = await access.lookupDatastore(name, 'reclaim', { kind: 'gc', detail: 'gc-on-unmount', authId });
  } catch (err) {
    return {
      line: `gc-on-unmount: garbage collection not started: ${(err as Error).message}`,
      warning: true,
    };
  }
  let upid: string;
  try {
    upid = tasks.spawnTask('garbage_collection', name, authId, async (task) => {
      try {
        await handle.datastore.garbageCollection({
          upid: task.upid,
          oldestWriterStartMs: await oldestWriteStart(access.backend, name, handle.record.id),
          log: (line) => task.log(line),
          signal: task.signal,
        });
      } finally {
        await handle.release();
      }
    });
  } catch (err) {
    await handle.release();
    throw err;
  }
  handle.attachTask(upid);
  return { line: `gc-on-unmount: started garbage collection (${upid}), unmount will wait for it to finish` };
}

export interface FinishUnmountOptions {
  log?: (line: string) => void;
  /** A warning (the task ends `WARNINGS`); default: a log line. */
  warn?: (line: string) => void;
  /** Aborting (the task's abort) cancels the wait and puts the previous mode back. */
  signal?: AbortSignal;
  authId?: string;
}

/** The mode's message after a failed unmount: the command's reason, within the message limit. */
function failureMessage(why: string): string {
  // `umount: /mnt/datastore/usb1: target is busy.`: the kernel's reason is the last part
  const reason = why.split(': ').pop()!;
  const text = `unmount failed: ${reason}`.replace(/[\u0000-\u001f\u007f-\u009f]/gu, ' ');
  return [...text].length <= MAX_MESSAGE_LENGTH
    ? text
    : `${[...text].slice(0, MAX_MESSAGE_LENGTH - 3).join('')}...`;
}

/** Change the mode only if it is still `unmount` (PBS `expect_maintanance_unmounting`). */
function replaceUnmountMode(
  access: DatastoreAccess,
  name: string,
  mode: MaintenanceMode | undefined,
  authId: string | undefined,
): Promise<void> {
  return replaceModeIfStill(access, name, 'unmount', mode, {
    ...(authId !== undefined && { authId }),
    changed: (now) => ERR_UNMOUNT_MODE_CHANGED(name, now),
  });
}

/**
 * The task part of PBS's unmount: wait for every running operation to end (listing them when
 * the set changes), sync, unmount, and put back the previous mode. Throws, leaving the mode
 * `unmount` with the reason, when `umount` fails; throws without unmounting when the mode was
 * changed meanwhile (the operator cancelled) or the task was aborted (the previous mode is put back).
 */
export async function finishUnmount(
  access: DatastoreAccess,
  start: UnmountStart,
  opts: FinishUnmountOptions = {},
): Promise<void> {
  const log = opts.log ?? (() => {});
  const { name, previous } = start;
  const drain = await waitForDrain(access, name, {
    ...(opts.signal && { signal: opts.signal }),
    onProgress: ({ remaining }) => {
      if (remaining.length === 0) return;
      const reads = remaining.filter((op) => op.class === 'read').length;
      // PBS's line, then who they are
      log(`cannot unmount yet, still ${reads} read and ${remaining.length - reads} write operations active`);
      for (const op of remaining) log(`  still running: ${describeOperation(op)}`);
    },
  });
  if (!drain.drained) {
    await replaceUnmountMode(access, name, previous, opts.authId).catch((err: unknown) =>
      log(`warning: maintenance mode not restored: ${(err as Error).message}`),
    );
    throw ERR_TASK_ABORTED();
  }
  if (drain.mode?.type !== 'unmount') {
    throw ERR_UNMOUNT_MODE_CHANGED(name, drain.mode ? formatMaintenanceMode(drain.mode) : 'none');
  }
  log('no operation is running any more');
  const mountPoint = datastoreAbsolutePath(access.datastoreConfig(name));
  try {
    // Best effort: a disk that failed (pulled cable, I/O errors) cannot be synced, and must still
    // be unmountable so that it can be mounted again. One the kernel already shut down is not
    // even tried: its writeback can only fail, and may first wait for the dead device.
    const failure = mountFailure(mountPoint);
    if (failure) {
      (opts.warn ?? log)(`not syncing '${mountPoint}': ${failure}; what was not written is lost`);
    } else {
      log(`syncing '${mountPoint}'`);
      await syncFilesystem(mountPoint).catch((err: unknown) =>
        (opts.warn ?? log)(`could not sync '${mountPoint}' before unmounting: ${(err as Error).message}`),
      );
    }
    // Under the change lock, as PBS holds its config lock across the umount: nothing changes the
    // mode (and so nothing is admitted) between this check and the unmount.
    const lock = await access.lockConfig('change');
    try {
      const cfg = access.config.read().stores.get(name);
      const now = cfg && storedMaintenanceMode(cfg);
      if (now?.type !== 'unmount') {
        throw ERR_UNMOUNT_MODE_CHANGED(name, now ? formatMaintenanceMode(now) : 'none');
      }
      log(`unmounting '${mountPoint}'`);
      await unmountDir(mountPoint);
    } finally {
      lock.release();
    }
  } catch (err) {
    if (!ERR_MOUNT_COMMAND_FAILED.is(err)) throw err;
    // `umount: /mnt/datastore/usb1: target is busy.` without its full stop, to go inside a sentence
    const why = ((err.details as { why?: string } | undefined)?.why ?? err.message).replace(/\.$/, '');
    await replaceUnmountMode(
      access,
      name,
      { type: 'unmount', message: failureMessage(why) },
      opts.authId,
    ).catch((e: unknown) => log(`warning: ${(e as Error).message}`));
    throw ERR_UNMOUNT_FAILED(name, why);
  }
  await replaceUnmountMode(access, name, previous, opts.authId);
  log(
    `datastore '${name}' unmounted; maintenance mode ${previous ? `back to ${formatMaintenanceMode(previous)}` : 'cleared'}`,
  );
}

/** What a worker task offers the unmount (src/tasks/worker-task.ts `WorkerTask`). */
export interface UnmountTaskContext {
  readonly upid: string;
  readonly signal: AbortSignal;
  log(line: string): void;
  warn(line: string): void;
}

/** Starts worker tasks (the server's TaskManager). */
export interface TaskSpawner {
  spawnTask(
    workerType: string,
    workerId: string,
    authId: string,
    fn: (task: UnmountTaskContext) => Promise<void>,
  ): string;
}

/**
 * PBS `unmount`: refuse at once what cannot be unmounted (not removable, not mounted); with
 * `gc-on-unmount` start garbage collection (startGcBeforeUnmount); set the `unmount` mode, so
 * nothing new is admitted from this answer on; then run the `unmount-device` task, which waits
 * for what runs (the GC too), and return its UPID.
 */
export async function startUnmount(
  access: DatastoreAccess,
  tasks: TaskSpawner,
  name: string,
  authId: string,
): Promise<string> {
  const cfg = access.datastoreConfig(name);
  let gc: { line: string; warning?: boolean } | undefined;
  if (isRemovable(cfg) && gcOnUnmount(cfg)) {
    checkUnmountable(cfg);
    gc = await startGcBeforeUnmount(access, tasks, name, authId);
  }
  const start = await beginUnmount(access, name, authId);
  try {
    return tasks.spawnTask('unmount-device', name, authId, async (task) => {
      if (gc) (gc.warning ? task.warn : task.log).call(task, gc.line);
      await finishUnmount(access, start, {
        log: (line) => task.log(line),
        warn: (line) => task.warn(line),
        signal: task.signal,
        authId,
      });
    });
  } catch (err) {
    await abandonUnmount(access, start, authId);
    throw err;
  }
}
