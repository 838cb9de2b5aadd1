/**
 * Calendar events, the systemd-like schedule syntax PBS uses for `gc-schedule`, prune and verify
 * jobs (proxmox-time `calendar_event.rs`): `[WEEKDAYS] [DATE] [TIME]` or a shorthand.
 *
 *   daily            → *-*-* 00:00:00          hourly   → *-*-* *:00:00
 *   weekly           → mon *-*-* 00:00:00      monthly  → *-*-01 00:00:00
 *   sat 18:15        mon..fri 02:00            mon,wed 3:00
 *   *:0/30           (every 30 minutes)        02:30    *:00    2024-*-01 4:00
 *
 * Each of year, month, day, hour, minute and second is `*` or a comma list of `N`, `N..M` and
 * repetitions `N/R`, `N..M/R`, `*\/R`. Weekdays are a comma list of names (`mon`, `monday`) and
 * ranges (`mon..fri`, wrapping like `fri..mon`).
 *
 * Stowage evaluates schedules in **UTC**; PBS uses the server's local time. A UTC clock has no
 * skipped or doubled hours at DST changes, and every process and test sees the same slots
 * whatever TZ says. Operators in other zones shift their schedules accordingly (docs).
 *
 * Pure: text in, parsed event out; `nextEvent` does arithmetic on dates, no IO.
 */
import { BadRequestError } from '../errors.js';

/** One comma-separated item: a value, a range, optionally repeating every `step`. */
interface ValueSpec {
  start: number;
  /** Inclusive; undefined with no `step` means just `start`, with a step "up to the maximum". */
  end?: number;
  step?: number;
}

/** `undefined` matches every value (`*`). */
type Field = ValueSpec[] | undefined;

export interface CalendarEvent {
  /** The text as given. */
  readonly text: string;
  /** Days of the week, 0 = Sunday (as `Date.getUTCDay`); undefined = every day. */
  readonly weekdays?: ReadonlySet<number>;
  readonly year: Field;
  readonly month: Field;
  readonly day: Field;
  readonly hour: Field;
  readonly minute: Field;
  readonly second: Field;
}

const SHORTHANDS: Record<string, string> = {
  minutely: '*-*-* *:*:00',
  hourly: '*-*-* *:00:00',
  daily: '*-*-* 00:00:00',
  weekly: 'mon *-*-* 00:00:00',
  monthly: '*-*-01 00:00:00',
  yearly: '*-01-01 00:00:00',
  annually: '*-01-01 00:00:00',
  quarterly: '*-01,04,07,10-01 00:00:00',
  semiannually: '*-01,07-01 00:00:00',
};

const WEEKDAYS: Record<string, number> = {
  sun: 0,
  sunday: 0,
  mon: 1,
  monday: 1,
  tue: 2,
  tuesday: 2,
  wed: 3,
  wednesday: 3,
  thu: 4,
  thursday: 4,
  fri: 5,
  friday: 5,
  sat: 6,
  saturday: 6,
};

const LIMITS = {
  year: [1970, 9999],
  month: [1, 12],
  day: [1, 31],
  hour: [0, 23],
  minute: [0, 59],
  second: [0, 59],
} as const;
type FieldName = keyof typeof LIMITS;

class SyntaxProblem extends Error {}

function parseNumber(text: string, name: FieldName): number {
  if (!/^\d{1,4}$/.test(text)) throw new SyntaxProblem(`expected a number for the ${name}, got '${text}'`);
  const n = Number(text);
  const [min, max] = LIMITS[name];
  if (n < min || n > max) throw new SyntaxProblem(`${name} ${n} is out of range ${min}..${max}`);
  return n;
}

function parseField(text: string, name: FieldName): Field {
  if (text === '*') return undefined;
  return text.split(',').map((item): ValueSpec => {
    if (item === '') throw new SyntaxProblem(`empty item in the ${name} list`);
    const [range, stepText, ...rest] = item.split('/');
    if (rest.length > 0) throw new SyntaxProblem(`too many '/' in '${item}'`);
    let step: number | undefined;
    if (stepText !== undefined) {
      if (!/^\d{1,4}$/.test(stepText) || Number(stepText) === 0) {
        throw new SyntaxProblem(`repetition in '${item}' must be a positive number`);
      }
      step = Number(stepText);
    }
    if (range === '*') {
      if (step === undefined) throw new SyntaxProblem(`'*' cannot be part of a list`);
      return { start: LIMITS[name][0], step };
    }
    const parts = range!.split('..');
    if (parts.length > 2) throw new SyntaxProblem(`bad range '${range}'`);
    const start = parseNumber(parts[0]!, name);
    if (parts.length === 1) return { start, step };
    const end = parseNumber(parts[1]!, name);
    if (end < start) throw new SyntaxProblem(`range '${range}' ends before it starts`);
    return { start, end, step };
  });
}

