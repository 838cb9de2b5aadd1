import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeNextWindow, type MaintenanceWindowConfig } from '../../src/api-types/maintenance-window.js';
import { nextWindowOf, windowHold, windowOccurrence } from '../../src/maintenance/window-schedule.js';

const at = (iso: string) => new Date(iso);
const window: MaintenanceWindowConfig = {
  id: 'fsck',
  store: 'store1',
  schedule: 'sat 02:00',
  duration: '2h',
  type: 'offline',
  message: 'disk check',
  'drain-before': '30min',
};
// 2026-12-05 is a Saturday

test('a window is idle, then draining, then in force for its duration, then idle until the next start', () => {
  const phase = (iso: string) => windowOccurrence(window, at(iso))?.phase;
  assert.equal(phase('2026-12-05T01:29:59Z'), 'idle');
  assert.equal(phase('2026-12-05T01:30:00Z'), 'draining');
  assert.equal(phase('2026-12-05T02:00:00Z'), 'active');
  assert.equal(phase('2026-12-05T03:59:59Z'), 'active');
  assert.equal(phase('2026-12-05T04:00:00Z'), 'idle');
  const next = windowOccurrence(window, at('2026-12-05T04:00:00Z'))!;
  assert.equal(next.start.toISOString(), '2026-12-12T02:00:00.000Z');
});

test('the hold names the start while draining and the window message while in force', () => {
  assert.deepEqual(windowHold(window, at('2026-12-05T01:45:00Z')), {
    type: 'drain',
    message: 'offline maintenance window at 2026-12-05T02:00:00Z: disk check',
  });
  assert.deepEqual(windowHold(window, at('2026-12-05T02:30:00Z')), {
    type: 'offline',
    message: 'offline maintenance window: disk check',
  });
  assert.equal(windowHold(window, at('2026-12-05T05:00:00Z')), undefined);
  assert.equal(windowHold({ ...window, disable: true }, at('2026-12-05T02:30:00Z')), undefined);
});

test("a store's next window is the earliest to start, or the one in force", () => {
  const daily: MaintenanceWindowConfig = { ...window, id: 'daily', schedule: 'daily', duration: '1h' };
  delete daily['drain-before'];
  const other = { ...window, id: 'other', store: 'store2' };
  const friday = nextWindowOf([window, daily, other], 'store1', at('2026-12-04T12:00:00Z'))!;
  assert.equal(friday.id, 'daily');
  assert.equal(friday.start, Date.parse('2026-12-05T00:00:00Z') / 1000);
  assert.equal(friday['drain-start'], friday.start);
  const inside = nextWindowOf([window, daily], 'store1', at('2026-12-05T02:10:00Z'))!;
  assert.equal(inside.id, 'fsck');
  assert.equal(inside.end, Date.parse('2026-12-05T04:00:00Z') / 1000);
  assert.equal(inside['drain-start'], Date.parse('2026-12-05T01:30:00Z') / 1000);
  assert.equal(nextWindowOf([other], 'store1', at('2026-12-05T02:10:00Z')), undefined);
});

test('the UI line counts down to a window and says until when it holds', () => {
  const w = nextWindowOf([window], 'store1', at('2026-12-05T01:20:00Z'))!;
  const sec = (iso: string) => Date.parse(iso) / 1000;
  assert.equal(
    describeNextWindow(w, sec('2026-12-05T01:20:00Z')),
    'offline maintenance in 40 min: disk check',
  );
  assert.equal(
    describeNextWindow(w, sec('2026-12-05T01:45:00Z')),
    'offline maintenance in 15 min (draining): disk check',
  );
  assert.equal(
    describeNextWindow(w, sec('2026-12-05T02:10:00Z')),
    'in offline maintenance window until 04:00 UTC: disk check',
  );
  assert.equal(
    describeNextWindow(w, sec('2026-12-03T02:00:00Z')),
    'offline maintenance in 2 days: disk check',
  );
});
