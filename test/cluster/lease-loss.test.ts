/**
 * A server cut off from the cluster's etcd longer than its lease TTL (issue 17, docs/cluster.md
 * "Failure behaviour"): the other servers stop counting its operations and a mode may be set
 * meanwhile, so its running backup is aborted with ERR_CLUSTER_LEASE_LOST — the client gets the
 * message, the task fails with it, nothing of the snapshot stays — and it refuses new admissions
 * with 503 until etcd answers again.
 *
 * Server web-a reaches etcd only through a TCP relay process of this test; killing the relay cuts
 * it off for real, starting it again on the same port reconnects it. Server web-b (direct to etcd)
 * is the rest of the cluster. Both share one datastore directory (shared storage). Lease TTL 4 s.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/https-api.js';
import { testEtcd, uniqueEtcdPrefix } from '../helpers/etcd-cluster.js';
import { startTcpRelay, type TcpRelay } from '../helpers/tcp-relay.js';
import { loginApi, taskEnd } from '../e2e/backup-helpers.js';
import { BackupWriter } from '../../src/client/backup-writer.js';
import { BackupReader } from '../../src/client/backup-reader.js';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import { StowageError } from '../../src/errors.js';
import { EtcdAdmissionBackend } from '../../src/maintenance/etcd-admission-backend.js';
import type { ApiClient } from '../../src/client/connection.js';

const STORE = 'shared';
// 4 s, not etcd's 2 s minimum: a server whose event loop stalls under CI load must not lose it mid-test
const TTL_S = 4;
const LOST = new RegExp(
  `^datastore '${STORE}' operation lost its cluster lease: server 'web-a' could not renew it with ` +
    `the cluster's etcd for ${TTL_S} s, .*; the operation is aborted$`,
);

let a: TestServer;
let b: TestServer;
let apiA: ApiClient;
let relay: TcpRelay | undefined;
let relayPort = 0;
let upstream: string;
let storePath: string;
const pool = new ChunkPool();
const writers: BackupWriter[] = [];
const readers: BackupReader[] = [];

/** Start the relay (on `port`, or a free one) and resolve with its port. */
async function startRelay(port = 0): Promise<number> {
  relay = await startTcpRelay(upstream, port);
  return relay.port;
}

async function stopRelay(): Promise<void> {
  const r = relay;
  relay = undefined;
  await r?.kill();
}

const target = (t: TestServer) => {
  const url = new URL(t.server.url);
  return { host: url.hostname, port: Number(url.port), fingerprint: t.server.fingerprint };
};

async function snapshotRef(t: TestServer, backupId: string, backupTime: number) {
  const s = target(t);
  const api = t === a ? apiA : await loginApi(s);
  return {
    target: { host: s.host, port: s.port },
    policy: { fingerprint: s.fingerprint },
    credentials: api.credentials,
    store: STORE,
    backupType: 'host',
    backupId,
    backupTime,
  } as const;
}

async function startBackup(t: TestServer, time: number, backupId = 'web01'): Promise<BackupWriter> {
  const writer = await BackupWriter.start(await snapshotRef(t, backupId, time), pool);
  writers.push(writer);
  return writer;
}

async function openReader(t: TestServer, backupId: string, time: number): Promise<BackupReader> {
  const reader = await BackupReader.open(await snapshotRef(t, backupId, time), pool);
  readers.push(reader);
  return reader;
}

/** The task of the operation of `kind` that web-b lists as web-a's. */
async function taskOfWebA(kind: string): Promise<string> {
  let upid = '';
  await until(`web-b lists web-a’s ${kind}`, async () => {
    const op = (await operations(b)).find((o) => o.kind === kind && o.node === 'web-a');
    upid = op?.['task-id'] ?? '';
    return upid !== '';
  });
  return upid;
}

