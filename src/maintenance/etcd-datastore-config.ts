/**
 * The datastore configuration of a cluster (issue 17): what `datastore.cfg` is on one host, kept
 * in etcd as one key per store (`P datastores/<store>/config`, the value the etcd admission
 * backend checks admissions against: `{config, holds}`), so every server of the cluster serves
 * the same datastores with the same options and maintenance mode.
 *
 * Reads are synchronous, as every request reads the configuration: this process keeps a copy,
 * loaded when it opens and kept current by an etcd watch (and by its own writes at once, so a
 * change is visible to the next line of the code that made it). The copy is for display and
 * routing; admissions and mode changes read the key itself in their transaction, so a copy a few
 * milliseconds old never admits what the mode refuses.
 *
 * `update` is one transaction over the keys it changes, each compared with the revision it read:
 * two servers changing the configuration at once cannot lose either change. The digest is that of
 * the configuration written as `datastore.cfg` (stores ordered by name), as PBS's clients expect.
 */
import { createHash } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import type { IKeyValue, ITxnRequest } from 'etcd3/lib/rpc.js';
import { ConfigModifiedError } from '../errors.js';
import {
  formatDatastoreConfig,
  type DatastoreConfig,
  type DatastoreConfigSnapshot,
  type DatastoreConfigSource,
} from '../config/datastore-config.js';
import type { SystemHold } from './maintenance-mode.js';

/** The value of a store's config key (shared with etcd-admission-backend.ts). */
export interface StoreState {
  config: DatastoreConfig;
  holds: SystemHold[];
}

/** The configuration as a snapshot: stores ordered by name, the digest of its datastore.cfg text. */
export function clusterConfigSnapshot(configs: Iterable<DatastoreConfig>): DatastoreConfigSnapshot {
  const sorted = [...configs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const stores = new Map(sorted.map((c) => [c.name, c]));
  const raw = formatDatastoreConfig(stores);
  for (const config of stores.values()) deepFreeze(config);
  return { stores, digest: createHash('sha256').update(raw).digest('hex'), raw };
}

function deepFreeze(config: DatastoreConfig): void {
  if (config.extra) {
    for (const entry of config.extra) Object.freeze(entry);
    Object.freeze(config.extra);
  }
  Object.freeze(config);
}

/** The end of the key range of every key that starts with `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]!++;
  return end;
}

export interface EtcdDatastoreConfigOptions {
  client: Etcd3;
  /** The cluster's prefix, ending in '/'. */
  prefix: string;
  /** The local config dir (s3.cfg and credentials stay per host). */
  configDir: string;
  /** Turns an etcd failure into the operator's error (the backend's ERR_CLUSTER_UNREACHABLE). */
  unreachable: (subject: string, err: unknown) => Error;
}

export class EtcdDatastoreConfig implements DatastoreConfigSource {
  readonly configDir: string;
  private readonly client: Etcd3;
  private readonly storesPrefix: string;
  private readonly unreachable: (subject: string, err: unknown) => Error;
  /** The stores as last learned, with the revision of the last change seen per name (a delete too). */
  private readonly configs = new Map<string, DatastoreConfig>();
  private readonly revisions = new Map<string, bigint>();
  private snapshotCache: DatastoreConfigSnapshot | undefined;
  private watcher: { cancel(): Promise<void> } | undefined;
  private closed = false;

  private constructor(opts: EtcdDatastoreConfigOptions) {
    this.client = opts.client;
    this.storesPrefix = `${opts.prefix}datastores/`;
    this.configDir = opts.configDir;
    this.unreachable = opts.unreachable;
  }

  /** Load the cluster's configuration and start following it; rejects when etcd cannot be reached. */
  static async open(opts: EtcdDatastoreConfigOptions): Promise<EtcdDatastoreConfig> {
    const source = new EtcdDatastoreConfig(opts);
    const revision = await source.load();
    await source.follow(revision);
    return source;
  }

  private storeOf(key: string): string | undefined {
    const rest = key.slice(this.storesPrefix.length);
    const m = /^([^/]+)\/config$/.exec(rest);
    return key.startsWith(this.storesPrefix) && m ? m[1] : undefined;
  }

  private async rangeConfigs(): Promise<{ kvs: IKeyValue[]; revision: bigint }> {
    try {
      const res = await this.client.kv.range({
        key: Buffer.from(this.storesPrefix),
        range_end: prefixEnd(this.storesPrefix),
      });
      return {
        kvs: res.kvs.filter((kv) => this.storeOf(kv.key.toString()) !== undefined),
        revision: BigInt(res.header.revision),
      };
    } catch (err) {
      throw this.unreachable('the datastore configuration', err);
    }
  }

