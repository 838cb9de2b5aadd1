/**
 * Admission: the one way code reaches a datastore (design §2, §3). `lookupDatastore` checks the
 * maintenance mode and registers the operation atomically with respect to mode changes, and
 * returns a handle; the datastore's files are only reachable through that handle.
 *
 * Atomicity (invariant 1): admissions hold a *shared* flock on the datastore config lock across
 * read-config → check → open → register; every change of a maintenance mode holds the *exclusive*
 * lock across its write. So an admission either completes (and is visible in the registry) before
 * a mode change, or sees the new mode. PBS serialises all admissions on an exclusive lock
 * (reference §3.3); the shared lock gives the same guarantee without making admissions queue
 * behind each other.
 *
 * Releasing the disk (invariant 7): a process keeps a datastore open only while it has admitted
 * operations on it. When its last one ends the datastore is closed, whatever the mode, so an
 * `offline` datastore is released by every process as soon as it drains — no control socket, no
 * cache to evict, no restart.
 */
import { dirname, join } from 'node:path';
import { acquireFileLock, type FileLock } from '../sys/file-lock.js';
import { BadConfigError, NotFoundError, StowageError } from '../errors.js';
import type { DatastoreConfig, DatastoreConfigFile } from '../config/datastore-config.js';
import { parsePropertyString } from '../config/property-string.js';
import { Datastore } from '../datastore/datastore.js';
import {
  checkMaintenance,
  parseMaintenanceMode,
  type MaintenanceMode,
  type OperationClass,
} from './maintenance-mode.js';
import type { OperationInfo, OperationRecord, OperationRegistry } from './operation-registry.js';
import { checkSupportedDatastore } from './unsupported-datastore.js';

type SyncLevel = 'none' | 'filesystem' | 'file';

/** The maintenance mode stored for a datastore; a value that fails to parse is an error, never "none". */
export function storedMaintenanceMode(cfg: DatastoreConfig): MaintenanceMode | undefined {
  const raw = cfg['maintenance-mode'];
  if (raw === undefined || raw === '') return undefined;
  try {
    return parseMaintenanceMode(raw);
  } catch (err) {
    throw new BadConfigError(
      `datastore '${cfg.name}' has an invalid maintenance-mode in datastore.cfg (${(err as Error).message}); ` +
        'refusing all operations until it is fixed',
    );
  }
}

function syncLevelOf(cfg: DatastoreConfig): SyncLevel {
  if (!cfg.tuning) return 'filesystem';
  const level = parsePropertyString(cfg.tuning, { name: 'tuning' }).find(([k]) => k === 'sync-level')?.[1];
  if (level === undefined) return 'filesystem';
  if (level === 'none' || level === 'filesystem' || level === 'file') return level;
  throw new BadConfigError(`datastore '${cfg.name}': invalid tuning sync-level '${level}'`);
}

/** A handle on an admitted operation. Release it exactly once (extra releases are no-ops). */
export interface OperationHandle extends AsyncDisposable {
  readonly name: string;
  readonly operation: OperationClass;
  readonly record: OperationRecord;
  /** The datastore configuration the admission was checked against. */
  readonly config: DatastoreConfig;
  release(): Promise<void>;
  /** Record the worker task (UPID) this operation runs in, for the operator's view. */
  attachTask(taskId: string): void;
}

/** A read or write operation: the datastore's files are reachable through `datastore`. */
export interface DatastoreHandle extends OperationHandle {
  readonly datastore: Datastore;
}

interface OpenStore {
  datastore: Datastore;
  path: string;
  holders: number;
}

export interface DatastoreAccessOptions {
  config: DatastoreConfigFile;
  registry: OperationRegistry;
  runDir: string;
  /** How long an admission waits for a mode change to finish (default 10 s, as PBS's lock). */
  lockTimeoutMs?: number;
}

export class DatastoreAccess {
  readonly config: DatastoreConfigFile;
  readonly registry: OperationRegistry;
  private readonly runDir: string;
  private readonly lockTimeoutMs: number;
  private readonly turnstilePath: string;
  /** Datastores this process holds open, with the number of its operations using each. */
  private readonly open = new Map<string, OpenStore>();

  constructor(opts: DatastoreAccessOptions) {
    this.config = opts.config;
    this.registry = opts.registry;
    this.runDir = opts.runDir;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 10_000;
    this.turnstilePath = join(dirname(this.config.lockPath), '.datastore-admission.lck');
  }

