import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { makeInstance, type TestInstance } from '../helpers/instance.js';
import { TaskManager } from '../../src/tasks/worker-task.js';
import { pruneJobConfig, syncJobConfig, verifyJobConfig } from '../../src/config/job-config.js';
import { writeSnapshots } from '../helpers/snapshot-fixture.js';
import { DatastoreConfigFile } from '../../src/config/datastore-config.js';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';
import { runSchedulerOnce, startScheduler } from '../../src/jobs/scheduler.js';
import { jobScheduleStatus, runJobNow } from '../../src/jobs/job-runner.js';
import { pruneJob } from '../../src/jobs/jobs.js';
import type { JobContext } from '../../src/jobs/jobs.js';
import { StowageError } from '../../src/errors.js';
import { maintenanceWindowConfig } from '../../src/config/maintenance-window-config.js';

const T = (s: string) => new Date(s);
const sec = (s: string) => Math.floor(T(s).getTime() / 1000);

async function withInstance(fn: (inst: TestInstance, ctx: JobContext) => Promise<void>): Promise<void> {
  const inst = makeInstance('stowage-sched-');
  const tasks = new TaskManager({ tasksDir: join(inst.paths.dataDir, 'tasks'), node: 'testnode' });
  const ctx: JobContext = { paths: inst.paths, tasks, datastores: inst.access };
  try {
    await inst.createStore('store1');
    await fn(inst, ctx);
  } finally {
    await tasks.close();
    inst.cleanup();
  }
}

async function addHourlyPruneJob(inst: TestInstance, createdAt: string): Promise<void> {
  await pruneJobConfig(inst.paths.configDir).update((jobs) => {
    jobs.set('hourly1', { id: 'hourly1', store: 'store1', schedule: 'hourly', 'keep-last': 3 });
  });
  await inst.access.backend.jobStates.write('prunejob', 'hourly1', {
    state: 'created',
    time: sec(createdAt),
  });
}

test('a job due during offline is recorded as skipped, not retried, and runs at its next slot after', async () => {
  await withInstance(async (inst, ctx) => {
    await addHourlyPruneJob(inst, '2030-01-01T09:30:00Z');
    await setMaintenanceMode(inst.access, 'store1', { type: 'offline', message: 'disk swap' });

    const runs = await runSchedulerOnce(ctx, T('2030-01-01T10:00:00Z'));
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.outcome, 'skipped');
    const upid = runs[0]!.upid;
    assert.equal(await ctx.tasks.waitForTask(upid), 'skipped: maintenance: offline: disk swap');
    const item = ctx.tasks.item(upid);
    assert.equal(item.worker_type, 'prunejob');
    assert.equal(item.worker_id, 'store1:hourly1');
    const log = ctx.tasks.readLog(upid).lines.map((l) => l.t);
    assert.ok(
      log.some((l) => l.includes("datastore 'store1' is unavailable: offline maintenance mode: disk swap")),
      log.join('\n'),
    );
    assert.match(log.at(-1)!, /TASK skipped: maintenance: offline: disk swap$/);

    const state = await inst.access.backend.jobStates.read('prunejob', 'hourly1');
    assert.equal(state?.state, 'finished');
    assert.equal(state?.upid, upid);
    assert.equal(state?.status, 'skipped: maintenance: offline: disk swap');

    const job = pruneJob(pruneJobConfig(inst.paths.configDir).get('hourly1')!);
    const status = await jobScheduleStatus(ctx, job);
    assert.equal(status['last-run-state'], 'skipped: maintenance: offline: disk swap');
    assert.equal(status['last-run-upid'], upid);
    assert.equal(status['next-run'], sec('2030-01-01T11:00:00Z'));

    // the following minutes neither retry nor log again
    for (const t of ['10:01', '10:02', '10:30', '10:59']) {
      assert.deepEqual(await runSchedulerOnce(ctx, T(`2030-01-01T${t}:00Z`)), [], t);
    }
    assert.equal(ctx.tasks.list({}).total, 1);

    await setMaintenanceMode(inst.access, 'store1', undefined);
    assert.deepEqual(await runSchedulerOnce(ctx, T('2030-01-01T10:30:00Z')), []);
    const next = await runSchedulerOnce(ctx, T('2030-01-01T11:00:00Z'));
    assert.equal(next.length, 1);
    assert.equal(next[0]!.outcome, 'started');
    assert.equal(await ctx.tasks.waitForTask(next[0]!.upid), 'OK');
    // the state is recorded once the task has ended
    for (
      let i = 0;
      i < 100 && (await inst.access.backend.jobStates.read('prunejob', 'hourly1'))?.state !== 'finished';
      i++
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const after = await inst.access.backend.jobStates.read('prunejob', 'hourly1');
    assert.deepEqual([after?.state, after?.upid, after?.status], ['finished', next[0]!.upid, 'OK']);
    assert.equal((await jobScheduleStatus(ctx, job))['next-run'], sec('2030-01-01T12:00:00Z'));
  });
});

