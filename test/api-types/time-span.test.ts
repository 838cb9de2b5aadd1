import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTimeSpan, parseTimeSpan } from '../../src/api-types/time-span.js';

test('time spans in PBS syntax parse to milliseconds, with or without blanks between the parts', () => {
  assert.equal(parseTimeSpan('2h 30min'), 150 * 60_000);
  assert.equal(parseTimeSpan('2h30min'), 150 * 60_000);
  assert.equal(parseTimeSpan('10m'), 600_000); // minutes, as systemd and PBS
  assert.equal(parseTimeSpan('1d 12h'), 36 * 3_600_000);
  assert.equal(parseTimeSpan('1w'), 7 * 86_400_000);
  assert.equal(parseTimeSpan('90'), 90_000); // a bare number is seconds
  assert.equal(parseTimeSpan(' 5 seconds '), 5_000);
});

test('a bad time span is a 400 naming the parameter and what is wrong', () => {
  for (const [text, why] of [
    ['', /empty/],
    ['2x', /unknown unit 'x'/],
    ['1h 5', /'5' has no unit/],
    ['-1h', /cannot parse '-1h'/],
    ['1.5h', /cannot parse|no unit/],
  ] as const) {
    assert.throws(
      () => parseTimeSpan(text, 'duration'),
      (err: Error & { status?: number }) => {
        assert.match(err.message, new RegExp(`^invalid duration '${text.replace('.', '\\.')}': `));
        assert.match(err.message, why);
        return true;
      },
    );
  }
});

test('spans print back in the same syntax', () => {
  assert.equal(formatTimeSpan(150 * 60_000), '2h 30min');
  assert.equal(formatTimeSpan(45_000), '45s');
  assert.equal(parseTimeSpan(formatTimeSpan(93_784_000)), 93_784_000);
});
