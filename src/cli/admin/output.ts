/** Human tables or JSON for scripts (`--output-format`), as proxmox-backup-manager prints. */
import { BadRequestError } from '../../errors.js';

export type OutputFormat = 'text' | 'json' | 'json-pretty';

export interface Column<T> {
  header: string;
  value: (row: T) => unknown;
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Render rows as an aligned text table with a header line. */
export function formatTable<T>(rows: readonly T[], columns: ReadonlyArray<Column<T>>): string {
  const cells = rows.map((r) => columns.map((c) => cell(c.value(r))));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => v.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

export function printJson(data: unknown, format: OutputFormat): void {
  process.stdout.write(JSON.stringify(data, null, format === 'json-pretty' ? 2 : undefined) + '\n');
}

/** Print `data` as a table in text mode, or as JSON for scripts. */
export function printRows<T>(
  rows: readonly T[],
  columns: ReadonlyArray<Column<T>>,
  format: OutputFormat = 'text',
): void {
  if (format === 'text') process.stdout.write(rows.length ? formatTable(rows, columns) : '(none)\n');
  else printJson(rows, format);
}

/** Print one record as `key: value` lines in text mode. */
export function printRecord(record: Record<string, unknown>, format: OutputFormat = 'text'): void {
  if (format !== 'text') return printJson(record, format);
  const width = Math.max(0, ...Object.keys(record).map((k) => k.length));
  for (const [k, v] of Object.entries(record)) {
    if (v !== undefined) process.stdout.write(`${k.padEnd(width)}  ${cell(v)}\n`);
  }
}

/** Parse durations like `90`, `90s`, `10m`, `1h` into milliseconds. */
export function parseDuration(text: string, name = 'timeout'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m)
    throw new BadRequestError(
      `invalid --${name} '${text}': expected a number with an optional unit s, m or h`,
    );
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!;
}
