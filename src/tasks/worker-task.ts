/**
 * Worker tasks, PBS-style (proxmox-rest-server `worker_task.rs`): each background job gets a UPID,
 * a log file at `<tasksDir>/<pstart & 0xff as 2 hex>/<UPID>` with `<RFC 3339 time>: <message>`
 * lines and a final `TASK OK` / `TASK WARNINGS: n` / `TASK ERROR: msg` line, and a row in the
 * shared task index.
 *
 * Final statuses are plain strings as PBS shows them: `OK`, `WARNINGS: <n>`, the error message,
 * `unknown` (the process died before finishing), and — Stowage only — `skipped: <reason>` (e.g.
 * `skipped: maintenance: disk swap`) for a scheduled job that did not run because its datastore
 * is in maintenance (design/maintenance.md).
 */
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import {
  BadRequestError,
  ERR_SHUTTING_DOWN,
  ERR_TASK_ABORTED,
  abortedWith,
  isStowageError,
  NotFoundError,
  type StowageError,
} from '../errors.js';
import { isSameProcessAlive, ownStartTime } from '../sys/proc.js';
import { TaskIndex, type AbortReason, type TaskQuery, type TaskRow } from './task-index.js';
import { formatUpid, isUpidSafe, parseUpid, type Upid } from './upid.js';

/** What a task function gets. */
export interface WorkerTask {
  readonly upid: string;
  /** Aborted when someone stops the task (API DELETE, from any process). */
  readonly signal: AbortSignal;
  log(message: string): void;
  /** Log a warning; the task ends as `WARNINGS: n` if it otherwise succeeds. */
  warn(message: string): void;
  /** Progress as a fraction 0..1 (kept in memory; shown by the task status of this process). */
  progress(fraction: number): void;
  /** Throw the PBS abort error if an abort was requested. */
  throwIfAborted(): void;
  /** End the task as `skipped: <reason>` instead of OK when the function returns normally. */
  markSkipped(reason: string): void;
}

export type TaskFn = (task: WorkerTask) => Promise<void> | void;

/** A task list entry, PBS `TaskListItem` (declared with the other wire types). */
export type { TaskListItem } from '../api-types/tasks.js';
import type { TaskListItem } from '../api-types/tasks.js';

/** PBS's abort message (`WorkerTask::fail_on_abort`). */
export const ABORT_MESSAGE = ERR_TASK_ABORTED.format();

interface RunningTask {
  controller: AbortController;
  done: Promise<string>;
  progress?: number;
}

let nextTaskId = 0; // per process, like PBS's WORKER_TASK_NEXT_ID, so UPIDs stay unique across managers

