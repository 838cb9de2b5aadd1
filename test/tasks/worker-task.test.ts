import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ABORT_MESSAGE, TaskManager } from '../../src/tasks/worker-task.js';
import { TaskIndex } from '../../src/tasks/task-index.js';
import { formatUpid } from '../../src/tasks/upid.js';
import { StowageError } from '../../src/errors.js';

async function withManager(fn: (m: TaskManager, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tasks-'));
  const m = new TaskManager({ tasksDir: dir, node: 'testnode', abortPollMs: 20 });
  try {
    await fn(m, dir);
  } finally {
    await m.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Resolves when `signal` aborts, also when it already has: on a loaded machine the test's abort
 * can come before the task function (started on the next turn of the event loop) listens.
 */
function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

test('a task logs timestamped lines and ends with TASK OK and status OK', async () => {
  await withManager(async (m) => {
    const upid = m.spawnTask('garbage_collection', 'store1', 'root@pam', (task) => {
      task.log('first line');
      task.log('second line');
    });
    assert.match(
      upid,
      /^UPID:testnode:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:[0-9A-F]{8}:garbage_collection:store1:root@pam:$/,
    );
    assert.equal(await m.waitForTask(upid), 'OK');
    const { lines, total } = m.readLog(upid);
    assert.equal(total, 3);
    assert.deepEqual(
      lines.map((l) => l.n),
      [1, 2, 3],
    );
    assert.match(lines[0]!.t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d: first line$/);
    assert.match(lines[2]!.t, /: TASK OK$/);
    const item = m.item(upid);
    assert.equal(item.status, 'OK');
    assert.equal(item.worker_id, 'store1');
    assert.equal(item.user, 'root@pam');
    assert.equal(typeof item.endtime, 'number');
  });
});

test('warnings, errors and skips end as WARNINGS: n, the error message and skipped: reason', async () => {
  await withManager(async (m) => {
    const warned = m.spawnTask('verify', 'store1', 'root@pam', (task) => {
      task.warn('chunk a is bad');
      task.warn('chunk b is bad');
    });
    const failed = m.spawnTask('prune', 'store1', 'root@pam', async () => {
      throw new StowageError('NOT_FOUND', "datastore 'store1' does not exist");
    });
    const skipped = m.spawnTask('garbage_collection', 'store1', 'root@pam', (task) => {
      task.markSkipped('maintenance: disk swap');
    });
    assert.equal(await m.waitForTask(warned), 'WARNINGS: 2');
    assert.equal(await m.waitForTask(failed), "datastore 'store1' does not exist");
    assert.equal(await m.waitForTask(skipped), 'skipped: maintenance: disk swap');
    assert.match(m.readLog(failed).lines.at(-1)!.t, /TASK ERROR: datastore 'store1' does not exist$/);
    assert.match(m.readLog(warned).lines[0]!.t, /WARN: chunk a is bad$/);
    assert.equal(m.list({ errors: true }).total, 3, 'every status but OK counts as an error, as in PBS');
  });
});

test('aborting a running task fires its signal and it ends with the abort message', async () => {
  await withManager(async (m) => {
    const upid = m.spawnTask('verify', 'store1', 'root@pam', async (task) => {
      await untilAborted(task.signal);
      task.throwIfAborted();
    });
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(m.isRunning(upid), true);
    assert.equal(m.abortTask(upid), true);
    assert.equal(await m.waitForTask(upid), ABORT_MESSAGE);
    assert.equal(m.abortTask(upid), false, 'a finished task cannot be aborted');
  });
});

test('another process sees the task in the shared index and can request its abort', async () => {
  await withManager(async (m, dir) => {
    const other = new TaskManager({ tasksDir: dir, node: 'testnode' });
    try {
      const upid = m.spawnTask('sync', 'store1', 'alice@pbs', async (task) => {
        await untilAborted(task.signal);
        task.throwIfAborted();
      });
      await new Promise((r) => setTimeout(r, 10));
      const seen = other.list({ running: true });
      assert.deepEqual(
        seen.items.map((i) => i.upid),
        [upid],
      );
      assert.equal(other.abortTask(upid), true, 'the request goes through the index');
      assert.equal(await other.waitForTask(upid, 20), ABORT_MESSAGE);
    } finally {
      await other.close();
    }
  });
});

test('an abort with a reason, asked through the index, is logged and the task fails with it and its code', async () => {
  await withManager(async (m, dir) => {
    const other = new TaskManager({ tasksDir: dir, node: 'testnode' });
    const reason = "datastore 'store1' is unavailable: offline maintenance mode: fsck";
    try {
      const upid = m.spawnTask('garbage_collection', 'store1', 'root@pam', async (task) => {
        await untilAborted(task.signal);
        // whatever the interrupted work throws, the task fails with the reason
        throw new Error('interrupted mid-chunk');
      });
      await new Promise((r) => setTimeout(r, 10));
      assert.equal(other.abortTask(upid, new StowageError('MAINTENANCE', reason)), true);
      assert.equal(await other.waitForTask(upid, 20), reason);
      assert.equal(other.errorCode(upid), 'MAINTENANCE');
      const log = other.readLog(upid).lines.map((l) => l.t);
      assert.ok(
        log.some((l) => l.endsWith(`: abort requested: ${reason}`)),
        log.join('\n'),
      );
      assert.ok(log.at(-1)!.endsWith(`: TASK ERROR: ${reason}`));
    } finally {
      await other.close();
    }
  });
});

test('a task whose process died without finishing is reported with status unknown', async () => {
  await withManager(async (m, dir) => {
    const index = new TaskIndex(join(dir, 'index.db'));
    const upid = formatUpid({
      node: 'testnode',
      pid: 999_999_9, // no such process
      pstart: 12345,
      taskId: 0,
      starttime: 1_700_000_000,
      workerType: 'backup',
      workerId: 'store1:host/web01',
      authId: 'alice@pbs',
    });
    index.insert({
      upid,
      node: 'testnode',
      pid: 999_999_9,
      pstart: 12345,
      starttime: 1_700_000_000,
      worker_type: 'backup',
      worker_id: 'store1:host/web01',
      auth_id: 'alice@pbs',
    });
    index.close();
    const item = m.item(upid);
    assert.equal(item.status, 'unknown');
    assert.equal(item.endtime, 1_700_000_000);
    assert.equal(m.isRunning(upid), false);
  });
});

test('the task list filters by user, type and store and pages newest first', async () => {
  await withManager(async (m) => {
    const a = m.spawnTask('backup', 'store1:host/a', 'alice@pbs', () => {});
    const b = m.spawnTask('garbage_collection', 'store2', 'bob@pbs', () => {});
    const c = m.spawnTask('backup', 'store1:host/c', 'alice@pbs!client', () => {});
    for (const u of [a, b, c]) await m.waitForTask(u);
    assert.deepEqual(
      m.list({}).items.map((i) => i.upid),
      [c, b, a],
    );
    assert.deepEqual(
      m.list({ authIds: ['alice@pbs'] }).items.map((i) => i.upid),
      [a],
    );
    assert.equal(m.list({ userfilter: 'alice' }).total, 2);
    assert.equal(m.list({ typefilter: 'garbage' }).items[0]!.upid, b);
    assert.equal(m.list({ store: 'store1' }).total, 2);
    const page = m.list({ start: 1, limit: 1 });
    assert.equal(page.total, 3);
    assert.deepEqual(
      page.items.map((i) => i.upid),
      [b],
    );
  });
});

test("a failed task keeps its error's code, so a CLI following it exits as for the error itself", async () => {
  await withManager(async (m) => {
    const timedOut = m.spawnTask('delete-datastore', 'store1', 'root@pam', () => {
      throw new StowageError('TIMEOUT', 'still in use after 1s');
    });
    assert.equal(await m.waitForTask(timedOut), 'still in use after 1s');
    assert.equal(m.errorCode(timedOut), 'TIMEOUT');
    const plain = m.spawnTask('verify', 'store1', 'root@pam', () => {
      throw new Error('disk on fire');
    });
    await m.waitForTask(plain);
    assert.equal(m.errorCode(plain), undefined, 'not a Stowage error: no code');
    const ok = m.spawnTask('verify', 'store1', 'root@pam', () => {});
    await m.waitForTask(ok);
    assert.equal(m.errorCode(ok), undefined);
    assert.equal('errorCode' in m.item(timedOut), false, 'the list entry keeps PBS shape');
  });
});

test('a task index written before error codes existed is upgraded in place', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'stowage-tasks-'));
  try {
    const Database = (await import('better-sqlite3')).default;
    const old = new Database(join(dir, 'index.db'));
    old.exec(`CREATE TABLE tasks (upid TEXT PRIMARY KEY, node TEXT NOT NULL, pid INTEGER NOT NULL,
      pstart INTEGER NOT NULL, starttime INTEGER NOT NULL, worker_type TEXT NOT NULL, worker_id TEXT,
      auth_id TEXT NOT NULL, endtime INTEGER, status TEXT, abort_requested INTEGER NOT NULL DEFAULT 0)`);
    old.close();
    const m = new TaskManager({ tasksDir: dir, node: 'testnode', abortPollMs: 20 });
    try {
      const upid = m.spawnTask('verify', 'store1', 'root@pam', () => {
        throw new StowageError('MAINTENANCE', 'offline');
      });
      await m.waitForTask(upid);
      assert.equal(m.errorCode(upid), 'MAINTENANCE');
    } finally {
      await m.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
