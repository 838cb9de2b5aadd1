import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextEvent, parseCalendarEvent } from '../../src/api-types/calendar-event.js';
import { StowageError } from '../../src/errors.js';

const iso = (d: Date | undefined) => d?.toISOString().replace('.000Z', 'Z');
const at = (s: string) => new Date(s);

// 2024-06-05 is a Wednesday.
const NEXT: Array<[spec: string, after: string, expected: string]> = [
  ['daily', '2024-06-05T10:00:00Z', '2024-06-06T00:00:00Z'],
  ['daily', '2024-06-05T23:59:59Z', '2024-06-06T00:00:00Z'],
  ['daily', '2024-06-06T00:00:00Z', '2024-06-07T00:00:00Z'],
  ['hourly', '2024-06-05T10:00:00Z', '2024-06-05T11:00:00Z'],
  ['hourly', '2024-06-05T10:59:30Z', '2024-06-05T11:00:00Z'],
  ['hourly', '2024-12-31T23:30:00Z', '2025-01-01T00:00:00Z'],
  ['weekly', '2024-06-05T10:00:00Z', '2024-06-10T00:00:00Z'],
  ['monthly', '2024-06-05T10:00:00Z', '2024-07-01T00:00:00Z'],
  ['monthly', '2024-12-01T00:00:00Z', '2025-01-01T00:00:00Z'],
  ['sat 18:15', '2024-06-05T10:00:00Z', '2024-06-08T18:15:00Z'],
  ['sat 18:15', '2024-06-08T18:15:00Z', '2024-06-15T18:15:00Z'],
  ['mon..fri 02:00', '2024-06-07T02:00:00Z', '2024-06-10T02:00:00Z'],
  ['mon..fri 02:00', '2024-06-05T01:00:00Z', '2024-06-05T02:00:00Z'],
  ['fri..mon 02:00', '2024-06-04T03:00:00Z', '2024-06-07T02:00:00Z'],
  ['*:0/30', '2024-06-05T10:00:00Z', '2024-06-05T10:30:00Z'],
  ['*:0/30', '2024-06-05T10:29:59Z', '2024-06-05T10:30:00Z'],
  ['*:0/30', '2024-06-05T10:30:00Z', '2024-06-05T11:00:00Z'],
  ['02:30', '2024-06-05T02:30:00Z', '2024-06-06T02:30:00Z'],
  ['02:30', '2024-06-05T01:00:00Z', '2024-06-05T02:30:00Z'],
  ['*:00', '2024-06-05T10:00:00Z', '2024-06-05T11:00:00Z'],
  ['mon,wed 3:00', '2024-06-05T03:00:00Z', '2024-06-10T03:00:00Z'],
  ['mon,wed 3:00', '2024-06-04T12:00:00Z', '2024-06-05T03:00:00Z'],
  ['*-*-01 04:00', '2024-02-15T00:00:00Z', '2024-03-01T04:00:00Z'],
  ['*-02-29 00:00', '2024-03-01T00:00:00Z', '2028-02-29T00:00:00Z'],
  ['0/6:00', '2024-06-05T07:00:00Z', '2024-06-05T12:00:00Z'],
  ['8..17:15', '2024-06-05T17:15:00Z', '2024-06-06T08:15:00Z'],
  ['sat', '2024-06-05T10:00:00Z', '2024-06-08T00:00:00Z'],
  ['*:*', '2024-06-05T10:00:10Z', '2024-06-05T10:01:00Z'],
];

test('next events of common schedules are computed in UTC', () => {
  for (const [spec, after, expected] of NEXT) {
    assert.equal(iso(nextEvent(spec, at(after))), expected, `${spec} after ${after}`);
  }
});

test('weekday names are case-insensitive and may be spelled out', () => {
  assert.equal(iso(nextEvent('Saturday 18:15', at('2024-06-05T00:00:00Z'))), '2024-06-08T18:15:00Z');
  assert.equal(iso(nextEvent('SAT 18:15', at('2024-06-05T00:00:00Z'))), '2024-06-08T18:15:00Z');
});

test('an event that can never happen has no next event', () => {
  assert.equal(nextEvent('*-02-30 00:00', at('2024-01-01T00:00:00Z')), undefined);
  assert.equal(nextEvent('2020-01-01 00:00', at('2024-01-01T00:00:00Z')), undefined);
});

test('invalid schedules are refused with a 400 that names the parameter', () => {
  const bad = [
    'x',
    '',
    '25:00',
    '*:60',
    'sat 18',
    'mon..xyz 02:00',
    '*:0/0',
    '1,,2:00',
    'daily 02:00 x',
    '5..3:00',
  ];
  for (const spec of bad) {
    assert.throws(
      () => parseCalendarEvent(spec, 'gc-schedule'),
      (err: unknown) =>
        err instanceof StowageError &&
        err.status === 400 &&
        err.message.startsWith(`invalid gc-schedule '${spec}': `),
      spec,
    );
  }
});

test('the error says what is wrong with the schedule', () => {
  assert.throws(() => parseCalendarEvent('25:00', 'schedule'), /hour 25 is out of range 0\.\.23/);
  assert.throws(() => parseCalendarEvent('funday 02:00'), /bad date|unknown weekday|bad time/);
});
