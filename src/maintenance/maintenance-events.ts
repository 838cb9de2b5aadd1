/**
 * The maintenance history: every change of a datastore's availability — the operator's mode set
 * or cleared, a system hold engaged or released, a window starting, the drain that followed, a job
 * skipped or failed — with who, when, from, to and message. One SQLite file under the data dir
 * (it outlives restarts and reboots, unlike the operation registry under the run dir), appended to
 * by every process of the instance, and kept when a datastore is removed (an audit trail). The
 * history API reads it newest first; the notifier tails it by id, so an event is recorded before
 * anyone is told of it and a slow endpoint never holds up the change that caused it.
 *
 * In cluster mode the history is the cluster's, in etcd (etcd-maintenance-events.ts), so every
 * server shows the same one: that is why the log's methods are asynchronous.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export const MAINTENANCE_EVENT_TYPES = [
  'mode-set',
  'mode-cleared',
  'drained',
  'hold-engaged',
  'hold-released',
  'window-starting',
  'job-skipped',
  'job-failed',
] as const;
export type MaintenanceEventType = (typeof MAINTENANCE_EVENT_TYPES)[number];

/** proxmox-notify's severities, as matchers test them. */
export type EventSeverity = 'info' | 'notice' | 'warning' | 'error';

export const EVENT_SEVERITY: Readonly<Record<MaintenanceEventType, EventSeverity>> = {
  'mode-set': 'info',
  'mode-cleared': 'info',
  drained: 'info',
  'hold-engaged': 'warning',
  'hold-released': 'info',
  'window-starting': 'notice',
  'job-skipped': 'notice',
  'job-failed': 'error',
};

export interface MaintenanceEvent {
  id: number;
  /** Epoch milliseconds. */
  time: number;
  store: string;
  type: MaintenanceEventType;
  severity: EventSeverity;
  /** `operator`, `low-space`, `window:<id>`, `job:<id>`. */
  source: string;
  authId?: string;
  /** The mode or hold type before (`none`: no mode). */
  from?: string;
  /** The mode or hold type after. */
  to?: string;
  message?: string;
  /** Drained: `ref` (the event drained after) and `duration-ms`; jobs: `job` {id, type}. */
  detail?: Record<string, unknown>;
  /** Cluster mode: the server that made the change (its `--node` name). */
  node?: string;
}

export type NewMaintenanceEvent = Omit<MaintenanceEvent, 'id' | 'time' | 'severity' | 'node'> & {
  time?: number;
};

export interface MaintenanceEventLog {
  append(event: NewMaintenanceEvent): Promise<MaintenanceEvent>;
  /** Events with an id above `id`, oldest first: for tailing. */
  after(id: number, limit?: number): Promise<MaintenanceEvent[]>;
  /** `store`'s events, newest first; `before` pages on by id. */
  history(store: string, opts?: { limit?: number; before?: number }): Promise<MaintenanceEvent[]>;
  /** The highest id so far (0 when none). */
  lastId(): Promise<number>;
  /**
   * Record that the change `ref` has drained (nothing it refuses still runs), once per `ref`:
   * undefined when it was recorded already.
   */
  recordDrained(store: string, ref: MaintenanceEvent, at?: number): Promise<MaintenanceEvent | undefined>;
  /**
   * Cluster mode: claim the delivery of event `id`'s notifications for this server; true for the
   * first server that asks. Absent on a log only one server tails.
   */
  claimDelivery?(id: number): Promise<boolean>;
  close(): void;
}

/** The drained event of `ref` (its `detail.ref` says which change drained, and how long it took). */
export function drainedEvent(store: string, ref: MaintenanceEvent, at: number): NewMaintenanceEvent {
  return {
    time: at,
    store,
    type: 'drained',
    source: ref.source,
    ...(ref.from !== undefined && { from: ref.from }),
    ...(ref.to !== undefined && { to: ref.to }),
    ...(ref.message !== undefined && { message: ref.message }),
    detail: { ref: ref.id, 'duration-ms': Math.max(0, at - ref.time) },
  };
}

/** The events whose drain is recorded: the ones that may refuse what already runs. */
export function drainsAfter(e: MaintenanceEvent): boolean {
  return e.type === 'mode-set' || (e.type === 'hold-engaged' && e.to !== 'drain');
}

