/**
 * The admission backend's contract as tests (src/maintenance/admission-backend.ts; design §3
 * invariants 1, 2, 3, 5, 8). Every backend runs it: `admissionConformance(name, makeTestbed)`
 * registers the tests; the backend's own test file provides the testbed (a fresh backend on
 * fresh shared state, and real separate processes admitting through their own backend instance
 * on that state). The local backend runs it in test/maintenance/admission-backend.test.ts.
 */
import { after, before, describe, test } from 'node:test';
import { admissionViolations, type ModeChangeAt } from '../helpers/admission-race.js';
import assert from 'node:assert/strict';
import type { AdmissionBackend } from '../../src/maintenance/admission-backend.js';
import type { OperationClass } from '../../src/maintenance/maintenance-mode.js';

/** What the suite needs from a process other than the test's own. */
export interface RemoteHolder {
  readonly pid: number;
  /** Admit and keep holding an operation; returns its id. */
  hold(store: string, op: OperationClass, kind?: string, detail?: string): Promise<number>;
  /**
   * Commands of test/helpers/holder-protocol.ts: `release {id}`, `lookup {store, op}`,
   * `admit-loop {store, op, durationMs}`, `flip-loop {store, modes, count, pauseMs}`.
   */
  send(
    cmd: Record<string, unknown>,
  ): Promise<{ ok: boolean; code?: string; message?: string; [k: string]: unknown }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface AdmissionTestbed {
  /** A backend of this process on fresh shared state. */
  backend: AdmissionBackend;
  /** Create a datastore (no mode, nothing running) that the backend and the holders know. */
  createStore(name: string): Promise<void>;
  /** Start a separate process that admits through its own backend on the same shared state. */
  startHolder(): Promise<RemoteHolder>;
  /** Kill nothing (the suite kills its holders), remove the state. */
  cleanup(): Promise<void>;
}

const ZERO = { read: 0, ingest: 0, reclaim: 0, lookup: 0, write: 0 };

/** Resolves with what `p` resolves to, or 'timeout' after `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

export function admissionConformance(name: string, makeTestbed: () => Promise<AdmissionTestbed>): void {
  describe(`admission backend conformance: ${name}`, () => {
    let bed: AdmissionTestbed;
    let backend: AdmissionBackend;
    const holders: RemoteHolder[] = [];
    let stores = 0;
    /** A fresh datastore per test, so tests do not see each other's operations. */
    const freshStore = async () => {
      const store = `conf${++stores}`;
      await bed.createStore(store);
      return store;
    };
    const startHolder = async () => {
      const h = await bed.startHolder();
      holders.push(h);
      return h;
    };

    before(async () => {
      bed = await makeTestbed();
      backend = bed.backend;
      await Promise.all([startHolder(), startHolder(), startHolder()]);
    });
    after(async () => {
      await Promise.all(holders.map((h) => h.kill()));
      await bed.cleanup();
    });

    test('admit registers the operation with its details, release ends it, a second release counts once', async () => {
      const store = await freshStore();
      const a = await backend.admit(store, 'ingest', {
        kind: 'backup',
        detail: 'host/web01',
        authId: 'alice@pbs',
      });
      assert.equal(a.record.store, store);
      assert.equal(a.record.class, 'ingest');
      assert.equal(a.config.name, store);
      assert.equal(a.value, undefined);
      const [listed] = await backend.list(store);
      assert.deepEqual(
        [listed?.id, listed?.kind, listed?.detail, listed?.authId, listed?.pid],
        [a.record.id, 'backup', 'host/web01', 'alice@pbs', process.pid],
      );
      await backend.attachTask(a.record.id, 'UPID:test');
      assert.equal((await backend.list(store))[0]?.taskId, 'UPID:test');
      const b = await backend.admit(store, 'read', { kind: 'restore' });
      assert.deepEqual(await backend.counts(store), { read: 1, ingest: 1, reclaim: 0, lookup: 0, write: 1 });
      await backend.release(a.record.id);
      await backend.release(a.record.id);
      assert.deepEqual(await backend.counts(store), { read: 1, ingest: 0, reclaim: 0, lookup: 0, write: 0 });
      await backend.release(b.record.id);
      assert.deepEqual(await backend.counts(store), ZERO);
      assert.ok(a.record.id < b.record.id, 'ids follow the admission order');
    });

