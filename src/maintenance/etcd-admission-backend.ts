/**
 * The etcd admission backend (issue 17; design §6): several Stowage servers on one datastore keep
 * its configuration, maintenance mode, system holds and running operations in one etcd cluster.
 *
 * Keys, under the cluster's prefix P:
 *
 *   P datastores/<store>/config        {config, holds}: the datastore's section (maintenance-mode
 *                                       included) and its system holds, one key, one revision
 *   P datastores/<store>/ops/<uuid>    an admitted operation, put under its server's lease
 *   P locks/...                         the lock service (etcd-lock-service.ts)
 *
 * Invariant 1 by optimistic transactions instead of a lock: an admission reads the config key,
 * checks mode and holds, and commits its operation key in ONE transaction that compares the
 * config key's mod revision with the one it read. A mode or hold change rewrites that key (itself
 * compared against what it read), so etcd orders every admission either before the change, and
 * it is counted, or after it, and its compare fails and it checks again under the new mode. An
 * `if-idle` change also compares that no operation key of the store was written since its read.
 *
 * The operation id is the revision of its put (its create revision), and `sequence()` the current
 * revision: ids order admissions across the cluster and a mode change's revision splits them.
 *
 * Liveness: a server's operations live under its lease (TTL default 10 s), so those of a server
 * that died or lost etcd vanish when the lease expires. A holder on this host (same boot and pid
 * namespace) is also checked by pid and start time, as the local backend does: a SIGKILLed
 * process stops counting at once, and whoever sees it first deletes its key for everyone.
 *
 * Never admit blind: every admission is a write to etcd, so a server that cannot reach etcd
 * refuses with ERR_CLUSTER_UNREACHABLE (503), and so do mode changes and reads of the state.
 *
 * The maintenance history is the cluster's too (etcd-maintenance-events.ts, under `P events/`),
 * unless another log is passed in.
 *
 * Not yet here (issue 17 goes on): `lockChanges` excludes other config writers only (config
 * writes through `defineStore` are transactions admissions order themselves against).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { Etcd3, type IOptions, type Lease } from 'etcd3';
import type { IKeyValue, ITxnRequest, ITxnResponse } from 'etcd3/lib/rpc.js';
import {
  ConfigModifiedError,
  ERR_DATASTORE_EXISTS,
  ERR_DATASTORE_NOT_FOUND,
  ERR_DELETE_MODE_RESERVED,
} from '../errors.js';
import { validateDatastoreConfig, type DatastoreConfig } from '../config/datastore-config.js';
import { processStartTime, ownStartTime } from '../sys/proc.js';
import {
  checkMaintenance,
  checkTransition,
  conflictingClasses,
  formatMaintenanceMode,
  holdConflictingClasses,
  type MaintenanceMode,
  type OperationClass,
  type SystemHold,
} from './maintenance-mode.js';
import { storedMaintenanceMode } from './local-admission-backend.js';
import { drainsAfter, type MaintenanceEvent, type MaintenanceEventLog } from './maintenance-events.js';
import { holdChange, modeChangeEvent } from './admission-history.js';
import {
  countOperations,
  type OperationCounts,
  type OperationInfo,
  type OperationRecord,
} from './operation-registry.js';
import { EtcdLockService } from './etcd-lock-service.js';
import { EtcdMaintenanceEventLog } from './etcd-maintenance-events.js';
import { EtcdJobStateStore } from '../jobs/etcd-job-states.js';
import type { JobStateStore } from '../jobs/job-state.js';
import { clusterEtcdOptions, etcdUnreachable } from './etcd-call.js';
import { CoalescingWatch } from './coalescing-watch.js';
import { clusterConfigSnapshot, type StoreState } from './etcd-datastore-config.js';
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

export interface EtcdAdmissionBackendOptions {
  /** Client URLs of the etcd members (`http://10.0.0.1:2379`). */
  endpoints: string[];
  /** The key prefix of this cluster's state; every server of the cluster uses the same one. */
  prefix?: string;
  /** This server's name, recorded with its operations. */
  node: string;
  /** The maintenance history (default: the cluster's, in etcd under the prefix). */
  events?: MaintenanceEventLog;
  /** How many events the cluster's history keeps at least (default 10,000). */
  keepEvents?: number;
  /** Seconds a dead server's operations and locks keep counting (default 10; etcd's minimum is about 2). */
  leaseTtlSeconds?: number;
  /** How long one etcd request may take before the server counts etcd as unreachable (default 5 s). */
  callTimeoutMs?: number;
  /** How often a waiting watch looks for dead holders on this host (default 200 ms). */
  holderPollMs?: number;
  /** Further client options (TLS credentials, auth). */
  etcdOptions?: Omit<IOptions, 'hosts'>;
}

