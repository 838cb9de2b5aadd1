/**
 * The maintenance history's contract as tests (src/maintenance/maintenance-events.ts): every
 * MaintenanceEventLog runs it. The instance's SQLite log in
 * test/maintenance/maintenance-events.test.ts (two handles: two processes of one instance), the
 * cluster's etcd log in test/cluster/etcd-maintenance-events.test.ts (two handles: two servers).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { MaintenanceEventLog, NewMaintenanceEvent } from '../../src/maintenance/maintenance-events.js';

export interface EventLogTestbed {
  /** A log on fresh state. */
  log: MaintenanceEventLog;
  /** Another handle on the same state (another process, or another server of the cluster). */
  other: MaintenanceEventLog;
  cleanup(): Promise<void>;
}

/** `open({ keep })`: a fresh testbed whose logs keep at least `keep` events. */
export function maintenanceEventLogConformance(
  name: string,
  open: (opts: { keep?: number }) => Promise<EventLogTestbed>,
): void {
  describe(`maintenance event log conformance: ${name}`, () => {
    let bed: EventLogTestbed;
    before(async () => {
      bed = await open({});
    });
    after(async () => {
      await bed.cleanup();
    });

    const modeSet = (store: string, message: string): NewMaintenanceEvent => ({
      store,
      type: 'mode-set',
      source: 'operator',
      authId: 'alice@pbs',
      from: 'none',
      to: 'read-only',
      message,
    });

    test('appended events get increasing ids and read back whole, oldest first from any handle', async () => {
      const { log, other } = bed;
      const first = await log.lastId();
      const a = await log.append({ ...modeSet('s1', 'disk swap'), detail: { note: 'x' } });
      const b = await other.append({ store: 's1', type: 'hold-engaged', source: 'low-space', to: 'sealed' });
      assert.ok(a.id > first && b.id > a.id, 'ids increase across handles');
      assert.equal(a.severity, 'info');
      assert.equal(b.severity, 'warning', 'severity follows the type');
      assert.ok(Math.abs(a.time - Date.now()) < 60_000);
      assert.equal(await other.lastId(), b.id);
      for (const reader of [log, other]) {
        const read = await reader.after(first);
        assert.deepEqual(
          read.map(({ node: _node, ...e }) => e),
          [a, b].map(({ node: _node, ...e }) => e),
        );
        assert.deepEqual(await reader.after(first, 1), [read[0]], 'limit');
        assert.deepEqual(await reader.after(b.id), []);
      }
    });

    test("a store's history is newest first, pages with before, and holds only that store's events", async () => {
      const { log, other } = bed;
      const mine: number[] = [];
      for (let i = 0; i < 5; i++) {
        mine.push((await (i % 2 ? other : log).append(modeSet('paged', `m${i}`))).id);
        await log.append(modeSet('elsewhere', `e${i}`));
      }
      const newest = await other.history('paged', { limit: 3 });
      assert.deepEqual(
        newest.map((e) => e.message),
        ['m4', 'm3', 'm2'],
      );
      const older = await log.history('paged', { limit: 3, before: newest.at(-1)!.id });
      assert.deepEqual(
        older.map((e) => e.id),
        [mine[1], mine[0]],
      );
      assert.deepEqual(await log.history('no-events-here'), []);
    });

    test("a change's drain is recorded once, whichever handle sees it first, with its duration", async () => {
      const { log, other } = bed;
      const set = await log.append({ ...modeSet('drains', 'moving'), time: Date.now() - 1500 });
      const [x, y] = await Promise.all([
        log.recordDrained('drains', set),
        other.recordDrained('drains', set),
      ]);
      const recorded = [x, y].filter((e) => e !== undefined);
      assert.equal(recorded.length, 1, 'exactly one of two racing handles records the drain');
      const drained = recorded[0]!;
      assert.equal(drained.type, 'drained');
      assert.deepEqual(
        [drained.source, drained.from, drained.to, drained.message],
        ['operator', 'none', 'read-only', 'moving'],
      );
      assert.equal(drained.detail?.ref, set.id);
      assert.ok((drained.detail?.['duration-ms'] as number) >= 1500);
      assert.equal(await other.recordDrained('drains', set), undefined, 'and never again');
      assert.deepEqual(
        (await other.history('drains')).map((e) => e.type),
        ['drained', 'mode-set'],
      );
    });

    test('appends racing from two handles all land, each with its own id, in one order for both', async () => {
      const { log, other } = bed;
      const first = await log.lastId();
      const appended = await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 ? other : log).append(modeSet('race', `r${i}`))),
      );
      assert.equal(new Set(appended.map((e) => e.id)).size, 20);
      const seen = await log.after(first, 100);
      assert.deepEqual(
        seen.map((e) => e.id),
        appended.map((e) => e.id).sort((p, q) => p - q),
      );
      assert.deepEqual(
        (await other.after(first, 100)).map((e) => e.message),
        seen.map((e) => e.message),
      );
    });

    test('the history is bounded: old events go, at least the last `keep` stay', async () => {
      const small = await open({ keep: 5 });
      try {
        const ids: number[] = [];
        for (let i = 0; i < 16; i++) {
          ids.push((await (i % 2 ? small.other : small.log).append(modeSet('bounded', `b${i}`))).id);
        }
        const left = await small.other.after(0, 1000);
        assert.ok(left.length >= 5 && left.length <= 10, `${left.length} events left`);
        assert.deepEqual(
          left.slice(-5).map((e) => e.id),
          ids.slice(-5),
          'the newest are kept',
        );
        assert.ok(!left.some((e) => e.id === ids[0]), 'the oldest is gone');
        const history = await small.log.history('bounded', { limit: 1000 });
        assert.deepEqual(
          history.map((e) => e.id),
          left.map((e) => e.id).reverse(),
          "the store's history is trimmed alike",
        );
      } finally {
        await small.cleanup();
      }
    });
  });
}
