/**
 * The local admission backend: the mode in `datastore.cfg`, atomicity in flocks, operations in
 * the SQLite registry every process of the instance shares (docs/adr/001). The embedded default.
 *
 * Atomicity (invariant 1): `admit` holds a *shared* flock on the datastore config lock across
 * read-config → check → prepare → register; `setMode` (and `lockChanges`) hold it *exclusively*
 * across the write. So an admission either completes, and is in the registry, before a mode
 * change, or sees the new mode. PBS serialises all admissions on an exclusive lock (reference
 * §3.3); the shared lock gives the same guarantee without making admissions queue behind each
 * other.
 *
 * `watch` polls a signature of the store's rows (count and highest id: any insert raises the
 * highest id, any delete lowers the count, so no change of the set can keep both) and the
 * stored mode string, a few microseconds per tick, and sweeps dead holders every few ticks.
 * Nothing is added to the admission path for it.
 */
import { dirname, join } from 'node:path';
import { acquireFileLock, type FileLock } from '../sys/file-lock.js';
import { processStartTime } from '../sys/proc.js';
import {
  ERR_MAINTENANCE_MODE_UNREADABLE,
  ConfigModifiedError,
  ERR_DATASTORE_NOT_FOUND,
  ERR_DELETE_MODE_RESERVED,
  StowageError,
} from '../errors.js';
import type { DatastoreConfig, DatastoreConfigFile } from '../config/datastore-config.js';
import {
  checkMaintenance,
  checkTransition,
  conflictingClasses,
  formatMaintenanceMode,
  holdConflictingClasses,
  parseMaintenanceMode,
  type MaintenanceMode,
  type OperationClass,
  type SystemHold,
} from './maintenance-mode.js';
import { drainsAfter, type MaintenanceEvent, type MaintenanceEventLog } from './maintenance-events.js';
import { holdChange, modeChangeEvent } from './admission-history.js';
import { CoalescingWatch } from './coalescing-watch.js';
import type { OperationCounts, OperationInfo, OperationRecord } from './operation-registry.js';
import type { SqliteOperationRegistry } from './sqlite-operation-registry.js';
import type { LockService } from './lock-service.js';
import type { JobStateStore } from '../jobs/job-state.js';
import {
  ConflictingOperationsError,
  type Admission,
  type AdmissionBackend,
  type AdmissionWatch,
  type AdmitHooks,
  type ChangeLock,
  type HoldChange,
  type HoldSpec,
  type ModeChange,
  type SetModeOptions,
} from './admission-backend.js';

/**
 * The maintenance mode stored for a datastore. A value that fails to parse (a hand edit) is never
 * "none": it refuses everything as a maintenance refusal (503, CLI exit 75 — the datastore is
 * unavailable, not the server broken), and setting or clearing the mode replaces it.
 */
export function storedMaintenanceMode(cfg: DatastoreConfig): MaintenanceMode | undefined {
  const raw = cfg['maintenance-mode'];
  if (raw === undefined || raw === '') return undefined;
  try {
    return parseMaintenanceMode(raw);
  } catch (err) {
    throw ERR_MAINTENANCE_MODE_UNREADABLE(cfg.name, (err as Error).message);
  }
}

function notFound(store: string): StowageError {
  return ERR_DATASTORE_NOT_FOUND(store);
}

export interface LocalAdmissionBackendOptions {
  config: DatastoreConfigFile;
  registry: SqliteOperationRegistry;
  locks: LockService;
  /** The maintenance history (usually `<dataDir>/maintenance-events.sqlite`). */
  events: MaintenanceEventLog;
  /** The job states (usually `<dataDir>/jobstates/`). */
  jobStates: JobStateStore;
  /** How long an admission waits for a mode change to finish (default 10 s, as PBS's lock). */
  lockTimeoutMs?: number;
  /** How often a watch looks for changes (default 25 ms). */
  watchIntervalMs?: number;
}

export class LocalAdmissionBackend implements AdmissionBackend {
  readonly config: DatastoreConfigFile;
  /** The SQLite registry, synchronous: for tests and diagnostics on this host only. */
  readonly registry: SqliteOperationRegistry;
  readonly locks: LockService;
  readonly events: MaintenanceEventLog;
  readonly jobStates: JobStateStore;
  private readonly lockTimeoutMs: number;
  private readonly watchIntervalMs: number;
  private readonly turnstilePath: string;

