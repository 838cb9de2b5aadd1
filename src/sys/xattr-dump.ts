/**
 * The text format of `getfattr --dump --encoding=hex` and `setfattr --restore` (the attr
 * package, tools/getfattr.c and tools/setfattr.c): pure codecs, no IO.
 *
 * ```
 * # file: PATH
 * NAME=0xHEX
 * ...
 * (empty line)
 * ```
 *
 * Paths and names are bytes, not text: getfattr writes a backslash and every byte of its quote
 * set (newline and carriage return; also '=' in names) as a backslash and three octal digits
 * (libmisc/quote.c), setfattr reads `\NNN` back (libmisc/unquote.c) and leaves any other byte as
 * it is.
 */
import { ERR_XATTR_DUMP_INVALID } from '../errors.js';

export interface XattrDumpEntry {
  /** The path as getfattr printed it (relative to its working directory here). */
  path: Buffer;
  attrs: { name: Buffer; value: Buffer }[];
}

const FILE_HEADER = Buffer.from('# file: ');
const NL = 0x0a;
const BACKSLASH = 0x5c;
const EQUALS = 0x3d;

/** libmisc/quote.c: a backslash and each byte of `special` as `\NNN`. */
export function quoteXattrField(b: Buffer, special: readonly number[]): Buffer {
  let n = 0;
  for (const c of b) if (c === BACKSLASH || special.includes(c)) n++;
  if (n === 0) return b;
  const out = Buffer.allocUnsafe(b.length + 3 * n);
  let o = 0;
  for (const c of b) {
    if (c === BACKSLASH || special.includes(c)) {
      out[o++] = BACKSLASH;
      out[o++] = 0x30 + (c >> 6);
      out[o++] = 0x30 + ((c >> 3) & 7);
      out[o++] = 0x30 + (c & 7);
    } else out[o++] = c;
  }
  return out;
}

/** libmisc/unquote.c: `\NNN` (three octal digits) is that byte; anything else stays. */
export function unquoteXattrField(b: Buffer): Buffer {
  if (!b.includes(BACKSLASH)) return b;
  const out = Buffer.allocUnsafe(b.length);
  let o = 0;
  for (let i = 0; i < b.length; i++) {
    if (b[i] === BACKSLASH && isOctal(b[i + 1]) && isOctal(b[i + 2]) && isOctal(b[i + 3])) {
      out[o++] = ((b[i + 1]! - 0x30) << 6) + ((b[i + 2]! - 0x30) << 3) + (b[i + 3]! - 0x30);
      i += 3;
    } else out[o++] = b[i]!;
  }
  return out.subarray(0, o);
}

function isOctal(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x37;
}

const PATH_SPECIAL = [0x0a, 0x0d];
const NAME_SPECIAL = [EQUALS, 0x0a, 0x0d];

/** Parse what `getfattr -d -e hex` printed (values must be hex: `0x...`). */
export function parseXattrDump(dump: Buffer): XattrDumpEntry[] {
  const out: XattrDumpEntry[] = [];
  let current: XattrDumpEntry | undefined;
  let lineNo = 0;
  for (let start = 0; start < dump.length;) {
    let end = dump.indexOf(NL, start);
    if (end < 0) end = dump.length;
    const line = dump.subarray(start, end);
    start = end + 1;
    lineNo++;
    if (line.length === 0) {
      current = undefined;
      continue;
    }
    if (current === undefined) {
      if (!line.subarray(0, FILE_HEADER.length).equals(FILE_HEADER))
        throw ERR_XATTR_DUMP_INVALID(lineNo, "expected '# file: PATH'");
      current = { path: unquoteXattrField(line.subarray(FILE_HEADER.length)), attrs: [] };
      out.push(current);
      continue;
    }
    const eq = line.indexOf(EQUALS);
    if (eq <= 0) throw ERR_XATTR_DUMP_INVALID(lineNo, "expected 'NAME=VALUE'");
    current.attrs.push({
      name: unquoteXattrField(line.subarray(0, eq)),
      value: decodeHexValue(line.subarray(eq + 1), lineNo),
    });
  }
  return out;
}

function decodeHexValue(v: Buffer, lineNo: number): Buffer {
  const text = v.toString('latin1');
  if (!/^0x([0-9a-fA-F]{2})*$/.test(text))
    throw ERR_XATTR_DUMP_INVALID(lineNo, 'the value is not 0x followed by hex digits');
  return Buffer.from(text.slice(2), 'hex');
}

/** The `setfattr --restore` input that sets `entries`' attributes (values hex-encoded). */
export function formatXattrDump(entries: readonly XattrDumpEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.attrs.length === 0) continue;
    parts.push(FILE_HEADER, quoteXattrField(e.path, PATH_SPECIAL), Buffer.from('\n'));
    for (const a of e.attrs)
      parts.push(quoteXattrField(a.name, NAME_SPECIAL), Buffer.from(`=0x${a.value.toString('hex')}\n`));
    parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}