/** What `promise` was rejected with (it must be). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail('it must fail'),
    (err: unknown) => err,
  );
}

interface Operation {
  kind: string;
  node?: string;
  'task-id'?: string;
}

async function operations(t: TestServer): Promise<Operation[]> {
  const res = await t.api('GET', `/admin/datastore/${STORE}/active-operations`, { auth: t.root });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.data as { operations: Operation[] }).operations;
}

async function snapshots(t: TestServer) {
  return t.api('GET', `/admin/datastore/${STORE}/snapshots`, { auth: t.root });
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - t0;
}

before(async () => {
  const etcd = await testEtcd();
  const prefix = uniqueEtcdPrefix('lease-loss');
  // m3: the members other tests stop are m1 (and one outage at a time)
  upstream = etcd.endpointOf('m3').replace('http://', '');
  relayPort = await startRelay();
  a = await startTestServer({
    prefix: 'stowage-lease-web-a-',
    nodeName: 'web-a',
    cluster: {
      endpoints: [`http://127.0.0.1:${relayPort}`],
      prefix,
      node: 'web-a',
      leaseTtlSeconds: TTL_S,
    },
  });
  b = await startTestServer({
    prefix: 'stowage-lease-web-b-',
    nodeName: 'web-b',
    cluster: { endpoints: etcd.endpoints, prefix, node: 'web-b', leaseTtlSeconds: TTL_S },
  });
  storePath = await a.addBareDatastore(STORE);
  await until('web-b sees the datastore', async () => (await snapshots(b)).status === 200);
  apiA = await loginApi(target(a));
});

after(async () => {
  for (const w of writers) w.abort();
  for (const r of readers) await r.close().catch(() => undefined);
  await pool.close();
  await stopRelay();
  const cluster = b?.server.context.cluster;
  await cluster?.client.delete().prefix(cluster.settings.prefix);
  // a test that failed may leave a task waiting for its abort: close must not wait for it
  a?.server.context.tasks.abortAll();
  await a?.close();
  await b?.close();
});

test('a backup and a restore on a server cut off from etcd past its lease are aborted, and the server admits again once etcd answers', async () => {
  const t0 = Math.floor(Date.now() / 1000) - 100;
  // a snapshot to restore from, made on web-b
  const seed = await startBackup(b, t0 - 50, 'seed');
  await seed.uploadBlob('notes.blob', Buffer.from('seed'));
  await seed.finish();
  const reader = await openReader(a, 'seed', t0 - 50);
  assert.equal((await reader.blob('notes.blob')).toString(), 'seed');
  const writer = await startBackup(a, t0);
  await writer.uploadBlob('notes.blob', Buffer.from('half of a backup'));
  const snapshotDir = join(storePath, 'host', 'web01', new Date(t0 * 1000).toISOString().replace('.000', ''));
  assert.ok(existsSync(snapshotDir), `${snapshotDir} is being written`);
  const backupTask = await taskOfWebA('backup');
  const readerTask = await taskOfWebA('reader');
  // admitted, its task not started yet (a session still taking its locks when the lease goes)
  const starting = await a.server.context.datastores.lookupDatastore(STORE, 'lookup', {
    kind: 'backup',
    detail: 'host/web02',
    authId: 'root@pam',
  });

  await stopRelay();

  // each task fails with the lease's message, and its log says why
  for (const upid of [backupTask, readerTask]) {
    const task = await taskEnd(apiA, upid, 20_000);
    assert.match(task.status, LOST);
    assert.ok(
      task.log.some((l) =>
        /: abort requested: datastore 'shared' operation lost its cluster lease: server 'web-a'/.test(l),
      ),
      task.log.join('\n'),
    );
  }
  // each client's next request gets the same message, not a lost connection
  for (const err of [await rejection(writer.finish()), await rejection(reader.blob('notes.blob'))]) {
    assert.ok(err instanceof StowageError, String(err));
    assert.match(err.message, LOST);
  }
  // nothing of the snapshot stays: no directory, nothing listed anywhere
  assert.ok(!existsSync(snapshotDir), `${snapshotDir} removed`);
  // this server let go of the datastore (nothing of its own counts it any more)
  await until(
    'web-a closed the datastore',
    async () => a.server.context.datastores.openDatastores().length === 0,
  );
  // the rest of the cluster stopped counting them once the lease expired
  await until('web-b no longer lists them', async () => (await operations(b)).length === 0);
  const web01 = async () => {
    const listed = await snapshots(b);
    assert.equal(listed.status, 200);
    return (listed.body.data as Array<{ 'backup-id': string; 'backup-time': number }>)
      .filter((snap) => snap['backup-id'] === 'web01')
      .map((snap) => snap['backup-time'])
      .sort();
  };
  assert.deepEqual(await web01(), []);
  // the one whose task starts only now is aborted as its task starts
  const late = a.server.context.tasks.spawnTask('backup', `${STORE}:host-web02`, 'root@pam', async (task) => {
    if (!task.signal.aborted)
      await new Promise((r) => task.signal.addEventListener('abort', r, { once: true }));
    task.throwIfAborted();
  });
  starting.attachTask(late);
  assert.match((await taskEnd(apiA, late, 10_000)).status, LOST);
  await starting.release();
  // its group lock went with the lease: another server backs the group up meanwhile
  const other = await startBackup(b, t0 + 10);
  await other.uploadBlob('notes.blob', Buffer.from('from web-b'));
  await other.finish();

  // cut off: nothing new is admitted on a mode it cannot check
  const refused = await snapshots(a);
  assert.equal(refused.status, 503, JSON.stringify(refused.body));
  assert.match(
    refused.body.message!,
    /^datastore 'shared' is unavailable: the cluster's etcd cannot be reached \(.*\); nothing is admitted while the maintenance mode cannot be checked$/,
  );

  // etcd answers again: web-a admits under a new lease, and its backups count everywhere
  assert.equal(await startRelay(relayPort), relayPort);
  await until('web-a admits again', async () => (await snapshots(a)).status === 200, 30_000);
  const again = await startBackup(a, t0 + 20);
  await until('web-b lists web-a’s new backup', async () =>
    (await operations(b)).some((o) => o.kind === 'backup' && o.node === 'web-a'),
  );
  await again.uploadBlob('notes.blob', Buffer.from('from web-a again'));
  await again.finish();
  assert.deepEqual(await web01(), [t0 + 10, t0 + 20]);
  const dirs = readdirSync(join(storePath, 'host', 'web01')).filter((n) => /^\d{4}-/.test(n));
  assert.equal(dirs.length, 2, dirs.join(' '));
});

test('an operation that ends while etcd cannot be reached ends without an error, and its key goes when etcd answers again', async () => {
  const observer = b.server.context.cluster!.backend;
  // a lease that outlives the cut (15 s): the key must go by the release, not by the lease's expiry
  const cutOff = new EtcdAdmissionBackend({
    endpoints: [`http://127.0.0.1:${relayPort}`],
    prefix: b.server.context.cluster!.settings.prefix,
    node: 'web-c',
    leaseTtlSeconds: 15,
    callTimeoutMs: 1_000,
  });
  try {
    const ended = await cutOff.admit(STORE, 'read', { kind: 'restore', detail: 'host/web01' });
    const running = await cutOff.admit(STORE, 'read', { kind: 'verify', detail: 'host/web01' });
    const ids = async () => (await observer.list(STORE)).map((op) => op.id).sort();
    assert.deepEqual(await ids(), [ended.record.id, running.record.id]);

    await stopRelay();
    await cutOff.release(ended.record.id); // resolves: the work that ended must not fail for it
    assert.deepEqual(await ids(), [ended.record.id, running.record.id], 'etcd has not heard of it yet');

    await startRelay(relayPort);
    await until('the ended operation is gone', async () => !(await ids()).includes(ended.record.id), 15_000);
    assert.deepEqual(await ids(), [running.record.id], 'the lease lives on: only the release removed it');
    await cutOff.release(running.record.id);
    assert.deepEqual(await ids(), []);
  } finally {
    cutOff.close();
  }
});
