/** Setting modes, strict if-idle, drain, leaks and datastore removal (design §3 invariants 4–6, 8, 10). */
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { makeInstance, type TestInstance } from '../helpers/instance.js';
import { datastoreInternals } from '../helpers/datastore-internals.js';
import {
  setMaintenanceMode,
  waitForDrain,
  type DrainProgress,
} from '../../src/maintenance/maintenance-control.js';
import { removeDatastore } from '../../src/maintenance/remove-datastore.js';

let inst: TestInstance;
let storePath: string;
const cfgText = () => readFileSync(join(inst.paths.configDir, 'datastore.cfg'), 'utf8');

beforeEach(async () => {
  inst = makeInstance();
  storePath = await inst.createStore('store1');
});
afterEach(() => inst.cleanup());

test('setting read-only is graceful: a running backup goes on and is listed as conflicting until it ends', async () => {
  const backup = await inst.access.lookupDatastore('store1', 'ingest', {
    kind: 'backup',
    detail: 'host/web01',
    authId: 'alice@pbs',
  });
  const res = await setMaintenanceMode(inst.access, 'store1', { type: 'read-only', message: 'disk swap' });
  assert.deepEqual(
    res.conflicting.map((o) => [o.kind, o.detail, o.authId]),
    [['backup', 'host/web01', 'alice@pbs']],
  );
  assert.match(cfgText(), /\tmaintenance-mode read-only,message="disk swap"\n/);
  await assert.rejects(inst.access.lookupDatastore('store1', 'ingest', { kind: 'backup' }), {
    status: 503,
    message: "datastore 'store1' is unavailable: read-only maintenance mode: disk swap",
  });
  const reader = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore' });
  assert.ok(reader.datastore, 'restores go on in read-only');
  await reader.release();
  // the admitted backup can still use its datastore
  assert.ok(datastoreInternals(backup.datastore).basePath === storePath);
  await backup.release();
  const drained = await waitForDrain(inst.access, 'store1', { timeoutMs: 1000 });
  assert.equal(drained.drained, true);
});

test('if-idle refuses atomically with 409 and the conflicting operations, and changes nothing', async () => {
  const before = cfgText();
  const op = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore', detail: 'host/db' });
  await assert.rejects(
    setMaintenanceMode(inst.access, 'store1', { type: 'offline' }, { ifIdle: true }),
    (err: unknown) => {
      const e = err as { status: number; message: string; details: { operations: Array<{ kind: string }> } };
      assert.equal(e.status, 409);
      assert.match(e.message, /not idle.*1 conflicting operation\(s\) active: restore host\/db/);
      assert.deepEqual(
        e.details.operations.map((o) => o.kind),
        ['restore'],
      );
      return true;
    },
  );
  assert.equal(cfgText(), before);
  // read-only does not conflict with a read: allowed even with if-idle
  await setMaintenanceMode(inst.access, 'store1', { type: 'read-only' }, { ifIdle: true });
  await op.release();
});

test('waitForDrain reports progress and times out with the operations still running', async () => {
  const w1 = await inst.access.lookupDatastore('store1', 'ingest', { kind: 'backup', detail: 'host/a' });
  const w2 = await inst.access.lookupDatastore('store1', 'ingest', { kind: 'prune', detail: 'host/b' });
  await setMaintenanceMode(inst.access, 'store1', { type: 'read-only' });
  const progress: DrainProgress[] = [];
  const timedOut = await waitForDrain(inst.access, 'store1', {
    timeoutMs: 150,
    pollMs: 20,
    onProgress: (p) => progress.push(p),
  });
  assert.equal(timedOut.drained, false);
  assert.deepEqual(
    timedOut.remaining.map((o) => o.detail),
    ['host/a', 'host/b'],
  );
  setTimeout(() => void w1.release(), 50);
  setTimeout(() => void w2.release(), 120);
  progress.length = 0;
  const done = await waitForDrain(inst.access, 'store1', {
    timeoutMs: 5000,
    pollMs: 10,
    onProgress: (p) => progress.push(p),
  });
  assert.equal(done.drained, true);
  assert.deepEqual(
    progress.map((p) => p.remaining.length),
    [2, 1, 0],
  );
});

test('a stale digest is refused and a bad message leaves datastore.cfg byte-identical', async () => {
  const before = cfgText();
  const digest = inst.access.config.read().digest;
  await inst.access.config.update((s) => {
    s.get('store1')!.comment = 'changed by someone else';
  });
  const changed = cfgText();
  await assert.rejects(setMaintenanceMode(inst.access, 'store1', { type: 'offline' }, { digest }), {
    message: 'detected modified configuration - file changed by other user? Try again.',
  });
  await assert.rejects(
    setMaintenanceMode(inst.access, 'store1', { type: 'offline', message: 'x'.repeat(65) }),
    {
      status: 400,
      message: /message is 65 characters long/,
    },
  );
  await assert.rejects(setMaintenanceMode(inst.access, 'store1', { type: 'delete' }), { status: 400 });
  assert.notEqual(changed, before);
  assert.equal(cfgText(), changed);
});