interface Row {
  id: number;
  time: number;
  store: string;
  type: MaintenanceEventType;
  severity: EventSeverity;
  source: string;
  auth_id: string | null;
  from_type: string | null;
  to_type: string | null;
  message: string | null;
  detail: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time INTEGER NOT NULL,
  store TEXT NOT NULL,
  type TEXT NOT NULL,
  severity TEXT NOT NULL,
  source TEXT NOT NULL,
  auth_id TEXT,
  from_type TEXT,
  to_type TEXT,
  message TEXT,
  detail TEXT,
  ref INTEGER
);
CREATE INDEX IF NOT EXISTS events_store ON events (store, id);
CREATE UNIQUE INDEX IF NOT EXISTS events_drained_ref ON events (ref);
`;

/** The history keeps this many events in all; older ones go (about 100 bytes each). */
const KEEP_EVENTS = 100_000;

/** How many appends pass between two trims of the history to its last `keep` events. */
export function trimInterval(keep: number): number {
  return Math.max(1, Math.min(1000, keep));
}

function toEvent(r: Row): MaintenanceEvent {
  return {
    id: r.id,
    time: r.time,
    store: r.store,
    type: r.type,
    severity: r.severity,
    source: r.source,
    ...(r.auth_id !== null && { authId: r.auth_id }),
    ...(r.from_type !== null && { from: r.from_type }),
    ...(r.to_type !== null && { to: r.to_type }),
    ...(r.message !== null && { message: r.message }),
    ...(r.detail !== null && { detail: JSON.parse(r.detail) as Record<string, unknown> }),
  };
}

export class SqliteMaintenanceEventLog implements MaintenanceEventLog {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly keep: number;

  /**
   * `file` is usually `<dataDir>/maintenance-events.sqlite`; `keep`: the history keeps at least
   * this many events (default 100,000), older ones go.
   */
  constructor(
    readonly file: string,
    opts: { keep?: number } = {},
  ) {
    this.keep = opts.keep ?? KEEP_EVENTS;
    mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
    this.db = new Database(file);
    this.db.pragma('busy_timeout = 10000');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare(
      `INSERT OR IGNORE INTO events (time, store, type, severity, source, auth_id, from_type, to_type, message, detail, ref)
       VALUES (@time, @store, @type, @severity, @source, @auth_id, @from_type, @to_type, @message, @detail, @ref)`,
    );
  }

  private insertEvent(e: NewMaintenanceEvent, ref: number | null): MaintenanceEvent | undefined {
    const row = {
      time: e.time ?? Date.now(),
      store: e.store,
      type: e.type,
      severity: EVENT_SEVERITY[e.type],
      source: e.source,
      auth_id: e.authId ?? null,
      from_type: e.from ?? null,
      to_type: e.to ?? null,
      message: e.message ?? null,
      detail: e.detail === undefined ? null : JSON.stringify(e.detail),
      ref,
    };
    const res = this.insert.run(row);
    if (res.changes === 0) return undefined;
    const id = Number(res.lastInsertRowid);
    // by id, not by this process's count: whichever process appends that id trims
    if (id % trimInterval(this.keep) === 0 && id > this.keep) {
      this.db.prepare('DELETE FROM events WHERE id <= ?').run(id - this.keep);
    }
    const { ref: _ref, ...fields } = row;
    return toEvent({ id, ...fields });
  }

  append(event: NewMaintenanceEvent): Promise<MaintenanceEvent> {
    return Promise.resolve(this.insertEvent(event, null)!);
  }

  after(id: number, limit = 100): Promise<MaintenanceEvent[]> {
    const rows = this.db
      .prepare('SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?')
      .all(id, limit) as Row[];
    return Promise.resolve(rows.map(toEvent));
  }

  history(store: string, opts: { limit?: number; before?: number } = {}): Promise<MaintenanceEvent[]> {
    const rows = this.db
      .prepare('SELECT * FROM events WHERE store = ? AND id < ? ORDER BY id DESC LIMIT ?')
      .all(store, opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit ?? 50) as Row[];
    return Promise.resolve(rows.map(toEvent));
  }

  lastId(): Promise<number> {
    const row = this.db.prepare('SELECT max(id) AS id FROM events').get() as { id: number | null };
    return Promise.resolve(row.id ?? 0);
  }

  recordDrained(
    store: string,
    ref: MaintenanceEvent,
    at = Date.now(),
  ): Promise<MaintenanceEvent | undefined> {
    return Promise.resolve(this.insertEvent(drainedEvent(store, ref, at), ref.id));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
