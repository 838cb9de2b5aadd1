/**
 * File trees as tar streams (POSIX ustar, pax headers for long names), the archive format of
 * Stowage's `NAME.tar.didx` archives. PBS archives file trees as pxar; we use tar so any tool can
 * read a restored stream, at the cost of PBS's catalog and pxar's extended metadata (xattrs,
 * ACLs, fcaps are not kept).
 *
 * Kept: regular files, directories (empty ones too), symlinks, permission bits (incl. setuid,
 * setgid, sticky), mtimes (seconds), uid/gid (restored only when running as root). Skipped with a
 * warning: sockets, fifos, devices. Hard links are stored as separate files (chunk dedup makes
 * the second copy cost nothing on the server).
 *
 * Entries are written in a deterministic order (names sorted by bytes) so an unchanged tree gives
 * an identical stream, and therefore identical chunks.
 */
import { constants as fsConstants, createWriteStream } from 'node:fs';
import {
  chmod,
  chown,
  lchown,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  readlink,
  symlink,
  utimes,
} from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, join, posix, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { BadRequestError, CorruptDataError, NotFoundError } from '../errors.js';

const READ_BLOCK = 1024 * 1024;

/** An `--exclude` test: `(path relative to the root, with '/' separators, isDirectory) → excluded`. */
export type ExcludeMatcher = (relPath: string, isDir: boolean) => boolean;

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
  return (relPath, isDir) => {
    let excluded = false;
    for (const r of rules) {
      if (r.dirOnly && !isDir) continue;
      if (r.re.test(relPath)) excluded = !r.negate;
    }
    return excluded;
  };
}

/** The tar stream: a streamx Readable, which is async-iterable (its typings do not say so). */
export type TarStream = tar.Pack & AsyncIterable<Buffer>;

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
}

/** How old every entry's ctime must be, relative to the walk start, for a usable fingerprint. */
export const RACY_MARGIN_MS = 2000;
/** Bumped whenever the tar stream of a given tree changes (format, order, header fields). */
const TAR_LAYOUT_VERSION = 1;

class FingerprintBuilder {
  private readonly hash = createHash('sha256').update(`stowage tar layout ${TAR_LAYOUT_VERSION}\n`);
  private readonly racyAfter: number;
  private entries = 0;
  private usable = true;

  constructor(clock: () => number) {
    this.racyAfter = clock() - RACY_MARGIN_MS;
  }

  add(e: WalkEntry): void {
    const st = e.st;
    const type = st.isDirectory() ? 'd' : st.isFile() ? 'f' : st.isSymbolicLink() ? 'l' : 'o';
    // JSON: names may hold any byte but NUL, including newlines.
    this.hash.update(
      JSON.stringify([
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
      ]) + '\n',
    );
    if (st.ctimeMs >= this.racyAfter) this.usable = false;
    this.entries++;
  }

  spoil(): void {
    this.usable = false;
  }

  result(): TreeFingerprint {
    return { digest: this.hash.digest('hex'), entries: this.entries, usable: this.usable };
  }
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

interface WalkEntry {
  abs: string;
  rel: string;
  st: import('node:fs').Stats;
}

async function* walk(
  root: string,
  exclude: ExcludeMatcher,
  warn: (m: string) => void,
): AsyncGenerator<WalkEntry> {
  const rootSt = await lstat(root).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new NotFoundError(`backup source '${root}' does not exist`);
    throw err;
  });
  if (!rootSt.isDirectory()) throw new BadRequestError(`backup source '${root}' is not a directory`);
  yield { abs: root, rel: '.', st: rootSt };
  const stack: string[] = [root];
  // Depth-first, pre-order, children sorted: a directory's entry always precedes its contents.
  async function* visit(dir: string): AsyncGenerator<WalkEntry> {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      warn(`unable to read directory '${dir}': ${(err as Error).message}`);
      return;
    }
    names.sort(byteOrder);
    for (const name of names) {
      const abs = join(dir, name);
      const rel = relative(root, abs).split(sep).join('/');
      let st;
      try {
        st = await lstat(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // vanished since readdir
        warn(`unable to stat '${abs}': ${(err as Error).message}`);
        continue;
      }
      if (exclude(rel, st.isDirectory())) continue;
      yield { abs, rel, st };
      if (st.isDirectory()) yield* visit(abs);
    }
  }
  yield* visit(stack[0]!);
}

/** Bytes and entries a `tarDirectory` of `root` will cover (for progress bars and ETA). */
export async function measureTree(root: string, opts: TarSourceOptions = {}): Promise<TreeSize> {
  const exclude = compileExcludes(opts.exclude ?? []);
  const size: TreeSize = { files: 0, dirs: 0, bytes: 0 };
  const fp = new FingerprintBuilder(opts.clock ?? Date.now);
  for await (const e of walk(root, exclude, () => fp.spoil())) {
    fp.add(e);
    if (e.st.isDirectory()) size.dirs++;
    else if (e.st.isFile()) {
      size.files++;
      size.bytes += e.st.size;
    }
  }
  opts.onFingerprint?.(fp.result());
  return size;
}

function entryHeader(e: WalkEntry): Pick<tar.Header, 'name' | 'mode' | 'uid' | 'gid' | 'mtime'> {
  return {
    name: e.rel === '.' ? './' : e.st.isDirectory() ? `${e.rel}/` : e.rel,
    mode: e.st.mode & 0o7777,
    uid: e.st.uid,
    gid: e.st.gid,
    mtime: new Date(Math.floor(e.st.mtimeMs / 1000) * 1000),
  };
}

