/**
 * `GET /api2/json/cluster/status` (issue 17) over real HTTPS: a server without --cluster says
 * `enabled: false`; a server of a cluster on the shared 3-member test etcd lists its servers (the
 * scheduler's candidates: lease, TTL left, alive or lost, operations, leader) and etcd's members,
 * raft leader and endpoints. Another server is a separate process, SIGKILLed to show "lost".
 * `stowage cluster status` prints the same as tables.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import { testEtcd, uniqueEtcdPrefix, type EtcdTestTarget } from '../helpers/etcd-cluster.js';
import { EtcdSchedulerLeadership } from '../../src/jobs/etcd-scheduler-leadership.js';
import type { ClusterStatus } from '../../src/cluster/cluster-status.js';
import { STOWAGE_BIN, runCli } from '../helpers/cli.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/scheduler-candidate.ts', import.meta.url));
const TTL = 3;

let etcd: EtcdTestTarget;
let prefix: string;
let plain: TestServer;
let member: TestServer;
let leadership: EtcdSchedulerLeadership;
let other: ChildProcess | undefined;

before(async () => {
  etcd = await testEtcd();
  prefix = uniqueEtcdPrefix('status');
  plain = await startTestServer({ prefix: 'stowage-status-plain-' });
  member = await startTestServer({
    prefix: 'stowage-status-web-a-',
    nodeName: 'web-a',
    cluster: { endpoints: etcd.endpoints, prefix, node: 'web-a', leaseTtlSeconds: TTL },
  });
  const cluster = member.server.context.cluster!;
  // as `stowage server` does: the scheduler campaigns first (it leads)
  leadership = new EtcdSchedulerLeadership({
    client: cluster.client,
    prefix,
    node: 'web-a',
    ttlSeconds: TTL,
  });
});

after(async () => {
  other?.kill('SIGKILL');
  await leadership.close();
  await member.server.context.cluster!.client.delete().prefix(prefix);
  await member.close();
  await plain.close();
});

const status = async (t: TestServer) => {
  const res = await t.api('GET', '/cluster/status', { auth: t.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data as ClusterStatus;
};

test('a server without --cluster answers enabled: false', async () => {
  assert.deepEqual(await status(plain), { enabled: false });
});

test('the cluster status needs Sys.Audit on /system/status, and takes no parameters', async () => {
  const nobody = await plain.addUser('nobody@pbs', [{ path: '/datastore', role: 'DatastoreAdmin' }]);
  const denied = await plain.api('GET', '/cluster/status', { auth: nobody });
  assert.equal(denied.status, 403);
  assert.equal(denied.body.message, 'permission check failed - missing Sys.Audit on /system/status');
  const auditor = await plain.addUser('auditor@pbs', [{ path: '/system/status', role: 'Audit' }]);
  assert.equal((await plain.api('GET', '/cluster/status', { auth: auditor })).status, 200);
  assert.equal((await plain.api('GET', '/cluster/status')).status, 401);
  const query = await plain.api('GET', '/cluster/status?verbose=1', { auth: plain.root });
  assert.equal(query.status, 400);
  assert.match(query.body.message!, /'verbose'/);
});

test("a cluster's status: its servers with lease, TTL, state, operations and leader, and etcd's health", async () => {
  await until(() => leadership.leads());
  const cluster = member.server.context.cluster!;
  await cluster.backend.defineStore({ name: 'shared', path: '/srv/stowage/shared' });
  const op = await cluster.backend.admit('shared', 'read', { kind: 'restore', detail: 'host/web01' });

  other = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: {
      ...process.env,
      STOWAGE_TEST_ETCD_ENDPOINTS: [...etcd.endpoints].reverse().join(','),
      STOWAGE_TEST_ETCD_PREFIX: prefix,
      STOWAGE_TEST_NODE: 'web-b',
      STOWAGE_TEST_LEASE_TTL: String(TTL),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await until(async () => ((await status(member)).nodes ?? []).length === 2);

  const s = await status(member);
  assert.equal(s.enabled, true);
  assert.equal(s.node, 'web-a');
  assert.equal(s['lease-ttl'], TTL);
  assert.deepEqual(
    s.nodes!.map((n) => [n.node, n.state, n.operations, n.leader]),
    [
      ['web-a', 'alive', 1, true],
      ['web-b', 'alive', 0, false],
    ],
  );
  for (const n of s.nodes!) {
    assert.match(n.lease!, /^[0-9a-f]+$/);
    assert.equal(n['granted-ttl'], TTL);
    assert.ok(n.ttl! > 0 && n.ttl! <= TTL, `ttl ${n.ttl}`);
  }
  const etcdStatus = s.etcd!;
  assert.equal(etcdStatus.members.length, 3);
  assert.ok(
    etcdStatus.members.some((m) => m.name === etcdStatus.leader),
    `leader ${etcdStatus.leader}`,
  );
  // m2 and m3 are never stopped; m1 may be down in another test file's outage (see
  // test/helpers/etcd-cluster.ts), and then it is listed as unreachable with the error
  assert.deepEqual(
    etcdStatus.endpoints.map((e) => e.endpoint),
    etcd.endpoints,
  );
  const [m1, ...others] = etcdStatus.endpoints;
  for (const e of others) assert.equal(e.reachable, true, `${e.endpoint}: ${e.errors?.join(', ')}`);
  assert.ok(m1!.reachable || /ECONNREFUSED/.test(m1!.errors?.join(' ') ?? ''), JSON.stringify(m1));
  assert.equal(etcdStatus.endpoints.filter((e) => e.leader).length, 1, 'one raft leader');

  // web-b dies: lost once its lease misses keep-alives, gone once it expires
  other.kill('SIGKILL');
  await until(async () => (await status(member)).nodes!.find((n) => n.node === 'web-b')?.state === 'lost');
  await until(async () => !(await status(member)).nodes!.some((n) => n.node === 'web-b'));
  await cluster.backend.release(op.record.id);
  assert.deepEqual(
    (await status(member)).nodes!.map((n) => [n.node, n.operations]),
    [['web-a', 0]],
  );
});

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) assert.fail(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('`stowage cluster status` prints the servers and etcd as tables, or the API answer as JSON', async () => {
  await until(() => leadership.leads());
  const cli = (t: TestServer, args: string[]) =>
    runCli(STOWAGE_BIN, [
      '--config-dir',
      t.paths.configDir,
      '--server',
      new URL(t.server.url).host,
      'cluster',
      'status',
      ...args,
    ]);
  const text = await cli(member, []);
  assert.equal(text.code, 0, text.stderr);
  assert.match(
    text.stdout,
    new RegExp(`^cluster ${prefix} on etcd, lease TTL ${TTL} s; this server: web-a$`, 'm'),
  );
  assert.match(text.stdout, /^web-a \(this server\)\s+alive\s+0\s+leader\s+[0-9a-f]+\s+\d s$/m);
  assert.match(text.stdout, /^etcd: 3 member\(s\), raft leader \S+$/m);
  for (const endpoint of etcd.endpoints) assert.match(text.stdout, new RegExp(`^${endpoint}\\s+yes\\s`, 'm'));

  const json = await cli(member, ['--output-format', 'json']);
  assert.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as ClusterStatus;
  assert.deepEqual(
    parsed.nodes!.map((n) => [n.node, n.state, n.leader]),
    [['web-a', 'alive', true]],
  );

  const alone = await cli(plain, []);
  assert.equal(alone.code, 0, alone.stderr);
  assert.equal(alone.stdout, 'not in cluster mode: the server was started without --cluster\n');
});
