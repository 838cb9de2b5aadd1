/**
 * Local operation registry in SQLite (WAL), shared by all processes that use the same run dir.
 * Why SQLite rather than PBS's JSON file rewritten under a flock: each process inserts and deletes
 * only its own rows, so there is no read-modify-write of other processes' entries — the class of
 * bug that made PBS 3.x lose a second process's counts (reference §3.5) cannot happen.
 * docs/adr/001-operation-registry-in-sqlite.md has the full reasoning.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { ownStartTime, processStartTime } from '../sys/proc.js';
import type { HoldType, OperationClass, SystemHold } from './maintenance-mode.js';
import {
  countOperations,
  type OperationCounts,
  type OperationInfo,
  type OperationRecord,
  type OperationRegistry,
} from './operation-registry.js';

interface Row {
  id: number;
  store: string;
  class: OperationClass;
  kind: string;
  detail: string | null;
  auth_id: string | null;
  task_id: string | null;
  pid: number;
  pstart: number;
  started_at: number;
}

interface HoldRow {
  source: string;
  type: HoldType;
  message: string;
  since: number;
  auth_id: string | null;
}

const CLASS_CHECK = "CHECK (class IN ('read', 'ingest', 'reclaim', 'lookup'))";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS operations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  store TEXT NOT NULL,
  class TEXT NOT NULL ${CLASS_CHECK},
  kind TEXT NOT NULL,
  detail TEXT,
  auth_id TEXT,
  task_id TEXT,
  pid INTEGER NOT NULL,
  pstart INTEGER NOT NULL,
  started_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_store ON operations (store);
CREATE TABLE IF NOT EXISTS holds (
  store TEXT NOT NULL,
  source TEXT NOT NULL,
  type TEXT NOT NULL,
  message TEXT NOT NULL,
  since INTEGER NOT NULL,
  auth_id TEXT,
  PRIMARY KEY (store, source)
);
`;

/**
 * A registry made before `write` was split into ingest and reclaim refuses the new classes: make
 * the table again, with the rows of processes still running (a graceful restart overlaps the old
 * and new server) counted as `ingest`, the stricter of the two, and the id sequence kept, so ids
 * stay monotonic across the change.
 */
function migrateClassCheck(db: Database.Database): void {
  const table = db
    .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'operations'")
    .get() as { sql: string } | undefined;
  if (!table || table.sql.includes("'ingest'")) return;
  db.transaction(() => {
    const again = db
      .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'operations'")
      .get() as {
      sql: string;
    };
    if (again.sql.includes("'ingest'")) return; // another process migrated meanwhile
    const seq = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'operations'").get() as
      { seq: number } | undefined;
    db.exec(`ALTER TABLE operations RENAME TO operations_old;
      DROP INDEX IF EXISTS operations_store;`);
    db.exec(SCHEMA);
    db.exec(`INSERT INTO operations SELECT id, store, CASE class WHEN 'write' THEN 'ingest' ELSE class END,
      kind, detail, auth_id, task_id, pid, pstart, started_at FROM operations_old;
      DROP TABLE operations_old;`);
    if (seq) {
      db.prepare("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'operations'").run(seq.seq);
      db.prepare(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'operations', ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'operations')",
      ).run(seq.seq);
    }
  }).immediate();
}

function toRecord(r: Row): OperationRecord {
  return {
    id: r.id,
    store: r.store,
    class: r.class,
    kind: r.kind,
    ...(r.detail !== null && { detail: r.detail }),
    ...(r.auth_id !== null && { authId: r.auth_id }),
    ...(r.task_id !== null && { taskId: r.task_id }),
    pid: r.pid,
    pstart: r.pstart,
    startedAt: r.started_at,
  };
}

export class SqliteOperationRegistry implements OperationRegistry {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly selectAll: Database.Statement;
  private readonly selectStore: Database.Statement;
  private readonly removeDead: Database.Statement;
  private readonly selectSignature: Database.Statement;

