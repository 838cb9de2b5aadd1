/**
 * Creating a datastore (PBS `create_datastore`, reference §6.1): the one path for the API
 * (`POST /config/datastore`, and through it the admin CLI) and the quick start of `stowage server
 * --quickstart`.
 *
 * Two steps, because creating the chunk store takes a while and the API runs it as a task:
 * `prepareDatastoreCreation` validates and reserves the name and path (400s before a task
 * exists); `createDatastore` creates the chunk store, then adds the section under the config
 * change lock, so no admission is mid-check while the store appears. A failed creation leaves
 * nothing behind that would make the path unusable for the next attempt.
 */
import { existsSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { readdir, stat, statfs } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import {
  datastoreAbsolutePath,
  parseDatastoreBackend,
  type DatastoreConfig,
} from '../config/datastore-config.js';
import { Datastore } from '../datastore/datastore.js';
import { checkS3DatastoreBucket, type S3StoreLocation } from '../datastore/s3-datastore.js';
import { parseHumanByte } from '../api-types/human-byte.js';
import {
  BadRequestError,
  ERR_DATASTORE_EXISTS,
  ERR_NO_DATASTORE_TO_REUSE,
  ERR_S3_ENDPOINT_NOT_CONFIGURED,
} from '../errors.js';
import { unmountDir } from '../sys/mount.js';
import { FILESYSTEM_UUID_RE } from '../api-types/names.js';
import { attachRemovableDatastore, checkOnDevicePath, isRemovable } from './removable-datastore.js';
import type { DatastoreAccess } from './datastore-access.js';
import { createChunkBackend, s3LocationOf, syncLevelOf } from './chunk-backend-for.js';
import { formatMaintenanceMode } from './maintenance-mode.js';
import { applyFields, operatorMode, validateNewConfig, type DatastoreFields } from './update-datastore.js';

/** What a new datastore is made of, as PBS's create parameters. */
export interface NewDatastore {
  name: string;
  /** Absolute; normalized here. */
  path: string;
  set?: DatastoreFields;
  'maintenance-mode'?: string;
  /**
   * PBS 3.3+ removable datastores: the filesystem UUID of the device; `path` is then relative to
   * the device's root. The device is mounted and the datastore created on it by the task.
   */
  'backing-device'?: string;
  /** PBS `reuse-datastore`: take over the datastore already at the path (it must hold one). */
  reuseDatastore?: boolean;
  /** PBS 4 backends: `type=filesystem` (the default) or `type=s3,client=ID,bucket=NAME[,max-cache-size=SIZE]`. */
  backend?: string;
  /** PBS 4 `overwrite-in-use`: create an S3 datastore even when the bucket's `.in-use` marker names a host. */
  overwriteInUse?: boolean;
  /**
   * Quick start: take over a chunk store already at `path` (left by an earlier start whose
   * configuration is gone) instead of refusing a non-empty directory.
   */
  adoptExisting?: boolean;
}

/** A validated creation holding its name and path until it ends or is cancelled. */
export interface PreparedDatastore {
  readonly config: DatastoreConfig;
  /** Take over a chunk store already at the path. */
  readonly adoptExisting: boolean;
  /** PBS `reuse-datastore`: a chunk store must be at the path, and is taken over. */
  readonly reuseDatastore: boolean;
  /** Where its objects are, for an S3 datastore (the bucket was checked). */
  readonly s3?: S3StoreLocation;
  /** Give up before `createDatastore` ran (e.g. the task could not be started). */
  cancel(): void;
}

/** Names and paths being created, per DatastoreAccess, so two creations cannot race. */
const creating = new WeakMap<DatastoreAccess, Set<string>>();

function normalizePath(path: string): string {
  if (!isAbsolute(path)) {
    throw new BadRequestError(`parameter verification failed - 'path': path must be absolute, not '${path}'`);
  }
  const p = resolve(path);
  if (p === '/')
    throw new BadRequestError("parameter verification failed - 'path': refusing the root directory");
  return p;
}

/** Kernel pseudo-filesystems by their statfs magic (linux/magic.h). */
const PSEUDO_FS_MAGIC = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x1cd1, 'devpts'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x6165676c, 'pstore'],
  [0xcafe4a11, 'bpf'],
  [0x62656570, 'configfs'],
]);

