/**
 * The operation registry and admission across real processes (design §3 invariants 1, 2, 3, 7).
 */
import { after, before, describe, test } from 'node:test';
import { admissionViolations, type ModeChangeAt } from '../helpers/admission-race.js';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { makeInstance, type TestInstance } from '../helpers/instance.js';
import { HolderProcess } from '../helpers/holder-process.js';
import { setMaintenanceMode } from '../../src/maintenance/maintenance-control.js';
import { operationRegistryPath } from '../../src/maintenance/open-datastore-access.js';
import { openFilesUnder } from '../helpers/files.js';

describe('operations held by several processes', () => {
  let inst: TestInstance;
  let storePath: string;
  const holders: HolderProcess[] = [];

  before(async () => {
    inst = makeInstance();
    storePath = await inst.createStore('store1');
    for (let i = 0; i < 3; i++) holders.push(new HolderProcess(inst.paths));
    await Promise.all(holders.map((h) => h.start()));
  });
  after(async () => {
    await Promise.all(holders.map((h) => h.kill()));
    inst.cleanup();
  });

  test('counts are exact at every step while three processes admit and release', async () => {
    const [a, b, c] = holders as [HolderProcess, HolderProcess, HolderProcess];
    const counts = () => inst.access.registry.counts('store1');
    const ra = await a.hold('store1', 'read', 'restore', 'host/a');
    assert.deepEqual(counts(), { read: 1, ingest: 0, reclaim: 0, lookup: 0, write: 0 });
    const wb = await b.hold('store1', 'ingest', 'backup', 'host/b');
    assert.deepEqual(counts(), { read: 1, ingest: 1, reclaim: 0, lookup: 0, write: 1 });
    const wc = await c.hold('store1', 'ingest', 'backup', 'host/c');
    const rc = await c.hold('store1', 'read', 'verify', 'host/c');
    assert.deepEqual(counts(), { read: 2, ingest: 2, reclaim: 0, lookup: 0, write: 2 });
    await a.send({ cmd: 'release', id: ra });
    assert.deepEqual(counts(), { read: 1, ingest: 2, reclaim: 0, lookup: 0, write: 2 });
    // a process releasing its second-to-last operation does not lose the last one (PBS §3.5)
    await c.send({ cmd: 'release', id: wc });
    assert.deepEqual(counts(), { read: 1, ingest: 1, reclaim: 0, lookup: 0, write: 1 });
    const list = inst.access.registry.list('store1');
    assert.deepEqual(
      list.map((o) => [o.pid, o.class, o.kind, o.detail]),
      [
        [b.pid, 'ingest', 'backup', 'host/b'],
        [c.pid, 'read', 'verify', 'host/c'],
      ],
    );
    // releasing twice counts once
    await b.send({ cmd: 'release', id: wb });
    await b.send({ cmd: 'release', id: wb });
    await c.send({ cmd: 'release', id: rc });
    assert.deepEqual(counts(), { read: 0, ingest: 0, reclaim: 0, lookup: 0, write: 0 });
  });

  test('a SIGKILLed holder stops counting at once', async () => {
    const victim = new HolderProcess(inst.paths);
    await victim.start();
    await victim.hold('store1', 'ingest', 'backup', 'host/doomed');
    await victim.hold('store1', 'read', 'restore', 'host/doomed');
    const [a] = holders as [HolderProcess];
    const survivor = await a.hold('store1', 'read', 'restore', 'host/a');
    assert.deepEqual(inst.access.registry.counts('store1'), {
      read: 2,
      ingest: 1,
      reclaim: 0,
      lookup: 0,
      write: 1,
    });
    await victim.kill('SIGKILL');
    assert.deepEqual(inst.access.registry.counts('store1'), {
      read: 1,
      ingest: 0,
      reclaim: 0,
      lookup: 0,
      write: 0,
    });
    await a.send({ cmd: 'release', id: survivor });
  });

  test('an entry whose pid was reused by another process (other start time) does not count', async () => {
    const [a] = holders as [HolderProcess];
    const id = await a.hold('store1', 'ingest', 'backup');
    // Forge what pid reuse looks like: the same pid, recorded with a different start time.
    const db = new Database(operationRegistryPath(inst.paths));
    db.prepare(
      `INSERT INTO operations (store, class, kind, pid, pstart, started_at) SELECT store, class, 'ghost', pid, pstart + 1, started_at FROM operations WHERE id = ?`,
    ).run(id);
    db.close();
    const list = inst.access.registry.list('store1');
    assert.deepEqual(
      list.map((o) => o.kind),
      ['backup'],
    );
    await a.send({ cmd: 'release', id });
    assert.deepEqual(inst.access.registry.counts('store1'), {
      read: 0,
      ingest: 0,
      reclaim: 0,
      lookup: 0,
      write: 0,
    });
  });

  test('offline: a process closes every file under the datastore once its last operation ends, and reopens after', async () => {
    const [a] = holders as [HolderProcess];
    const r1 = await a.hold('store1', 'read', 'restore');
    const r2 = await a.hold('store1', 'read', 'restore');
    assert.ok(openFilesUnder(a.pid, storePath).length > 0, 'an admitted operation holds the datastore open');
    await setMaintenanceMode(inst.access, 'store1', { type: 'offline', message: 'unmounting' });
    // graceful: running operations go on
    assert.ok(openFilesUnder(a.pid, storePath).length > 0);
    const refused = await a.send({ cmd: 'lookup', store: 'store1', op: 'read' });
    assert.equal(refused.ok, false);
    assert.equal(refused.message, "datastore 'store1' is unavailable: offline maintenance mode: unmounting");
    await a.send({ cmd: 'release', id: r1 });
    assert.ok(openFilesUnder(a.pid, storePath).length > 0, 'one operation still running');
    await a.send({ cmd: 'release', id: r2 });
    assert.deepEqual(openFilesUnder(a.pid, storePath), []);
    assert.deepEqual(openFilesUnder(process.pid, storePath), []);
    // lookup is still admitted under offline and opens nothing
    const l = await a.hold('store1', 'lookup', 'status');
    assert.deepEqual(openFilesUnder(a.pid, storePath), []);
    await a.send({ cmd: 'release', id: l });
    await setMaintenanceMode(inst.access, 'store1', undefined);
    const r3 = await a.hold('store1', 'read', 'restore');
    assert.ok(openFilesUnder(a.pid, storePath).length > 0, 'reopened cleanly after the mode was cleared');
    await a.send({ cmd: 'release', id: r3 });
  });

  test('unmount releases the disk as offline does (PBS clear_from_cache), and may be left to normal service', async () => {
    const [a] = holders as [HolderProcess];
    const w = await a.hold('store1', 'ingest', 'backup');
    assert.ok(openFilesUnder(a.pid, storePath).length > 0);
    await setMaintenanceMode(inst.access, 'store1', { type: 'unmount' });
    const refused = await a.send({ cmd: 'lookup', store: 'store1', op: 'read' });
    assert.equal(refused.ok, false);
    assert.equal(refused.message, "datastore 'store1' is unavailable: datastore is being unmounted");
    assert.ok(openFilesUnder(a.pid, storePath).length > 0, 'the running backup goes on');
    await a.send({ cmd: 'release', id: w });
    assert.deepEqual(openFilesUnder(a.pid, storePath), []);
    assert.deepEqual(openFilesUnder(process.pid, storePath), []);
    const l = await a.hold('store1', 'lookup', 'status');
    assert.deepEqual(openFilesUnder(a.pid, storePath), [], 'a lookup opens nothing');
    await a.send({ cmd: 'release', id: l });
    await setMaintenanceMode(inst.access, 'store1', undefined); // unmount -> none: allowed
    const r = await a.hold('store1', 'read', 'restore');
    assert.ok(openFilesUnder(a.pid, storePath).length > 0);
    await a.send({ cmd: 'release', id: r });
  });
});

