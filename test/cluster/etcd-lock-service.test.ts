/**
 * The lock service on etcd (src/maintenance/etcd-lock-service.ts) against the LockService
 * contract the local flock service keeps (src/datastore/lock-service.ts): exclusive and shared
 * holders across servers and within one, timeouts, waiters served in order, and a dead server's
 * locks given up with its lease. Servers are holder processes with their own backend and lease.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { testEtcd, uniqueEtcdPrefix } from '../helpers/etcd-cluster.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { BackupDir, BackupGroup, BackupNamespace } from '../../src/datastore/backup-info.js';
import { EtcdAdmissionBackend } from '../../src/maintenance/etcd-admission-backend.js';
import type { LockName } from '../../src/maintenance/lock-service.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/etcd-operation-holder.ts', import.meta.url));
const group = new BackupGroup(BackupNamespace.parse('team'), 'vm', '100');
const snapshot = new BackupDir(group, 1717236000);

let backend: EtcdAdmissionBackend;
let endpoints: string[];
let prefix: string;

before(async () => {
  endpoints = (await testEtcd()).endpoints;
  prefix = uniqueEtcdPrefix('locks');
  backend = new EtcdAdmissionBackend({
    endpoints,
    prefix,
    node: 'test-node',
    leaseTtlSeconds: 2,
  });
});
after(async () => {
  await backend.client.delete().prefix(prefix);
  backend.close();
});

/** Another server: a holder process with its own backend and a 2 s lease. */
function otherServer(): Promise<HolderProcess> {
  return new HolderProcess({
    fixture: FIXTURE,
    env: {
      STOWAGE_TEST_ETCD_ENDPOINTS: [...endpoints].reverse().join(','),
      STOWAGE_TEST_ETCD_PREFIX: prefix,
      STOWAGE_TEST_LEASE_TTL: '2',
    },
  }).start();
}

test('a lock another server holds is refused here, exclusive or shared, and two shared holders share', async () => {
  const other = await otherServer();
  try {
    const gc: LockName = { kind: 'gc', store: 'store1' };
    assert.equal((await other.send({ cmd: 'take-lock', name: gc })).taken, true);
    assert.equal(await backend.locks.tryAcquire(gc), undefined);
    assert.equal(await backend.locks.tryAcquire(gc, { shared: true }), undefined);
    await assert.rejects(backend.locks.acquire(gc, { timeoutMs: 100 }), {
      code: 'LOCK_TIMEOUT',
      status: 503,
    });
    const job: LockName = { kind: 'job', jobType: 'verify', id: 'v1' };
    assert.equal((await other.send({ cmd: 'take-lock', name: job, shared: true })).taken, true);
    const mine = await backend.locks.tryAcquire(job, { shared: true });
    assert.ok(mine, 'two shared holders in two servers');
    mine.release();
    assert.equal(await backend.locks.tryAcquire(job), undefined, 'no exclusive holder beside a shared one');
  } finally {
    await other.kill();
  }
});

test('holders in one process exclude each other; a waiter gets the lock when it is released, and release is idempotent', async () => {
  const name: LockName = { kind: 'group', store: 'store1', group };
  const first = await backend.locks.acquire(name);
  assert.equal(await backend.locks.tryAcquire(name), undefined);
  let got = false;
  const waiting = backend.locks.acquire(name, { timeoutMs: 5_000 }).then((l) => {
    got = true;
    return l;
  });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(got, false, 'the waiter waits');
  first.release();
  first.release();
  const second = await waiting;
  second.release();
  // a lock released a moment ago is free for this process's very next request
  const again = await backend.locks.tryAcquire(name);
  assert.ok(again);
  again.release();
});

test('waiters are served in order: a waiting writer is not overtaken by new readers', async () => {
  const name: LockName = { kind: 'snapshot', store: 'store1', snapshot };
  const reader = await backend.locks.acquire(name, { shared: true });
  const writer = backend.locks.acquire(name, { timeoutMs: 5_000 });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(
    await backend.locks.tryAcquire(name, { shared: true }),
    undefined,
    'a new reader queues behind the writer',
  );
  const manifest = await backend.locks.tryAcquire({ kind: 'manifest', store: 'store1', snapshot });
  assert.ok(manifest, 'the manifest lock is another lock');
  manifest.release();
  reader.release();
  (await writer).release();
});

test('a server that stops renewing its lease gives its locks up when the lease expires', async () => {
  const other = await otherServer();
  const name: LockName = { kind: 'chunk', store: 'store1', digest: 'ab'.repeat(32) };
  try {
    assert.equal((await other.send({ cmd: 'take-lock', name })).taken, true);
    process.kill(other.pid, 'SIGSTOP');
    const t0 = Date.now();
    const lock = await backend.locks.acquire(name, { timeoutMs: 8_000 });
    const waited = Date.now() - t0;
    assert.ok(waited > 500, `taken after ${waited} ms, before the 2 s lease could expire`);
    lock.release();
  } finally {
    process.kill(other.pid, 'SIGCONT');
    await other.kill();
  }
});
