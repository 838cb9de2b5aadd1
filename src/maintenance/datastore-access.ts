/**
 * Admission: the one way code reaches a datastore (design §2, §3). `lookupDatastore` asks the
 * admission backend (admission-backend.ts) to check the maintenance mode and register the
 * operation atomically with respect to mode changes, and returns a handle; the datastore's files
 * are only reachable through that handle.
 *
 * Releasing the disk (invariant 7): a process keeps a datastore open only while it has admitted
 * operations on it. When its last one ends the datastore is closed, whatever the mode, so an
 * `offline` datastore is released by every process as soon as it drains — no control socket, no
 * cache to evict, no restart.
 */
import { ERR_REGISTRY_NOT_LOCAL, NotFoundError, StowageError } from '../errors.js';
import type { DatastoreConfig, DatastoreConfigSource } from '../config/datastore-config.js';
import type { ChunkBackend } from '../datastore/chunk-backend.js';
import { Datastore, type ReadonlyDatastore, type WritableDatastore } from '../datastore/datastore.js';
import type { OperationClass, WriteClass } from './maintenance-mode.js';
import type { OperationInfo, OperationRecord, OperationRegistry } from './operation-registry.js';
import type { AdmissionBackend, ChangeLock } from './admission-backend.js';
import { LocalAdmissionBackend } from './local-admission-backend.js';
import { checkSupportedDatastore } from './unsupported-datastore.js';
import { checkMounted } from './removable-datastore.js';
import { datastoreAbsolutePath } from '../config/datastore-config.js';
import { openChunkBackend, syncLevelOf, type ChunkBackendContext } from './chunk-backend-for.js';
import type { LowSpaceMonitor } from './low-space-monitor.js';

export { storedMaintenanceMode } from './local-admission-backend.js';

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

/**
 * A `read` operation: the datastore is reachable through `datastore`, read-only by type (no
 * writing method, no path), so a read admission cannot modify the datastore.
 */
export interface ReadHandle extends OperationHandle {
  readonly operation: 'read';
  readonly datastore: ReadonlyDatastore;
}

/**
 * An `ingest` or `reclaim` operation (PBS's write): the whole datastore (still without paths)
 * through `datastore`. The class says what the mode checked, not what the type allows: `sealed`
 * admits reclaim and refuses ingest.
 */
export interface WriteHandle extends OperationHandle {
  readonly operation: WriteClass;
  readonly datastore: WritableDatastore;
}

/** A read, ingest or reclaim operation; narrow on `operation` to write. */
export type DatastoreHandle = ReadHandle | WriteHandle;

/** The classes that get a datastore (all but lookup). */
export type DataClass = 'read' | WriteClass;

/** The handle an admission of class `Op` gets (a union of classes gives either). */
export type DatastoreHandleFor<Op extends DataClass> = Op extends WriteClass ? WriteHandle : ReadHandle;

/** The datastore an admission of class `Op` sees (a union with read gives the read-only view). */
export type DatastoreFor<Op extends DataClass> = DatastoreHandleFor<Op>['datastore'];

/** Where one of this process's admitted operations runs. */
export interface AdmittedOperation {
  readonly store: string;
  /** Its worker task (UPID), once attached. */
  taskId?: string;
  /** Called when its task is attached (an operation found lost before its task started). */
  onTaskAttached?: (taskId: string) => void;
}

interface OpenStore {
  datastore: Datastore;
  path: string;
  holders: number;
}

/** Opens an existing datastore's chunk backend from its configuration. */
export type ChunkBackendOpener = (cfg: DatastoreConfig, ctx: ChunkBackendContext) => ChunkBackend;

export interface DatastoreAccessOptions {
  config: DatastoreConfigSource;
  /** Where modes and operations live and admission is made atomic. */
  backend: AdmissionBackend;
  /**
   * How a datastore's chunk backend is opened; default `openChunkBackend` (chunk-backend-for.ts).
   * Fault tests wrap it (a backend that runs out of space, test/faults/).
   */
  openChunks?: ChunkBackendOpener;
  /** Applies the low-space hold before each ingest admission (none: the hold is never engaged here). */
  lowSpace?: LowSpaceMonitor;
}

export class DatastoreAccess {
  readonly config: DatastoreConfigSource;
  readonly backend: AdmissionBackend;
  /** The low-space hold's sampler (low-space-monitor.ts), shared with the server's periodic pass. */
  readonly lowSpace: LowSpaceMonitor | undefined;
  private readonly openChunks: ChunkBackendOpener;
  /** Datastores this process holds open, with the number of its operations using each. */
  private readonly open = new Map<string, OpenStore>();
  /** This process's admitted operations by id: their store and worker task (a lost cluster lease aborts them). */
  private readonly admitted = new Map<number, AdmittedOperation>();

