/**
 * Job states in cluster mode (issue 17), over real HTTPS on the shared 3-member test etcd: two
 * servers of one cluster, with a prune job created on one (job definitions are shared
 * configuration, src/cluster/config-sync.ts), share the job's last run. A run made on one server is the last run that
 * the other lists; while it runs, the other refuses to start it again; deleting the job on one
 * forgets it and its state for both.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, waitForTask, type TestServer } from '../helpers/https-api.js';
import { testEtcd, uniqueEtcdPrefix } from '../helpers/etcd-cluster.js';

const TTL = 3;
let a: TestServer;
let b: TestServer;
let prefix: string;

interface JobStatusItem {
  id: string;
  'last-run-upid'?: string;
  'last-run-state'?: string;
  'last-run-endtime'?: number;
  'next-run'?: number;
}

before(async () => {
  const etcd = await testEtcd();
  prefix = uniqueEtcdPrefix('job-states');
  const rotated = [...etcd.endpoints.slice(1), etcd.endpoints[0]!];
  a = await startTestServer({
    prefix: 'stowage-jobstates-a-',
    nodeName: 'web-a',
    cluster: { endpoints: etcd.endpoints, prefix, node: 'web-a', leaseTtlSeconds: TTL },
  });
  b = await startTestServer({
    prefix: 'stowage-jobstates-b-',
    nodeName: 'web-b',
    cluster: { endpoints: rotated, prefix, node: 'web-b', leaseTtlSeconds: TTL },
  });
  await a.addBareDatastore('store1');
  // the cluster's datastore configuration reaches b through its watch
  for (let i = 0; !b.server.context.datastores.config.read().stores.has('store1'); i++) {
    assert.ok(i < 200, 'store1 reached every server');
    await new Promise((r) => setTimeout(r, 25));
  }
  const res = await a.api('POST', '/config/prune', {
    auth: a.root,
    body: { id: 'hourly1', store: 'store1', schedule: 'hourly', 'keep-last': 3 },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  // the job definition reaches b with the shared configuration
  for (let i = 0; ; i++) {
    const jobs = await b.api('GET', '/config/prune', { auth: b.root });
    if ((jobs.body.data as Array<{ id: string }>).some((j) => j.id === 'hourly1')) break;
    assert.ok(i < 200, 'the job reached b');
    await new Promise((r) => setTimeout(r, 25));
  }
});

after(async () => {
  await a.server.context.cluster!.client.delete().prefix(prefix);
  await b.close();
  await a.close();
});

async function pruneJob(t: TestServer): Promise<JobStatusItem> {
  const res = await t.api('GET', '/admin/prune', { auth: t.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const job = (res.body.data as JobStatusItem[]).find((j) => j.id === 'hourly1');
  assert.ok(job, 'hourly1 is listed');
  return job;
}

test('while a run of the job goes on on one server, the other lists it as the last run and refuses to start it again', async () => {
  assert.equal((await pruneJob(b))['last-run-upid'], undefined, 'no run yet');

  // a run in progress on a, as the job runner leaves it: a task of a's that holds its admission
  // of the datastore, and the job's state `started` with the task's UPID
  const handle = await a.server.context.datastores.lookupDatastore('store1', 'reclaim', {
    kind: 'prune',
    detail: 'prune job hourly1',
  });
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const upid = a.server.context.tasks.spawnTask('prunejob', 'store1:hourly1', 'root@pam', () => finished);
  handle.attachTask(upid);
  await a.server.context.datastores.backend.jobStates.write('prunejob', 'hourly1', {
    state: 'started',
    time: Math.floor(Date.now() / 1000),
    upid,
  });
  try {
    assert.equal((await pruneJob(b))['last-run-upid'], upid, "b lists a's run as the last");
    // the task id reaches etcd just after the admission (attachTask does not wait for it)
    for (
      let i = 0;
      !(await b.server.context.datastores.backend.list('store1')).some((op) => op.taskId === upid);
      i++
    ) {
      assert.ok(i < 200, "a's operation shows its task on b");
      await new Promise((r) => setTimeout(r, 25));
    }
    let again = await b.api('POST', '/admin/prune/hourly1/run', { auth: b.root });
    assert.equal(again.status, 409, JSON.stringify(again.body));
    assert.equal(again.body.message, `prune job 'hourly1' is already running (${upid})`);
    finish();
    await waitForTask(a, upid);
    await handle.release();
    again = await b.api('POST', '/admin/prune/hourly1/run', { auth: b.root });
    assert.equal(again.status, 200, `runs once a's run ended: ${JSON.stringify(again.body)}`);
    assert.equal(await waitForTask(b, again.body.data as string), 'OK');
  } finally {
    finish();
    await handle.release();
  }
});

test('the last run recorded by one server shows its end and status on the other, and deleting the job forgets it on both', async () => {
  const run = await a.api('POST', '/admin/prune/hourly1/run', { auth: a.root });
  assert.equal(run.status, 200, JSON.stringify(run.body));
  const upid = run.body.data as string;
  assert.equal(await waitForTask(a, upid), 'OK');
  let seen: JobStatusItem | undefined;
  for (let i = 0; i < 200; i++) {
    seen = await pruneJob(b);
    if (seen['last-run-state'] !== undefined) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(seen?.['last-run-upid'], upid);
  assert.equal(seen?.['last-run-state'], 'OK');
  assert.ok((seen?.['last-run-endtime'] ?? 0) > 0, 'the end time is known on b');

  // deleting the job on b forgets its last run for both, and the deletion of the definition
  // reaches a with the shared configuration
  const del = await b.api('DELETE', '/config/prune/hourly1', { auth: b.root });
  assert.equal(del.status, 200, JSON.stringify(del.body));
  assert.equal(await a.server.context.datastores.backend.jobStates.read('prunejob', 'hourly1'), undefined);
  for (let i = 0; ; i++) {
    const jobs = await a.api('GET', '/admin/prune', { auth: a.root });
    if (!(jobs.body.data as JobStatusItem[]).some((j) => j.id === 'hourly1')) break;
    assert.ok(i < 200, 'the deletion reached a');
    await new Promise((r) => setTimeout(r, 25));
  }
});