  constructor(opts: LocalAdmissionBackendOptions) {
    this.config = opts.config;
    this.registry = opts.registry;
    this.locks = opts.locks;
    this.events = opts.events;
    this.jobStates = opts.jobStates;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? 10_000;
    this.watchIntervalMs = opts.watchIntervalMs ?? 25;
    this.turnstilePath = join(dirname(this.config.lockPath), '.datastore-admission.lck');
  }

  /**
   * Take the lock every admission holds shared and every change holds exclusively.
   *
   * flock gives an exclusive waiter no priority over new shared holders, so under a steady stream
   * of admissions a mode change could starve until its lock timeout. A turnstile lock in front
   * gives changes priority: an admission passes the turnstile (held for microseconds) to take its
   * shared lock; a change holds the turnstile while it waits, so no new admission gets in and the
   * ones in flight drain within their short critical sections.
   */
  private async lockConfig(mode: 'admission' | 'change'): Promise<FileLock> {
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

  async admit<T = undefined>(
    store: string,
    cls: OperationClass,
    info: OperationInfo,
    hooks: AdmitHooks<T> = {},
  ): Promise<Admission<T>> {
    const lock = await this.lockConfig('admission');
    try {
      const cfg = this.config.readCached().stores.get(store);
      if (!cfg) throw notFound(store);
      checkMaintenance(store, storedMaintenanceMode(cfg), cls, this.registry.holds(store), info.kind);
      // Prepared fully before registering: a failure here leaves nothing counted.
      const value = hooks.prepare ? hooks.prepare(cfg) : (undefined as T);
      let record: OperationRecord;
      try {
        record = this.registry.register(store, cls, info);
      } catch (err) {
        if (hooks.prepare) hooks.abort?.(value);
        throw err;
      }
      return { record, config: cfg, value };
    } finally {
      lock.release();
    }
  }

  async release(id: number): Promise<void> {
    this.registry.unregister(id);
  }

  async attachTask(id: number, taskId: string): Promise<void> {
    this.registry.attachTask(id, taskId);
  }

  async setMode(
    store: string,
    mode: MaintenanceMode | undefined,
    opts: SetModeOptions = {},
  ): Promise<ModeChange> {
    if (mode?.type === 'delete' && !opts.allowDelete) {
      throw ERR_DELETE_MODE_RESERVED();
    }
    const lock = await this.lockConfig('change');
    let change: Omit<ModeChange, 'conflicting'>;
    let event: MaintenanceEvent | undefined;
    try {
      // Under the exclusive lock no admission is between its check and its registration, so what
      // is read here stays true until the write below: the registry gains no operation meanwhile.
      const current = this.config.read();
      if (opts.digest !== undefined && opts.digest !== current.digest) throw new ConfigModifiedError();
      const before = current.stores.get(store);
      if (!before) throw notFound(store);
      opts.precondition?.(before);
      let previous: MaintenanceMode | undefined;
      try {
        previous = storedMaintenanceMode(before);
      } catch {
        previous = undefined; // an unparsable stored value may be overwritten by a valid one
      }
      if (!opts.allowDelete) checkTransition(store, previous, mode);
      if (opts.ifIdle) {
        const blocking = this.conflicting(store, mode);
        if (blocking.length > 0) {
          throw new ConflictingOperationsError(
            `datastore '${store}' is not idle, mode not changed`,
            blocking,
          );
        }
      }
      const snapshot = await this.config.update(
        (stores) => {
          const cfg = stores.get(store);
          if (!cfg) throw notFound(store);
          opts.alsoApply?.(cfg);
          if (mode) cfg['maintenance-mode'] = formatMaintenanceMode(mode);
          else delete cfg['maintenance-mode'];
        },
        { digest: current.digest, lockHeld: true },
      );
      // Taken under the exclusive lock: no admission is in flight, so this splits the order exactly.
      change = { digest: snapshot.digest, sequence: this.registry.sequence(), previous, config: before };
      const record = modeChangeEvent(store, before['maintenance-mode'], previous, mode, opts.authId);
      event = record && (await this.events.append(record));
    } finally {
      lock.release();
    }
    const conflicting = this.conflicting(store, mode);
    if (event && conflicting.length === 0 && drainsAfter(event))
      await this.events.recordDrained(store, event);
    return { ...change, conflicting, ...(event && { event }) };
  }

  async setHold(
    store: string,
    source: string,
    spec: HoldSpec | undefined,
    opts: { authId?: string; forced?: boolean } = {},
  ): Promise<HoldChange> {
    const lock = await this.lockConfig('change');
    let change: Omit<HoldChange, 'conflicting'>;
    try {
      if (!this.config.read().stores.has(store)) throw notFound(store);
      const previous = this.registry.holds(store).find((h) => h.source === source);
      const next = holdChange(store, source, previous, spec, opts);
      if (next.hold) this.registry.putHold(store, next.hold);
      else if (previous) this.registry.removeHold(store, source);
      const hold = next.hold;
      const event = next.event && (await this.events.append(next.event));
      change = {
        ...(previous && { previous }),
        ...(hold && { hold }),
        sequence: this.registry.sequence(),
        ...(event && { event }),
      };
    } finally {
      lock.release();
    }
    const classes = change.hold ? holdConflictingClasses(change.hold) : [];
    const conflicting = this.registry.list(store).filter((op) => classes.includes(op.class));
    if (change.event && conflicting.length === 0 && drainsAfter(change.event)) {
      await this.events.recordDrained(store, change.event);
    }
    return { ...change, conflicting };
  }

  async holds(store: string): Promise<SystemHold[]> {
    if (!this.config.readCached().stores.has(store)) throw notFound(store);
    return this.registry.holds(store);
  }

  private conflicting(store: string, mode: MaintenanceMode | undefined): OperationRecord[] {
    const classes = conflictingClasses(mode);
    return this.registry.list(store).filter((op) => classes.includes(op.class));
  }

  async mode(store: string): Promise<MaintenanceMode | undefined> {
    const cfg = this.config.readCached().stores.get(store);
    if (!cfg) throw notFound(store);
    return storedMaintenanceMode(cfg);
  }

  async list(store?: string): Promise<OperationRecord[]> {
    return this.registry.list(store);
  }

  async counts(store: string): Promise<OperationCounts> {
    return this.registry.counts(store);
  }

  async sequence(): Promise<number> {
    return this.registry.sequence();
  }

  watch(store: string, opts: { signal?: AbortSignal } = {}): AdmissionWatch {
    const signature = () => {
      const mode = this.config.readCached().stores.get(store)?.['maintenance-mode'] ?? '\0none';
      return `${this.registry.signature(store)}|${mode}|${this.registry.holdSignature(store)}`;
    };
    return new PollingWatch(
      signature,
      () => void this.registry.list(store),
      this.watchIntervalMs,
      opts.signal,
    );
  }

  async holderAlive(record: OperationRecord): Promise<boolean> {
    return processStartTime(record.pid) === record.pstart;
  }

  async lockChanges(): Promise<ChangeLock> {
    return this.lockConfig('change');
  }

  async forgetStore(store: string): Promise<void> {
    this.registry.forgetStore(store);
  }

  close(): void {
    this.registry.close();
    this.events.close();
  }
}

/** Dead holders are swept every this many ticks (a /proc read per holder process). */
const SWEEP_EVERY = 4;

/**
 * A watch that compares a cheap signature of the watched state on a timer, and only while a
 * caller waits in `changed()`; between calls the last signature seen is kept, so a change made
 * while nobody waited is reported by the next call at once.
 */
class PollingWatch extends CoalescingWatch {
  private last: string;
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;

  constructor(
    private readonly signature: () => string,
    private readonly sweep: () => void,
    private readonly intervalMs: number,
    signal: AbortSignal | undefined,
  ) {
    super(signal);
    this.last = signature();
  }

  protected moved(): boolean {
    if (++this.ticks % SWEEP_EVERY === 0) this.sweep();
    const now = this.signature();
    if (now === this.last) return false;
    this.last = now;
    return true;
  }

  protected startWaiting(): void {
    this.timer = setInterval(() => {
      try {
        if (this.moved()) this.mark();
      } catch (err) {
        this.fail(err);
      }
    }, this.intervalMs);
  }

  protected stopWaiting(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