/** Write exactly `size` bytes of a file into a tar entry: a file that shrank is padded with zeros. */
async function writeFileEntry(
  entry: NodeJS.WritableStream,
  path: string,
  size: number,
  warn: (m: string) => void,
): Promise<void> {
  const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NOATIME).catch(() => open(path, 'r'));
  try {
    let done = 0;
    while (done < size) {
      const buf = Buffer.allocUnsafe(Math.min(READ_BLOCK, size - done));
      const { bytesRead } = await fh.read(buf, 0, buf.length, done);
      if (bytesRead === 0) {
        warn(`file '${path}' shrank while reading; padding with zeros`);
        buf.fill(0);
        done += buf.length;
        if (!entry.write(buf)) await new Promise((r) => entry.once('drain', r));
        continue;
      }
      done += bytesRead;
      if (!entry.write(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead))) {
        await new Promise((r) => entry.once('drain', r));
      }
    }
  } finally {
    await fh.close();
  }
  entry.end();
}

/**
 * A tar stream of the tree under `root` (entries relative to it, the root itself as `./`).
 * Missing or non-directory roots are refused before the first byte.
 */
export function tarDirectory(root: string, opts: TarSourceOptions = {}): TarStream {
  const pack = tar.pack();
  const exclude = compileExcludes(opts.exclude ?? []);
  const fp = new FingerprintBuilder(opts.clock ?? Date.now);
  const warn = (m: string) => {
    fp.spoil();
    opts.onWarning?.(m);
  };
  const run = async () => {
    for await (const e of walk(root, exclude, warn)) {
      fp.add(e);
      const header = entryHeader(e);
      if (e.st.isDirectory()) {
        await new Promise<void>((res, rej) =>
          pack.entry({ ...header, type: 'directory' }, (err) => (err ? rej(err) : res())),
        );
      } else if (e.st.isSymbolicLink()) {
        let target: string;
        try {
          target = await readlink(e.abs);
        } catch (err) {
          warn(`unable to read symlink '${e.abs}': ${(err as Error).message}`);
          continue;
        }
        await new Promise<void>((res, rej) =>
          pack.entry({ ...header, type: 'symlink', linkname: target }, (err) => (err ? rej(err) : res())),
        );
      } else if (e.st.isFile()) {
        const size = e.st.size;
        await new Promise<void>((res, rej) => {
          const entry = pack.entry({ ...header, type: 'file', size }, (err) => (err ? rej(err) : res()));
          writeFileEntry(entry, e.abs, size, warn).catch((err: unknown) => {
            entry.destroy(err as Error);
            rej(err);
          });
        });
      } else {
        // Deterministic from the metadata, so it does not spoil the fingerprint.
        opts.onWarning?.(`skipping '${e.rel}': sockets, fifos and devices are not archived`);
      }
    }
    opts.onFingerprint?.(fp.result());
    pack.finalize();
  };
  run().catch((err: unknown) => pack.destroy(err as Error));
  return pack as TarStream;
}

export interface ExtractResult {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
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
 * directory), restoring modes, mtimes and symlinks; ownership only as root. An entry below a
 * symlink the archive created is refused, so a crafted archive cannot write outside `target`.
 */
export async function extractTar(source: AsyncIterable<Uint8Array>, target: string): Promise<ExtractResult> {
  await mkdir(target, { recursive: true });
  const existing = await readdir(target);
  if (existing.length > 0) throw new BadRequestError(`restore target '${target}' exists and is not empty`);
  const asRoot = process.getuid?.() === 0;
  const result: ExtractResult = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  const dirs: Array<{ path: string; mode: number; mtime: Date; uid: number; gid: number }> = [];
  const symlinks = new Set<string>();
  const extract = tar.extract();
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
    for (let p = posix.dirname(rel); p !== '.'; p = posix.dirname(p)) {
      if (symlinks.has(p))
        throw new CorruptDataError(`archive entry '${h.name}' is below the symlink '${p}'`);
    }
    const path = rel === '.' ? target : join(target, ...rel.split('/'));
    const mode = (h.mode ?? 0o644) & 0o7777;
    const mtime = h.mtime ?? new Date();
    switch (h.type) {
      case 'directory':
        await mkdir(path, { recursive: true });
        dirs.push({ path, mode, mtime, uid: h.uid ?? 0, gid: h.gid ?? 0 });
        result.dirs++;
        entry.resume();
        break;
      case 'file':
      case 'contiguous-file': {
        await mkdir(dirname(path), { recursive: true });
        await pipeline(entry as unknown as Readable, createWriteStream(path, { flags: 'wx', mode: 0o600 }));
        if (asRoot) await chown(path, h.uid ?? 0, h.gid ?? 0);
        await chmod(path, mode);
        await utimes(path, mtime, mtime);
        result.files++;
        result.bytes += h.size ?? 0;
        break;
      }
      case 'symlink':
        await symlink(h.linkname ?? '', path);
        symlinks.add(rel);
        if (asRoot) await lchown(path, h.uid ?? 0, h.gid ?? 0);
        await lutimes(path, mtime, mtime);
        result.symlinks++;
        entry.resume();
        break;
      default:
        entry.resume();
    }
  }
  await feeding;
  // Directory metadata last and deepest first: creating children changes a directory's mtime,
  // and a read-only directory could not receive its children.
  for (const d of dirs.reverse()) {
    if (asRoot) await chown(d.path, d.uid, d.gid);
    await chmod(d.path, d.mode);
    await utimes(d.path, d.mtime, d.mtime);
  }
  return result;
}