test('a verify job on a read-only datastore is skipped, since verify writes', async () => {
  await withInstance(async (inst, ctx) => {
    await verifyJobConfig(inst.paths.configDir).update((jobs) => {
      jobs.set('verify1', { id: 'verify1', store: 'store1', schedule: '*:0/30' });
    });
    await inst.access.backend.jobStates.write('verificationjob', 'verify1', {
      state: 'created',
      time: sec('2030-01-01T09:59:00Z'),
    });
    await setMaintenanceMode(inst.access, 'store1', { type: 'read-only' });
    const runs = await runSchedulerOnce(ctx, T('2030-01-01T10:00:30Z'));
    assert.equal(runs.length, 1);
    assert.equal(await ctx.tasks.waitForTask(runs[0]!.upid), 'skipped: maintenance: read-only');
  });
});

test('a verify job configured read-only runs on a read-only datastore as a read operation', async () => {
  await withInstance(async (inst, ctx) => {
    await verifyJobConfig(inst.paths.configDir).update((jobs) => {
      jobs.set('verify1', { id: 'verify1', store: 'store1', schedule: '*:0/30', 'read-only': true });
    });
    await inst.access.backend.jobStates.write('verificationjob', 'verify1', {
      state: 'created',
      time: sec('2030-01-01T09:59:00Z'),
    });
    await setMaintenanceMode(inst.access, 'store1', { type: 'read-only' });
    const runs = await runSchedulerOnce(ctx, T('2030-01-01T10:00:30Z'));
    assert.equal(runs[0]?.outcome, 'started');
    assert.equal(await ctx.tasks.waitForTask(runs[0]!.upid), 'OK');
  });
});

test('scheduled GC follows the gc-schedule of datastore.cfg', async () => {
  await withInstance(async (inst, ctx) => {
    await new DatastoreConfigFile(inst.paths.configDir).update((stores) => {
      stores.set('store1', { ...stores.get('store1')!, 'gc-schedule': 'daily' });
    });
    // first sight: no state yet, so a state is created and nothing is due before midnight
    assert.deepEqual(await runSchedulerOnce(ctx, T('2030-01-01T10:00:00Z')), []);
    assert.equal(
      (await inst.access.backend.jobStates.read('garbage_collection', 'store1'))?.state,
      'created',
    );
    await setMaintenanceMode(inst.access, 'store1', { type: 'offline' });
    const runs = await runSchedulerOnce(ctx, T('2030-01-02T00:00:10Z'));
    assert.equal(runs.length, 1);
    assert.equal(ctx.tasks.item(runs[0]!.upid).worker_type, 'garbage_collection');
    assert.equal(await ctx.tasks.waitForTask(runs[0]!.upid), 'skipped: maintenance: offline');
  });
});