/**
 * The pseudo-filesystem `path` would be created on, if any: /proc, /sys and /dev by name (/dev is
 * a devtmpfs, whose magic is tmpfs's), anything else by the statfs magic of its nearest existing
 * ancestor. Creating directories there fails in odd ways — under /proc, Node 20's recursive
 * mkdir loops forever and hung the whole server (issue 12, defect 1).
 */
async function pseudoFilesystemOf(path: string): Promise<string | undefined> {
  for (const top of ['/proc', '/sys', '/dev']) {
    if (path === top || path.startsWith(`${top}/`)) return top;
  }
  let existing = path;
  while (!(await statOrUndefined(existing))) existing = dirname(existing);
  const type = PSEUDO_FS_MAGIC.get(Number((await statfs(existing)).type));
  return type && `a ${type} filesystem`;
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Refuse a path inside another datastore or containing one. */
function checkPathOverlap(access: DatastoreAccess, path: string): void {
  for (const other of access.config.read().stores.values()) {
    // a removable datastore's path is relative to its device; it lives at its mount point (PBS)
    const o = resolve(datastoreAbsolutePath(other));
    if (path === o || path.startsWith(`${o}/`) || o.startsWith(`${path}/`)) {
      throw new BadRequestError(
        `parameter verification failed - 'path': '${path}' overlaps datastore '${other.name}' at '${o}'`,
      );
    }
  }
}

/**
 * How long the path checks may take. They run on libuv's thread pool, so a hung network mount
 * cannot stall the server, but the request must still get an answer.
 */
const PATH_CHECK_TIMEOUT_MS = 10_000;

/**
 * Refuse a path on a pseudo-filesystem, one that is not a directory, or an existing non-empty
 * directory (an existing datastore only with `adoptExisting`).
 */
async function checkNewPathOnDisk(path: string, adoptExisting: boolean): Promise<void> {
  const pseudo = await pseudoFilesystemOf(path);
  if (pseudo) {
    throw new BadRequestError(
      `parameter verification failed - 'path': '${path}' is on ${pseudo}, not a filesystem that can hold a datastore`,
    );
  }
  const st = await statOrUndefined(path);
  if (!st) return;
  if (!st.isDirectory()) {
    throw new BadRequestError(`parameter verification failed - 'path': '${path}' is not a directory`);
  }
  if (adoptExisting && (await statOrUndefined(join(path, '.chunks')))) return;
  const entries = (await readdir(path)).filter((e) => e !== 'lost+found');
  if (entries.length > 0) {
    throw new BadRequestError(`parameter verification failed - 'path': directory '${path}' is not empty`);
  }
}

async function withinPathCheckTime<T>(path: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BadRequestError(
            `parameter verification failed - 'path': '${path}' did not answer within ${PATH_CHECK_TIMEOUT_MS / 1000} s (a hung mount?)`,
          ),
        ),
      PATH_CHECK_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** 400 naming the parameter: a backing device that is no filesystem UUID (PBS `UUID_FORMAT`). */
function checkBackingDevice(backingDevice: string | undefined): void {
  if (backingDevice === undefined || FILESYSTEM_UUID_RE.test(backingDevice)) return;
  throw new BadRequestError(
    `parameter verification failed - 'backing-device': value '${backingDevice}' does not match the UUID format`,
    { param: 'backing-device' },
  );
}

/**
 * The backend type of a new datastore: `filesystem` or PBS 4's `s3`; anything else is a 400
 * naming `backend` (as is an invalid `max-cache-size`).
 */
function newBackendType(backend: string | undefined): 'filesystem' | 's3' {
  if (backend === undefined) return 'filesystem';
  let parsed;
  try {
    parsed = parseDatastoreBackend({ name: 'new', path: '/', backend });
  } catch (err) {
    throw new BadRequestError(`parameter verification failed - 'backend': ${(err as Error).message}`, {
      param: 'backend',
    });
  }
  if (parsed.type !== 'filesystem' && parsed.type !== 's3') {
    throw new BadRequestError(
      `parameter verification failed - 'backend': datastore backend type '${parsed.type}' is not supported by this Stowage version (filesystem or s3)`,
      { param: 'backend' },
    );
  }
  if (parsed['max-cache-size'] !== undefined) parseHumanByte(parsed['max-cache-size'], 'max-cache-size');
  return parsed.type;
}

/**
 * Validate a new datastore and reserve its name and path: every refusal (400, or 409-like
 * ALREADY_EXISTS) happens here, before anything is created.
 */
export async function prepareDatastoreCreation(
  access: DatastoreAccess,
  req: NewDatastore,
): Promise<PreparedDatastore> {
  const backendType = newBackendType(req.backend);
  checkBackingDevice(req['backing-device']);
  const { name } = req;
  const removable = req['backing-device'] !== undefined;
  if (removable && backendType === 's3') {
    throw new BadRequestError(
      "parameter verification failed - 'backing-device': an S3 datastore's path is a local cache, not on a removable device",
      { param: 'backing-device' },
    );
  }
  if (removable) checkOnDevicePath(req.path);
  // a removable datastore's path stays relative to its device (PBS); its files are at the mount point
  const path = removable ? req.path : normalizePath(req.path);
  const config: DatastoreConfig = {
    name,
    path,
    ...(removable && { 'backing-device': req['backing-device'] }),
    ...(req.backend !== undefined && { backend: req.backend }),
  };
  const where = datastoreAbsolutePath(config);
  applyFields(config, { set: req.set ?? {}, remove: [] });
  const modeText = req['maintenance-mode'];
  if (modeText !== undefined) config['maintenance-mode'] = formatMaintenanceMode(operatorMode(modeText));
  validateNewConfig(config);
  const pending = creating.get(access) ?? new Set<string>();
  creating.set(access, pending);
  if (access.config.read().stores.has(name) || pending.has(name)) {
    throw ERR_DATASTORE_EXISTS(name);
  }
  checkPathOverlap(access, where);
  for (const p of pending) {
    if (p === where || p.startsWith(`${where}/`) || where.startsWith(`${p}/`)) {
      throw new BadRequestError(`parameter verification failed - 'path': '${where}' is being created`);
    }
  }
  // reserved before the filesystem is asked, so a concurrent request for the same name or path
  // is refused while this one awaits the checks
  pending.add(name);
  pending.add(where);
  const cancel = () => {
    pending.delete(name);
    pending.delete(where);
  };
  const reuseDatastore = req.reuseDatastore ?? false;
  let s3: S3StoreLocation | undefined;
  try {
    // a removable datastore's directory is only seen once the task mounted its device
    if (!removable) {
      await withinPathCheckTime(
        path,
        checkNewPathOnDisk(path, (req.adoptExisting ?? false) || reuseDatastore),
      );
      // an S3 datastore's data is in the bucket: its path is a cache, refilled on reuse
      if (reuseDatastore && backendType === 'filesystem')
        await withinPathCheckTime(path, checkReusable(path));
    }
    if (backendType === 's3') {
      // PBS checks the bucket before its task starts; the in-use marker is checked here too, so
      // every refusal is an answer to the request rather than a failed task
      try {
        s3 = s3LocationOf(config, { configDir: access.config.configDir });
      } catch (err) {
        if (!ERR_S3_ENDPOINT_NOT_CONFIGURED.is(err)) throw err;
        throw new BadRequestError(`parameter verification failed - 'backend': ${err.message}`, {
          param: 'backend',
        });
      }
      await checkS3DatastoreBucket(s3, { overwriteInUse: req.overwriteInUse ?? false });
    }
  } catch (err) {
    cancel();
    throw err;
  }
  return {
    config,
    adoptExisting: req.adoptExisting ?? false,
    reuseDatastore,
    ...(s3 && { s3 }),
    cancel,
  };
}

/**
 * Create the chunk store of a prepared datastore (unless one is adopted) and add its section to
 * datastore.cfg under the change lock. Ends the reservation however it ends.
 */
export async function createDatastore(
  access: DatastoreAccess,
  prepared: PreparedDatastore,
  opts: { log?: (line: string) => void; runDir?: string } = {},
): Promise<void> {
  const log = opts.log ?? (() => {});
  const { config } = prepared;
  const { name } = config;
  const path = datastoreAbsolutePath(config);
  // PBS: a removable datastore's device is mounted first, and unmounted again if creation fails
  let mountedHere = false;
  try {
    if (isRemovable(config)) {
      if (opts.runDir === undefined)
        throw new TypeError('createDatastore: a removable datastore needs runDir');
      mountedHere = await attachRemovableDatastore(config, { runDir: opts.runDir, log, createPath: true });
      if (prepared.reuseDatastore) await checkReusable(path);
      else await checkNewPathOnDisk(path, false);
    }
    const existed = existsSync(path);
    const adopted =
      !prepared.s3 &&
      (prepared.adoptExisting || prepared.reuseDatastore) &&
      existsSync(join(path, '.chunks'));
    if (adopted) log(`reusing the datastore at ${path}`);
    if (prepared.s3) {
      const where = `s3://${prepared.s3.bucket}/${prepared.s3.storePrefix}/`;
      // PBS: a reused S3 datastore's old cache may know chunks the bucket no longer has
      if (prepared.reuseDatastore) rmSync(join(path, '.chunks'), { recursive: true, force: true });
      log(`create S3 datastore '${name}' in ${where}, local cache at ${path}`);
    }
    if (!adopted) {
      if (!prepared.s3) log(`create datastore '${name}' at ${path}`);
      const created = Datastore.create(name, path, {
        chunks: await createChunkBackend(config, {
          configDir: access.config.configDir,
          locks: access.backend.locks,
        }),
        syncLevel: syncLevelOf(config),
        locks: access.backend.locks,
      });
      try {
        log(prepared.s3 ? `in-use marker written for host ${hostname()}` : 'chunk store created');
        if (prepared.s3 && prepared.reuseDatastore) {
          // PBS 4 refreshes in the s3-refresh mode after adding the config; here the datastore is
          // not in the configuration yet, so no operation can see the cache half refilled
          log('fetching the snapshot metadata from the bucket (s3-refresh)');
          const files = await created.refreshFromBucket(log);
          log(`fetched ${files} files`);
        }
      } finally {
        created.close();
      }
    }
    const lock = await access.lockConfig('change');
    try {
      await access.config.update(
        (stores) => {
          if (stores.has(name)) throw ERR_DATASTORE_EXISTS(name);
          stores.set(name, config);
        },
        { lockHeld: true },
      );
    } catch (err) {
      // leave nothing behind that would make the path unusable for the next attempt
      if (!adopted) {
        if (existed)
          for (const e of ['.chunks', '.lock']) rmSync(join(path, e), { recursive: true, force: true });
        else rmSync(path, { recursive: true, force: true });
      }
      throw err;
    } finally {
      lock.release();
    }
    log(`datastore '${name}' added to the configuration`);
    mountedHere = false; // created: it stays mounted, as in PBS
  } finally {
    prepared.cancel();
    if (mountedHere) {
      await unmountDir(path).catch((err: unknown) =>
        log(`warning: could not unmount device: ${(err as Error).message}`),
      );
    }
  }
}

/** PBS `reuse-datastore` (`ChunkStore::verify_chunkstore`): the path must hold a chunk store. */
async function checkReusable(path: string): Promise<void> {
  if (!(await statOrUndefined(join(path, '.chunks')))) throw ERR_NO_DATASTORE_TO_REUSE(path);
}
