/**
 * Shared configuration in cluster mode (issue 17, src/cluster/config-sync.ts), on the shared
 * 3-member test etcd: the servers of a cluster share users, ACLs, passwords and the ticket keys,
 * so a user created on one logs in on another and a ticket from one is accepted by another; a
 * server started later adopts it all at start; a file changed while its server was down goes to
 * the cluster at the next start, unless the cluster's copy changed too; servers started together
 * agree on one set of start-up files (ticket keys, root's password), and only the winner prints
 * its generated password.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import { testEtcd, uniqueEtcdPrefix, type EtcdTestTarget } from '../helpers/etcd-cluster.js';
import { ClusterConfigSync } from '../../src/cluster/config-sync.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { ApiClient } from '../../src/client/connection.js';
import type { ClusterSettings } from '../../src/cluster/cluster-settings.js';
import type { ServerPaths } from '../../src/http/context.js';

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

/**
 * Two servers' temp dirs (`etc`, `data`, `run`) and cluster settings under a key prefix of their
 * own; `remove()` deletes both.
 */
function scratch(tag: string) {
  const own = uniqueEtcdPrefix(`config-sync-${tag}`);
  const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), `stowage-cfgsync-${tag}-`)));
  const [p0, p1] = dirs.map((dir) => ({
    configDir: join(dir, 'etc'),
    dataDir: join(dir, 'data'),
    runDir: join(dir, 'run'),
  })) as [ServerPaths, ServerPaths];
  for (const p of [p0, p1]) for (const d of Object.values(p)) mkdirSync(d, { recursive: true });
  return {
    own,
    paths: [p0, p1] as const,
    settings: (node: string): ClusterSettings => ({ ...settings(node), prefix: own }),
    async remove() {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
      await a.server.context.cluster!.client.delete().prefix(own);
    },
  };
}

test("a file changed while its server was down goes to the cluster at the next start, unless the cluster's changed too", async () => {
  const { own, paths, settings: s, remove } = scratch('offline');
  const [p0, p1] = paths;
  const remarks = join(p0.configDir, 'remote.cfg');
  const warnings: string[] = [];
  const log = { warn: (m: string) => warnings.push(m), error: () => undefined };
  try {
    writeFileSync(remarks, 'remote: first\n\thost a.example\n', { mode: 0o600 });
    await (await ClusterConfigSync.start(s('x'), p0, log)).close(); // seeds the cluster

    // changed while down: put in etcd at the next start, and the other server gets it
    writeFileSync(remarks, 'remote: second\n\thost b.example\n', { mode: 0o600 });
    await (await ClusterConfigSync.start(s('x'), p0, log)).close();
    const other = await ClusterConfigSync.start(s('y'), p1, log);
    const otherFile = join(p1.configDir, 'remote.cfg');
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
    await (await ClusterConfigSync.start(s('x'), p0, log)).close();
    assert.equal(readFileSync(remarks, 'utf8'), 'remote: third\n\thost c.example\n');
    assert.deepEqual(
      warnings.filter((w) => w.startsWith('remote.cfg')),
      ["remote.cfg changed here and in the cluster while this server was down: the cluster's copy is kept"],
    );
  } finally {
    await remove();
  }
});

/** What etcd has as `name` under `prefix` (the file's text), or null. */
async function clusterCopy(prefix: string, name: string): Promise<string | null> {
  const value = await a.server.context.cluster!.client.get(`${prefix}config/files/${name}`).string();
  return value && Buffer.from((JSON.parse(value) as { data: string }).data, 'base64').toString();
}

/** `name` in `dir`, or undefined. */
function readIfThere(dir: string, name: string): string | undefined {
  try {
    return readFileSync(join(dir, name), 'utf8');
  } catch {
    return undefined;
  }
}