test('a lookup that fails after the check (missing .chunks) leaves nothing counted', async () => {
  renameSync(join(storePath, '.chunks'), join(storePath, '.chunks-moved'));
  await assert.rejects(inst.access.lookupDatastore('store1', 'read', { kind: 'restore' }));
  assert.deepEqual(inst.access.registry.counts('store1'), {
    read: 0,
    ingest: 0,
    reclaim: 0,
    lookup: 0,
    write: 0,
  });
  assert.deepEqual(inst.access.openDatastores(), []);
  renameSync(join(storePath, '.chunks-moved'), join(storePath, '.chunks'));
  const ok = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore' });
  await ok.release();
  await ok.release();
  assert.deepEqual(inst.access.registry.counts('store1'), {
    read: 0,
    ingest: 0,
    reclaim: 0,
    lookup: 0,
    write: 0,
  });
});

test('an unparsable stored mode refuses every operation instead of meaning "no maintenance"', async () => {
  await inst.access.config.update((s) => {
    s.get('store1')!['maintenance-mode'] = 'read-only,message=a,b';
  });
  await assert.rejects(inst.access.lookupDatastore('store1', 'read', { kind: 'restore' }), {
    // a maintenance refusal (503, exit 75): the store is unavailable, the server is not broken
    code: 'MAINTENANCE',
    message: /maintenance-mode in datastore\.cfg cannot be read/,
  });
  // an operator can repair it by setting a valid mode
  await setMaintenanceMode(inst.access, 'store1', undefined);
  const ok = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore' });
  await ok.release();
});

test('removal waits for running operations, then removes config and data', async () => {
  const op = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore' });
  setTimeout(() => void op.release(), 200);
  const res = await removeDatastore(inst.access, 'store1', { destroyData: true, timeoutMs: 5000 });
  assert.equal(res.path, storePath);
  assert.equal(existsSync(storePath), false);
  assert.equal(inst.access.config.read().stores.has('store1'), false);
});

test('removal that cannot drain restores the previous mode and names what is still running', async () => {
  await setMaintenanceMode(inst.access, 'store1', { type: 'read-only', message: 'before removal' });
  const op = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore', detail: 'host/slow' });
  await assert.rejects(
    removeDatastore(inst.access, 'store1', { destroyData: true, timeoutMs: 200 }),
    (err: unknown) => {
      assert.match(
        (err as Error).message,
        /still in use.*restored to read-only,message="before removal".*restore host\/slow/,
      );
      return true;
    },
  );
  assert.match(cfgText(), /maintenance-mode read-only,message="before removal"/);
  assert.ok(existsSync(join(storePath, '.chunks')));
  await op.release();
  // with if-idle and an operation running, nothing changes at all
  const op2 = await inst.access.lookupDatastore('store1', 'read', { kind: 'restore' });
  const before = cfgText();
  await assert.rejects(removeDatastore(inst.access, 'store1', { ifIdle: true }), { status: 409 });
  assert.equal(cfgText(), before);
  await op2.release();
});

test('an interrupted removal (left in delete) refuses everything and can be resumed', async () => {
  await inst.access.config.update((s) => {
    s.get('store1')!['maintenance-mode'] = 'delete';
  });
  await assert.rejects(inst.access.lookupDatastore('store1', 'lookup', { kind: 'status' }), {
    message: "datastore 'store1' is unavailable: datastore is being deleted",
  });
  await assert.rejects(setMaintenanceMode(inst.access, 'store1', undefined), { message: /being deleted/ });
  const lines: string[] = [];
  await removeDatastore(inst.access, 'store1', { log: (l) => lines.push(l) });
  assert.ok(lines.some((l) => /resuming an interrupted removal/.test(l)));
  assert.equal(inst.access.config.read().stores.has('store1'), false);
  assert.ok(existsSync(storePath), 'data kept without destroyData');
});

test('an operation shows the worker task it runs in once the task exists', async () => {
  const op = await inst.access.lookupDatastore('store1', 'ingest', { kind: 'gc' });
  assert.equal(inst.access.registry.list('store1')[0]!.taskId, undefined);
  op.attachTask('UPID:node:0000:0000:0000:0000:garbage_collection:store1:root@pam:');
  assert.equal(
    inst.access.registry.list('store1')[0]!.taskId,
    'UPID:node:0000:0000:0000:0000:garbage_collection:store1:root@pam:',
  );
  await op.release();
  op.attachTask('UPID:late'); // after release: nothing comes back
  assert.deepEqual(inst.access.registry.list('store1'), []);
});