function parseWeekdays(text: string): Set<number> {
  const days = new Set<number>();
  for (const item of text.split(',')) {
    const [from, to, ...rest] = item.split('..');
    const a = WEEKDAYS[from ?? ''];
    if (a === undefined || rest.length > 0) throw new SyntaxProblem(`unknown weekday '${item}'`);
    if (to === undefined) {
      days.add(a);
      continue;
    }
    const b = WEEKDAYS[to];
    if (b === undefined) throw new SyntaxProblem(`unknown weekday '${to}'`);
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  return days;
}

function parseDate(text: string): Pick<CalendarEvent, 'year' | 'month' | 'day'> {
  const parts = text.split('-');
  if (parts.length === 2)
    return { year: undefined, month: parseField(parts[0]!, 'month'), day: parseField(parts[1]!, 'day') };
  if (parts.length === 3) {
    return {
      year: parseField(parts[0]!, 'year'),
      month: parseField(parts[1]!, 'month'),
      day: parseField(parts[2]!, 'day'),
    };
  }
  throw new SyntaxProblem(`bad date '${text}'`);
}

function parseTime(text: string): Pick<CalendarEvent, 'hour' | 'minute' | 'second'> {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3)
    throw new SyntaxProblem(`bad time '${text}' (expected H:M or H:M:S)`);
  return {
    hour: parseField(parts[0]!, 'hour'),
    minute: parseField(parts[1]!, 'minute'),
    second: parts.length === 3 ? parseField(parts[2]!, 'second') : [{ start: 0 }],
  };
}

const isWeekdayToken = (t: string) => t.split(/,|\.\./).every((w) => w in WEEKDAYS);

/**
 * Parse a calendar event. Errors are BadRequestErrors naming `param`, e.g.
 * `invalid gc-schedule 'x': unknown weekday 'x'`.
 */
export function parseCalendarEvent(text: string, param = 'schedule'): CalendarEvent {
  try {
    const input = text.trim().toLowerCase();
    if (input === '') throw new SyntaxProblem('empty schedule');
    const expanded = SHORTHANDS[input] ?? input;
    const tokens = expanded.split(/\s+/);
    let weekdays: Set<number> | undefined;
    let date: Pick<CalendarEvent, 'year' | 'month' | 'day'> = {
      year: undefined,
      month: undefined,
      day: undefined,
    };
    let time: Pick<CalendarEvent, 'hour' | 'minute' | 'second'> | undefined;
    let i = 0;
    if (isWeekdayToken(tokens[0]!)) weekdays = parseWeekdays(tokens[i++]!);
    if (i < tokens.length && tokens[i]!.includes('-') && !tokens[i]!.includes(':')) {
      date = parseDate(tokens[i++]!);
    }
    if (i < tokens.length) time = parseTime(tokens[i++]!);
    if (i < tokens.length) throw new SyntaxProblem(`unexpected '${tokens[i]}'`);
    // A weekday or date without a time means its midnight, as in systemd.
    time ??= { hour: [{ start: 0 }], minute: [{ start: 0 }], second: [{ start: 0 }] };
    return { text, weekdays, ...date, ...time };
  } catch (err) {
    if (!(err instanceof SyntaxProblem)) throw err;
    throw new BadRequestError(`invalid ${param} '${text}': ${err.message}`, { param });
  }
}

/** Throw the BadRequestError of parseCalendarEvent, or return the text unchanged. */
export function validateCalendarEvent(text: string, param = 'schedule'): string {
  parseCalendarEvent(text, param);
  return text;
}

function matches(field: Field, value: number, max: number): boolean {
  if (field === undefined) return true;
  return field.some(({ start, end, step }) => {
    if (step === undefined) return end === undefined ? value === start : value >= start && value <= end;
    const last = end ?? max;
    return value >= start && value <= last && (value - start) % step === 0;
  });
}

/** Days in a month of a year (month 1..12). */
function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/**
 * The first time strictly after `after` (in UTC, at whole seconds) that matches `event`, or
 * undefined when there is none before year 9999 (e.g. `2000-01-01` or `*-02-30`).
 */
export function nextEvent(event: CalendarEvent | string, after: Date): Date | undefined {
  const ev = typeof event === 'string' ? parseCalendarEvent(event) : event;
  let t = Math.floor(after.getTime() / 1000) * 1000 + 1000;
  const maxT = Date.UTC(10000, 0, 1);
  // Each step jumps to the start of the next year/month/day/hour/minute/second that may match,
  // so even yearly events take a few hundred iterations at most.
  while (t < maxT) {
    const d = new Date(t);
    const year = d.getUTCFullYear();
    const month = d.getUTCMonth() + 1;
    if (!matches(ev.year, year, LIMITS.year[1])) {
      t = Date.UTC(year + 1, 0, 1);
      continue;
    }
    if (!matches(ev.month, month, 12)) {
      t = Date.UTC(year, month, 1);
      continue;
    }
    const day = d.getUTCDate();
    if (!matches(ev.day, day, daysIn(year, month)) || (ev.weekdays && !ev.weekdays.has(d.getUTCDay()))) {
      t = Date.UTC(year, month - 1, day + 1);
      continue;
    }
    const hour = d.getUTCHours();
    if (!matches(ev.hour, hour, 23)) {
      t = Date.UTC(year, month - 1, day, hour + 1);
      continue;
    }
    const minute = d.getUTCMinutes();
    if (!matches(ev.minute, minute, 59)) {
      t = Date.UTC(year, month - 1, day, hour, minute + 1);
      continue;
    }
    if (!matches(ev.second, d.getUTCSeconds(), 59)) {
      t += 1000;
      continue;
    }
    return d;
  }
  return undefined;
}