    test('admit refuses what the mode refuses with the operator message, and registers nothing', async () => {
      const store = await freshStore();
      await backend.setMode(store, { type: 'read-only', message: 'disk swap' });
      assert.deepEqual(await backend.mode(store), { type: 'read-only', message: 'disk swap' });
      await assert.rejects(backend.admit(store, 'ingest', { kind: 'backup' }), {
        code: 'MAINTENANCE',
        status: 503,
        message: `datastore '${store}' is unavailable: read-only maintenance mode: disk swap`,
      });
      const r = await backend.admit(store, 'read', { kind: 'restore' });
      assert.deepEqual(await backend.counts(store), { read: 1, ingest: 0, reclaim: 0, lookup: 0, write: 0 });
      await backend.release(r.record.id);
      await assert.rejects(backend.admit('no-such-store', 'read', { kind: 'restore' }), {
        code: 'NOT_FOUND',
      });
    });

    test('a prepare that fails after the mode check leaves nothing counted', async () => {
      const store = await freshStore();
      const boom = new Error('cannot open .chunks');
      await assert.rejects(
        backend.admit(
          store,
          'read',
          { kind: 'restore' },
          {
            prepare: () => {
              throw boom;
            },
          },
        ),
        (err: unknown) => err === boom,
      );
      assert.deepEqual(await backend.counts(store), ZERO);
      assert.deepEqual(await backend.list(store), []);
      // and prepare's value is handed back when it succeeds
      const ok = await backend.admit(
        store,
        'read',
        { kind: 'restore' },
        { prepare: (cfg) => `opened ${cfg.name}` },
      );
      assert.equal(ok.value, `opened ${store}`);
      await backend.release(ok.record.id);
    });

    test('counts are exact at every step while three processes admit and release', async () => {
      const store = await freshStore();
      const [a, b, c] = holders as [RemoteHolder, RemoteHolder, RemoteHolder];
      const counts = () => backend.counts(store);
      const ra = await a.hold(store, 'read', 'restore', 'host/a');
      assert.deepEqual(await counts(), { read: 1, ingest: 0, reclaim: 0, lookup: 0, write: 0 });
      const wb = await b.hold(store, 'ingest', 'backup', 'host/b');
      const wc = await c.hold(store, 'ingest', 'backup', 'host/c');
      const rc = await c.hold(store, 'read', 'verify', 'host/c');
      const lc = await c.hold(store, 'lookup', 'status');
      assert.deepEqual(await counts(), { read: 2, ingest: 2, reclaim: 0, lookup: 1, write: 2 });
      await a.send({ cmd: 'release', id: ra });
      // a process releasing one of its operations does not lose its others (PBS §3.5)
      await c.send({ cmd: 'release', id: wc });
      assert.deepEqual(await counts(), { read: 1, ingest: 1, reclaim: 0, lookup: 1, write: 1 });
      assert.deepEqual(
        (await backend.list(store)).map((o) => [o.pid, o.class, o.kind]),
        [
          [b.pid, 'ingest', 'backup'],
          [c.pid, 'read', 'verify'],
          [c.pid, 'lookup', 'status'],
        ],
      );
      await b.send({ cmd: 'release', id: wb });
      await b.send({ cmd: 'release', id: wb });
      await c.send({ cmd: 'release', id: rc });
      await c.send({ cmd: 'release', id: lc });
      assert.deepEqual(await counts(), ZERO);
    });

    test('a SIGKILLed holder stops counting at once and is reported dead', async () => {
      const store = await freshStore();
      const victim = await startHolder();
      await victim.hold(store, 'ingest', 'backup', 'host/doomed');
      await victim.hold(store, 'read', 'restore', 'host/doomed');
      const [a] = holders as [RemoteHolder];
      const survivor = await a.hold(store, 'read', 'restore');
      const doomed = (await backend.list(store)).find((o) => o.pid === victim.pid)!;
      assert.equal(await backend.holderAlive(doomed), true);
      assert.deepEqual(await backend.counts(store), { read: 2, ingest: 1, reclaim: 0, lookup: 0, write: 1 });
      await victim.kill('SIGKILL');
      assert.deepEqual(await backend.counts(store), { read: 1, ingest: 0, reclaim: 0, lookup: 0, write: 0 });
      assert.equal(await backend.holderAlive(doomed), false);
      assert.deepEqual(
        (await backend.list(store)).map((o) => o.pid),
        [a.pid],
      );
      await a.send({ cmd: 'release', id: survivor });
    });

