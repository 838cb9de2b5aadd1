/**
 * The cluster's maintenance history (issue 17): the same MaintenanceEventLog as the instance's
 * SQLite file, kept in etcd under the cluster's prefix, so every server of the cluster shows the
 * same history, with the node that made each change.
 *
 * Keys, under the cluster's prefix P (ids zero-padded, so key order is id order):
 *
 *   P events/last                  the highest id so far
 *   P events/log/<id>              the event, as JSON: what `after` (the notifier's tail) reads
 *   P events/store/<store>/<id>    the same event again: what a store's `history` reads, newest first
 *   P events/drained/<ref>         the id of the drain recorded for the change `ref` (once per change)
 *   P events/notified/<id>         the node that sends event `id`'s notifications (once per event)
 *
 * An event is appended in one transaction that compares `events/last` with the value it read:
 * etcd orders appends from every server, so ids follow the order of the changes across the
 * cluster (a conflicting append reads again and retries). A drain also compares that its `ref` has
 * none yet, so two servers that see the same drain record it once.
 *
 * Bounded like the SQLite log: every `trimInterval(keep)` ids, the appender deletes what is older
 * than the last `keep` events. etcd is not a bulk store (and keeps deleted revisions until it
 * compacts), so the default is 10,000 events, about 6 MB.
 */
import type { Etcd3 } from 'etcd3';
import type { IKeyValue, ITxnRequest, ITxnResponse } from 'etcd3/lib/rpc.js';
import { etcdCall } from './etcd-call.js';
import {
  EVENT_SEVERITY,
  drainedEvent,
  trimInterval,
  type MaintenanceEvent,
  type MaintenanceEventLog,
  type NewMaintenanceEvent,
} from './maintenance-events.js';

export interface EtcdMaintenanceEventLogOptions {
  client: Etcd3;
  /** The cluster's key prefix (ends with `/`). */
  prefix: string;
  /** This server's node name, recorded with the events it appends. */
  node: string;
  /** Keep at least this many events (default 10,000); older ones go. */
  keep?: number;
  /** Close the client with the log (default: no, the admission backend owns it). */
  ownsClient?: boolean;
}

const DEFAULT_KEEP = 10_000;
const SUBJECT = 'the maintenance history';

const b = (s: string) => Buffer.from(s);
const pad = (id: number) => String(id).padStart(16, '0');

