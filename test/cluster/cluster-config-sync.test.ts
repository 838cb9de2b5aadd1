/**
 * Shared configuration in cluster mode (issue 17, src/cluster/config-sync.ts), on the shared
 * 3-member test etcd: the servers of a cluster share users, ACLs, passwords and the ticket keys,
 * so a user created on one logs in on another and a ticket from one is accepted by another; a
 * server started later adopts it all at start; a file changed while its server was down goes to
 * the cluster at the next start, unless the cluster's copy changed too.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import { testEtcd, uniqueEtcdPrefix, type EtcdTestTarget } from '../helpers/etcd-cluster.js';
import { ClusterConfigSync } from '../../src/cluster/config-sync.js';
import type { ClusterSettings } from '../../src/cluster/cluster-settings.js';

const TTL = 3;
let etcd: EtcdTestTarget;
let prefix: string;
let a: TestServer;
let b: TestServer;

const settings = (node: string, endpoints = etcd.endpoints): ClusterSettings => ({
  endpoints,
  prefix,
  node,
  leaseTtlSeconds: TTL,
});

async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; !(await cond()); i++) {
    assert.ok(i < 200, `${what}: not within 5 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

before(async () => {
  etcd = await testEtcd();
  prefix = uniqueEtcdPrefix('config-sync');
  a = await startTestServer({ prefix: 'stowage-cfgsync-a-', nodeName: 'web-a', cluster: settings('web-a') });
  b = await startTestServer({
    prefix: 'stowage-cfgsync-b-',
    nodeName: 'web-b',
    cluster: settings('web-b', [...etcd.endpoints].reverse()),
  });
});

after(async () => {
  await a.server.context.cluster!.client.delete().prefix(prefix);
  await b.close();
  await a.close();
});

test("a ticket from one server is accepted by another: they sign with the cluster's key", async () => {
  const res = await b.api('GET', '/access/users', { auth: a.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(
    readFileSync(join(b.paths.configDir, 'authkey.pub'), 'utf8'),
    readFileSync(join(a.paths.configDir, 'authkey.pub'), 'utf8'),
  );
});

test('a user created on one server logs in on another, and an ACL set on that one holds on the first', async () => {
  const created = await a.api('POST', '/access/users', {
    auth: a.root,
    body: { userid: 'alice@pbs', password: 'alice-secret-1' },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  let alice: Awaited<ReturnType<TestServer['login']>> | undefined;
  await until('alice can log in on b', async () => {
    alice = await b.login('alice@pbs', 'alice-secret-1').catch(() => undefined);
    return alice !== undefined;
  });

  assert.equal((await a.api('GET', '/admin/datastore', { auth: alice })).status, 200);
  const acl = await b.api('PUT', '/access/acl', {
    auth: b.root,
    body: { path: '/system', role: 'Audit', 'auth-id': 'alice@pbs' },
  });
  assert.equal(acl.status, 200, JSON.stringify(acl.body));
  await until(
    'the ACL holds on a',
    async () => (await a.api('GET', '/cluster/status', { auth: alice })).status === 200,
  );
});

test('a server started later adopts the shared configuration at start', async () => {
  const c = await startTestServer({
    prefix: 'stowage-cfgsync-c-',
    nodeName: 'web-c',
    cluster: settings('web-c'),
  });
  try {
    // no waiting: it is in step before the server reads any of it
    const alice = await c.login('alice@pbs', 'alice-secret-1');
    assert.equal((await c.api('GET', '/cluster/status', { auth: alice })).status, 200);
  } finally {
    await c.close();
  }
});

test("a file changed while its server was down goes to the cluster at the next start, unless the cluster's changed too", async () => {
  const own = uniqueEtcdPrefix('config-sync-offline');
  const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'stowage-cfgsync-offline-')));
  const paths = (dir: string) => ({ configDir: join(dir, 'etc'), dataDir: join(dir, 'data') });
  for (const dir of dirs) for (const d of Object.values(paths(dir))) mkdirSync(d, { recursive: true });
  const s = (node: string): ClusterSettings => ({ ...settings(node), prefix: own });
  const remarks = join(paths(dirs[0]!).configDir, 'remote.cfg');
  const warnings: string[] = [];
  const log = { warn: (m: string) => warnings.push(m), error: () => undefined };
  try {
    writeFileSync(remarks, 'remote: first\n\thost a.example\n', { mode: 0o600 });
    await (await ClusterConfigSync.start(s('x'), paths(dirs[0]!), log)).close(); // seeds the cluster

    // changed while down: put in etcd at the next start, and the other server gets it
    writeFileSync(remarks, 'remote: second\n\thost b.example\n', { mode: 0o600 });
    await (await ClusterConfigSync.start(s('x'), paths(dirs[0]!), log)).close();
    const other = await ClusterConfigSync.start(s('y'), paths(dirs[1]!), log);
    const otherFile = join(paths(dirs[1]!).configDir, 'remote.cfg');
    assert.equal(readFileSync(otherFile, 'utf8'), 'remote: second\n\thost b.example\n');

    // changed in both places while x was down: the cluster's copy wins, with a warning
    writeFileSync(otherFile, 'remote: third\n\thost c.example\n', { mode: 0o600 });
    const client = a.server.context.cluster!.client;
    await until("y's change reached etcd", async () => {
      const value = await client.get(`${own}config/files/remote.cfg`).string();
      const data = value && (JSON.parse(value) as { data: string }).data;
      return (
        data !== null &&
        Buffer.from(data ?? '', 'base64')
          .toString()
          .includes('third')
      );
    });
    await other.close();
    writeFileSync(remarks, 'remote: fourth\n\thost d.example\n', { mode: 0o600 });
    await (await ClusterConfigSync.start(s('x'), paths(dirs[0]!), log)).close();
    assert.equal(readFileSync(remarks, 'utf8'), 'remote: third\n\thost c.example\n');
    assert.deepEqual(
      warnings.filter((w) => w.startsWith('remote.cfg')),
      ["remote.cfg changed here and in the cluster while this server was down: the cluster's copy is kept"],
    );
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    await a.server.context.cluster!.client.delete().prefix(own);
  }
});