    test('if-idle refuses with the conflicting operations and changes nothing; a non-conflicting change passes', async () => {
      const store = await freshStore();
      const [a] = holders as [RemoteHolder];
      const r = await a.hold(store, 'read', 'restore', 'host/db');
      const lookup = await a.hold(store, 'lookup', 'status');
      await assert.rejects(backend.setMode(store, { type: 'offline' }, { ifIdle: true }), (err: unknown) => {
        const e = err as {
          status: number;
          message: string;
          operations: Array<{ kind: string; pid: number }>;
        };
        assert.equal(e.status, 409);
        assert.match(e.message, /not idle.*1 conflicting operation\(s\) active: restore host\/db/);
        assert.deepEqual(
          e.operations.map((o) => [o.kind, o.pid]),
          [['restore', a.pid]],
        );
        return true;
      });
      assert.equal(await backend.mode(store), undefined);
      const change = await backend.setMode(store, { type: 'read-only' }, { ifIdle: true });
      assert.deepEqual(change.conflicting, [], 'reads and lookups do not conflict with read-only');
      assert.equal(change.previous, undefined);
      assert.deepEqual(await backend.mode(store), { type: 'read-only' });
      await a.send({ cmd: 'release', id: r });
      await a.send({ cmd: 'release', id: lookup });
      await backend.setMode(store, { type: 'offline' }, { ifIdle: true });
      assert.deepEqual(await backend.mode(store), { type: 'offline' });
    });

    test('a graceful change returns the operations it conflicts with; delete and leaving delete need removal', async () => {
      const store = await freshStore();
      const w = await backend.admit(store, 'ingest', { kind: 'backup', detail: 'host/a' });
      const change = await backend.setMode(store, { type: 'read-only', message: 'm' });
      assert.deepEqual(
        change.conflicting.map((o) => o.id),
        [w.record.id],
      );
      await backend.release(w.record.id);
      await assert.rejects(backend.setMode(store, { type: 'delete' }), { status: 400 });
      const del = await backend.setMode(store, { type: 'delete' }, { allowDelete: true });
      assert.deepEqual(del.previous, { type: 'read-only', message: 'm' });
      await assert.rejects(backend.setMode(store, undefined), { message: /being deleted/ });
      await assert.rejects(backend.admit(store, 'lookup', { kind: 'status' }), { code: 'MAINTENANCE' });
      await backend.setMode(store, undefined, { allowDelete: true });
      assert.equal(await backend.mode(store), undefined);
    });

    test('a stale digest or a failed precondition is refused and changes nothing', async () => {
      const store = await freshStore();
      const first = await backend.setMode(store, { type: 'read-only' });
      await backend.setMode(store, { type: 'read-only', message: 'second' });
      await assert.rejects(backend.setMode(store, { type: 'offline' }, { digest: first.digest }), {
        code: 'CONFIG_MODIFIED',
        message: 'detected modified configuration - file changed by other user? Try again.',
      });
      const nope = new Error('not ours to delete');
      await assert.rejects(
        backend.setMode(
          store,
          { type: 'offline' },
          {
            precondition: () => {
              throw nope;
            },
          },
        ),
        (err: unknown) => err === nope,
      );
      assert.deepEqual(await backend.mode(store), { type: 'read-only', message: 'second' });
    });

    test('sequence splits the global admission order at a mode change', async () => {
      const store = await freshStore();
      const [a] = holders as [RemoteHolder];
      const before = await a.hold(store, 'ingest', 'backup');
      const change = await backend.setMode(store, { type: 'read-only' });
      assert.ok(change.sequence >= before, `${change.sequence} >= ${before}`);
      assert.ok((await backend.sequence()) >= change.sequence);
      const afterId = await a.hold(store, 'read', 'restore');
      assert.ok(afterId > change.sequence, `${afterId} > ${change.sequence}`);
      await a.send({ cmd: 'release', id: before });
      await a.send({ cmd: 'release', id: afterId });
    });