  private async load(): Promise<bigint> {
    const { kvs, revision } = await this.rangeConfigs();
    for (const kv of kvs) this.learn(this.storeOf(kv.key.toString())!, kv.value, BigInt(kv.mod_revision));
    return revision;
  }

  private async follow(afterRevision: bigint): Promise<void> {
    const watcher = await this.client
      .watch()
      .prefix(this.storesPrefix)
      .startRevision(String(afterRevision + 1n))
      .create();
    if (this.closed) {
      void watcher.cancel();
      return;
    }
    this.watcher = watcher;
    watcher.on('put', (kv) => {
      const store = this.storeOf(kv.key.toString());
      if (store !== undefined) this.learn(store, kv.value, BigInt(kv.mod_revision));
    });
    watcher.on('delete', (kv) => {
      const store = this.storeOf(kv.key.toString());
      if (store !== undefined) this.learn(store, undefined, BigInt(kv.mod_revision));
    });
    // the client reconnects and resumes from the last revision it saw; nothing to do on errors
    watcher.on('error', () => undefined);
  }

  /**
   * Take a store's value at `revision` (undefined: deleted) unless a later one is known. Called by
   * the watch and by this process's own writes (here and through the admission backend).
   */
  learn(store: string, value: Buffer | undefined, revision: bigint): void {
    if ((this.revisions.get(store) ?? -1n) >= revision) return;
    this.revisions.set(store, revision);
    if (value === undefined) this.configs.delete(store);
    else this.configs.set(store, (JSON.parse(value.toString()) as StoreState).config);
    this.snapshotCache = undefined;
  }

  read(): DatastoreConfigSnapshot {
    this.snapshotCache ??= clusterConfigSnapshot(this.configs.values());
    return this.snapshotCache;
  }

  readCached(): DatastoreConfigSnapshot {
    return this.read();
  }

  /**
   * One transaction for the whole change: every created key compared as absent, every rewritten
   * or deleted one with the revision read; on a conflict read again and apply `mutate` again.
   * `lockHeld` and `lockTimeoutMs` are for the file's lock and mean nothing here.
   */
  async update(
    mutate: (stores: Map<string, DatastoreConfig>) => void,
    opts: { digest?: string; lockHeld?: boolean; lockTimeoutMs?: number } = {},
  ): Promise<DatastoreConfigSnapshot> {
    for (;;) {
      const { kvs } = await this.rangeConfigs();
      const current = new Map<string, { kv: IKeyValue; state: StoreState }>();
      for (const kv of kvs) {
        current.set(this.storeOf(kv.key.toString())!, {
          kv,
          state: JSON.parse(kv.value.toString()) as StoreState,
        });
      }
      const before = clusterConfigSnapshot([...current.values()].map((c) => structuredClone(c.state.config)));
      if (opts.digest !== undefined && opts.digest !== before.digest) throw new ConfigModifiedError();
      const stores = new Map([...current].map(([name, c]) => [name, structuredClone(c.state.config)]));
      const result: unknown = mutate(stores);
      if (result !== null && typeof (result as { then?: unknown })?.then === 'function') {
        throw new TypeError('EtcdDatastoreConfig.update: mutate must be synchronous');
      }
      const after = clusterConfigSnapshot(stores.values()); // validates every store
      const compare: ITxnRequest['compare'] = [];
      const success: ITxnRequest['success'] = [];
      const written: Array<[string, Buffer | undefined]> = [];
      for (const [name, config] of stores) {
        const was = current.get(name);
        if (was && JSON.stringify(was.state.config) === JSON.stringify(config)) continue;
        const key = Buffer.from(`${this.storesPrefix}${name}/config`);
        const value = Buffer.from(
          JSON.stringify({ config, holds: was?.state.holds ?? [] } satisfies StoreState),
        );
        compare.push(
          was
            ? { key, target: 'Mod', result: 'Equal', mod_revision: was.kv.mod_revision }
            : { key, target: 'Version', result: 'Equal', version: 0 },
        );
        success.push({ request_put: { key, value } });
        written.push([name, value]);
      }
      for (const [name, was] of current) {
        if (stores.has(name)) continue;
        compare.push({ key: was.kv.key, target: 'Mod', result: 'Equal', mod_revision: was.kv.mod_revision });
        success.push({ request_delete_range: { key: was.kv.key } });
        written.push([name, undefined]);
      }
      if (success.length === 0) return after;
      let res;
      try {
        res = await this.client.kv.txn({ compare, success, failure: [] });
      } catch (err) {
        throw this.unreachable('the datastore configuration', err);
      }
      if (!res.succeeded) continue; // another server changed one of these keys: look again
      const revision = BigInt(res.header.revision);
      for (const [name, value] of written) this.learn(name, value, revision);
      return after;
    }
  }

  close(): void {
    this.closed = true;
    void this.watcher?.cancel().catch(() => undefined);
  }
}
