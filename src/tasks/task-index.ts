/**
 * The persistent task index shared by every Stowage process on the node: SQLite (WAL) at
 * `<dataDir>/tasks/index.db`, one row per task. PBS keeps `tasks/active` and `tasks/index` text
 * files rewritten under a lock; a database gives the same cross-process view (a restarted server
 * lists the tasks an old process is still finishing) with filtering and paging in SQL, and
 * carries abort requests to the process that runs the task (PBS uses a control socket for that).
 */
import Database from 'better-sqlite3';

export interface TaskRow {
  upid: string;
  node: string;
  pid: number;
  pstart: number;
  starttime: number;
  worker_type: string;
  worker_id: string | null;
  auth_id: string;
  endtime: number | null;
  status: string | null;
  /** The Stowage error code of a failed task (`MAINTENANCE`, `TIMEOUT`, ...), else null. */
  error_code: string | null;
  abort_requested: number;
  /** Why the abort was asked for, when a reason was given (an error code and its message). */
  abort_code: string | null;
  abort_message: string | null;
}

/** Why a task is asked to stop, carried to the process running it: it fails with this error. */
export interface AbortReason {
  /** A Stowage error code (`MAINTENANCE`). */
  code: string;
  message: string;
}

export interface TaskQuery {
  /** Only unfinished tasks. */
  running?: boolean;
  /** Only finished tasks whose status is not OK. */
  errors?: boolean;
  /** Substring of the auth id (PBS `userfilter`). */
  userfilter?: string;
  /** Restrict to these auth ids (access filtering). */
  authIds?: readonly string[];
  typefilter?: string;
  /** Tasks whose worker id is the store or starts with `<store>:` or `<store>_`. */
  store?: string;
  since?: number;
  until?: number;
  start?: number;
  limit?: number;
}

export class TaskIndex {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS tasks (
        upid TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pstart INTEGER NOT NULL,
        starttime INTEGER NOT NULL,
        worker_type TEXT NOT NULL,
        worker_id TEXT,
        auth_id TEXT NOT NULL,
        endtime INTEGER,
        status TEXT,
        abort_requested INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX IF NOT EXISTS tasks_starttime ON tasks (starttime);
      CREATE INDEX IF NOT EXISTS tasks_running ON tasks (endtime) WHERE endtime IS NULL;
    `);
    // added after the first release: an index written by an older version lacks the columns
    const columns = this.db.prepare('PRAGMA table_info(tasks)').all() as Array<{ name: string }>;
    for (const added of ['error_code', 'abort_code', 'abort_message']) {
      if (!columns.some((c) => c.name === added)) this.db.exec(`ALTER TABLE tasks ADD COLUMN ${added} TEXT`);
    }
  }

  insert(
    row: Omit<
      TaskRow,
      'endtime' | 'status' | 'error_code' | 'abort_requested' | 'abort_code' | 'abort_message'
    >,
  ): void {
    this.db
      .prepare(
        `INSERT INTO tasks (upid, node, pid, pstart, starttime, worker_type, worker_id, auth_id)
         VALUES (@upid, @node, @pid, @pstart, @starttime, @worker_type, @worker_id, @auth_id)`,
      )
      .run(row);
  }

  finish(upid: string, endtime: number, status: string, errorCode?: string): void {
    this.db
      .prepare('UPDATE tasks SET endtime = ?, status = ?, error_code = ? WHERE upid = ? AND endtime IS NULL')
      .run(endtime, status, errorCode ?? null, upid);
  }

  get(upid: string): TaskRow | undefined {
    return this.db.prepare('SELECT * FROM tasks WHERE upid = ?').get(upid) as TaskRow | undefined;
  }

  /** Flag a running task for abort (with why, if given); its process notices on its next poll. */
  requestAbort(upid: string, reason?: AbortReason): boolean {
    return (
      this.db
        .prepare(
          `UPDATE tasks SET abort_requested = 1, abort_code = coalesce(abort_code, ?),
             abort_message = coalesce(abort_message, ?)
           WHERE upid = ? AND endtime IS NULL`,
        )
        .run(reason?.code ?? null, reason?.message ?? null, upid).changes > 0
    );
  }

  /** Unfinished tasks of one process that have been asked to abort, with the reason when one was given. */
  abortRequestedFor(pid: number, pstart: number): Array<{ upid: string; reason?: AbortReason }> {
    const rows = this.db
      .prepare(
        `SELECT upid, abort_code, abort_message FROM tasks
         WHERE endtime IS NULL AND abort_requested = 1 AND pid = ? AND pstart = ?`,
      )
      .all(pid, pstart) as Array<Pick<TaskRow, 'upid' | 'abort_code' | 'abort_message'>>;
    return rows.map((r) => ({
      upid: r.upid,
      ...(r.abort_code !== null && { reason: { code: r.abort_code, message: r.abort_message ?? '' } }),
    }));
  }

  /** Unfinished tasks on `node`, for finding those whose process died. */
  unfinished(node: string): TaskRow[] {
    return this.db.prepare('SELECT * FROM tasks WHERE endtime IS NULL AND node = ?').all(node) as TaskRow[];
  }

  /** Newest first, with the total count before paging (PBS returns it as the `total` attribute). */
  query(q: TaskQuery): { rows: TaskRow[]; total: number } {
    const where: string[] = [];
    const args: Record<string, unknown> = {};
    if (q.running) where.push('endtime IS NULL');
    if (q.errors) where.push("endtime IS NOT NULL AND status IS NOT 'OK'");
    if (q.userfilter !== undefined) {
      where.push('instr(auth_id, @userfilter) > 0');
      args.userfilter = q.userfilter;
    }
    if (q.authIds) {
      const names = q.authIds.map((_, i) => `@auth${i}`);
      where.push(names.length ? `auth_id IN (${names.join(',')})` : '0');
      q.authIds.forEach((a, i) => (args[`auth${i}`] = a));
    }
    if (q.typefilter !== undefined) {
      where.push('instr(worker_type, @typefilter) > 0');
      args.typefilter = q.typefilter;
    }
    if (q.store !== undefined) {
      where.push(
        "(worker_id = @store OR substr(worker_id, 1, length(@store) + 1) IN (@store || ':', @store || '_'))",
      );
      args.store = q.store;
    }
    if (q.since !== undefined) {
      where.push('starttime >= @since');
      args.since = q.since;
    }
    if (q.until !== undefined) {
      where.push('starttime <= @until');
      args.until = q.until;
    }
    const cond = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = this.db.prepare(`SELECT count(*) FROM tasks ${cond}`).pluck().get(args) as number;
    const rows = this.db
      .prepare(`SELECT * FROM tasks ${cond} ORDER BY starttime DESC, rowid DESC LIMIT @limit OFFSET @offset`)
      .all({ ...args, limit: q.limit ?? 50, offset: q.start ?? 0 }) as TaskRow[];
    return { rows, total };
  }

  close(): void {
    this.db.close();
  }
}