  /** `file` is usually `<runDir>/active-operations.sqlite`. */
  constructor(readonly file: string) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
    this.db = new Database(file);
    this.db.pragma('busy_timeout = 10000');
    this.db.pragma('journal_mode = WAL');
    // NORMAL is durable enough: the registry describes running processes, which a power loss ends anyway.
    this.db.pragma('synchronous = NORMAL');
    migrateClassCheck(this.db);
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare(
      `INSERT INTO operations (store, class, kind, detail, auth_id, task_id, pid, pstart, started_at)
       VALUES (@store, @class, @kind, @detail, @auth_id, @task_id, @pid, @pstart, @started_at)`,
    );
    this.remove = this.db.prepare('DELETE FROM operations WHERE id = ?');
    this.selectAll = this.db.prepare('SELECT * FROM operations ORDER BY id');
    this.selectStore = this.db.prepare('SELECT * FROM operations WHERE store = ? ORDER BY id');
    this.removeDead = this.db.prepare('DELETE FROM operations WHERE pid = ? AND pstart = ?');
    this.selectSignature = this.db.prepare(
      'SELECT count(*) AS n, max(id) AS top FROM operations WHERE store = ?',
    );
  }

  register(store: string, cls: OperationClass, info: OperationInfo): OperationRecord {
    const row = {
      store,
      class: cls,
      kind: info.kind,
      detail: info.detail ?? null,
      auth_id: info.authId ?? null,
      task_id: info.taskId ?? null,
      pid: process.pid,
      pstart: ownStartTime(),
      started_at: Date.now(),
    };
    const id = Number(this.insert.run(row).lastInsertRowid);
    return toRecord({ id, ...row });
  }

  attachTask(id: number, taskId: string): void {
    this.db.prepare('UPDATE operations SET task_id = ? WHERE id = ?').run(taskId, id);
  }

  unregister(id: number): void {
    this.remove.run(id);
  }

  list(store?: string): OperationRecord[] {
    const rows = (store === undefined ? this.selectAll.all() : this.selectStore.all(store)) as Row[];
    const live: OperationRecord[] = [];
    const verdict = new Map<string, boolean>();
    for (const r of rows) {
      const key = `${r.pid}:${r.pstart}`;
      let alive = verdict.get(key);
      if (alive === undefined) {
        // A dead holder (or a reused pid with another start time) stops counting at once.
        alive = processStartTime(r.pid) === r.pstart;
        verdict.set(key, alive);
        if (!alive) this.removeDead.run(r.pid, r.pstart);
      }
      if (alive) live.push(toRecord(r));
    }
    return live;
  }

  counts(store: string): OperationCounts {
    return countOperations(this.list(store));
  }

  sequence(): number {
    const row = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'operations'").get() as
      { seq: number } | undefined;
    return row?.seq ?? 0;
  }

  /**
   * Changes whenever the rows of `store` change: an insert raises the highest id (AUTOINCREMENT
   * never reuses one), a delete lowers the count, so no change of the set keeps both. Dead
   * holders' rows count until a `list` sweeps them. One indexed read, nothing on the write path.
   */
  signature(store: string): string {
    const row = this.selectSignature.get(store) as { n: number; top: number | null };
    return `${row.n}:${row.top ?? 0}`;
  }

  /** The system holds on `store`, oldest first. */
  holds(store: string): SystemHold[] {
    const rows = this.db
      .prepare('SELECT * FROM holds WHERE store = ? ORDER BY since, source')
      .all(store) as HoldRow[];
    return rows.map((r) => ({
      source: r.source,
      type: r.type,
      message: r.message,
      since: r.since,
      ...(r.auth_id !== null && { authId: r.auth_id }),
    }));
  }

  /** Put (or replace) the hold of `hold.source` on `store`. */
  putHold(store: string, hold: SystemHold): void {
    this.db
      .prepare(
        `INSERT INTO holds (store, source, type, message, since, auth_id) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (store, source) DO UPDATE SET type = excluded.type, message = excluded.message,
           since = excluded.since, auth_id = excluded.auth_id`,
      )
      .run(store, hold.source, hold.type, hold.message, hold.since, hold.authId ?? null);
  }

  removeHold(store: string, source: string): void {
    this.db.prepare('DELETE FROM holds WHERE store = ? AND source = ?').run(store, source);
  }

  /** Changes whenever a hold of `store` is put, changed or removed. */
  holdSignature(store: string): string {
    const row = this.db
      .prepare(
        "SELECT group_concat(source || '=' || type || ':' || since || ':' || message, '|') AS s FROM holds WHERE store = ?",
      )
      .get(store) as { s: string | null };
    return row.s ?? '';
  }

  forgetStore(store: string): void {
    this.db.prepare('DELETE FROM operations WHERE store = ?').run(store);
    this.db.prepare('DELETE FROM holds WHERE store = ?').run(store);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
