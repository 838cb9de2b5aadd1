import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, taskLog, waitForTask, type TestServer } from '../helpers/https-api.js';
import { runSchedulerOnce } from '../../src/jobs/scheduler.js';

let t: TestServer;

before(async () => {
  t = await startTestServer({ prefix: 'stowage-jobs-e2e-' });
  await t.addBareDatastore('store1', { 'gc-schedule': 'daily' });
});
after(() => t.close());

const sec = (s: string) => Math.floor(new Date(s).getTime() / 1000);

interface JobStatusItem {
  id?: string;
  store: string;
  'next-run'?: number;
  'last-run-upid'?: string;
  'last-run-state'?: string;
  'last-run-endtime'?: number;
  [k: string]: unknown;
}

test('prune and verify jobs are created, read and updated with PBS parameter names and digests', async () => {
  const bad = await t.api('POST', '/config/prune', {
    auth: t.root,
    body: { id: 'hourly1', store: 'store1', schedule: 'every tuesday' },
  });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message ?? '', /invalid schedule 'every tuesday'/);

  const created = await t.api('POST', '/config/prune', {
    auth: t.root,
    body: { id: 'hourly1', store: 'store1', schedule: 'hourly', 'keep-last': 3, comment: 'web' },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const dup = await t.api('POST', '/config/prune', {
    auth: t.root,
    body: { id: 'hourly1', store: 'store1', schedule: 'hourly' },
  });
  assert.equal(dup.status, 409);

  const one = await t.api('GET', '/config/prune/hourly1', { auth: t.root });
  assert.deepEqual(one.body.data, {
    id: 'hourly1',
    store: 'store1',
    schedule: 'hourly',
    'keep-last': 3,
    comment: 'web',
  });
  const digest = one.body.digest as string;
  assert.match(digest, /^[0-9a-f]{64}$/);

  const upd = await t.api('PUT', '/config/prune/hourly1', {
    auth: t.root,
    body: { 'keep-daily': 7, delete: ['comment'], digest },
  });
  assert.equal(upd.status, 200, JSON.stringify(upd.body));
  const stale = await t.api('PUT', '/config/prune/hourly1', {
    auth: t.root,
    body: { 'keep-last': 1, digest },
  });
  assert.equal(stale.status, 409);
  assert.match(stale.body.message ?? '', /detected modified configuration/);
  const list = await t.api('GET', '/config/prune', { auth: t.root });
  assert.deepEqual(list.body.data, [
    { id: 'hourly1', store: 'store1', schedule: 'hourly', 'keep-last': 3, 'keep-daily': 7 },
  ]);

  const verify = await t.api('POST', '/config/verify', {
    auth: t.root,
    body: {
      id: 'verify1',
      store: 'store1',
      schedule: '*:0/30',
      'ignore-verified': true,
      'outdated-after': 30,
    },
  });
  assert.equal(verify.status, 200, JSON.stringify(verify.body));
  const badStore = await t.api('POST', '/config/verify', {
    auth: t.root,
    body: { id: 'verify2', store: 'nostore' },
  });
  assert.equal(badStore.status, 400);
  assert.match(badStore.body.message ?? '', /'store'/);
});

test('a job scheduled during offline shows as skipped in the task list and job lists, and run-now is a 503', async () => {
  const off = await t.api('PUT', '/config/datastore/store1', {
    auth: t.root,
    body: { 'maintenance-mode': 'offline,message="disk swap"' },
  });
  assert.equal(off.status, 200, JSON.stringify(off.body));

  const before = (await t.api('GET', '/nodes/localhost/tasks', { auth: t.root })).body.total as number;
  const run = await t.api('POST', '/admin/prune/hourly1/run', { auth: t.root });
  assert.equal(run.status, 503);
  assert.equal(run.body.message, "datastore 'store1' is unavailable: offline maintenance mode: disk swap");
  const runVerify = await t.api('POST', '/admin/verify/verify1/run', { auth: t.root });
  assert.equal(runVerify.status, 503);
  assert.equal((await t.api('GET', '/nodes/localhost/tasks', { auth: t.root })).body.total, before);

  // the scheduler's clock is injected: the job was created at 09:30, its slot is 10:00
  await t.server.context.datastores.backend.jobStates.write('prunejob', 'hourly1', {
    state: 'created',
    time: sec('2030-01-01T09:30:00Z'),
  });
  const runs = await runSchedulerOnce(t.server.context, new Date('2030-01-01T10:00:00Z'));
  const pruneRun = runs.find((r) => r.type === 'prunejob');
  assert.equal(pruneRun?.outcome, 'skipped');
  assert.equal(await waitForTask(t, pruneRun.upid), 'skipped: maintenance: offline: disk swap');

  const tasks = await t.api('GET', '/nodes/localhost/tasks?typefilter=prunejob', { auth: t.root });
  const entry = (tasks.body.data as Array<Record<string, unknown>>).find((e) => e.upid === pruneRun.upid);
  assert.equal(entry?.status, 'skipped: maintenance: offline: disk swap');
  assert.equal(entry?.worker_id, 'store1:hourly1');
  assert.equal(entry?.user, 'root@pam');
  const log = await taskLog(t, pruneRun.upid);
  assert.ok(
    log.some((l) => l.includes('offline maintenance mode: disk swap')),
    log.join('\n'),
  );

  const jobs = await t.api('GET', '/admin/prune', { auth: t.root });
  const job = (jobs.body.data as JobStatusItem[])[0]!;
  assert.equal(job.id, 'hourly1');
  assert.equal(job['last-run-state'], 'skipped: maintenance: offline: disk swap');
  assert.equal(job['last-run-upid'], pruneRun.upid);
  assert.equal(typeof job['last-run-endtime'], 'number');
  assert.equal(job['next-run'], sec('2030-01-01T11:00:00Z'));

  // the next minute neither retries nor logs again
  const later = await runSchedulerOnce(t.server.context, new Date('2030-01-01T10:01:00Z'));
  assert.equal(later.filter((r) => r.type === 'prunejob').length, 0);

  // GC of an offline datastore stays listed (PBS drops it) with its skipped run
  await t.server.context.datastores.backend.jobStates.write('garbage_collection', 'store1', {
    state: 'created',
    time: sec('2030-01-01T09:00:00Z'),
  });
  const gcRuns = await runSchedulerOnce(t.server.context, new Date('2030-01-02T00:00:00Z'));
  const gcRun = gcRuns.find((r) => r.type === 'garbage_collection')!;
  assert.equal(await waitForTask(t, gcRun.upid), 'skipped: maintenance: offline: disk swap');
  const gc = await t.api('GET', '/admin/gc', { auth: t.root });
  const gcItem = (gc.body.data as JobStatusItem[]).find((g) => g.store === 'store1')!;
  assert.equal(gcItem.schedule, 'daily');
  assert.equal(gcItem['last-run-state'], 'skipped: maintenance: offline: disk swap');
  assert.equal(gcItem['next-run'], sec('2030-01-03T00:00:00Z'));
  assert.equal(gcItem['disk-chunks'], undefined);
  const gcOne = await t.api('GET', '/admin/gc/store1', { auth: t.root });
  assert.equal(gcOne.status, 503);

  const clear = await t.api('PUT', '/config/datastore/store1', {
    auth: t.root,
    body: { delete: ['maintenance-mode'] },
  });
  assert.equal(clear.status, 200, JSON.stringify(clear.body));
});

test('after the mode is cleared, run-now starts the job and the job list shows its result', async () => {
  const run = await t.api('POST', '/admin/prune/hourly1/run', { auth: t.root });
  assert.equal(run.status, 200, JSON.stringify(run.body));
  const upid = run.body.data as string;
  assert.match(upid, /:prunejob:store1\\x3ahourly1:root@pam:$/);
  assert.equal(await waitForTask(t, upid), 'OK');
  let job: JobStatusItem | undefined;
  for (let i = 0; i < 100; i++) {
    job = (
      (await t.api('GET', '/admin/prune?store=store1', { auth: t.root })).body.data as JobStatusItem[]
    )[0];
    if (job?.['last-run-state'] === 'OK') break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(job?.['last-run-upid'], upid);
  assert.equal(job?.['last-run-state'], 'OK');

  const gc = await t.api('GET', '/admin/gc', { auth: t.root });
  const gcItem = (gc.body.data as JobStatusItem[]).find((g) => g.store === 'store1')!;
  assert.equal(typeof gcItem['disk-chunks'], 'number');

  const verify = await t.api('GET', '/admin/verify', { auth: t.root });
  assert.deepEqual(
    (verify.body.data as JobStatusItem[]).map((v) => [v.id, v.store, typeof v['next-run']]),
    [['verify1', 'store1', 'number']],
  );
});

test('jobs are visible and runnable only with privileges on their datastore', async () => {
  const nobody = await t.addUser('nobody@pbs');
  assert.deepEqual((await t.api('GET', '/admin/prune', { auth: nobody })).body.data, []);
  assert.deepEqual((await t.api('GET', '/config/verify', { auth: nobody })).body.data, []);
  assert.deepEqual((await t.api('GET', '/admin/gc', { auth: nobody })).body.data, []);
  const run = await t.api('POST', '/admin/prune/hourly1/run', { auth: nobody });
  assert.equal(run.status, 403);
  assert.equal(run.body.message, 'permission check failed - missing Datastore.Modify on /datastore/store1');

  const auditor = await t.addUser('auditor@pbs', [{ path: '/datastore/store1', role: 'DatastoreAudit' }]);
  assert.equal(((await t.api('GET', '/admin/prune', { auth: auditor })).body.data as unknown[]).length, 1);
  const verifyRun = await t.api('POST', '/admin/verify/verify1/run', { auth: auditor });
  assert.equal(verifyRun.status, 403);
  const del = await t.api('DELETE', '/config/prune/hourly1', { auth: auditor });
  assert.equal(del.status, 403);
});

test('removing a job removes it from the lists', async () => {
  const del = await t.api('DELETE', '/config/prune/hourly1', { auth: t.root });
  assert.equal(del.status, 200, JSON.stringify(del.body));
  assert.deepEqual((await t.api('GET', '/admin/prune', { auth: t.root })).body.data, []);
  assert.equal((await t.api('GET', '/config/prune/hourly1', { auth: t.root })).status, 404);
});
