/** The local lock service: flocks named for what they protect (src/maintenance/lock-service.ts). */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { makeInstance, type TestInstance } from '../helpers/instance.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { BackupDir, BackupGroup, BackupNamespace } from '../../src/datastore/backup-info.js';
import { DatastoreLocks } from '../../src/datastore/datastore-locks.js';
import { tryAcquireFileLock } from '../../src/sys/file-lock.js';
import type { LockService } from '../../src/maintenance/lock-service.js';
import { LocalLockService } from '../../src/maintenance/local-lock-service.js';

let inst: TestInstance;
let locks: LockService;
let storePath: string;
const group = new BackupGroup(BackupNamespace.parse('team'), 'vm', '100');
const snapshot = new BackupDir(group, 1717236000);

before(async () => {
  inst = makeInstance();
  storePath = await inst.createStore('store1');
  locks = inst.access.backend.locks;
});
after(() => inst.cleanup());

/** A datastore's locks through a second local service on the same files, as another process has. */
function otherDatastoreLocks(): DatastoreLocks {
  const { runDir, dataDir } = inst.paths;
  return new DatastoreLocks(new LocalLockService({ runDir, dataDir, config: inst.access.config }), 'store1');
}

test("a group lock excludes a datastore's group lock taken through another service on the same files, both ways", async () => {
  const direct = otherDatastoreLocks();
  const held = await locks.acquire({ kind: 'group', store: 'store1', group });
  assert.ok(existsSync(join(inst.paths.runDir, 'locks', 'store1', 'ns', 'team', 'vm', '100', 'group.lck')));
  await assert.rejects(direct.tryLockGroup(group, 'backup running'), { code: 'CONFLICT' });
  held.release();
  held.release();
  const d = await direct.tryLockGroup(group, 'backup running');
  assert.equal(await locks.tryAcquire({ kind: 'group', store: 'store1', group }), undefined);
  d.release();
  (await locks.tryAcquire({ kind: 'group', store: 'store1', group }))!.release();
});

test('snapshot locks are shared for readers and exclusive for writers; the manifest lock is separate', async () => {
  const name = { kind: 'snapshot', store: 'store1', snapshot } as const;
  const r1 = await locks.acquire(name, { shared: true });
  const r2 = await locks.tryAcquire(name, { shared: true });
  assert.ok(r2, 'two readers');
  assert.equal(await locks.tryAcquire(name), undefined, 'no writer while read');
  await assert.rejects(locks.acquire(name, { timeoutMs: 50 }), { code: 'LOCK_TIMEOUT' });
  const m = await locks.tryAcquire({ kind: 'manifest', store: 'store1', snapshot });
  assert.ok(m, 'the manifest lock is another lock');
  m.release();
  r1.release();
  r2.release();
  const w = await locks.tryAcquire(name);
  assert.ok(w);
  await assert.rejects(otherDatastoreLocks().tryLockSnapshot(snapshot, 'in use', { shared: true }));
  w.release();
});

test('the job lock is the job state lock file and the GC lock the chunk store lock', async () => {
  const job = await locks.acquire({ kind: 'job', jobType: 'verify', id: 'v-1' });
  const file = join(inst.paths.dataDir, 'jobstates', 'verify-v-1.lck');
  assert.ok(existsSync(file));
  assert.equal(tryAcquireFileLock(file), undefined);
  job.release();
  const gc = await locks.acquire({ kind: 'gc', store: 'store1' });
  assert.equal(tryAcquireFileLock(join(storePath, '.lock')), undefined);
  gc.release();
  await assert.rejects(locks.acquire({ kind: 'gc', store: 'nope' }), { code: 'NOT_FOUND' });
});

test('a lock held by another process excludes this one, and a SIGKILLed holder gives it up', async () => {
  const holder = await new HolderProcess(inst.paths).start();
  try {
    const name = { kind: 'job', jobType: 'prune', id: 'p1' } as const;
    assert.deepEqual((await holder.send({ cmd: 'take-lock', name })).taken, true);
    assert.equal(await locks.tryAcquire(name), undefined);
    await holder.kill('SIGKILL');
    const mine = await locks.tryAcquire(name);
    assert.ok(mine, 'free once its holder died');
    mine.release();
  } finally {
    await holder.kill();
  }
});
