/**
 * Time spans in PBS's syntax (proxmox-time `TimeSpan`, systemd.time(7)): a sequence of numbers
 * with units, blanks optional between them: `2h 30min`, `90s`, `1d12h`, `10m` (minutes, as
 * systemd). A bare number is seconds. Used for a maintenance window's `duration` and
 * `drain-before`.
 *
 * Pure: text in, milliseconds out.
 */
import { BadRequestError } from '../errors.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

// proxmox-time's unit names; months and years (not whole days) are left out on purpose
const UNITS: Record<string, number> = {
  ms: 1,
  msec: 1,
  s: SECOND,
  sec: SECOND,
  second: SECOND,
  seconds: SECOND,
  m: MINUTE,
  min: MINUTE,
  minute: MINUTE,
  minutes: MINUTE,
  h: HOUR,
  hr: HOUR,
  hour: HOUR,
  hours: HOUR,
  d: DAY,
  day: DAY,
  days: DAY,
  w: 7 * DAY,
  week: 7 * DAY,
  weeks: 7 * DAY,
};

const PART = /(\d+)\s*([a-z]*)\s*/gy;

/**
 * Parse a time span into milliseconds. Errors are BadRequestErrors naming `param`, e.g.
 * `invalid duration '2x': unknown unit 'x'`.
 */
export function parseTimeSpan(text: string, param = 'time span'): number {
  const bad = (why: string) => new BadRequestError(`invalid ${param} '${text}': ${why}`, { param });
  const input = text.trim();
  if (input === '') throw bad('empty time span');
  if (/^\d+$/.test(input)) return Number(input) * SECOND;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < input.length) {
    const at = PART.lastIndex;
    const m = PART.exec(input);
    if (!m) throw bad(`cannot parse '${input.slice(at)}' (expected a number and a unit, e.g. 2h 30min)`);
    const unit = UNITS[m[2]!];
    if (unit === undefined) {
      throw bad(m[2] ? `unknown unit '${m[2]}' (use s, min, h, d or w)` : `'${m[1]}' has no unit`);
    }
    total += Number(m[1]) * unit;
  }
  if (!Number.isSafeInteger(total)) throw bad('too long');
  return total;
}

/** A span as the UI and CLI print it: `2h 30min`, `45s`. */
export function formatTimeSpan(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms / SECOND);
  for (const [unit, size] of [
    ['d', DAY / SECOND],
    ['h', HOUR / SECOND],
    ['min', MINUTE / SECOND],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest}s`);
  return parts.join(' ');
}