/** The end of the key range of every key that starts with `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1]!++;
  return end;
}

function parse(kv: IKeyValue): MaintenanceEvent {
  return JSON.parse(kv.value.toString()) as MaintenanceEvent;
}

export class EtcdMaintenanceEventLog implements MaintenanceEventLog {
  private readonly client: Etcd3;
  private readonly base: string;
  private readonly node: string;
  private readonly keep: number;
  private readonly ownsClient: boolean;

  constructor(opts: EtcdMaintenanceEventLogOptions) {
    this.client = opts.client;
    this.base = `${opts.prefix.endsWith('/') ? opts.prefix : `${opts.prefix}/`}events/`;
    this.node = opts.node;
    this.keep = opts.keep ?? DEFAULT_KEEP;
    this.ownsClient = opts.ownsClient ?? false;
  }

  private get lastKey(): string {
    return `${this.base}last`;
  }
  private logKey(id: number): string {
    return `${this.base}log/${pad(id)}`;
  }
  private storePrefix(store: string): string {
    return `${this.base}store/${store}/`;
  }
  private drainedKey(ref: number): string {
    return `${this.base}drained/${pad(ref)}`;
  }
  private notifiedKey(id: number): string {
    return `${this.base}notified/${pad(id)}`;
  }

  private call<T>(request: () => Promise<T>): Promise<T> {
    return etcdCall(SUBJECT, request);
  }

  private txn(req: ITxnRequest): Promise<ITxnResponse> {
    return this.call(() => this.client.kv.txn(req));
  }

  private async range(req: Parameters<Etcd3['kv']['range']>[0]): Promise<IKeyValue[]> {
    return (await this.call(() => this.client.kv.range(req))).kvs;
  }

  /**
   * Append `event` with the next id; when `drainOf` is given, only if no drain of that change is
   * recorded yet (undefined then).
   */
  private async insert(event: NewMaintenanceEvent, drainOf?: number): Promise<MaintenanceEvent | undefined> {
    for (;;) {
      const [last] = await this.range({ key: b(this.lastKey) });
      const id = (last ? Number(last.value.toString()) : 0) + 1;
      const stored: MaintenanceEvent = {
        id,
        time: event.time ?? Date.now(),
        store: event.store,
        type: event.type,
        severity: EVENT_SEVERITY[event.type],
        source: event.source,
        ...(event.authId !== undefined && { authId: event.authId }),
        ...(event.from !== undefined && { from: event.from }),
        ...(event.to !== undefined && { to: event.to }),
        ...(event.message !== undefined && { message: event.message }),
        ...(event.detail !== undefined && { detail: event.detail }),
        node: this.node,
      };
      const value = b(JSON.stringify(stored));
      const compare: ITxnRequest['compare'] = [
        { key: b(this.lastKey), target: 'Mod', result: 'Equal', mod_revision: last?.mod_revision ?? '0' },
      ];
      const success: ITxnRequest['success'] = [
        { request_put: { key: b(this.lastKey), value: b(String(id)) } },
        { request_put: { key: b(this.logKey(id)), value } },
        { request_put: { key: b(`${this.storePrefix(event.store)}${pad(id)}`), value } },
      ];
      const failure: ITxnRequest['failure'] = [];
      if (drainOf !== undefined) {
        compare.push({
          key: b(this.drainedKey(drainOf)),
          target: 'Create',
          result: 'Equal',
          create_revision: '0',
        });
        success.push({ request_put: { key: b(this.drainedKey(drainOf)), value: b(String(id)) } });
        failure.push({ request_range: { key: b(this.drainedKey(drainOf)) } });
      }
      const res = await this.txn({ compare, success, failure });
      if (!res.succeeded) {
        if (drainOf !== undefined && res.responses[0]?.response_range?.kvs.length) return undefined;
        continue; // another server appended first: take the next id
      }
      if (id % trimInterval(this.keep) === 0 && id > this.keep) await this.trim(id - this.keep);
      return stored;
    }
  }

  /** Delete the events with an id up to `upTo`, from the log, the stores' lists and the drain marks. */
  private async trim(upTo: number): Promise<void> {
    const end = b(this.logKey(upTo + 1));
    const old = await this.range({ key: b(`${this.base}log/`), range_end: end });
    const stores = new Set(old.map((kv) => parse(kv).store));
    await this.txn({
      compare: [],
      success: [
        { request_delete_range: { key: b(`${this.base}log/`), range_end: end } },
        { request_delete_range: { key: b(`${this.base}drained/`), range_end: b(this.drainedKey(upTo + 1)) } },
        {
          request_delete_range: { key: b(`${this.base}notified/`), range_end: b(this.notifiedKey(upTo + 1)) },
        },
        ...[...stores].map((store) => ({
          request_delete_range: {
            key: b(this.storePrefix(store)),
            range_end: b(`${this.storePrefix(store)}${pad(upTo + 1)}`),
          },
        })),
      ],
      failure: [],
    });
  }

  async append(event: NewMaintenanceEvent): Promise<MaintenanceEvent> {
    return (await this.insert(event))!;
  }

  async after(id: number, limit = 100): Promise<MaintenanceEvent[]> {
    const kvs = await this.range({
      key: b(this.logKey(id + 1)),
      range_end: prefixEnd(`${this.base}log/`),
      limit,
    });
    return kvs.map(parse);
  }

  async history(store: string, opts: { limit?: number; before?: number } = {}): Promise<MaintenanceEvent[]> {
    const prefix = this.storePrefix(store);
    const kvs = await this.range({
      key: b(prefix),
      range_end: opts.before !== undefined ? b(`${prefix}${pad(opts.before)}`) : prefixEnd(prefix),
      sort_order: 'Descend',
      sort_target: 'Key',
      limit: opts.limit ?? 50,
    });
    return kvs.map(parse);
  }

  async lastId(): Promise<number> {
    const [last] = await this.range({ key: b(this.lastKey) });
    return last ? Number(last.value.toString()) : 0;
  }

  recordDrained(
    store: string,
    ref: MaintenanceEvent,
    at = Date.now(),
  ): Promise<MaintenanceEvent | undefined> {
    return this.insert(drainedEvent(store, ref, at), ref.id);
  }

  async claimDelivery(id: number): Promise<boolean> {
    const key = b(this.notifiedKey(id));
    const res = await this.txn({
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: '0' }],
      success: [{ request_put: { key, value: b(this.node) } }],
      failure: [],
    });
    return res.succeeded;
  }

  close(): void {
    if (this.ownsClient) this.client.close();
  }
}