    test('watch wakes on admit, release, mode change and a holder death in another process', async () => {
      const store = await freshStore();
      const [a] = holders as [RemoteHolder];
      const watch = backend.watch(store);
      try {
        const woke = async (what: string, act: () => Promise<unknown>) => {
          const next = watch.changed();
          await act();
          assert.equal(await within(next, 5000), true, `watch woke on ${what}`);
        };
        let id = 0;
        await woke(
          'an admission in another process',
          async () => (id = await a.hold(store, 'read', 'restore')),
        );
        await woke('a release in another process', () => a.send({ cmd: 'release', id }));
        await woke('a mode change', () => backend.setMode(store, { type: 'offline', message: 'moving' }));
        await woke('the mode being cleared', () => backend.setMode(store, undefined));
        await woke('a mode change made by another process', () =>
          a.send({ cmd: 'set-mode', store, mode: 'read-only,message=elsewhere' }),
        );
        await woke('the mode being cleared by another process', () =>
          a.send({ cmd: 'set-mode', store, mode: null }),
        );
        const own = await backend.admit(store, 'ingest', { kind: 'backup' });
        assert.equal(
          await within(watch.changed(), 5000),
          true,
          'a change made while nobody waited is reported',
        );
        await woke('a release in this process', () => backend.release(own.record.id));
        const victim = await startHolder();
        await victim.hold(store, 'ingest', 'backup');
        await within(watch.changed(), 5000);
        await woke('a SIGKILLed holder', () => victim.kill('SIGKILL'));
        assert.deepEqual(await backend.counts(store), ZERO);
      } finally {
        watch.close();
      }
      assert.equal(await watch.changed(), false, 'a closed watch reports no more changes');
      const ac = new AbortController();
      const aborted = backend.watch(store, { signal: ac.signal });
      const pending = aborted.changed();
      ac.abort();
      assert.equal(await within(pending, 5000), false, 'aborting the signal ends a pending wait');
    });

    test('a system hold refuses what its type refuses, apart from the mode: clearing the mode leaves it', async () => {
      const store = await freshStore();
      const [a] = holders as [RemoteHolder];
      const running = await a.hold(store, 'ingest', 'backup', 'host/early');
      const change = await backend.setHold(store, 'low-space', {
        type: 'sealed',
        message: 'low space: 4% free',
      });
      assert.equal(change.hold?.type, 'sealed');
      assert.deepEqual(
        change.conflicting.map((op) => op.id),
        [running],
        'the backup admitted before the hold conflicts with it and runs on',
      );
      const refused = await a.send({ cmd: 'lookup', store, op: 'ingest', kind: 'backup' });
      assert.deepEqual(
        [refused.ok, refused.code, refused.message],
        [false, 'MAINTENANCE', `datastore '${store}' is unavailable: low space: 4% free`],
      );
      const prune = await backend.admit(store, 'reclaim', { kind: 'prune' });
      await backend.release(prune.record.id);
      // the operator's mode comes and goes; the hold stays
      await backend.setMode(store, { type: 'read-only', message: 'checking' });
      await backend.setMode(store, undefined);
      assert.deepEqual(
        (await backend.holds(store)).map((h) => [h.source, h.type, h.message]),
        [['low-space', 'sealed', 'low space: 4% free']],
      );
      await assert.rejects(backend.admit(store, 'ingest', { kind: 'backup' }), /low space: 4% free/);
      // a hold put by another process is in force here too
      await a.send({
        cmd: 'set-hold',
        store,
        source: 'window:w1',
        hold: { type: 'offline', message: 'window' },
      });
      await assert.rejects(backend.admit(store, 'read', { kind: 'reader' }), /is unavailable: window/);
      await backend.setHold(store, 'window:w1', undefined);
      const lifted = await backend.setHold(store, 'low-space', undefined);
      assert.equal(lifted.previous?.type, 'sealed');
      assert.deepEqual(await backend.holds(store), []);
      const ok = await backend.admit(store, 'ingest', { kind: 'backup' });
      await backend.release(ok.record.id);
      await a.send({ cmd: 'release', id: running });
      await assert.rejects(backend.setHold('no-such-store', 'low-space', undefined), { code: 'NOT_FOUND' });
    });

    test('a drain hold refuses new long operations only, whatever their class', async () => {
      const store = await freshStore();
      await backend.setHold(store, 'window:w2', {
        type: 'drain',
        message: 'offline maintenance window at 18:00',
      });
      for (const [cls, kind] of [
        ['ingest', 'backup'],
        ['reclaim', 'gc'],
        ['read', 'verify'],
        ['reclaim', 'sync'],
      ] as const) {
        await assert.rejects(
          backend.admit(store, cls, { kind }),
          /offline maintenance window at 18:00/,
          kind,
        );
      }
      for (const [cls, kind] of [
        ['read', 'reader'],
        ['reclaim', 'prune'],
        ['lookup', 'status'],
      ] as const) {
        const op = await backend.admit(store, cls, { kind });
        await backend.release(op.record.id);
      }
      await backend.setHold(store, 'window:w2', undefined);
    });