test('a job whose datastore is gone is recorded as a failed run, not retried every minute', async () => {
  await withInstance(async (inst, ctx) => {
    await pruneJobConfig(inst.paths.configDir).update((jobs) => {
      jobs.set('orphan', { id: 'orphan', store: 'nosuchstore', schedule: 'hourly' });
    });
    await inst.access.backend.jobStates.write('prunejob', 'orphan', {
      state: 'created',
      time: sec('2030-01-01T09:30:00Z'),
    });
    const runs = await runSchedulerOnce(ctx, T('2030-01-01T10:00:00Z'));
    assert.equal(runs[0]?.outcome, 'failed');
    assert.equal(await ctx.tasks.waitForTask(runs[0]!.upid), "datastore 'nosuchstore' does not exist");
    // the history (and so the notifier) gets the failure once
    assert.deepEqual(
      (await inst.access.backend.events.history('nosuchstore')).map((e) => [
        e.type,
        e.source,
        e.severity,
        e.message,
      ]),
      [['job-failed', 'job:orphan', 'error', "datastore 'nosuchstore' does not exist"]],
    );
    assert.deepEqual(await runSchedulerOnce(ctx, T('2030-01-01T10:01:00Z')), []);
  });
});

test('run-now is refused before any task is created when maintenance refuses it', async () => {
  await withInstance(async (inst, ctx) => {
    await addHourlyPruneJob(inst, '2030-01-01T09:30:00Z');
    await setMaintenanceMode(inst.access, 'store1', { type: 'read-only', message: 'disk 3' });
    const job = pruneJob(pruneJobConfig(inst.paths.configDir).get('hourly1')!);
    await assert.rejects(
      runJobNow(ctx, job, 'root@pam'),
      (err: unknown) =>
        err instanceof StowageError &&
        err.status === 503 &&
        err.message === "datastore 'store1' is unavailable: read-only maintenance mode: disk 3",
    );
    assert.equal(ctx.tasks.list({}).total, 0);
  });
});

test('a slot is run by one of several schedulers only', async () => {
  await withInstance(async (inst, ctx) => {
    await addHourlyPruneJob(inst, '2030-01-01T09:30:00Z');
    const tasks2 = new TaskManager({ tasksDir: join(inst.paths.dataDir, 'tasks'), node: 'testnode' });
    try {
      const ctx2: JobContext = { ...ctx, tasks: tasks2 };
      const now = T('2030-01-01T10:00:00Z');
      const [a, b] = await Promise.all([runSchedulerOnce(ctx, now), runSchedulerOnce(ctx2, now)]);
      assert.equal(a.length + b.length, 1);
      const upid = (a[0] ?? b[0])!.upid;
      assert.equal(await ctx.tasks.waitForTask(upid), 'OK');
      assert.deepEqual(await runSchedulerOnce(ctx2, T('2030-01-01T10:00:30Z')), []);
    } finally {
      await tasks2.close();
    }
  });
});