  constructor(opts: DatastoreAccessOptions) {
    this.config = opts.config;
    this.backend = opts.backend;
    this.openChunks = opts.openChunks ?? openChunkBackend;
    this.lowSpace = opts.lowSpace;
  }

  /**
   * The host's operation registry, synchronously: local backend only, for tests and
   * diagnostics. Code that must work with any backend uses `backend`.
   */
  get registry(): OperationRegistry {
    if (this.backend instanceof LocalAdmissionBackend) return this.backend.registry;
    throw ERR_REGISTRY_NOT_LOCAL();
  }

  /**
   * Exclude admissions and mode changes while writing datastore.cfg outside a mode change
   * (`mode` is kept for the callers written when this was a flock; only 'change' is offered).
   */
  lockConfig(_mode: 'change'): Promise<ChangeLock> {
    return this.backend.lockChanges();
  }

  /**
   * Admit an operation on datastore `name`: refused with MaintenanceError (503) when the mode in
   * force refuses `op`, a read or write with UnsupportedDatastoreError (400) on a datastore whose
   * backend type this version does not know, and with ERR_DATASTORE_NOT_MOUNTED (400) on a removable datastore that is not mounted. `lookup` admissions get no datastore (they must do no disk IO).
   */
  async lookupDatastore(name: string, op: 'lookup', info: OperationInfo): Promise<OperationHandle>;
  async lookupDatastore(name: string, op: 'read', info: OperationInfo): Promise<ReadHandle>;
  async lookupDatastore(name: string, op: WriteClass, info: OperationInfo): Promise<WriteHandle>;
  async lookupDatastore<Op extends DataClass>(
    name: string,
    op: Op,
    info: OperationInfo,
  ): Promise<DatastoreHandleFor<Op>>;
  async lookupDatastore(name: string, op: OperationClass, info: OperationInfo): Promise<OperationHandle> {
    if (op === 'lookup') {
      const { record, config } = await this.backend.admit(name, op, info);
      return this.makeHandle(name, op, record, config, undefined);
    }
    // Before admit, outside its atomic section: a statfs must not hold up mode changes, and the
    // hold this may engage is then enforced by admit itself, for this admission too.
    if (op === 'ingest') await this.lowSpace?.beforeIngest(name);
    // Opened inside the admission, before registering: a failure there leaves nothing counted.
    const { record, config, value } = await this.backend.admit(name, op, info, {
      prepare: (cfg) => {
        // After the mode, as PBS checks the mount after it (a removable datastore being unmounted
        // says so). Lookups touch no disk, so they are admitted on these datastores too.
        checkSupportedDatastore(cfg);
        checkMounted(cfg);
        return this.acquireOpen(name, cfg);
      },
      abort: (store) => this.releaseOpen(name, store),
    });
    return this.makeHandle(name, op, record, config, value);
  }

  private acquireOpen(name: string, cfg: DatastoreConfig): OpenStore {
    let store = this.open.get(name);
    const path = datastoreAbsolutePath(cfg);
    if (!store || store.path !== path) {
      // A changed path gets a fresh open; the old one closes when its last holder releases.
      const syncLevel = syncLevelOf(cfg);
      const datastore = Datastore.open(name, path, {
        chunks: this.openChunks(cfg, { configDir: this.config.configDir, locks: this.backend.locks }),
        syncLevel,
        locks: this.backend.locks,
      });
      store = { datastore, path, holders: 0 };
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
    const admitted: AdmittedOperation = { store: name, ...(record.taskId && { taskId: record.taskId }) };
    this.admitted.set(record.id, admitted);
    const release = async () => {
      if (released) return;
      released = true;
      this.admitted.delete(record.id);
      try {
        await this.backend.release(record.id);
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
        admitted.taskId = taskId;
        admitted.onTaskAttached?.(taskId);
        // the local backend records it before this returns; a failure only loses the display
        if (!released) this.backend.attachTask(record.id, taskId).catch(() => {});
      },
      [Symbol.asyncDispose]: release,
    } as unknown as DatastoreHandle;
    if (store) Object.defineProperty(handle, 'datastore', { value: store.datastore, enumerable: false });
    return handle;
  }

  /** This process's admitted operation `id`, until released (undefined: not ours, or ended). */
  admittedOperation(id: number): AdmittedOperation | undefined {
    return this.admitted.get(id);
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
    // before the backend: in cluster mode its etcd client carries the config's watch
    this.config.close?.();
    this.backend.close();
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
  return (
    err instanceof StowageError &&
    (err.code === 'MAINTENANCE' || err.code === 'UNSUPPORTED' || err.code === 'NOT_MOUNTED')
  );
}