/** The value of an operation key: the record without its id (the key's create revision). */
interface StoredOperation extends Omit<OperationRecord, 'id'> {
  /** Boot id and pid namespace of the holder: pids are comparable only where this matches. */
  host: string;
}

/** Where pids mean the same processes: this boot of this kernel, this pid namespace. */
function hostIdentity(): string {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return `${boot}/${readlinkSync('/proc/self/ns/pid')}`;
  } catch {
    // without it no pid is trusted: liveness by lease alone
    return `unknown-${randomUUID()}`;
  }
}

interface LeaseEntry {
  lease: Lease;
  id: Promise<string>;
  /** Ids of this process's operations admitted under it. */
  operations: Set<number>;
  /**
   * When the last renewal etcd confirmed was sent (at first: when the grant was asked). etcd
   * renewed the lease after that, so the lease lives at least until renewedAt + TTL.
   */
  renewedAt: number;
  /** Send times of the keep-alives not answered yet, oldest first (etcd answers them in order). */
  unanswered: number[];
  /** Fires when renewedAt + TTL has passed without a further renewal. */
  expiry?: NodeJS.Timeout;
  lost: boolean;
}

/** An operation this process admitted: its key and the lease it was put under. */
interface OwnOperation {
  key: string;
  entry: LeaseEntry;
  /** Released while etcd did not answer: its key is deleted once etcd answers again. */
  releasing?: true;
}

/** How often a release that etcd did not answer is tried again. */
const RELEASE_RETRY_MS = 1_000;