describe('mode changes racing with admissions', () => {
  let inst: TestInstance;
  before(async () => {
    inst = makeInstance();
    await inst.createStore('race');
  });
  after(() => inst.cleanup());

  test('no process admits an operation that the mode in force at that moment refuses', async () => {
    const admitters = [new HolderProcess(inst.paths), new HolderProcess(inst.paths)];
    const flipper = new HolderProcess(inst.paths);
    await Promise.all([...admitters, flipper].map((h) => h.start()));
    try {
      const modes = ['read-only,message=race', null, 'offline,message=race', null];
      const [w, r, flips] = await Promise.all([
        admitters[0]!.send({ cmd: 'admit-loop', store: 'race', op: 'ingest', durationMs: 3000 }),
        admitters[1]!.send({ cmd: 'admit-loop', store: 'race', op: 'read', durationMs: 3000 }),
        flipper.send({ cmd: 'flip-loop', store: 'race', modes, count: 200, pauseMs: 10 }),
      ]);
      assert.ok(w.ok && r.ok && flips.ok, JSON.stringify([w, r, flips]).slice(0, 500));
      const changes = flips.changes as ModeChangeAt[];
      // Every operation id above a change's sequence was admitted under that change's mode,
      // until the next change: find the mode in force for each admission and check it.
      const violations = admissionViolations(changes, [
        ['ingest', w.admitted as number[]],
        ['read', r.admitted as number[]],
      ]);
      assert.deepEqual(violations, []);
      // The race really happened: both outcomes occurred for both classes.
      assert.ok(
        (w.admitted as number[]).length > 0 && (w.refused as number) > 0,
        `write: ${(w.admitted as number[]).length} admitted, ${w.refused} refused`,
      );
      assert.ok(
        (r.admitted as number[]).length > 0 && (r.refused as number) > 0,
        `read: ${(r.admitted as number[]).length} admitted, ${r.refused} refused`,
      );
      assert.equal(changes.length, 200);
    } finally {
      await Promise.all([...admitters, flipper].map((h) => h.kill()));
    }
  });
});
