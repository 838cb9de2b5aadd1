/**
 * Scheduled jobs once per cluster (issue 17), on the shared 3-member test etcd: the servers'
 * schedulers elect a leader (src/jobs/etcd-scheduler-leadership.ts); only it runs the jobs and
 * records a skip for maintenance; when it stops another takes over at once, and when it dies
 * (SIGKILL: its lease is no longer kept alive) another takes over after the lease TTL, without
 * running a slot the dead leader ran. Each "server" here is a test instance (its own config,
 * data dir and history) with its own etcd client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { testEtcd, uniqueEtcdPrefix } from '../helpers/etcd-cluster.js';
import { makeInstance, type TestInstance } from '../helpers/instance.js';
import { TaskManager } from '../../src/tasks/worker-task.js';
import { pruneJobConfig } from '../../src/config/job-config.js';
import { runSchedulerOnce } from '../../src/jobs/scheduler.js';
import type { JobContext } from '../../src/jobs/jobs.js';
import { EtcdSchedulerLeadership } from '../../src/jobs/etcd-scheduler-leadership.js';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/scheduler-candidate.ts', import.meta.url));
const TTL = 2;
const T = (s: string) => new Date(`2030-01-01T${s}:00Z`);
const sec = (s: string) => Math.floor(T(s).getTime() / 1000);

/** A server: an instance with store1 and an hourly prune job, and its scheduler's leadership. */
async function server(endpoints: string[], prefix: string, node: string) {
  const inst: TestInstance = makeInstance(`stowage-leader-${node}-`);
  const tasks = new TaskManager({ tasksDir: join(inst.paths.dataDir, 'tasks'), node });
  const ctx: JobContext = { paths: inst.paths, tasks, datastores: inst.access };
  await inst.createStore('store1');
  await pruneJobConfig(inst.paths.configDir).update((jobs) => {
    jobs.set('hourly1', { id: 'hourly1', store: 'store1', schedule: 'hourly', 'keep-last': 3 });
  });
  await inst.access.backend.jobStates.write('prunejob', 'hourly1', { state: 'created', time: sec('09:30') });
  const client = new Etcd3({ hosts: endpoints });
  const leadership = new EtcdSchedulerLeadership({ client, prefix, node, ttlSeconds: TTL });
  return {
    node,
    inst,
    ctx,
    leadership,
    pass: (at: string) => runSchedulerOnce(ctx, T(at), leadership),
    async close() {
      await leadership.close();
      client.close();
      await tasks.close();
      inst.cleanup();
    },
  };
}

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - start;
}

test('two servers elect one scheduler: each slot runs once, a skip is recorded once, and a stopping leader hands over', async () => {
  const etcd = await testEtcd();
  const prefix = uniqueEtcdPrefix('scheduler');
  const rotated = [...etcd.endpoints.slice(1), etcd.endpoints[0]!];
  const servers = [await server(etcd.endpoints, prefix, 'node-a'), await server(rotated, prefix, 'node-b')];
  try {
    await until('a leader', () => servers.some((s) => s.leadership.leads()), 10_000);
    const leader = servers.find((s) => s.leadership.leads())!;
    const follower = servers.find((s) => s !== leader)!;
    assert.equal(follower.leadership.leads(), false, 'one leader at a time');
    assert.equal(await follower.leadership.leader(), leader.node, 'every server knows who leads');

    // 10:00: the hourly job runs on the leader only
    const [l1, f1] = [await leader.pass('10:00'), await follower.pass('10:00')];
    assert.deepEqual([l1.map((r) => r.outcome), f1], [['started'], []]);
    await leader.ctx.tasks.waitForTask(l1[0]!.upid);

    // 11:00 with the store offline on both: skipped, and recorded once in the cluster
    for (const s of servers)
      await setMaintenanceMode(s.inst.access, 'store1', { type: 'offline', message: 'disk swap' });
    const [l2, f2] = [await leader.pass('11:00'), await follower.pass('11:00')];
    assert.deepEqual([l2.map((r) => r.outcome), f2], [['skipped'], []]);
    const skips = await Promise.all(
      servers.map(async (s) =>
        (await s.inst.access.backend.events.history('store1')).filter((e) => e.type === 'job-skipped'),
      ),
    );
    assert.equal(skips.flat().length, 1, 'one job-skipped event in the whole cluster');
    for (const s of servers) await setMaintenanceMode(s.inst.access, 'store1', undefined);

    // the leader stops: the other takes over at once (resigned), and runs neither 10:00 nor 11:00 again
    await leader.leadership.close();
    const handover = await until('the follower leads', () => follower.leadership.leads(), 5_000);
    assert.ok(handover < TTL * 1000, `a resigned leader is replaced before its TTL (${handover} ms)`);
    assert.deepEqual(await follower.pass('11:30'), [], 'the slots the old leader decided are not run again');
    const next = await follower.pass('12:00');
    assert.deepEqual(
      next.map((r) => r.outcome),
      ['started'],
      'the next slot runs on the new leader',
    );
    await follower.ctx.tasks.waitForTask(next[0]!.upid);
    assert.equal(await follower.leadership.leader(), follower.node);
  } finally {
    for (const s of servers) await s.close();
    const client = new Etcd3({ hosts: etcd.endpoints });
    await client.delete().prefix(prefix);
    client.close();
  }
});

test('a leader that dies is replaced after its lease TTL', async () => {
  const etcd = await testEtcd();
  const prefix = uniqueEtcdPrefix('scheduler-kill');
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: {
      ...process.env,
      STOWAGE_TEST_ETCD_ENDPOINTS: etcd.endpoints.join(','),
      STOWAGE_TEST_ETCD_PREFIX: prefix,
      STOWAGE_TEST_NODE: 'doomed',
      STOWAGE_TEST_LEASE_TTL: String(TTL),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const client = new Etcd3({ hosts: [...etcd.endpoints].reverse() });
  let survivor: EtcdSchedulerLeadership | undefined;
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    assert.equal(line.toString().trim(), 'leading');
    survivor = new EtcdSchedulerLeadership({ client, prefix, node: 'survivor', ttlSeconds: TTL });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(survivor.leads(), false, 'the living leader keeps leading');
    assert.equal(await survivor.leader(), 'doomed');

    child.kill('SIGKILL');
    const took = await until('the survivor leads', () => survivor!.leads(), (TTL + 5) * 1000);
    assert.equal(await survivor.leader(), 'survivor');
    // the dead leader's lease is kept alive every TTL/3: it expires between 2/3 TTL and TTL later
    assert.ok(took >= (TTL * 1000) / 3, `took over ${took} ms after the kill, not before the lease expired`);
  } finally {
    child.kill('SIGKILL');
    await survivor?.close();
    await client.delete().prefix(prefix);
    client.close();
  }
});