  /**
   * Take the lock every admission holds shared and every mode change holds exclusively.
   *
   * flock gives an exclusive waiter no priority over new shared holders, so under a steady stream
   * of admissions a mode change could starve until its lock timeout. A turnstile lock in front
   * gives changes priority: an admission passes the turnstile (held for microseconds) to take its
   * shared lock; a change holds the turnstile while it waits, so no new admission gets in and the
   * ones in flight drain within their short critical sections.
   */
  async lockConfig(mode: 'admission' | 'change'): Promise<FileLock> {
    const opts = { timeoutMs: this.lockTimeoutMs };
    const turnstile = await acquireFileLock(this.turnstilePath, opts);
    let main: FileLock;
    try {
      main = await acquireFileLock(this.config.lockPath, { ...opts, shared: mode === 'admission' });
    } catch (err) {
      turnstile.release();
      throw err;
    }
    if (mode === 'admission') {
      turnstile.release();
      return main;
    }
    return {
      path: main.path,
      release() {
        main.release();
        turnstile.release();
      },
    };
  }

  /**
   * Admit an operation on datastore `name`: refused with MaintenanceError (503) when the mode in
   * force refuses `op`, and a read or write with UnsupportedDatastoreError (400) on a removable or
   * S3 datastore of PBS 4. `lookup` admissions get no datastore (they must do no disk IO).
   */
  async lookupDatastore(name: string, op: 'lookup', info: OperationInfo): Promise<OperationHandle>;
  async lookupDatastore(name: string, op: 'read' | 'write', info: OperationInfo): Promise<DatastoreHandle>;
  async lookupDatastore(name: string, op: OperationClass, info: OperationInfo): Promise<OperationHandle> {
    const lock = await this.lockConfig('admission');
    try {
      const { stores } = this.config.readCached();
      const cfg = stores.get(name);
      if (!cfg) throw new NotFoundError(`datastore '${name}' does not exist`);
      checkMaintenance(name, storedMaintenanceMode(cfg), op);
      // After the mode, as PBS checks the mount after it (a removable datastore being unmounted
      // says so). Lookups touch no disk, so they are admitted on these datastores too.
      if (op !== 'lookup') checkSupportedDatastore(cfg);
      if (op === 'lookup') {
        const record = this.registry.register(name, op, info);
        return this.makeHandle(name, op, record, cfg, undefined);
      }
      // Build the handle fully before registering: a failure here leaves nothing counted.
      const store = this.acquireOpen(name, cfg);
      let record: OperationRecord;
      try {
        record = this.registry.register(name, op, info);
      } catch (err) {
        this.releaseOpen(name, store);
        throw err;
      }
      return this.makeHandle(name, op, record, cfg, store);
    } finally {
      lock.release();
    }
  }

  private acquireOpen(name: string, cfg: DatastoreConfig): OpenStore {
    let store = this.open.get(name);
    if (!store || store.path !== cfg.path) {
      // A changed path gets a fresh open; the old one closes when its last holder releases.
      const datastore = Datastore.open(name, cfg.path, { syncLevel: syncLevelOf(cfg), runDir: this.runDir });
      store = { datastore, path: cfg.path, holders: 0 };
      this.open.set(name, store);
    }
    store.holders++;
    return store;
  }

  private releaseOpen(name: string, store: OpenStore): void {
    store.holders--;
    if (store.holders > 0) return;
    store.datastore.close();
    if (this.open.get(name) === store) this.open.delete(name);
  }

  private makeHandle(
    name: string,
    op: OperationClass,
    record: OperationRecord,
    config: DatastoreConfig,
    store: OpenStore | undefined,
  ): DatastoreHandle {
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      try {
        this.registry.unregister(record.id);
      } finally {
        if (store) this.releaseOpen(name, store);
      }
    };
    const handle = {
      name,
      operation: op,
      record,
      config,
      release,
      attachTask: (taskId: string) => {
        if (!released) this.registry.attachTask(record.id, taskId);
      },
      [Symbol.asyncDispose]: release,
    } as unknown as DatastoreHandle;
    if (store) Object.defineProperty(handle, 'datastore', { value: store.datastore, enumerable: false });
    return handle;
  }

  /** Operations this process holds open datastores for (for diagnostics and tests). */
  openDatastores(): string[] {
    return [...this.open.keys()];
  }

  /** Config of one datastore, or NotFoundError. No lock: for display only. */
  datastoreConfig(name: string): DatastoreConfig {
    const cfg = this.config.readCached().stores.get(name);
    if (!cfg) throw new NotFoundError(`datastore '${name}' does not exist`);
    return cfg;
  }

  close(): void {
    for (const store of this.open.values()) store.datastore.close();
    this.open.clear();
    this.registry.close();
  }
}

export function isMaintenanceRefusal(err: unknown): boolean {
  return err instanceof StowageError && err.code === 'MAINTENANCE';
}

/**
 * Whether an admission was refused because of what the datastore is (maintenance mode, or a PBS
 * feature this version does not support) rather than a failure: lists show such a datastore
 * without its data, scheduled jobs record the run as skipped.
 */
export function isAdmissionRefusal(err: unknown): boolean {
  return err instanceof StowageError && (err.code === 'MAINTENANCE' || err.code === 'UNSUPPORTED');
}