/** The end of the key range of every key that starts with `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1]!++;
  return b;
}

const b = (s: string) => Buffer.from(s);

export class EtcdAdmissionBackend implements AdmissionBackend {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly node: string;
  readonly events: MaintenanceEventLog;
  readonly locks: EtcdLockService;
  readonly jobStates: JobStateStore;
  private readonly ttl: number;
  private readonly holderPollMs: number;
  private readonly host = hostIdentity();
  private lease: LeaseEntry | undefined;
  private readonly leaseLostListeners = new Set<(operations: number[]) => void>();
  private readonly configWriteListeners = new Set<
    (store: string, value: Buffer | undefined, revision: bigint) => void
  >();
  /** The operations this process admitted, by id (release finds others by a range). */
  private readonly own = new Map<number, OwnOperation>();
  /** Keys of this process's operations whose lease was lost (they count nowhere), until released. */
  private readonly lostKeys = new Map<number, string>();
  private releaseRetry: NodeJS.Timeout | undefined;
  /** The highest revision this process has seen: a watch starts after it, so it misses nothing we knew of. */
  private seenRevision = 0n;
  private closed = false;

  constructor(opts: EtcdAdmissionBackendOptions) {
    const callTimeoutMs = opts.callTimeoutMs ?? 5_000;
    this.client = new Etcd3(clusterEtcdOptions(opts.endpoints, callTimeoutMs, opts.etcdOptions));
    this.prefix = opts.prefix ?? '/stowage/';
    if (!this.prefix.endsWith('/')) this.prefix += '/';
    this.node = opts.node;
    this.events =
      opts.events ??
      new EtcdMaintenanceEventLog({
        client: this.client,
        prefix: this.prefix,
        node: this.node,
        ...(opts.keepEvents !== undefined && { keep: opts.keepEvents }),
      });
    this.jobStates = new EtcdJobStateStore(this.client, this.prefix);
    this.ttl = opts.leaseTtlSeconds ?? 10;
    this.holderPollMs = opts.holderPollMs ?? 200;
    this.locks = new EtcdLockService({
      client: this.client,
      prefix: this.prefix,
      node: this.node,
      leaseId: () => this.leaseId(),
      leaseGone: (err) => this.lease !== undefined && this.isLeaseGone(err, this.lease),
      unreachable: (subject, err) => this.unreachable(subject, err),
    });
  }

  private configKey(store: string): string {
    return `${this.prefix}datastores/${store}/config`;
  }

  private opsPrefix(store: string): string {
    return `${this.prefix}datastores/${store}/ops/`;
  }

  private storePrefix(store: string): string {
    return `${this.prefix}datastores/${store}/`;
  }

  /** ERR_CLUSTER_UNREACHABLE for an etcd failure; our own errors pass through. */
  unreachable(subject: string, err: unknown): Error {
    return etcdUnreachable(subject, err);
  }

  /** This process's lease, granted on first use and kept alive; a lost lease is replaced on next use. */
  leaseId(): Promise<string> {
    return this.currentLease().id;
  }

  private currentLease(): LeaseEntry {
    if (!this.lease) {
      const askedAt = Date.now();
      const lease = this.client.lease(this.ttl, { autoKeepAlive: true });
      const entry: LeaseEntry = {
        lease,
        id: lease.grant(),
        operations: new Set(),
        renewedAt: askedAt,
        unanswered: [],
        lost: false,
      };
      this.lease = entry;
      lease.on('lost', () => this.leaseLost(entry));
      lease.on('keepaliveEstablished', () => (entry.unanswered.length = 0)); // a new stream
      lease.on('keepaliveFired', () => entry.unanswered.push(Date.now()));
      lease.on('keepaliveSucceeded', () => {
        entry.renewedAt = entry.unanswered.shift() ?? entry.renewedAt;
        this.watchExpiry(entry);
      });
      entry.id.then(
        () => this.watchExpiry(entry),
        () => {
          if (this.lease === entry) this.lease = undefined;
        },
      );
    }
    return this.lease;
  }

  /**
   * Count the lease as lost once TTL seconds passed since the last renewal etcd confirmed was
   * sent: from then on etcd may have expired it and the other servers no longer count its
   * operations. The etcd client itself reports the loss only after twice the TTL (or when etcd
   * answers again), too late: a mode set elsewhere in between would not stop this server's writes.
   */
  private watchExpiry(entry: LeaseEntry): void {
    if (entry.expiry) clearTimeout(entry.expiry);
    if (entry.lost || this.closed) return;
    const left = entry.renewedAt + this.ttl * 1000 - Date.now();
    entry.expiry = setTimeout(
      () => {
        // after a pause of this process (a long GC, SIGSTOP) its pending I/O runs before this
        // check: a renewal answered meanwhile is seen, not counted as a loss
        setImmediate(() => {
          if (entry.renewedAt + this.ttl * 1000 > Date.now()) this.watchExpiry(entry);
          else this.leaseLost(entry);
        });
      },
      Math.max(0, left),
    );
    entry.expiry.unref();
  }

  /**
   * The lease expired (this server was cut off, or stopped, for longer than its TTL): the
   * operations admitted under it no longer count anywhere, and a mode change elsewhere may
   * already have gone ahead of them. Tell the listeners which, so that the server can abort them;
   * new admissions get a new lease.
   */
  private leaseLost(entry: LeaseEntry): void {
    if (entry.lost) return;
    entry.lost = true;
    if (entry.expiry) clearTimeout(entry.expiry);
    if (this.lease === entry) this.lease = undefined;
    entry.lease.release();
    const lost: number[] = [];
    for (const id of entry.operations) {
      const own = this.own.get(id);
      if (!own) continue;
      this.own.delete(id);
      // one already released (its delete not answered yet) went with the lease: nothing to report
      if (own.releasing) continue;
      this.lostKeys.set(id, own.key);
      lost.push(id);
    }
    entry.operations.clear();
    if (lost.length > 0) for (const listener of this.leaseLostListeners) listener(lost);
  }

  /** Whether `err` says etcd no longer knows our lease (it expired before the client noticed). */
  private isLeaseGone(err: unknown, entry: LeaseEntry): boolean {
    if (!(err instanceof Error) || !/lease not found/i.test(err.message)) return false;
    this.leaseLost(entry);
    return true;
  }

  /**
   * Call `listener` with the ids of this process's operations that stopped counting because its
   * lease expired (etcd cut off or the process stopped for longer than the TTL). Returns how to unsubscribe.
   */
  onLeaseLost(listener: (operations: number[]) => void): () => void {
    this.leaseLostListeners.add(listener);
    return () => this.leaseLostListeners.delete(listener);
  }

  /**
   * Call `listener` after each write of a store's config key by this backend (mode, holds,
   * creation), so that this process's copy of the configuration (etcd-datastore-config.ts) shows
   * its own change before the watch brings it.
   */
  onConfigWritten(
    listener: (store: string, value: Buffer | undefined, revision: bigint) => void,
  ): () => void {
    this.configWriteListeners.add(listener);
    return () => this.configWriteListeners.delete(listener);
  }

  private configWritten(store: string, value: Buffer, revision: string): void {
    for (const listener of this.configWriteListeners) listener(store, value, BigInt(revision));
  }

  /** Every store's configuration, read now (for the digest of the whole, as datastore.cfg's). */
  private async allConfigs(store: string): Promise<Map<string, DatastoreConfig>> {
    const p = `${this.prefix}datastores/`;
    const { kvs } = await this.range(`datastore '${store}'`, p, prefixEnd(p));
    const configs = new Map<string, DatastoreConfig>();
    for (const kv of kvs) {
      if (!/\/config$/.test(kv.key.toString())) continue;
      const { config } = JSON.parse(kv.value.toString()) as StoreState;
      configs.set(config.name, config);
    }
    return configs;
  }

  private saw(revision: string | number | bigint): void {
    const r = BigInt(revision);
    if (r > this.seenRevision) this.seenRevision = r;
  }

  private async txn(subject: string, req: ITxnRequest): Promise<ITxnResponse> {
    try {
      const res = await this.client.kv.txn(req);
      this.saw(res.header.revision);
      return res;
    } catch (err) {
      throw this.unreachable(subject, err);
    }
  }

  private async range(
    subject: string,
    key: string,
    end?: Buffer,
  ): Promise<{ kvs: IKeyValue[]; revision: bigint }> {
    try {
      const res = await this.client.kv.range({ key: b(key), ...(end && { range_end: end }) });
      this.saw(res.header.revision);
      return { kvs: res.kvs, revision: BigInt(res.header.revision) };
    } catch (err) {
      throw this.unreachable(subject, err);
    }
  }

  /** The store's config key and state, or NotFound. */
  private async readStore(store: string): Promise<{ kv: IKeyValue; state: StoreState }> {
    const { kvs } = await this.range(`datastore '${store}'`, this.configKey(store));
    const kv = kvs[0];
    if (!kv) throw ERR_DATASTORE_NOT_FOUND(store);
    return { kv, state: JSON.parse(kv.value.toString()) as StoreState };
  }

  /** The store's config key and its operations, read at one revision. */
  private async readStoreAndOps(
    store: string,
  ): Promise<{ kv: IKeyValue; state: StoreState; ops: IKeyValue[]; revision: bigint }> {
    const res = await this.txn(`datastore '${store}'`, {
      compare: [],
      success: [
        { request_range: { key: b(this.configKey(store)) } },
        { request_range: { key: b(this.opsPrefix(store)), range_end: prefixEnd(this.opsPrefix(store)) } },
      ],
      failure: [],
    });
    const kv = res.responses[0]!.response_range!.kvs[0];
    if (!kv) throw ERR_DATASTORE_NOT_FOUND(store);
    return {
      kv,
      state: JSON.parse(kv.value.toString()) as StoreState,
      ops: res.responses[1]!.response_range!.kvs,
      revision: BigInt(res.header.revision),
    };
  }

  /**
   * Create a datastore in the cluster's configuration (the cluster's datastore.cfg): refused with
   * ERR_DATASTORE_EXISTS when the name is taken. Ordered against admissions by its revision.
   */
  async defineStore(config: DatastoreConfig): Promise<void> {
    validateDatastoreConfig(config);
    const key = this.configKey(config.name);
    const state: StoreState = { config, holds: [] };
    const res = await this.txn(`datastore '${config.name}'`, {
      compare: [{ key: b(key), target: 'Version', result: 'Equal', version: 0 }],
      success: [{ request_put: { key: b(key), value: b(JSON.stringify(state)) } }],
      failure: [],
    });
    if (!res.succeeded) throw ERR_DATASTORE_EXISTS(config.name);
    this.configWritten(config.name, b(JSON.stringify(state)), res.header.revision);
  }

  /** The datastore's configuration as the cluster stores it (NotFound when unknown). */
  async storeConfig(store: string): Promise<DatastoreConfig> {
    return (await this.readStore(store)).state.config;
  }

  /** Turn stored operation keys into live records, deleting those of dead holders on this host. */
  private liveRecords(kvs: readonly IKeyValue[]): OperationRecord[] {
    const records: OperationRecord[] = [];
    for (const kv of kvs) {
      const stored = JSON.parse(kv.value.toString()) as StoredOperation;
      const id = Number(kv.create_revision);
      if (stored.host === this.host && processStartTime(stored.pid) !== stored.pstart) {
        this.sweep(kv);
        continue;
      }
      const { host: _host, ...rest } = stored;
      records.push({ ...rest, id, ...(kv.lease !== '0' && { lease: kv.lease }) });
    }
    return records.sort((x, y) => x.id - y.id);
  }

  /** Delete a dead holder's key (exactly that key: compared by its create revision), for every server. */
  private sweep(kv: IKeyValue): void {
    this.client.kv
      .txn({
        compare: [{ key: kv.key, target: 'Create', result: 'Equal', create_revision: kv.create_revision }],
        success: [{ request_delete_range: { key: kv.key } }],
        failure: [],
      })
      .catch(() => undefined); // the lease's expiry removes it anyway
  }

  async admit<T = undefined>(
    store: string,
    cls: OperationClass,
    info: OperationInfo,
    hooks: AdmitHooks<T> = {},
  ): Promise<Admission<T>> {
    for (;;) {
      const { kv, state } = await this.readStore(store);
      checkMaintenance(store, storedMaintenanceMode(state.config), cls, state.holds, info.kind);
      const value = hooks.prepare ? hooks.prepare(state.config) : (undefined as T);
      const stored: StoredOperation = {
        store,
        class: cls,
        ...info,
        pid: process.pid,
        pstart: ownStartTime(),
        startedAt: Date.now(),
        node: this.node,
        host: this.host,
      };
      const key = `${this.opsPrefix(store)}${randomUUID()}`;
      let res: ITxnResponse;
      let entry: LeaseEntry;
      try {
        entry = this.currentLease();
        const lease = await entry.id.catch((err: unknown) => {
          throw this.unreachable(`datastore '${store}'`, err);
        });
        // the one step that makes the admission: only if the mode and holds are still those checked
        try {
          res = await this.client.kv.txn({
            compare: [{ key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
            success: [{ request_put: { key: b(key), value: b(JSON.stringify(stored)), lease } }],
            failure: [],
          });
        } catch (err) {
          if (this.isLeaseGone(err, entry)) {
            if (hooks.prepare) hooks.abort?.(value);
            continue; // admit again under a new lease
          }
          throw this.unreachable(`datastore '${store}'`, err);
        }
        this.saw(res.header.revision);
      } catch (err) {
        if (hooks.prepare) hooks.abort?.(value);
        throw err;
      }
      if (!res.succeeded) {
        // the config changed between the read and the commit: check again under what is there now
        if (hooks.prepare) hooks.abort?.(value);
        continue;
      }
      const id = Number(res.header.revision);
      if (entry.lost) {
        // put under a lease counted as expired meanwhile: it may count nowhere; admit again under a new one
        this.deleteOperationKey(id, key).catch(() => undefined);
        if (hooks.prepare) hooks.abort?.(value);
        continue;
      }
      entry.operations.add(id);
      this.own.set(id, { key, entry });
      const { host: _host, ...record } = stored;
      return { record: { ...record, id }, config: state.config, value };
    }
  }

  /** The stored operation `id`: ours by its key, another's by its create revision among all stores' operations. */
  private async findOperation(id: number): Promise<IKeyValue | undefined> {
    const own = this.own.get(id)?.key;
    const p = `${this.prefix}datastores/`;
    const { kvs } = own ? await this.range('operation', own) : await this.range('operation', p, prefixEnd(p));
    return kvs.find((kv) => Number(kv.create_revision) === id && kv.key.toString().includes('/ops/'));
  }

  /**
   * End operation `id`. One of this process's never fails for want of etcd: the operation has
   * ended, and the work that ends it must not fail for it. Its key is deleted once etcd answers
   * again (tried every second), or goes with the lease should that expire first; one whose lease
   * was already lost counts nowhere, its key is deleted if etcd still has it.
   */
  async release(id: number): Promise<void> {
    const lostKey = this.lostKeys.get(id);
    if (lostKey !== undefined) {
      this.lostKeys.delete(id);
      this.deleteOperationKey(id, lostKey).catch(() => undefined);
      return;
    }
    const own = this.own.get(id);
    if (!own) {
      const kv = await this.findOperation(id);
      if (kv) await this.deleteOperationKey(id, kv.key.toString());
      return;
    }
    if (own.releasing) return;
    try {
      await this.deleteOperationKey(id, own.key);
    } catch {
      if (this.own.get(id) !== own) return; // its lease was lost meanwhile: the key went with it
      own.releasing = true;
      this.retryReleases();
      return;
    }
    this.forgetOwn(id, own);
  }

  /** Delete operation `id`'s key, exactly that one (compared by its create revision). */
  private async deleteOperationKey(id: number, key: string): Promise<void> {
    await this.txn(`operation ${id}`, {
      compare: [{ key: b(key), target: 'Create', result: 'Equal', create_revision: String(id) }],
      success: [{ request_delete_range: { key: b(key) } }],
      failure: [],
    });
  }

  private forgetOwn(id: number, own: OwnOperation): void {
    if (this.own.get(id) === own) this.own.delete(id);
    own.entry.operations.delete(id);
  }

  /** Try the releases etcd did not answer again, every second until none is left. */
  private retryReleases(): void {
    if (this.releaseRetry || this.closed) return;
    this.releaseRetry = setTimeout(() => {
      const pending = [...this.own].filter(([, own]) => own.releasing);
      void Promise.all(
        pending.map(([id, own]) =>
          this.deleteOperationKey(id, own.key).then(
            () => this.forgetOwn(id, own),
            () => undefined,
          ),
        ),
      ).then(() => {
        this.releaseRetry = undefined;
        if ([...this.own.values()].some((own) => own.releasing)) this.retryReleases();
      });
    }, RELEASE_RETRY_MS);
    this.releaseRetry.unref();
  }

  async attachTask(id: number, taskId: string): Promise<void> {
    const kv = await this.findOperation(id);
    if (!kv) return;
    const stored = JSON.parse(kv.value.toString()) as StoredOperation;
    // rewritten in place under the same lease, only while it is still that operation
    await this.txn(`operation ${id}`, {
      compare: [{ key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
      success: [
        { request_put: { key: kv.key, value: b(JSON.stringify({ ...stored, taskId })), lease: kv.lease } },
      ],
      failure: [],
    });
  }

  async setMode(
    store: string,
    mode: MaintenanceMode | undefined,
    opts: SetModeOptions = {},
  ): Promise<ModeChange> {
    if (mode?.type === 'delete' && !opts.allowDelete) throw ERR_DELETE_MODE_RESERVED();
    for (;;) {
      const { kv, state, ops, revision } = await this.readStoreAndOps(store);
      const before = state.config;
      // the digest is the whole configuration's, as datastore.cfg's is (EtcdDatastoreConfig)
      const configs = await this.allConfigs(store);
      configs.set(store, before);
      if (opts.digest !== undefined && opts.digest !== clusterConfigSnapshot(configs.values()).digest) {
        throw new ConfigModifiedError();
      }
      opts.precondition?.(before);
      let previous: MaintenanceMode | undefined;
      try {
        previous = storedMaintenanceMode(before);
      } catch {
        previous = undefined; // an unparsable stored value may be overwritten by a valid one
      }
      if (!opts.allowDelete) checkTransition(store, previous, mode);
      if (opts.ifIdle) {
        const classes = conflictingClasses(mode);
        const blocking = this.liveRecords(ops).filter((op) => classes.includes(op.class));
        if (blocking.length > 0) {
          throw new ConflictingOperationsError(
            `datastore '${store}' is not idle, mode not changed`,
            blocking,
          );
        }
      }
      const next: DatastoreConfig = structuredClone(before);
      opts.alsoApply?.(next);
      if (mode) next['maintenance-mode'] = formatMaintenanceMode(mode);
      else delete next['maintenance-mode'];
      validateDatastoreConfig(next);
      const value = b(JSON.stringify({ ...state, config: next }));
      const compare: ITxnRequest['compare'] = [
        { key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision },
      ];
      if (opts.ifIdle) {
        // idle as read: no operation of the store was admitted since (a release does not matter)
        compare.push({
          key: b(this.opsPrefix(store)),
          range_end: prefixEnd(this.opsPrefix(store)),
          target: 'Mod',
          result: 'Less',
          mod_revision: String(revision + 1n),
        });
      }
      const res = await this.txn(`datastore '${store}'`, {
        compare,
        success: [{ request_put: { key: kv.key, value } }],
        failure: [],
      });
      if (!res.succeeded) continue; // raced with another change or an admission: look again
      this.configWritten(store, value, res.header.revision);
      configs.set(store, next);
      const sequence = Number(res.header.revision);
      const record = modeChangeEvent(store, before['maintenance-mode'], previous, mode, opts.authId);
      const event = record && (await this.events.append(record));
      const conflicting = await this.conflicting(store, conflictingClasses(mode));
      if (event && conflicting.length === 0 && drainsAfter(event))
        await this.events.recordDrained(store, event);
      return {
        digest: clusterConfigSnapshot(configs.values()).digest,
        sequence,
        previous,
        config: before,
        conflicting,
        ...(event && { event }),
      };
    }
  }

  private async conflicting(store: string, classes: readonly OperationClass[]): Promise<OperationRecord[]> {
    return (await this.list(store)).filter((op) => classes.includes(op.class));
  }

  async mode(store: string): Promise<MaintenanceMode | undefined> {
    return storedMaintenanceMode((await this.readStore(store)).state.config);
  }

  async setHold(
    store: string,
    source: string,
    spec: HoldSpec | undefined,
    opts: { authId?: string; forced?: boolean } = {},
  ): Promise<HoldChange> {
    for (;;) {
      const { kv, state } = await this.readStore(store);
      const previous = state.holds.find((h) => h.source === source);
      const next = holdChange(store, source, previous, spec, opts);
      let sequence: number;
      if (!next.hold && !previous) {
        sequence = await this.sequence();
      } else {
        const holds = state.holds.filter((h) => h.source !== source);
        if (next.hold) {
          // a hold that only changes its message keeps its place (oldest first)
          const at = state.holds.findIndex((h) => h.source === source);
          holds.splice(at < 0 ? holds.length : at, 0, next.hold);
        }
        const value = b(JSON.stringify({ ...state, holds }));
        const res = await this.txn(`datastore '${store}'`, {
          compare: [{ key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
          success: [{ request_put: { key: kv.key, value } }],
          failure: [],
        });
        if (!res.succeeded) continue;
        this.configWritten(store, value, res.header.revision);
        sequence = Number(res.header.revision);
      }
      const event: MaintenanceEvent | undefined = next.event && (await this.events.append(next.event));
      const conflicting = next.hold ? await this.conflicting(store, holdConflictingClasses(next.hold)) : [];
      if (event && conflicting.length === 0 && drainsAfter(event))
        await this.events.recordDrained(store, event);
      return {
        ...(previous && { previous }),
        ...(next.hold && { hold: next.hold }),
        sequence,
        conflicting,
        ...(event && { event }),
      };
    }
  }

  async holds(store: string): Promise<SystemHold[]> {
    return (await this.readStore(store)).state.holds;
  }

  async list(store?: string): Promise<OperationRecord[]> {
    if (store !== undefined) {
      const p = this.opsPrefix(store);
      return this.liveRecords((await this.range('the operation list', p, prefixEnd(p))).kvs);
    }
    const p = `${this.prefix}datastores/`;
    const { kvs } = await this.range('the operation list', p, prefixEnd(p));
    return this.liveRecords(kvs.filter((kv) => /\/ops\/[^/]+$/.test(kv.key.toString())));
  }

  async counts(store: string): Promise<OperationCounts> {
    return countOperations(await this.list(store));
  }

  async sequence(): Promise<number> {
    return Number((await this.range('the admission order', this.prefix)).revision);
  }

  watch(store: string, opts: { signal?: AbortSignal } = {}): AdmissionWatch {
    return new EtcdWatch(
      this,
      this.storePrefix(store),
      this.seenRevision,
      this.holderPollMs,
      () => this.list(store),
      opts.signal,
    );
  }

  async holderAlive(record: OperationRecord): Promise<boolean> {
    const { kvs } = await this.range(
      'the operation list',
      this.opsPrefix(record.store),
      prefixEnd(this.opsPrefix(record.store)),
    );
    const kv = kvs.find((k) => Number(k.create_revision) === record.id);
    if (!kv) return false; // released, or its server's lease expired
    const stored = JSON.parse(kv.value.toString()) as StoredOperation;
    if (stored.host !== this.host) return true; // another host's: alive while its lease is
    return processStartTime(stored.pid) === stored.pstart;
  }

  async lockChanges(): Promise<ChangeLock> {
    return this.locks.acquire({ kind: 'job', jobType: 'datastore-config', id: 'changes' });
  }

  async forgetStore(store: string): Promise<void> {
    const p = this.storePrefix(store);
    await this.txn(`datastore '${store}'`, {
      compare: [],
      success: [
        {
          request_delete_range: {
            key: b(this.opsPrefix(store)),
            range_end: prefixEnd(this.opsPrefix(store)),
          },
        },
      ],
      failure: [],
    });
    // holds live in the config key; drop them, keep the key to whoever removes the datastore
    const { kvs } = await this.range(`datastore '${store}'`, `${p}config`);
    const kv = kvs[0];
    if (kv) {
      const state = JSON.parse(kv.value.toString()) as StoreState;
      const value = b(JSON.stringify({ ...state, holds: [] }));
      const res = await this.txn(`datastore '${store}'`, {
        compare: [{ key: kv.key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }],
        success: [{ request_put: { key: kv.key, value } }],
        failure: [],
      });
      if (res.succeeded) this.configWritten(store, value, res.header.revision);
    }
  }

  /** Stop keeping the lease alive and disconnect; this process's operations expire with the lease. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.releaseRetry) clearTimeout(this.releaseRetry);
    if (this.lease?.expiry) clearTimeout(this.lease.expiry);
    this.lease?.lease.release();
    this.client.close();
    this.events.close();
  }
}

/**
 * A watch on one store's keys: etcd pushes every put and delete from the revision this process
 * last saw on (so a change it could know of is never missed; one already seen may wake it once,
 * which the interface allows). While a caller waits it also looks at this host's holders every
 * `pollMs`, because a SIGKILLed process writes nothing: finding it dead deletes its key, and
 * that delete wakes every watcher in the cluster.
 */
class EtcdWatch extends CoalescingWatch {
  private timer: NodeJS.Timeout | undefined;
  private watcher: { cancel(): Promise<void> } | undefined;

  constructor(
    backend: EtcdAdmissionBackend,
    prefix: string,
    fromRevision: bigint,
    private readonly pollMs: number,
    private readonly poll: () => Promise<unknown>,
    signal: AbortSignal | undefined,
  ) {
    super(signal);
    if (this.isClosed) return;
    // nothing seen yet: we cannot tell what the caller knows, so report a (spurious) change once
    if (fromRevision === 0n) this.mark();
    let builder = backend.client.watch().prefix(prefix);
    if (fromRevision > 0n) builder = builder.startRevision(String(fromRevision + 1n));
    builder
      .create()
      .then((w) => {
        if (this.isClosed) {
          void w.cancel();
          return;
        }
        this.watcher = w;
        w.on('data', () => this.mark());
        // a reconnect may have missed events: wake the caller to read again
        w.on('connected', () => this.mark());
        w.on('error', () => this.mark());
      })
      // no watch, no wake-ups: every wait from now on fails with why (a drain wait reports it)
      .catch((err: unknown) => this.broke(backend.unreachable(`the watch on ${prefix}`, err)));
  }

  protected moved(): boolean {
    return false; // etcd tells us (mark)
  }

  protected startWaiting(): void {
    this.timer = setInterval(() => {
      // sweeps this host's dead holders; their deletes come back as watch events
      this.poll().catch((err: unknown) => this.fail(err));
    }, this.pollMs);
  }

  protected stopWaiting(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  protected override onClose(): void {
    void this.watcher?.cancel().catch(() => undefined);
  }
}