test('the scheduler loop ticks with an injected clock and stops cleanly', async () => {
  await withInstance(async (inst, ctx) => {
    await addHourlyPruneJob(inst, '2030-01-01T09:30:00Z');
    const scheduler = startScheduler(ctx, { intervalMs: 10, now: () => T('2030-01-01T10:00:05Z') });
    for (let i = 0; i < 200 && ctx.tasks.list({}).total === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    await scheduler.stop();
    assert.equal(ctx.tasks.list({}).total, 1);
    const [item] = ctx.tasks.list({}).items;
    await ctx.tasks.waitForTask(item!.upid);
  });
});

test('a maintenance window drains, holds, skips the job due at its start with its message, and lifts by itself', async () => {
  await withInstance(async (inst, ctx) => {
    const backend = inst.access.backend;
    await verifyJobConfig(inst.paths.configDir).update((jobs) => {
      jobs.set('verify1', { id: 'verify1', store: 'store1', schedule: '02:00' });
    });
    await inst.access.backend.jobStates.write('verificationjob', 'verify1', {
      state: 'created',
      time: sec('2030-01-01T00:00:00Z'),
    });
    await maintenanceWindowConfig(inst.paths.configDir).update((windows) => {
      windows.set('fsck', {
        id: 'fsck',
        store: 'store1',
        schedule: '02:00',
        duration: '1h',
        type: 'offline',
        message: 'monthly fsck',
        'drain-before': '30min',
      });
    });
    const holdsAt = async (t: string) => {
      await runSchedulerOnce(ctx, T(t));
      return (await backend.holds('store1')).map((h) => [h.source, h.type, h.message]);
    };

    assert.deepEqual(await holdsAt('2030-01-01T01:29:00Z'), []);
    assert.deepEqual(await holdsAt('2030-01-01T01:30:00Z'), [
      ['window:fsck', 'drain', 'offline maintenance window at 2030-01-01T02:00:00Z: monthly fsck'],
    ]);
    // the drain refuses a new backup (a long operation) with the start time; a restore goes on
    await assert.rejects(
      inst.access.lookupDatastore('store1', 'ingest', { kind: 'backup', detail: 'test backup' }),
      (err: Error) =>
        (err as StowageError).status === 503 && /at 2030-01-01T02:00:00Z: monthly fsck/.test(err.message),
    );
    const restore = await inst.access.lookupDatastore('store1', 'read', {
      kind: 'reader',
      detail: 'restore',
    });
    await restore.release();

    // at the start the window's own hold replaces the drain, and the verify due then is skipped with its message
    const runs = await runSchedulerOnce(ctx, T('2030-01-01T02:00:00Z'));
    assert.deepEqual(
      (await backend.holds('store1')).map((h) => [h.source, h.type]),
      [['window:fsck', 'offline']],
    );
    assert.equal(runs.length, 1);
    assert.equal(
      await ctx.tasks.waitForTask(runs[0]!.upid),
      'skipped: maintenance: offline: offline maintenance window: monthly fsck',
    );

    assert.deepEqual(await holdsAt('2030-01-01T02:59:59Z'), [
      ['window:fsck', 'offline', 'offline maintenance window: monthly fsck'],
    ]);
    assert.deepEqual(await holdsAt('2030-01-01T03:00:00Z'), []);

    const history = (await backend.events.history('store1')).reverse();
    assert.deepEqual(
      history.map((e) => [e.type, e.source, e.from, e.to]),
      [
        ['hold-engaged', 'window:fsck', 'none', 'drain'],
        ['window-starting', 'window:fsck', undefined, 'offline'],
        ['hold-engaged', 'window:fsck', 'drain', 'offline'],
        ['drained', 'window:fsck', 'drain', 'offline'],
        ['job-skipped', 'job:verify1', undefined, undefined],
        ['hold-released', 'window:fsck', 'offline', 'none'],
      ],
    );
    const starting = history.find((e) => e.type === 'window-starting')!;
    assert.deepEqual(starting.detail, {
      window: 'fsck',
      start: sec('2030-01-01T02:00:00Z'),
      end: sec('2030-01-01T03:00:00Z'),
    });
    const skipped = history.find((e) => e.type === 'job-skipped')!;
    assert.equal(skipped.message, 'maintenance: offline: offline maintenance window: monthly fsck');
    assert.deepEqual(skipped.detail?.job, { id: 'verify1', type: 'verify', 'job-type': 'verificationjob' });
  });
});

test('a window removed, disabled or moved lifts its hold at the next pass; other holds stay', async () => {
  await withInstance(async (inst, ctx) => {
    const backend = inst.access.backend;
    const cfg = maintenanceWindowConfig(inst.paths.configDir);
    await cfg.update((windows) => {
      windows.set('win1', { id: 'win1', store: 'store1', schedule: '02:00', duration: '1h', type: 'sealed' });
      windows.set('win2', {
        id: 'win2',
        store: 'store1',
        schedule: '02:30',
        duration: '1h',
        type: 'read-only',
      });
    });
    await backend.setHold('store1', 'low-space', { type: 'sealed', message: 'low space: 3% free' });
    const sources = async (t: string) => {
      await runSchedulerOnce(ctx, T(t));
      return (await backend.holds('store1')).map((h) => h.source).sort();
    };
    assert.deepEqual(await sources('2030-01-01T02:45:00Z'), ['low-space', 'window:win1', 'window:win2']);
    await cfg.update((windows) => {
      windows.set('win1', { ...windows.get('win1')!, disable: true });
    });
    assert.deepEqual(await sources('2030-01-01T02:46:00Z'), ['low-space', 'window:win2']);
    await cfg.update((windows) => {
      windows.set('win2', { ...windows.get('win2')!, schedule: '05:00' });
    });
    assert.deepEqual(await sources('2030-01-01T02:47:00Z'), ['low-space']);
    await cfg.update((windows) => {
      windows.set('win1', { ...windows.get('win1')!, disable: false });
    });
    assert.deepEqual(await sources('2030-01-02T02:00:00Z'), ['low-space', 'window:win1']);
    await cfg.update((windows) => windows.delete('win1'));
    assert.deepEqual(await sources('2030-01-02T02:01:00Z'), ['low-space']);
  });
});

test('a scheduled local sync job is skipped with the message while either end refuses it, then copies at its next slot', async () => {
  const inst = makeInstance('stowage-sched-sync-');
  const tasks = new TaskManager({ tasksDir: join(inst.paths.dataDir, 'tasks'), node: 'testnode' });
  const ctx: JobContext = { paths: inst.paths, tasks, datastores: inst.access };
  try {
    await inst.createStore('src', {}, { full: true });
    await inst.createStore('dst', {}, { full: true });
    await writeSnapshots(inst.access, 'src', [{ type: 'vm', id: '100', time: sec('2029-12-31T00:00:00Z') }]);
    await syncJobConfig(inst.paths.configDir).update((jobs) => {
      jobs.set('nightly', { id: 'nightly', store: 'dst', 'remote-store': 'src', schedule: 'hourly' });
    });
    await inst.access.backend.jobStates.write('syncjob', 'nightly', {
      state: 'created',
      time: sec('2030-01-01T09:30:00Z'),
    });

    await setMaintenanceMode(inst.access, 'dst', { type: 'read-only', message: 'target frozen' });
    let runs = await runSchedulerOnce(ctx, T('2030-01-01T10:00:00Z'));
    assert.equal(
      await ctx.tasks.waitForTask(runs[0]!.upid),
      'skipped: maintenance: read-only: target frozen',
    );
    await setMaintenanceMode(inst.access, 'dst', undefined);

    await setMaintenanceMode(inst.access, 'src', { type: 'offline', message: 'source disk swap' });
    runs = await runSchedulerOnce(ctx, T('2030-01-01T11:00:00Z'));
    assert.equal(
      await ctx.tasks.waitForTask(runs[0]!.upid),
      'skipped: maintenance: offline: source disk swap',
    );
    // nothing stays admitted on either store after a refusal
    assert.deepEqual(await inst.access.backend.list('src'), []);
    assert.deepEqual(await inst.access.backend.list('dst'), []);
    await setMaintenanceMode(inst.access, 'src', undefined);

    runs = await runSchedulerOnce(ctx, T('2030-01-01T12:00:00Z'));
    assert.equal(runs[0]?.outcome, 'started');
    assert.equal(ctx.tasks.item(runs[0]!.upid).worker_id, '-:src:dst::nightly');
    assert.equal(await ctx.tasks.waitForTask(runs[0]!.upid), 'OK');
    const h = await inst.access.lookupDatastore('dst', 'read', { kind: 'test' });
    try {
      const group = h.datastore.listGroups()[0]!;
      assert.equal(`${group}`, 'vm/100');
      assert.equal(h.datastore.getOwner(group), 'root@pam');
      assert.equal(h.datastore.listSnapshots(group).length, 1);
    } finally {
      await h.release();
    }
  } finally {
    await tasks.close();
    inst.cleanup();
  }
});
