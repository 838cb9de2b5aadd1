/**
 * PBS property strings (`read-only,message="disk swap"`), as proxmox-schema parses them
 * (reference §1.4): comma-separated `key=value` items; at most one bare item, which belongs to the
 * default key; values may be double-quoted, and inside quotes `\"`, `\\` and `\n` are the only
 * escapes. Pure: text in, ordered entries out.
 */
import { BadRequestError } from '../errors.js';

export type PropertyEntries = Array<[key: string, value: string]>;

export interface PropertyStringOptions {
  /** The key a bare item belongs to (PBS `default_key`). */
  defaultKey?: string;
  /** What the string is, for error messages (e.g. `maintenance-mode`). */
  name?: string;
}

const KEY = /^[A-Za-z][A-Za-z0-9_-]*$/;

function fail(opts: PropertyStringOptions, what: string): never {
  throw new BadRequestError(`${opts.name ?? 'property string'}: ${what}`);
}

/**
 * Parse into ordered entries; a duplicate key, a second bare item or bad quoting is an error.
 * Splitting follows proxmox-schema's `next_property`: an item's key ends at its first `=` when
 * that comes before any `,`; a value is quoted only when it *starts* with `"`, otherwise it runs to
 * the next comma and may hold spaces, `=` and even `"` (PBS writes `message=disk swap` unquoted,
 * and stored strings from before 3.2.0 are whatever the API accepted; reference §1.4). Stricter
 * than PBS in one place: a trailing comma or an empty item is refused, since PBS never writes one.
 */
export function parsePropertyString(text: string, opts: PropertyStringOptions = {}): PropertyEntries {
  const entries: PropertyEntries = [];
  const seen = new Set<string>();
  let i = 0;
  if (text.length === 0) return entries;
  for (;;) {
    let key: string | undefined;
    let value: string;
    if (text[i] !== '"') {
      const eq = text.indexOf('=', i);
      const comma = text.indexOf(',', i);
      if (eq !== -1 && (comma === -1 || eq < comma)) {
        key = text.slice(i, eq);
        if (!KEY.test(key)) fail(opts, `invalid key '${key}'`);
        i = eq + 1;
      }
    }
    if (text[i] === '"') {
      const [v, end] = parseQuoted(text, i, opts);
      value = v;
      i = end;
      if (i < text.length && text[i] !== ',')
        fail(opts, `unexpected data after quoted value at position ${i}`);
    } else {
      const end = text.indexOf(',', i);
      value = text.slice(i, end === -1 ? text.length : end);
      i = end === -1 ? text.length : end;
      if (key === undefined && value === '') fail(opts, 'empty item');
    }
    if (key === undefined) {
      if (!opts.defaultKey) fail(opts, `value '${value}' has no key`);
      key = opts.defaultKey;
    }
    if (seen.has(key)) fail(opts, `duplicate key '${key}'`);
    seen.add(key);
    entries.push([key, value]);
    if (i >= text.length) break;
    i++; // skip the comma
    if (i >= text.length) fail(opts, 'trailing comma');
  }
  return entries;
}

function parseQuoted(text: string, start: number, opts: PropertyStringOptions): [string, number] {
  let out = '';
  let i = start + 1;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') return [out, i + 1];
    if (c === '\\') {
      const n = text[i + 1];
      if (n === '"' || n === '\\') out += n;
      else if (n === 'n') out += '\n';
      else fail(opts, `invalid escape '\\${n ?? ''}' in quoted value`);
      i += 2;
      continue;
    }
    out += c;
    i++;
  }
  fail(opts, 'unbalanced quote');
}

/** Quote a value with PBS's escapes. */
export function quotePropertyValue(value: string): string {
  return '"' + value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') + '"';
}

/**
 * Serialize entries. The default key's value is written bare and first (as PBS writes it). Values
 * of keys in `alwaysQuote`, and any value that would not survive a re-parse unquoted, are quoted —
 * PBS quotes only for `"`, `\` and newline and so corrupts messages containing commas (§1.4).
 */
export function formatPropertyString(
  entries: PropertyEntries,
  opts: PropertyStringOptions & { alwaysQuote?: readonly string[] } = {},
): string {
  const ordered = [
    ...entries.filter(([k]) => k === opts.defaultKey),
    ...entries.filter(([k]) => k !== opts.defaultKey),
  ];
  return ordered
    .map(([k, v]) => {
      if (!KEY.test(k)) fail(opts, `invalid key '${k}'`);
      const needsQuote = opts.alwaysQuote?.includes(k) || v === '' || /[",\\\n=\s]/.test(v);
      const val = needsQuote ? quotePropertyValue(v) : v;
      return k === opts.defaultKey ? val : `${k}=${val}`;
    })
    .join(',');
}