function rfc3339Local(d: Date): string {
  const off = -d.getTimezoneOffset();
  const pad = (n: number) => String(Math.trunc(Math.abs(n))).padStart(2, '0');
  const sign = off >= 0 ? '+' : '-';
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${sign}${pad(off / 60)}:${pad(off % 60)}`
  );
}

export interface TaskManagerOptions {
  /** `<dataDir>/tasks` */
  tasksDir: string;
  /** Node name in UPIDs; default the short hostname, as PBS. */
  node?: string;
  /** How often to look for abort requests made by other processes. */
  abortPollMs?: number;
}

/** Spawns tasks of this process and answers task queries for all processes of the node. */
export class TaskManager {
  readonly node: string;
  readonly tasksDir: string;
  private readonly index: TaskIndex;
  private readonly running = new Map<string, RunningTask>();
  private readonly abortPollMs: number;
  private poller?: NodeJS.Timeout;
  private closing = false;
  private closed = false;

  constructor(opts: TaskManagerOptions) {
    this.tasksDir = opts.tasksDir;
    mkdirSync(this.tasksDir, { recursive: true });
    this.node = opts.node ?? (hostname().split('.')[0] || 'localhost');
    this.abortPollMs = opts.abortPollMs ?? 1000;
    this.index = new TaskIndex(join(this.tasksDir, 'index.db'));
  }

  /** Where the log of `upid` lives. */
  logPath(upid: string | Upid): string {
    const u = typeof upid === 'string' ? parseUpid(upid) : upid;
    const dir = (u.pstart & 0xff).toString(16).toUpperCase().padStart(2, '0');
    return join(this.tasksDir, dir, formatUpid(u));
  }

  /**
   * Start `fn` as a task and return its UPID at once; the function runs on the next tick, so a
   * request handler can answer with the UPID before the task logs anything.
   */
  spawnTask(workerType: string, workerId: string | undefined, authId: string, fn: TaskFn): string {
    if (this.closing) throw ERR_SHUTTING_DOWN();
    if (!isUpidSafe(workerType))
      throw new BadRequestError(`illegal characters in worker type '${workerType}'`);
    if (!isUpidSafe(authId)) throw new BadRequestError(`illegal characters in auth_id '${authId}'`);
    const u: Upid = {
      node: this.node,
      pid: process.pid,
      pstart: ownStartTime(),
      taskId: nextTaskId++,
      starttime: Math.floor(Date.now() / 1000),
      workerType,
      workerId,
      authId,
    };
    const upid = formatUpid(u);
    const path = this.logPath(u);
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(path, 'a', 0o640);
    this.index.insert({
      upid,
      node: u.node,
      pid: u.pid,
      pstart: u.pstart,
      starttime: u.starttime,
      worker_type: workerType,
      worker_id: workerId ?? null,
      auth_id: authId,
    });

    const controller = new AbortController();
    let warnings = 0;
    let skipped: string | undefined;
    let finished = false;
    const write = (line: string) => {
      if (finished) return; // a straggling callback of an ended task must not hit the closed fd
      writeSync(fd, `${rfc3339Local(new Date())}: ${line.replace(/\n/g, ' ')}\n`);
    };
    const entry: RunningTask = { controller, done: Promise.resolve('') };
    const task: WorkerTask = {
      upid,
      signal: controller.signal,
      log: (m) => write(m),
      warn: (m) => {
        warnings++;
        write(`WARN: ${m}`);
      },
      progress: (f) => {
        entry.progress = Math.max(0, Math.min(1, f));
      },
      throwIfAborted: () => {
        if (controller.signal.aborted) throw ERR_TASK_ABORTED();
      },
      markSkipped: (reason) => {
        skipped = reason;
      },
    };

    // An abort with a reason (a maintenance mode that ended the task) is logged as such, and the
    // task fails with that reason, whatever error the interrupted work happened to throw.
    controller.signal.addEventListener(
      'abort',
      () => {
        const reason: unknown = controller.signal.reason;
        if (isStowageError(reason)) write(`abort requested: ${reason.message}`);
      },
      { once: true },
    );
    let errorCode: string | undefined;
    entry.done = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => fn(task))
      .then(
        () => (skipped !== undefined ? `skipped: ${skipped}` : warnings > 0 ? `WARNINGS: ${warnings}` : 'OK'),
        (thrown: unknown) => {
          const reason: unknown = controller.signal.reason;
          const err = controller.signal.aborted && isStowageError(reason) ? reason : thrown;
          if (controller.signal.aborted && (err as Error)?.name === 'AbortError') return ABORT_MESSAGE;
          if (isStowageError(err)) errorCode = err.code;
          const msg = err instanceof Error ? err.message : String(err);
          return msg.trim() === '' ? 'unknown error' : msg.replace(/\n/g, ' ');
        },
      )
      .then((status) => {
        const final =
          status === 'OK' || status.startsWith('WARNINGS: ') || status.startsWith('skipped: ')
            ? status
            : `ERROR: ${status}`;
        try {
          write(`TASK ${final}`);
        } finally {
          finished = true;
          closeSync(fd);
        }
        this.index.finish(upid, Math.floor(Date.now() / 1000), status, errorCode);
        this.running.delete(upid);
        this.afterTaskEnd();
        return status;
      });
    this.running.set(upid, entry);
    this.startPoller();
    return upid;
  }

  /** Resolve with the final status once the task has ended (any process). */
  async waitForTask(upid: string, pollMs = 200): Promise<string> {
    const own = this.running.get(upid);
    if (own) return own.done;
    for (;;) {
      const item = this.item(upid);
      if (item.status !== undefined) return item.status;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /**
   * Ask a running task to stop. Tasks of this process get their signal aborted at once; tasks of
   * another process through the index. With a `reason` the task logs it and fails with it (a
   * maintenance mode that ends it: its status is the refusal, its error code MAINTENANCE); without
   * one it ends as PBS's `abort requested - aborting task`. False when the task is not running.
   */
  abortTask(upid: string, reason?: StowageError): boolean {
    const carried: AbortReason | undefined = reason && { code: reason.code, message: reason.message };
    const own = this.running.get(upid);
    if (own) {
      own.controller.abort(reason);
      this.index.requestAbort(upid, carried);
      return true;
    }
    return this.index.requestAbort(upid, carried);
  }

  /**
   * The Stowage error code a failed task ended with (`TIMEOUT`, `MAINTENANCE`, ...), so that a
   * CLI following the task exits as it would for the error itself; undefined otherwise.
   */
  errorCode(upid: string): string | undefined {
    return this.index.get(upid)?.error_code ?? undefined;
  }

  /** The list entry of one task; NotFoundError when the index does not know it. */
  item(upid: string): TaskListItem {
    this.reapDead();
    const row = this.index.get(upid);
    if (!row) throw new NotFoundError(`no such task '${upid}'`);
    return toItem(row);
  }

  /** Whether the task has not ended. */
  isRunning(upid: string): boolean {
    return this.item(upid).endtime === undefined;
  }

  progressOf(upid: string): number | undefined {
    return this.running.get(upid)?.progress;
  }

  /** Query the index, newest first, with the total count. */
  list(q: TaskQuery): { items: TaskListItem[]; total: number } {
    this.reapDead();
    const { rows, total } = this.index.query(q);
    return { items: rows.map(toItem), total };
  }

  /**
   * Log lines `{n, t}` from line `start` (PBS counts from 1 and treats start 0 like 1), at most
   * `limit`, with the total line count.
   */
  readLog(upid: string, start = 0, limit = 50): { lines: Array<{ n: number; t: string }>; total: number } {
    this.item(upid); // 404 for unknown tasks
    let text: string;
    try {
      text = readFileSync(this.logPath(upid), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw new NotFoundError(`task log of '${upid}' not found`);
      throw err;
    }
    const all = text.split('\n');
    if (all[all.length - 1] === '') all.pop();
    const lines: Array<{ n: number; t: string }> = [];
    all.forEach((t, i) => {
      const n = i + 1;
      if (n < start || lines.length >= limit) return;
      lines.push({ n, t });
    });
    return { lines, total: all.length };
  }

  /**
   * Mark tasks of this node whose process is gone as ended with status `unknown` (PBS shows such
   * tasks the same way), using the log's mtime as end time.
   */
  private reapDead(): void {
    for (const row of this.index.unfinished(this.node)) {
      if (this.running.has(row.upid) || isSameProcessAlive(row.pid, row.pstart)) continue;
      let endtime = row.starttime;
      try {
        endtime = Math.floor(statSync(this.logPath(row.upid)).mtimeMs / 1000);
      } catch {
        // no log: keep the start time
      }
      this.index.finish(row.upid, endtime, 'unknown');
    }
  }

  private startPoller(): void {
    if (this.poller) return;
    this.poller = setInterval(() => {
      for (const { upid, reason } of this.index.abortRequestedFor(process.pid, ownStartTime())) {
        const controller = this.running.get(upid)?.controller;
        if (!controller || controller.signal.aborted) continue;
        controller.abort(reason && abortedWith(reason.code, reason.message));
      }
    }, this.abortPollMs);
    this.poller.unref();
  }

  private afterTaskEnd(): void {
    if (this.running.size > 0) return;
    if (this.poller) clearInterval(this.poller);
    this.poller = undefined;
    if (this.closing) this.closeIndex();
  }

  private closeIndex(): void {
    if (this.closed) return;
    this.closed = true;
    this.index.close();
  }

  /** Abort every task this process runs (a shutdown whose grace period ran out); their count. */
  abortAll(): number {
    for (const upid of this.running.keys()) this.abortTask(upid);
    return this.running.size;
  }

  /** Number of tasks this process is running. */
  get activeCount(): number {
    return this.running.size;
  }

  /**
   * Stop taking new tasks. Running tasks go on to the end (an old server finishes its work after
   * a restart); the returned promise resolves when the last one has ended.
   */
  async close(): Promise<void> {
    this.closing = true;
    const pending = [...this.running.values()].map((r) => r.done);
    if (pending.length === 0) this.closeIndex();
    await Promise.all(pending);
  }
}

function toItem(row: TaskRow): TaskListItem {
  return {
    upid: row.upid,
    node: row.node,
    pid: row.pid,
    pstart: row.pstart,
    starttime: row.starttime,
    worker_type: row.worker_type,
    ...(row.worker_id !== null && { worker_id: row.worker_id }),
    user: row.auth_id,
    ...(row.endtime !== null && { endtime: row.endtime }),
    ...(row.status !== null && { status: row.status }),
  };
}
