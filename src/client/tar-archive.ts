/**
 * File trees as tar streams (POSIX ustar, pax headers for long names), the archive format of
 * Stowage's `NAME.tar.didx` archives. PBS archives file trees as pxar; we use tar so any tool can
 * read a restored stream, at the cost of PBS's catalog and pxar's extended metadata (xattrs,
 * ACLs, fcaps are not kept).
 *
 * Kept: regular files, directories (empty ones too), symlinks, hard links (type-1 entries naming
 * the first path of the inode), FIFOs, character and block devices, permission bits (incl.
 * setuid, setgid, sticky), mtimes (whole seconds by default, any range: see `mtimeFields`),
 * uid/gid (restored only when running as root). Skipped with a warning on every run: sockets.
 * Restoring writes all-zero blocks of files as holes, so sparse files come back sparse.
 *
 * Entries are written in a deterministic order (names sorted by bytes) so an unchanged tree gives
 * an identical stream, and therefore identical chunks.
 */
import { closeSync, constants as fsConstants, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import type { Stats } from 'node:fs';
import type { MemberStats } from '../pxar/create.js';
import type { RecordedStats } from './walk-stats.js';
import { Readable } from 'node:stream';
import { link, mkdir, open, readlink, symlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, join, posix } from 'node:path';
import type * as tar from 'tar-stream';
import {
  beginRestore,
  emptyExtractResult,
  makeSpecialNode,
  setFdMetadata,
  setPathMetadata,
  setSymlinkMetadata,
  writeFileEntryOut,
  type ExtractResult,
  type RestoredMetadata,
  restoreTime,
  type RestoreTime,
  type SpecialNode,
} from '../sys/restore-files.js';
import { BadRequestError, CorruptDataError, NotFoundError } from '../errors.js';

/** An `--exclude` test: `(path relative to the root, with '/' separators, isDirectory) → excluded`. */
export type ExcludeMatcher = ((relPath: string, isDir: boolean) => boolean) & {
  /** The patterns it was compiled from (`compileExcludes`), for another thread to compile again. */
  patterns?: readonly string[];
};

function globToRegExp(glob: string): string {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**/` matches any number of leading directories, `**` alone anything.
        if (glob[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let cls = glob.slice(i + 1, end);
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += `[${cls.replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return re;
}

/**
 * Compile `--exclude` patterns with gitignore-like rules, as PBS's client applies them: a pattern
 * without a `/` matches a name at any depth; one with a `/` is anchored at the archive root (a
 * leading `/` is optional); a trailing `/` matches directories only; `*` and `?` stay within one
 * name, `**` crosses directories; a leading `!` re-includes what an earlier pattern excluded.
 */
export function compileExcludes(patterns: readonly string[]): ExcludeMatcher {
  const rules = patterns
    .filter((p) => p.trim() !== '')
    .map((raw) => {
      let p = raw;
      const negate = p.startsWith('!');
      if (negate) p = p.slice(1);
      const dirOnly = p.endsWith('/');
      if (dirOnly) p = p.replace(/\/+$/, '');
      const anchored = p.includes('/');
      p = p.replace(/^\/+/, '');
      const body = globToRegExp(p);
      const re = new RegExp(anchored ? `^${body}$` : `(?:^|/)${body}$`);
      return { negate, dirOnly, re };
    });
  const matcher: ExcludeMatcher = (relPath, isDir) => {
    let excluded = false;
    for (const r of rules) {
      if (r.dirOnly && !isDir) continue;
      if (r.re.test(relPath)) excluded = !r.negate;
    }
    return excluded;
  };
  matcher.patterns = patterns;
  return matcher;
}

export interface TarSourceOptions {
  exclude?: readonly string[];
  /** Called for entries that cannot be archived (sockets, devices, unreadable files). */
  onWarning?: (message: string) => void;
  /**
   * Called once the whole tree was archived (or measured), with the fingerprint of the metadata
   * the walk saw (see `TreeFingerprint`).
   */
  onFingerprint?: (fp: TreeFingerprint) => void;
  /** Clock for the racy-entry check (tests move it); defaults to Date.now. */
  clock?: () => number;
  /**
   * Store sub-second mtimes (nanoseconds, in a pax `mtime` record for each entry that has them).
   * Off by default: see `mtimeFields`.
   */
  subsecondMtimes?: boolean;
}

export interface TreeSize {
  files: number;
  dirs: number;
  bytes: number;
}

/**
 * A digest of every entry's metadata as one walk saw it: name, type, mode, owner, size, mtime,
 * ctime, inode and device (what restic and borg key their file caches on). Entries are walked in
 * a fixed order and the tar stream is a pure function of this metadata and the files' contents,
 * so two walks with equal fingerprints give byte-identical tar streams as long as no file's
 * content changed without its ctime changing, which the kernel does not allow (writing a file
 * sets its ctime to now, and so does restoring its mtime with utimes).
 *
 * `usable` is false when the fingerprint cannot vouch for the content:
 * - an entry's ctime is less than `RACY_MARGIN_MS` before the walk began ("racy", as git calls
 *   it): a second write within the same timestamp tick, after the walk read the file, would
 *   leave size, mtime and ctime unchanged;
 * - the walk warned (an unreadable directory, a file that shrank while read): what was archived
 *   is not what the metadata describes.
 */
export interface TreeFingerprint {
  digest: string;
  entries: number;
  usable: boolean;
  /** The walk or the read warned: nothing it archived may be trusted by a later backup. */
  warned?: boolean;
}

/** How old every entry's ctime must be, relative to the walk start, for a usable fingerprint. */
export const RACY_MARGIN_MS = 2000;
/**
 * Bumped whenever the tar stream of a given tree changes (format, order, header fields).
 * 2: FIFOs and devices archived, hard links as link entries, mtimes outside 1970..2038 encoded
 * right (layout 1 wrapped them); ordinary entries are byte-identical to layout 1.
 */
const TAR_LAYOUT_VERSION = 2;
/** Seconds the layout-1 encoder got right (it truncated mtimes to a signed 32-bit integer). */
const LAYOUT1_MTIME_LIMIT = 2 ** 31;
/** Hex digits of an entry key (128 bits). */
export const ENTRY_KEY_HEX = 32;

class FingerprintBuilder {
  private readonly hash = createHash('sha256').update(`stowage tar layout ${TAR_LAYOUT_VERSION}\n`);
  private readonly racyAfter: number;
  private entries = 0;
  private usable = true;
  private warned = false;
  private digest: string | undefined;

  constructor(clock: () => number) {
    this.racyAfter = clock() - RACY_MARGIN_MS;
  }

  /**
   * Add an entry and return its own key (a digest of the same metadata, what the tree cache
   * reuses a single entry by), or '' when its ctime is racy and it must not be reused.
   */
  addKeyed(e: WalkEntry, hardLinkTo?: string): string {
    const line = this.add(e, hardLinkTo);
    return line === '' ? '' : createHash('sha256').update(line).digest('hex').slice(0, ENTRY_KEY_HEX);
  }

  /**
   * Add an entry (a walk that needs no entry keys: a digest per entry was a tenth of the metadata
   * walk). Returns the line it added, or '' when its ctime is racy.
   */
  add(e: WalkEntry, hardLinkTo?: string): string {
    const st = e.st;
    const type = st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isSymbolicLink() ? 'l' : 'o';
    const fields: unknown[] = [
      e.rel,
      type,
      st.mode,
      st.uid,
      st.gid,
      st.size,
      st.mtimeMs,
      st.ctimeMs,
      st.ino,
      st.dev,
    ];
    // Entries whose bytes differ from layout 1 get keys of their own, so the per-entry reuse
    // (tree-reuse.ts) never takes a layout-1 range for them; every other key stays as it was.
    // A hard link's bytes also depend on the path it names, which is not its own metadata.
    if (hardLinkTo !== undefined) fields.push('hardlink', hardLinkTo);
    else if (st.mtimeMs < 0 || st.mtimeMs >= LAYOUT1_MTIME_LIMIT * 1000) fields.push('mtime-v2');
    if (e.mtimeNs !== undefined) fields.push(String(e.mtimeNs));
    // JSON: names may hold any byte but NUL, including newlines.
    const line = JSON.stringify(fields) + '\n';
    this.hash.update(line);
    this.entries++;
    if (st.ctimeMs >= this.racyAfter) {
      this.usable = false;
      return '';
    }
    return line;
  }

  spoil(): void {
    this.usable = false;
    this.warned = true;
  }

  /** The digest is final after the first call; `usable` and `warned` follow later warnings. */
  result(): TreeFingerprint {
    this.digest ??= this.hash.digest('hex');
    return { digest: this.digest, entries: this.entries, usable: this.usable, warned: this.warned };
  }
}

/**
 * The order of two names' UTF-8 bytes, which is their code points' order, compared on the
 * strings (a Buffer of each name per comparison was a tenth of the metadata walk): UTF-16 code
 * units order as code points except surrogates (U+D800-U+DFFF), which stand for code points past
 * U+FFFF and so come after U+E000-U+FFFF.
 */
export function byteOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x += x < 0xe000 ? 0x2000 : -0x800;
      y += y < 0xe000 ? 0x2000 : -0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** What the walk reads of an entry's lstat. */
type EntryStats = Pick<
  Stats,
  | 'isDirectory'
  | 'isFile'
  | 'isSymbolicLink'
  | 'isFIFO'
  | 'isCharacterDevice'
  | 'isBlockDevice'
  | 'mode'
  | 'uid'
  | 'gid'
  | 'size'
  | 'mtimeMs'
  | 'ctimeMs'
  | 'ino'
  | 'dev'
  | 'nlink'
  | 'rdev'
>;

interface WalkEntry {
  abs: string;
  rel: string;
  st: EntryStats;
  /** The mtime in nanoseconds since the epoch, when the walk was asked for it. */
  mtimeNs?: bigint;
  /** The bigint lstat itself, when the walk was asked for nanoseconds. */
  bigint?: MemberStats;
}

/**
 * lstat, with the mtime to the nanosecond when `ns` (Node's number Stats round it to a double of
 * milliseconds). One bigint lstat then, converted: alone it costs what a plain one does; on
 * 20 000 small files this mode's plan took about 1.3 times the default's (the pax header per
 * entry included), where a second lstat per entry made it about 1.9 times.
 */
function lstatEntry(abs: string, ns: boolean): Pick<WalkEntry, 'st' | 'mtimeNs' | 'bigint'> {
  if (!ns) return { st: lstatSync(abs) };
  return entryOfBigIntStats(lstatSync(abs, { bigint: true }));
}

/** A bigint lstat as the walk's entry with nanosecond mtime (what `lstatEntry` gives with `ns`). */
function entryOfBigIntStats(b: MemberStats): Pick<WalkEntry, 'st' | 'mtimeNs' | 'bigint'> {
  const st: EntryStats = {
    isDirectory: () => b.isDirectory(),
    isFile: () => b.isFile(),
    isSymbolicLink: () => b.isSymbolicLink(),
    isFIFO: () => b.isFIFO(),
    isCharacterDevice: () => b.isCharacterDevice(),
    isBlockDevice: () => b.isBlockDevice(),
    mode: Number(b.mode),
    uid: Number(b.uid),
    gid: Number(b.gid),
    size: Number(b.size),
    mtimeMs: Number(b.mtimeNs) / 1e6,
    ctimeMs: Number(b.ctimeNs) / 1e6,
    ino: Number(b.ino),
    dev: Number(b.dev),
    nlink: Number(b.nlink),
    rdev: Number(b.rdev),
  };
  return { st, mtimeNs: b.mtimeNs, bigint: b };
}

/**
 * The walk's metadata calls are synchronous: a few microseconds each, where a thread-pool round
 * trip per entry (async lstat) left the main thread idle half the time (20 000 small files: the
 * walk took 2 s, half of it idle, before the archive started; synchronous, about 1 s less).
 */
function* walk(
  root: string,
  exclude: ExcludeMatcher,
  warn: (m: string) => void,
  ns = false,
): Generator<WalkEntry> {
  let rootSt;
  try {
    rootSt = lstatEntry(root, ns);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new NotFoundError(`backup source '${root}' does not exist`);
    throw err;
  }
  if (!rootSt.st.isDirectory()) throw new BadRequestError(`backup source '${root}' is not a directory`);
  yield { abs: root, rel: '.', ...rootSt };
  // Depth-first, pre-order, children sorted: a directory's entry always precedes its contents.
  function* visit(dir: string, relDir: string): Generator<WalkEntry> {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      warn(`unable to read directory '${dir}': ${(err as Error).message}`);
      return;
    }
    names.sort(byteOrder);
    for (const name of names) {
      const abs = join(dir, name);
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      let stat;
      try {
        stat = lstatEntry(abs, ns);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // vanished since readdir
        warn(`unable to stat '${abs}': ${(err as Error).message}`);
        continue;
      }
      if (exclude(rel, stat.st.isDirectory())) continue;
      yield { abs, rel, ...stat };
      if (stat.st.isDirectory()) yield* visit(abs, rel);
    }
  }
  yield* visit(root, '');
}

/**
 * Bytes and entries a `tarDirectory` of `root` will cover (for progress bars and ETA), and the
 * walk's fingerprint (`onFingerprint`; with nanosecond mtimes under `subsecondMtimes`, what a
 * pxar archive of the tree depends on). With `subsecondMtimes`, `record` keeps every entry's
 * lstat for a pxar walk of the same tree (walk-stats.ts).
 */
export async function measureTree(
  root: string,
  opts: TarSourceOptions & {
    record?: RecordedStats;
    /** Called once, at the first entry whose ctime is after `ms` (it changed since then). */
    changedSince?: { ms: number; onChanged: () => void };
  } = {},
): Promise<TreeSize> {
  const exclude = compileExcludes(opts.exclude ?? []);
  const size: TreeSize = { files: 0, dirs: 0, bytes: 0 };
  const fp = new FingerprintBuilder(opts.clock ?? Date.now);
  let changedSince = opts.changedSince;
  for (const e of walk(root, exclude, () => fp.spoil(), opts.subsecondMtimes === true)) {
    fp.add(e);
    if (changedSince && e.st.ctimeMs > changedSince.ms) {
      changedSince.onChanged();
      changedSince = undefined;
    }
    if (opts.record && e.bigint && e.rel !== '.') opts.record.add(e.rel, e.bigint);
    if (e.st.isDirectory()) size.dirs++;
    else if (e.st.isFile()) {
      size.files++;
      size.bytes += e.st.size;
    }
  }
  opts.onFingerprint?.(fp.result());
  return size;
}

/**
 * The fingerprint `measureTree(root, { subsecondMtimes: true })` gives, built from the entries
 * another walk of the tree sees instead (the pxar archive's own walk: a first backup, which has
 * nothing in the tree cache to compare a fingerprint with, so walks the tree once instead of
 * twice). `add` each entry in `walk`'s order: the root as '', then depth first, each directory
 * before its members, names sorted bytewise; the same tree then has the same digest. A walk that
 * warned, or left something out that `walk` would see, must `spoil` it.
 */
export class WalkFingerprint {
  private readonly fp: FingerprintBuilder;

  constructor(clock: () => number = Date.now) {
    this.fp = new FingerprintBuilder(clock);
  }

  /** An entry by its path relative to the root ('' for the root) and its bigint lstat. */
  add(rel: string, st: MemberStats): void {
    this.fp.add({ abs: '', rel: rel === '' ? '.' : rel, ...entryOfBigIntStats(st) });
  }

  spoil(): void {
    this.fp.spoil();
  }

  result(): TreeFingerprint {
    return this.fp.result();
  }
}

/*
 * The tar encoding, written here rather than through tar-stream's pack: the stream is produced
 * straight into large blocks (file contents are read into them, no per-entry stream objects), and
 * every entry's length is known from its metadata before a byte of it is read, which is what lets
 * the tree cache reuse unchanged entries without reading them. The bytes are exactly those
 * tar-stream 3's `pack` writes for the same entries (ustar headers, its pax fallback, its
 * defaults and padding); test/client/tar-archive.test.ts compares both on generated trees.
 */

const TAR_BLOCK = 512;
const ZEROS = Buffer.alloc(1024);
const OCT_ZEROS = '0000000000000000000';
const OCT_SEVENS = '7777777777777777777';

function encodeOct(val: number, n: number): string {
  const s = val.toString(8);
  if (s.length > n) return OCT_SEVENS.slice(0, n) + ' ';
  return OCT_ZEROS.slice(0, n - s.length) + s + ' ';
}

type TarType =
  'file' | 'link' | 'symlink' | 'character-device' | 'block-device' | 'directory' | 'fifo' | 'pax-header';
const TYPEFLAG: Record<TarType, number> = {
  file: 0,
  link: 1,
  symlink: 2,
  'character-device': 3,
  'block-device': 4,
  directory: 5,
  fifo: 6,
  'pax-header': 72,
};

interface TarHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Whole seconds since the epoch (floor), any sign and size. */
  mtime: number;
  /** Nanoseconds past `mtime` (0..999 999 999), stored only when non-zero. */
  mtimeNanos?: number;
  type: TarType;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

/** Seconds the ustar mtime field holds in octal (11 digits): 1970 up to the year 2242. */
const OCTAL_MTIME_LIMIT = 8 ** 11;

/**
 * A 12-byte numeric field in GNU base-256 (big-endian two's complement, first byte 0x80 for a
 * positive value, 0xff for a negative one), for values the octal digits cannot hold.
 */
function writeBase256(buf: Buffer, offset: number, value: number): void {
  let num = value;
  for (let i = 11; i > 0; i--) {
    buf[offset + i] = ((num % 256) + 256) % 256;
    num = Math.floor(num / 256);
  }
  buf[offset] = value < 0 ? 0xff : 0x80;
}

/**
 * The mtime as tar carries it. Whole seconds in 1970..2242 go in the ustar field in octal, as
 * tar-stream and every tar write them. Outside that range (before 1970, after 2242) the field
 * holds GNU base-256 and a pax `mtime` record holds the exact value, which is what POSIX readers
 * (GNU tar, bsdtar, tar-stream's users) take. Sub-second parts go in the pax record too, but only
 * with `subsecondMtimes`: nearly every file has one, and a pax header per entry adds 1 KiB per
 * file (doubling the stream of a tree of small files) and changes the bytes of every entry, so
 * every chunk of every existing backup would stop matching. GNU tar's posix format does emit it
 * for every file; Stowage keeps whole seconds (as PBS's pxar before 2.0 and ustar tar do) unless
 * asked, and says so in docs/pbs-compatibility.md.
 */
function mtimeFields(h: TarHeader): { inOctal: boolean; paxValue?: string } {
  const inOctal = h.mtime >= 0 && h.mtime < OCTAL_MTIME_LIMIT;
  const nanos = h.mtimeNanos ?? 0;
  if (inOctal && nanos === 0) return { inOctal };
  return { inOctal, paxValue: paxTime(BigInt(h.mtime) * 1_000_000_000n + BigInt(nanos)) };
}

/** A pax time value: decimal seconds with the fraction, trailing zeros dropped ("-1.5", "7"). */
function paxTime(totalNs: bigint): string {
  const negative = totalNs < 0n;
  const abs = negative ? -totalNs : totalNs;
  const fraction = (abs % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${abs / 1_000_000_000n}${fraction ? '.' + fraction : ''}`;
}

/** One ustar header block, or undefined where tar-stream falls back to a pax header. */
function ustarHeader(h: TarHeader): Buffer | undefined {
  let name = h.name;
  let prefix = '';
  if (Buffer.byteLength(name) !== name.length) return undefined;
  while (Buffer.byteLength(name) > 100) {
    const i = name.indexOf('/');
    if (i === -1) return undefined;
    prefix += prefix ? '/' + name.slice(0, i) : name.slice(0, i);
    name = name.slice(i + 1);
  }
  if (Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) return undefined;
  if (h.linkname && Buffer.byteLength(h.linkname) > 100) return undefined;
  const buf = Buffer.alloc(TAR_BLOCK);
  buf.write(name);
  buf.write(encodeOct(h.mode & 0o7777, 6), 100);
  buf.write(encodeOct(h.uid, 6), 108);
  buf.write(encodeOct(h.gid, 6), 116);
  if (h.size.toString(8).length > 11) {
    buf[124] = 0x80;
    let num = h.size;
    for (let i = 11; i > 0; i--) {
      buf[124 + i] = num & 0xff;
      num = Math.floor(num / 0x100);
    }
  } else buf.write(encodeOct(h.size, 11), 124);
  if (mtimeFields(h).inOctal) buf.write(encodeOct(h.mtime, 11), 136);
  else writeBase256(buf, 136, h.mtime);
  buf[156] = 0x30 + TYPEFLAG[h.type];
  if (h.linkname) buf.write(h.linkname, 157);
  buf.write('ustar\u000000', 257, 'latin1');
  buf.write(encodeOct(h.devmajor ?? 0, 6), 329);
  buf.write(encodeOct(h.devminor ?? 0, 6), 337);
  if (prefix) buf.write(prefix, 345);
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += buf[i]!;
  for (let i = 156; i < TAR_BLOCK; i++) sum += buf[i]!;
  buf.write(encodeOct(sum, 6), 148);
  return buf;
}

function paxRecord(str: string): string {
  const len = Buffer.byteLength(str);
  let digits = Math.floor(Math.log(len) / Math.log(10)) + 1;
  if (len + digits >= Math.pow(10, digits)) digits++;
  return `${len + digits}${str}`;
}

/** The header bytes of an entry (ustar, or a pax extended header and its ustar header). */
function encodeHeader(h: TarHeader): Buffer {
  const plain = ustarHeader(h);
  const { paxValue: paxMtime } = mtimeFields(h);
  if (plain && paxMtime === undefined) return plain;
  let paxText = '';
  if (!plain && h.name) paxText += paxRecord(' path=' + h.name + '\n');
  if (!plain && h.linkname) paxText += paxRecord(' linkpath=' + h.linkname + '\n');
  if (paxMtime !== undefined) paxText += paxRecord(' mtime=' + paxMtime + '\n');
  const pax = Buffer.from(paxText);
  const outer: TarHeader = {
    name: 'PaxHeader',
    mode: h.mode,
    uid: h.uid,
    gid: h.gid,
    size: pax.length,
    mtime: h.mtime,
    type: 'pax-header',
    linkname: h.linkname ? 'PaxHeader' : undefined,
  };
  const parts = [ustarHeader(outer)!, pax, ZEROS.subarray(0, padding(pax.length))];
  parts.push(
    plain ??
      ustarHeader({ ...outer, size: h.size, type: h.type, devmajor: h.devmajor, devminor: h.devminor })!,
  );
  return Buffer.concat(parts);
}

/** Linux's major and minor of a device number (glibc `gnu_dev_major`, `gnu_dev_minor`). */
function deviceNumbers(rdev: number): { devmajor: number; devminor: number } {
  const d = BigInt(rdev);
  return {
    devmajor: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n)),
    devminor: Number((d & 0xffn) | ((d >> 12n) & 0xffffff00n)),
  };
}

/** Nanoseconds since the epoch as whole seconds (floor, also before 1970) and the rest. */
function splitNanos(ns: bigint): { mtime: number; mtimeNanos: number } {
  const nanos = ((ns % 1_000_000_000n) + 1_000_000_000n) % 1_000_000_000n;
  return { mtime: Number((ns - nanos) / 1_000_000_000n), mtimeNanos: Number(nanos) };
}

function padding(size: number): number {
  const over = size & 511;
  return over === 0 ? 0 : TAR_BLOCK - over;
}

/** One entry of a planned tar stream. */
export interface PlannedEntry {
  /** Absolute path (read for files). */
  abs: string;
  /** Header bytes (with a pax header where needed). */
  header: Buffer;
  /** File content bytes (0 for directories and symlinks). */
  dataSize: number;
  /** Offset of the header in the stream. */
  start: number;
  /** Total bytes: header, content, padding. */
  length: number;
  /** Metadata key (see `FingerprintBuilder.add`), '' when the entry must not be reused. */
  key: string;
}

/**
 * A tree's tar stream as a list of entries whose lengths are known from the walk alone; the
 * bytes of any range are produced on demand by `treeBytes`. The last pseudo-entry is the
 * end-of-archive marker (1024 zero bytes, key `END_OF_ARCHIVE_KEY`).
 */
export interface TreePlan {
  root: string;
  entries: PlannedEntry[];
  /** Stream size in bytes. */
  size: number;
  /** Bytes of regular files (for progress). */
  fileBytes: number;
  files: number;
  dirs: number;
  /** The walk's fingerprint; `usable` also turns false when reading finds a file shrunk. */
  fingerprint(): TreeFingerprint;
  /** Report a problem found while reading (spoils the fingerprint). */
  warn(message: string): void;
}

/** The key of the end-of-archive pseudo-entry (the same in every stream). */
export const END_OF_ARCHIVE_KEY = createHash('sha256')
  .update('stowage end of archive')
  .digest('hex')
  .slice(0, ENTRY_KEY_HEX);

/** Walk `root` and plan its tar stream (nothing is read but directories and symlinks). */
export async function planTree(root: string, opts: TarSourceOptions = {}): Promise<TreePlan> {
  const exclude = compileExcludes(opts.exclude ?? []);
  const fp = new FingerprintBuilder(opts.clock ?? Date.now);
  const warn = (m: string) => {
    fp.spoil();
    opts.onWarning?.(m);
  };
  const entries: PlannedEntry[] = [];
  let offset = 0;
  let fileBytes = 0;
  let files = 0;
  let dirs = 0;
  const add = (abs: string, header: TarHeader, key: string) => {
    const enc = encodeHeader(header);
    const dataSize = header.type === 'file' ? header.size : 0;
    const length = enc.length + dataSize + padding(dataSize);
    entries.push({ abs, header: enc, dataSize, start: offset, length, key });
    offset += length;
  };
  /** `dev:ino` of each regular file with more than one link → the path it was archived under. */
  const firstLinks = new Map<string, string>();
  for (const e of walk(root, exclude, warn, opts.subsecondMtimes)) {
    const st = e.st;
    const base = {
      name: e.rel === '.' ? './' : st.isDirectory() ? `${e.rel}/` : e.rel,
      uid: st.uid,
      gid: st.gid,
      ...(e.mtimeNs === undefined ? { mtime: Math.floor(st.mtimeMs / 1000) } : splitNanos(e.mtimeNs)),
    };
    const perm = st.mode & 0o7777;
    const inode = st.isFile() && st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
    const linkTarget = inode === undefined ? undefined : firstLinks.get(inode);
    const key = fp.addKeyed(e, linkTarget);
    if (st.isDirectory()) {
      add(e.abs, { ...base, mode: perm || 0o755, size: 0, type: 'directory' }, key);
      dirs++;
    } else if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = await readlink(e.abs);
      } catch (err) {
        warn(`unable to read symlink '${e.abs}': ${(err as Error).message}`);
        continue;
      }
      add(e.abs, { ...base, mode: perm || 0o644, size: 0, type: 'symlink', linkname: target }, key);
    } else if (linkTarget !== undefined) {
      add(e.abs, { ...base, mode: perm || 0o644, size: 0, type: 'link', linkname: linkTarget }, key);
    } else if (st.isFile()) {
      if (inode !== undefined) firstLinks.set(inode, e.rel);
      add(e.abs, { ...base, mode: perm || 0o644, size: st.size, type: 'file' }, key);
      fileBytes += st.size;
      files++;
    } else if (st.isFIFO()) {
      add(e.abs, { ...base, mode: perm || 0o644, size: 0, type: 'fifo' }, key);
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const type = st.isCharacterDevice() ? 'character-device' : 'block-device';
      add(e.abs, { ...base, mode: perm || 0o644, size: 0, type, ...deviceNumbers(st.rdev) }, key);
    } else {
      // A socket is only meaningful to the process listening on it (GNU tar skips them too).
      // Deterministic from the metadata, so it does not spoil the fingerprint; said on every run.
      opts.onWarning?.(`skipping '${e.rel}': sockets are not archived`);
    }
  }
  entries.push({
    abs: '',
    header: ZEROS,
    dataSize: 0,
    start: offset,
    length: ZEROS.length,
    key: END_OF_ARCHIVE_KEY,
  });
  offset += ZEROS.length;
  return {
    root,
    entries,
    size: offset,
    fileBytes,
    files,
    dirs,
    fingerprint: () => fp.result(),
    warn,
  };
}

/** Index of the entry holding stream offset `pos` (binary search). */
export function entryAt(plan: TreePlan, pos: number): number {
  let lo = 0;
  let hi = plan.entries.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (plan.entries[mid]!.start <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Block size of `treeBytes`: the stream comes in pieces of this size (smaller at `to`). */
const TREE_BLOCK = 1024 * 1024;
/** Files up to this size are read with synchronous calls: no thread-pool round trips. */
const SYNC_READ_MAX = 64 * 1024;

/**
 * The bytes `[from, to)` of a planned tar stream, in blocks of about 1 MiB: headers are copied
 * and file contents read straight into the block. A file that shrank since the walk is padded with
 * zeros and reported (`plan.warn`); one that grew is cut at its walked size.
 *
 * With `reuseBlock`, every block is the same memory, overwritten when the next one is asked for:
 * for a consumer that copies each block before it continues (the chunker), it saves faulting in
 * a fresh megabyte per block.
 */
export async function* treeBytes(
  plan: TreePlan,
  from = 0,
  to = plan.size,
  opts: { reuseBlock?: boolean } = {},
): AsyncGenerator<Buffer> {
  let block = Buffer.allocUnsafeSlow(Math.min(TREE_BLOCK, to - from));
  let fill = 0;
  let pos = from;
  let i = entryAt(plan, from);
  let fd = -1;
  let fh: import('node:fs/promises').FileHandle | undefined;
  const closeFile = async () => {
    if (fd >= 0) closeSync(fd);
    fd = -1;
    await fh?.close();
    fh = undefined;
  };
  try {
    while (pos < to) {
      const e = plan.entries[i]!;
      let within = pos - e.start;
      if (within >= e.length) {
        i++;
        continue;
      }
      const take = (n: number) => {
        fill += n;
        pos += n;
        within += n;
      };
      const room = () => Math.min(block.length - fill, to - pos);
      if (within < e.header.length) {
        const n = Math.min(e.header.length - within, room());
        e.header.copy(block, fill, within, within + n);
        take(n);
      } else if (within < e.header.length + e.dataSize) {
        const at = within - e.header.length;
        const n = Math.min(e.dataSize - at, room());
        let got: number;
        if (e.dataSize <= SYNC_READ_MAX) {
          if (fd < 0) fd = openFileSync(e.abs);
          got = readFull(fd, block, fill, n, at);
          closeSync(fd);
          fd = -1;
        } else {
          fh ??= await open(e.abs, fsConstants.O_RDONLY | fsConstants.O_NOATIME).catch(() =>
            open(e.abs, 'r'),
          );
          got = 0;
          while (got < n) {
            const { bytesRead } = await fh.read(block, fill + got, n - got, at + got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
          if (at + n >= e.dataSize) await closeFile();
        }
        if (got < n) {
          plan.warn(`file '${e.abs}' shrank while reading; padding with zeros`);
          block.fill(0, fill + got, fill + n);
          if (fh) await closeFile();
        }
        take(n);
      } else {
        const n = Math.min(e.length - within, room());
        block.fill(0, fill, fill + n);
        take(n);
      }
      if (fill === block.length || pos === to) {
        yield fill === block.length ? block : block.subarray(0, fill);
        if (pos < to && !opts.reuseBlock) block = Buffer.allocUnsafeSlow(Math.min(TREE_BLOCK, to - pos));
        fill = 0;
      }
    }
  } finally {
    await closeFile();
  }
}

function openFileSync(path: string): number {
  try {
    return openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOATIME);
  } catch {
    return openSync(path, 'r');
  }
}

function readFull(fd: number, buf: Buffer, off: number, n: number, position: number): number {
  let got = 0;
  while (got < n) {
    const r = readSync(fd, buf, off + got, n - got, position + got);
    if (r === 0) break;
    got += r;
  }
  return got;
}

/** The tar stream of a planned tree, as a Readable (for `pipe`) that is also async-iterable. */
export type TarStream = Readable;

/**
 * A tar stream of the tree under `root` (entries relative to it, the root itself as `./`).
 * Missing or non-directory roots are refused before the first byte.
 */
export function tarDirectory(root: string, opts: TarSourceOptions = {}): TarStream {
  async function* bytes(): AsyncGenerator<Buffer> {
    const plan = await planTree(root, opts);
    yield* treeBytes(plan);
    opts.onFingerprint?.(plan.fingerprint());
  }
  return Readable.from(bytes(), { objectMode: false, highWaterMark: 4 * TREE_BLOCK });
}

export type { ExtractResult } from '../sys/restore-files.js';

export interface ExtractOptions {
  /** Called for each entry that could not be restored as archived (e.g. a device, not as root). */
  onWarning?: (message: string) => void;
}

/**
 * An entry's mtime for utimes: the pax `mtime` record when there is one (exact, any range), else
 * the header's seconds; as precise as `restoreTime` can set it (its digits to the microsecond
 * from 1970 on, to the millisecond before).
 */
function entryMtime(h: tar.Header): RestoreTime {
  const pax = (h as { pax?: Record<string, string> }).pax?.mtime;
  const m = pax === undefined ? null : /^(-?)(\d+)(?:\.(\d+))?$/.exec(pax);
  if (m) {
    // from the digits, not a double: 1600000000.123456 is not exact as a number
    const whole = Number(m[2]);
    const nanos = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
    if (m[1] === '') return restoreTime(whole, nanos);
    return nanos === 0 ? restoreTime(-whole) : restoreTime(-whole - 1, 1e9 - nanos);
  }
  return restoreTime(h.mtime ? Math.floor(h.mtime.getTime() / 1000) : Math.floor(Date.now() / 1000));
}

/** Reject names that would land outside the target: absolute, `..`, or empty. */
function safeRelative(name: string): string {
  const norm = posix.normalize(name.replace(/\/+$/, ''));
  if (norm === '.' || norm === '') return '.';
  if (posix.isAbsolute(norm) || norm === '..' || norm.startsWith('../')) {
    throw new CorruptDataError(`archive entry '${name}' points outside the restore target`);
  }
  return norm;
}

/**
 * Extract a tar stream into `target` (created if missing; if it exists it must be an empty
 * directory), restoring modes, mtimes (to the microsecond or so: Node's utimes takes seconds as a
 * double), symlinks, hard links, FIFOs and (as root) devices; ownership only as root. An entry
 * below a symlink the archive created is refused, so a crafted archive cannot write outside
 * `target`; a hard link may only name a path inside it.
 */
export async function extractTar(
  source: AsyncIterable<Uint8Array>,
  target: string,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const { asRoot, warn } = await beginRestore(target, opts.onWarning);
  const result = emptyExtractResult();
  const dirs: Array<{ path: string; meta: RestoredMetadata }> = [];
  const symlinks = new Set<string>();
  /** Directories known to exist: most files need no mkdir of their parent. */
  const made = new Set<string>([target]);
  const makeParent = async (path: string) => {
    const parent = dirname(path);
    if (!made.has(parent)) {
      await mkdir(parent, { recursive: true });
      made.add(parent);
    }
  };
  const belowSymlink = (name: string, rel: string) => {
    for (let p = posix.dirname(rel); p !== '.'; p = posix.dirname(p)) {
      if (symlinks.has(p)) throw new CorruptDataError(`archive entry '${name}' is below the symlink '${p}'`);
    }
  };
  // loaded here: a backup (this module's walks) never needs the tar parser
  const { extract: tarExtract } = await import('tar-stream');
  const extract = tarExtract();
  const feeding = (async () => {
    for await (const chunk of source) {
      if (!extract.write(chunk)) await new Promise<void>((r) => extract.once('drain', () => r()));
    }
    (extract as unknown as { end(): void }).end();
  })();
  feeding.catch((err: unknown) => extract.destroy(err as Error));
  for await (const entry of extract) {
    const h = entry.header;
    const rel = safeRelative(h.name);
    belowSymlink(h.name, rel);
    const path = rel === '.' ? target : join(target, ...rel.split('/'));
    const mode = (h.mode ?? 0o644) & 0o7777;
    const mtime = entryMtime(h);
    const meta: RestoredMetadata = { mode, uid: h.uid ?? 0, gid: h.gid ?? 0, mtime };
    const makeNode = async (what: string, node: SpecialNode) => {
      await makeParent(path);
      if (await makeSpecialNode(path, node, meta, asRoot, warn, `${what} '${rel}'`)) result.special++;
    };
    switch (h.type) {
      case 'directory':
        await mkdir(path, { recursive: true });
        made.add(path);
        dirs.push({ path, meta });
        result.dirs++;
        entry.resume();
        break;
      case 'file':
      case 'contiguous-file': {
        await makeParent(path);
        await writeFileEntryOut(entry as AsyncIterable<Buffer>, path, h.size ?? 0, (fd) =>
          setFdMetadata(fd, meta, asRoot),
        );
        result.files++;
        result.bytes += h.size ?? 0;
        break;
      }
      case 'symlink':
        await symlink(h.linkname ?? '', path);
        symlinks.add(rel);
        await setSymlinkMetadata(path, meta, asRoot);
        result.symlinks++;
        entry.resume();
        break;
      case 'link': {
        entry.resume();
        const linkRel = safeRelative(h.linkname ?? '');
        belowSymlink(h.linkname ?? '', linkRel);
        await makeParent(path);
        try {
          // link(2) does not follow a symlink at the old path: a link entry naming one of the
          // archive's symlinks links that symlink, never what it points to.
          await link(join(target, ...linkRel.split('/')), path);
          result.special++;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          warn(`skipping hard link '${rel}': its target '${linkRel}' is not in the archive`);
        }
        break;
      }
      case 'fifo':
        entry.resume();
        await makeNode('FIFO', { kind: 'fifo' });
        break;
      case 'character-device':
      case 'block-device': {
        entry.resume();
        const kind = h.type === 'character-device' ? 'c' : 'b';
        const numbers = `${h.devmajor ?? 0},${h.devminor ?? 0}`;
        if (!asRoot) {
          warn(`skipping device '${rel}' (${kind} ${numbers}): creating devices needs root`);
          break;
        }
        await makeNode('device', {
          kind: 'device',
          type: kind,
          major: h.devmajor ?? 0,
          minor: h.devminor ?? 0,
        });
        break;
      }
      default:
        warn(`skipping '${rel}': tar entries of type '${h.type}' are not restored`);
        entry.resume();
    }
  }
  await feeding;
  // Directory metadata last and deepest first: creating children changes a directory's mtime,
  // and a read-only directory could not receive its children.
  for (const d of dirs.reverse()) await setPathMetadata(d.path, d.meta, asRoot);
  return result;
}
