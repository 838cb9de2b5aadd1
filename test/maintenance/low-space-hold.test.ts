import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import {
  decideLowSpace,
  freePercent,
  lowSpaceMessage,
  lowSpaceThresholds,
  type LowSpaceState,
} from '../../src/maintenance/low-space-hold.js';

const T = { hold: 5, release: 10 };
const free = (held: boolean, overridden = false): LowSpaceState => ({ held, overridden });

test('the hold engages below the hold level and lifts only above the release level (hysteresis)', () => {
  assert.equal(decideLowSpace(4.9, T, free(false)).action, 'engage');
  assert.equal(decideLowSpace(5, T, free(false)).action, 'none', 'exactly at the hold level: not below it');
  // between the two levels nothing changes, whichever way free space moves
  for (const pct of [5, 6, 7.5, 9.9, 10]) {
    assert.equal(decideLowSpace(pct, T, free(false)).action, 'none', `${pct}% free, not held`);
    assert.equal(decideLowSpace(pct, T, free(true)).action, 'none', `${pct}% free, held`);
  }
  assert.equal(decideLowSpace(10.1, T, free(true)).action, 'release');
  assert.equal(decideLowSpace(3, T, free(true)).action, 'none', 'an engaged hold is not set again');
});

test("an operator's forced release holds until free space has once risen above the release level", () => {
  // still low, but overridden: nothing engages, the override stands
  assert.deepEqual(decideLowSpace(2, T, free(false, true)), { action: 'none', overridden: true });
  assert.deepEqual(decideLowSpace(10, T, free(false, true)), { action: 'none', overridden: true });
  // above the release level once: the override ends ...
  assert.deepEqual(decideLowSpace(11, T, free(false, true)), { action: 'none', overridden: false });
  // ... and the next drop engages again
  assert.deepEqual(decideLowSpace(4, T, free(false, false)), { action: 'engage', overridden: false });
});

test('a hold level of 0 never engages and lifts a hold still on the store', () => {
  const off = { hold: 0, release: 10 };
  assert.equal(decideLowSpace(0, off, free(false)).action, 'none');
  assert.equal(decideLowSpace(1, off, free(true)).action, 'release');
});

test('thresholds default to 5 and 10 percent; the message names the whole percent free', () => {
  assert.deepEqual(lowSpaceThresholds({ name: 'store1', path: '/a' }), T);
  assert.deepEqual(
    lowSpaceThresholds({ name: 'store1', path: '/a', 'low-space-hold': 2, 'low-space-release': 30 }),
    { hold: 2, release: 30 },
  );
  assert.equal(lowSpaceMessage(4.97), 'low space: 4% free');
});

test('free space is 100 minus the Use% df shows', async () => {
  const dir = tmpdir();
  const out = execFileSync('df', ['-P', dir], { encoding: 'utf8' }).trim().split('\n')[1]!;
  const used = Number(/ (\d+)% /.exec(out)![1]);
  // df rounds Use% up
  assert.ok(Math.abs(100 - (await freePercent(dir)) - used) <= 1, `${await freePercent(dir)} vs ${out}`);
});