    test('the history records mode and hold changes with who, from, to and message, and each drain once', async () => {
      const store = await freshStore();
      const [a] = holders as [RemoteHolder];
      const first = await backend.events.lastId();
      const op = await a.hold(store, 'ingest', 'backup');
      const set = await backend.setMode(
        store,
        { type: 'read-only', message: 'disk swap' },
        { authId: 'alice@pbs' },
      );
      assert.equal(set.event?.type, 'mode-set');
      // the same mode again changes nothing and records nothing
      assert.equal(
        (await backend.setMode(store, { type: 'read-only', message: 'disk swap' })).event,
        undefined,
      );
      await a.send({ cmd: 'release', id: op });
      assert.ok(await backend.events.recordDrained(store, set.event!), 'the first drain is recorded');
      assert.equal(
        await backend.events.recordDrained(store, set.event!),
        undefined,
        'a drain is recorded once',
      );
      await backend.setMode(store, undefined, { authId: 'alice@pbs' });
      await backend.setHold(store, 'low-space', { type: 'sealed', message: 'low space: 4% free' });
      await backend.setHold(store, 'low-space', { type: 'sealed', message: 'low space: 3% free' });
      await backend.setHold(store, 'low-space', undefined, { authId: 'root@pam', forced: true });
      const mine = (await backend.events.after(first, 1000)).filter((e) => e.store === store);
      assert.deepEqual(
        mine.map((e) => [e.type, e.source, e.authId, e.from, e.to, e.message]),
        [
          ['mode-set', 'operator', 'alice@pbs', 'none', 'read-only', 'disk swap'],
          ['drained', 'operator', undefined, 'none', 'read-only', 'disk swap'],
          ['mode-cleared', 'operator', 'alice@pbs', 'read-only', 'none', 'disk swap'],
          ['hold-engaged', 'low-space', undefined, 'none', 'sealed', 'low space: 4% free'],
          // nothing conflicted: drained at once
          ['drained', 'low-space', undefined, 'none', 'sealed', 'low space: 4% free'],
          ['hold-released', 'low-space', 'root@pam', 'sealed', 'none', 'low space: 3% free'],
        ],
      );
      assert.equal(mine[1]!.detail?.ref, set.event!.id);
      assert.equal(typeof mine[1]!.detail?.['duration-ms'], 'number');
      assert.deepEqual(mine[5]!.detail, { forced: true });
      assert.deepEqual(
        mine.map((e) => e.severity),
        ['info', 'info', 'info', 'warning', 'info', 'info'],
      );
      assert.deepEqual(
        (await backend.events.history(store, { limit: 2 })).map((e) => e.type),
        ['hold-released', 'drained'],
        'history is newest first',
      );
    });

    test('no process admits an operation that the mode in force at that moment refuses', async () => {
      const store = await freshStore();
      const [w, r, flipper] = holders as [RemoteHolder, RemoteHolder, RemoteHolder];
      const modes = ['read-only,message=race', null, 'offline,message=race', null];
      const [wr, rr, flips] = await Promise.all([
        w.send({ cmd: 'admit-loop', store, op: 'ingest', durationMs: 2000 }),
        r.send({ cmd: 'admit-loop', store, op: 'read', durationMs: 2000 }),
        flipper.send({ cmd: 'flip-loop', store, modes, count: 120, pauseMs: 10 }),
      ]);
      assert.ok(wr.ok && rr.ok && flips.ok, JSON.stringify([wr, rr, flips]).slice(0, 500));
      const changes = flips.changes as ModeChangeAt[];
      const violations = admissionViolations(changes, [
        ['ingest', wr.admitted as number[]],
        ['read', rr.admitted as number[]],
      ]);
      assert.deepEqual(violations, []);
      for (const [op, res] of [
        ['ingest', wr],
        ['read', rr],
      ] as const) {
        const admitted = (res.admitted as number[]).length;
        assert.ok(
          admitted > 0 && (res.refused as number) > 0,
          `${op}: ${admitted} admitted, ${res.refused} refused`,
        );
      }
      assert.deepEqual(await backend.counts(store), ZERO);
    });
  });
}