test('files created after start wait for the start-up seeding, which puts them together; later changes go at once', async () => {
  const { own, paths, settings: s, remove } = scratch('seeding');
  const [p0, p1] = paths;
  const [x, y] = [p0.configDir, p1.configDir];
  const syncs: ClusterConfigSync[] = [];
  try {
    writeFileSync(join(x, 'remote.cfg'), 'remote: first\n\thost a.example\n', { mode: 0o600 });
    syncs.push(await ClusterConfigSync.start(s('x'), p0));
    syncs.push(await ClusterConfigSync.start(s('y'), p1));
    const [sx, sy] = syncs as [ClusterConfigSync, ClusterConfigSync];
    // both create keys after start, as servers started together do
    for (const [dir, who] of [
      [x, 'x'],
      [y, 'y'],
    ] as const) {
      writeFileSync(join(dir, 'authkey.key'), `private of ${who}\n`, { mode: 0o600 });
      writeFileSync(join(dir, 'authkey.pub'), `public of ${who}\n`, { mode: 0o644 });
    }
    // a file in step is put as usual; its push timer is set after the keys' (written first), so
    // by the time its change is in etcd a put of the keys would have gone too
    writeFileSync(join(x, 'remote.cfg'), 'remote: second\n\thost b.example\n', { mode: 0o600 });
    await until("x's remote.cfg change reached etcd", async () =>
      Boolean((await clusterCopy(own, 'remote.cfg'))?.includes('second')),
    );
    assert.equal(await clusterCopy(own, 'authkey.key'), null, 'a key put before the seeding');
    assert.equal(await clusterCopy(own, 'authkey.pub'), null, 'a key put before the seeding');

    assert.deepEqual([...(await sx.seedCreated()).adopted], []);
    assert.deepEqual([...(await sy.seedCreated()).adopted].sort(), ['authkey.key', 'authkey.pub']);
    for (const dir of [x, y]) {
      assert.equal(readFileSync(join(dir, 'authkey.key'), 'utf8'), 'private of x\n');
      assert.equal(readFileSync(join(dir, 'authkey.pub'), 'utf8'), 'public of x\n');
    }
    assert.equal(await clusterCopy(own, 'authkey.pub'), 'public of x\n');

    // after the seeding, a new file and a changed one go to the cluster, and to the other server
    writeFileSync(join(y, 'acl.cfg'), 'acl:1:/:alice@pbs:Audit\n', { mode: 0o600 });
    writeFileSync(join(y, 'authkey.pub'), 'public of y, later\n', { mode: 0o644 });
    await until("x has both of y's files", () =>
      Promise.resolve(
        readIfThere(x, 'acl.cfg') === 'acl:1:/:alice@pbs:Audit\n' &&
          readIfThere(x, 'authkey.pub') === 'public of y, later\n',
      ),
    );
  } finally {
    for (const sync of syncs) await sync.close();
    await remove();
  }
});

test('servers started together with no root password: one prints its generated password, which logs in on both; the other says another server set it', async () => {
  const { paths, settings: s, remove } = scratch('password');
  const announced: string[][] = [[], []];
  const started = await Promise.allSettled(
    paths.map((p, i) =>
      startServer({
        listen: { host: '127.0.0.1', port: 0 },
        paths: p,
        logger: false,
        announce: (line) => announced[i]!.push(line),
        rootPassword: '', // generated, as with no STOWAGE_ROOT_PASSWORD
        authFailureDelayMs: 0,
        nodeName: `pw-${i}`,
        cluster: s(`pw-${i}`),
      }),
    ),
  );
  const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  try {
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    const lines = announced.map((l) => l.filter((line) => line.startsWith('root@pam password:')));
    const printed = lines
      .flat()
      .filter((line) => line !== 'root@pam password: set by another server of the cluster');
    assert.equal(printed.length, 1, JSON.stringify(lines));
    for (const l of lines) assert.ok(l.length <= 1, JSON.stringify(lines));
    const password = printed[0]!.slice('root@pam password: '.length);
    for (const server of servers as RunningServer[]) {
      const { hostname, port } = new URL(server.url);
      const api = new ApiClient({ host: hostname, port: Number(port) }, { fingerprint: server.fingerprint });
      const reply = await api.call<{ ticket: string }>('POST', '/access/ticket', {
        username: 'root@pam',
        password,
      });
      assert.ok(reply.ticket, server.url);
    }
  } finally {
    for (const server of servers) await server.close();
    await remove();
  }
});
