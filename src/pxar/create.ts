/**
 * Archive a directory tree on disk as pxar (what `proxmox-backup-client backup NAME.pxar:DIR`
 * does): members in byte order of their names, hardlinked files once and then as HARDLINK
 * items, symlinks, devices, FIFOs and sockets as entries, and optionally a catalog of the tree.
 *
 * Extended attributes, POSIX ACLs and file capabilities are read before the walk by getfattr
 * (the attr package; Node has no call for them), over the part of the tree the walk descends
 * into, and kept as linux-xattrs.ts maps them, as PBS's client does. Without getfattr they are
 * not archived (one warning). Node cannot read chattr flags: the flags field is 0. Members are
 * read with lstat: symlinks are archived, never followed.
 */
import { open, type FileHandle } from 'node:fs/promises';
import {
  closeSync,
  lstatSync,
  openSync,
  readSync,
  readdirSync,
  readlinkSync,
  statfsSync,
  type BigIntStats,
} from 'node:fs';
import {
  ERR_PXAR_CHANGED_WHILE_ARCHIVING,
  ERR_PXAR_NOT_A_DIRECTORY,
  ERR_PXAR_UNKNOWN_FILE_TYPE,
  ERR_PXAR_VIRTUAL_FILESYSTEM,
} from '../errors.js';
import { resolve } from 'node:path';
import { readMounts } from '../sys/mount-status.js';
import { loopTurns } from '../sys/loop-turns.js';
import { readTreeXattrs, TOOL_UNAVAILABLE, type XattrReadTargets } from '../sys/xattr-tools.js';
import { PAYLOAD_COPIED_BELOW, PxarEncoder, type LayoutObserver, type LinkOffset } from './encoder.js';
import {
  MODE,
  deviceFromDevT,
  encodeFilename,
  metadataOf,
  type PxarMetadata,
  type PxarStat,
} from './format.js';
import { IO_CHUNK, readParts, type PxarSink, type ReusablePiece } from './io.js';
import { ARCHIVED_XATTR_PATTERN, xattrMetadataOf, type Xattr } from './linux-xattrs.js';

/** What records the tree as it is archived (PBS's `BackupCatalogWriter`; see catalog.ts). */
export interface TreeCatalog {
  startDirectory(name: Uint8Array | string): void;
  endDirectory(): void;
  addFile(name: Uint8Array | string, size: number, mtimeSecs: number): void;
  addSymlink(name: Uint8Array | string): void;
  addHardlink(name: Uint8Array | string): void;
  addBlockDevice(name: Uint8Array | string): void;
  addCharDevice(name: Uint8Array | string): void;
  addFifo(name: Uint8Array | string): void;
  addSocket(name: Uint8Array | string): void;
}

export interface CreateArchiveOptions {
  /** Record the tree in this catalog, under a directory named `catalogName` (PBS: `NAME.pxar.didx`). */
  catalog?: TreeCatalog;
  catalogName?: string;
  /** Called after each member is archived (progress), with its path relative to the root. */
  onEntry?: (relPath: Buffer, stats: MemberStats) => void;
  /**
   * Called with each member's lstat before it is archived: the root first (an empty path), then
   * depth first, a directory before its members, in the archive's (bytewise) order. Members left
   * out by `exclude` are not seen; ones that vanished or were skipped come with a warning.
   */
  onMember?: (relPath: Buffer, stats: MemberStats) => void;
  /**
   * What PBS's client warns about and goes on: a member that vanished or cannot be opened
   * (skipped), a file that shrank while being read (padded with zeros) or grew (cut).
   */
  onWarning?: (message: string) => void;
  /**
   * Descend into other filesystems mounted below the root (PBS: `--all-file-systems`). By
   * default a mount point is archived as an empty directory, unless its device is listed in
   * `includeDevices` (PBS: `--include-dev`); virtual filesystems (/proc, /sys, ...) never.
   */
  allFileSystems?: boolean;
  includeDevices?: bigint[];
  /**
   * Members to leave out (PBS: `--exclude`), by path relative to the root without a leading
   * '/'; an excluded directory is not descended into. The client's `compileExcludes` fits.
   */
  exclude?: (relPath: string, isDirectory: boolean) => boolean;
  /**
   * Archive extended attributes, POSIX ACLs and file capabilities (default true; PBS:
   * `--no-xattrs` etc.); or their read, started earlier with `readArchiveXattrs` so that it runs
   * beside other work (getfattr is a process of its own: on 100 000 files it takes about a second).
   */
  xattrs?: boolean | Promise<ArchiveXattrs>;
  /** Unchanged files' contents as reusable pieces of the previous archive (client/tree-reuse.ts). */
  reuse?: PayloadReuse;
  /**
   * Members' lstats an earlier walk of the tree took, by path relative to the root in walk order
   * (client/walk-stats.ts): a member found there is not lstat'ed again.
   */
  knownStats?: { take(relPath: Buffer): MemberStats | undefined };
  /**
   * Members' lstats and small files' contents taken ahead of the walk by another thread
   * (client/walk-ahead.ts), in walk order; what it has not got the walk takes itself.
   */
  ahead?: {
    stat(relPath: Buffer): Promise<MemberStats | undefined>;
    content(relPath: Buffer): { data: Buffer; got: number } | undefined;
  };
}

/**
 * What the previous archive of the tree had where, by a key of each file's metadata: a file whose
 * key is there with its size is handed to the sink as a `ReusablePiece` carrying that key (read
 * only where its old chunks cannot be taken; the client joins runs of them, client/pxar-backup.ts).
 */
export interface PayloadReuse {
  /** The key of a regular file's contents, '' when it must not be reused (a racy ctime). */
  key(rel: Buffer, st: MemberStats): string;
  /** Key → [start, length] of the contents in the previous archive. */
  previous?: ReadonlyMap<string, readonly [number, number]>;
  /** Each keyed file's contents in this archive, in stream order, unless reading it warned. */
  onPayload(key: string, start: number, length: number): void;
  /** Told the archive's layout as it is written (what the next backup's `previous` is made of). */
  layout?: LayoutObserver;
  /**
   * Whole directories: keyed as they are archived, and taken from the previous archive when their
   * members are as they were (client/directory-reuse.ts). Only when the attributes were read
   * without a warning: they are archived but not in the key.
   */
  directories?: DirectoryReuse;
}

/**
 * Told every member and directory the walk archives, in walk order; offers a directory whose
 * archived bytes (FILENAME to GOODBYE) are the previous archive's, which the walk then takes whole.
 */
export interface DirectoryReuse {
  /** A member about to be archived (a directory before it is entered). */
  member(name: Buffer, st: MemberStats): void;
  /** A directory about to be archived: returned when it is to be taken whole. */
  enter(rel: Buffer, st: MemberStats): ReusableDirectory | undefined;
  /** The directory entered last is archived, `length` bytes at `start` (or taken whole). */
  leave(start: number, length: number): void;
  /** The walk warned: what it archives in the open directories is not what their members say. */
  poison(): void;
}

/** A directory of the previous archive, equal to this one as the metadata walk found it. */
export interface ReusableDirectory {
  key: string;
  oldStart: number;
  length: number;
  /** Its members below it as the metadata walk recorded them, in walk order. */
  members(): Iterable<{ rel: Buffer; st: MemberStats }>;
}

export interface CreateArchiveResult {
  size: number;
  entries: number;
}

/** Write `root` (a directory) as a pxar archive to `sink`. */
export async function createArchive(
  root: string,
  sink: PxarSink,
  options: CreateArchiveOptions = {},
): Promise<CreateArchiveResult> {
  const rootStats = lstatSync(root, { bigint: true });
  if (!rootStats.isDirectory()) throw ERR_PXAR_NOT_A_DIRECTORY(root);
  if (isVirtualFileSystem(root)) throw ERR_PXAR_VIRTUAL_FILESYSTEM(root);
  options.onMember?.(Buffer.alloc(0), rootStats);
  const devices = archivedDevices(rootStats.dev, options);
  const read =
    options.xattrs === false
      ? undefined
      : await (options.xattrs instanceof Promise ? options.xattrs : readXattrs(root, options, devices));
  for (const w of read?.warnings ?? []) options.onWarning?.(w);
  // directories are keyed by their members' lstats, which attributes read in part would belie
  const directories = read?.byPath && read.warnings.length === 0 ? options.reuse?.directories : undefined;
  const walker = new TreeWalker(options, devices, read?.byPath, directories);
  const encoder = await PxarEncoder.create(
    sink,
    walker.metadataOf(rootStats, Buffer.alloc(0), root),
    options.reuse?.layout,
  );
  walker.encoder = encoder;
  if (options.catalog) options.catalog.startDirectory(options.catalogName ?? 'root.pxar.didx');
  await walker.walkDirectory(Buffer.from(root), Buffer.alloc(0), rootStats.dev);
  if (options.catalog) options.catalog.endDirectory();
  const size = await encoder.finish();
  return { size, entries: walker.entries };
}

/** What the walk reads of a member's lstat: a BigIntStats, or one an earlier walk recorded (`knownStats`). */
export type MemberStats = Pick<
  BigIntStats,
  | 'isDirectory'
  | 'isFile'
  | 'isSymbolicLink'
  | 'isFIFO'
  | 'isCharacterDevice'
  | 'isBlockDevice'
  | 'isSocket'
  | 'mode'
  | 'uid'
  | 'gid'
  | 'size'
  | 'mtimeNs'
  | 'ctimeNs'
  | 'ino'
  | 'dev'
  | 'nlink'
  | 'rdev'
>;

/** PBS's mode, owner and mtime of a member from its lstat (with nanoseconds). */
export function metadataFromStats(st: MemberStats): PxarMetadata {
  return metadataOf(statFromStats(st));
}

export function statFromStats(st: MemberStats): PxarStat {
  // floor division, so that times before 1970 keep 0 <= nanos < 1e9 (StatxTimestamp)
  let secs = st.mtimeNs / 1_000_000_000n;
  let nanos = st.mtimeNs % 1_000_000_000n;
  if (nanos < 0n) {
    secs -= 1n;
    nanos += 1_000_000_000n;
  }
  return {
    mode: Number(st.mode),
    flags: 0n,
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeSecs: Number(secs),
    mtimeNanos: Number(nanos),
  };
}

/** Files up to this size are read with synchronous calls into one buffer. */
export const SMALL_FILE = 256 * 1024;

/** The extended attributes a walk archives, and what reading them warned (passed on by the walk). */
export interface ArchiveXattrs {
  /** By path relative to the root (latin1; '' is the root); undefined when getfattr is not there. */
  byPath: Map<string, Xattr[]> | undefined;
  warnings: string[];
}

/** The devices whose directories the walk descends into (unless allFileSystems). */
function archivedDevices(rootDev: bigint, options: CreateArchiveOptions): Set<bigint> {
  return new Set([rootDev, ...(options.includeDevices ?? [])]);
}

/**
 * Read the attributes a `createArchive(root, sink, options)` archives, to pass as its `xattrs`
 * option: started before other work (a metadata walk), the read runs beside it.
 */
export async function readArchiveXattrs(
  root: string,
  options: CreateArchiveOptions = {},
): Promise<ArchiveXattrs> {
  const rootStats = lstatSync(root, { bigint: true });
  return readXattrs(root, options, archivedDevices(rootStats.dev, options));
}

/**
 * The archived attributes of the tree, or none with one warning when getfattr is not there: a
 * backup never fails for them.
 */
async function readXattrs(
  root: string,
  options: CreateArchiveOptions,
  devices: Set<bigint>,
): Promise<ArchiveXattrs> {
  const warnings: string[] = [];
  const targets = xattrReadTargets(root, (mountPoint, dev) =>
    skipsContents(options, devices, mountPoint, dev),
  );
  const read = await readTreeXattrs(root, targets, ARCHIVED_XATTR_PATTERN, (m) => warnings.push(m));
  if (read !== TOOL_UNAVAILABLE) return { byPath: read, warnings };
  warnings.push(
    'extended attributes, POSIX ACLs and file capabilities are not archived: getfattr (Debian package attr) is not available',
  );
  return { byPath: undefined, warnings };
}

/** Whether the walk archives a mount point of device `dev` without its contents. */
function skipsContents(
  options: CreateArchiveOptions,
  devices: Set<bigint>,
  mountPoint: string | Buffer,
  dev: bigint,
): boolean {
  return isVirtualFileSystem(mountPoint) || (!options.allFileSystems && !devices.has(dev));
}

/**
 * What getfattr reads: the whole root, unless mount points the walk does not descend into lie
 * below it (a backup of '/' has /proc, /sys, other disks): then the directories leading to them
 * and those mount points alone, everything beside them whole. getfattr itself does not stop at
 * mount points.
 */
export function xattrReadTargets(
  root: string,
  skipContents: (mountPoint: string, dev: bigint) => boolean,
): XattrReadTargets {
  const base = resolve(root).replace(/\/+$/, '');
  const skipped = new Set<string>();
  for (const m of readMounts()) {
    if (!m.mountPoint.startsWith(`${base}/`)) continue;
    const rel = m.mountPoint.slice(base.length + 1);
    const st = lstatSync(m.mountPoint, { bigint: true, throwIfNoEntry: false });
    const parent = lstatSync(m.mountPoint.replace(/\/[^/]*$/, '') || '/', {
      bigint: true,
      throwIfNoEntry: false,
    });
    if (st?.isDirectory() && parent && st.dev !== parent.dev && skipContents(m.mountPoint, st.dev))
      skipped.add(rel);
  }
  if (skipped.size === 0) return { recursive: ['.'], single: [] };
  const targets: XattrReadTargets = { recursive: [], single: ['.'] };
  const split = (relDir: string) => {
    let names: string[];
    try {
      names = readdirSync(relDir === '' ? root : `${base}/${relDir}`);
    } catch {
      return;
    }
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      if (skipped.has(rel)) targets.single.push(rel);
      else if ([...skipped].some((s) => s.startsWith(`${rel}/`))) {
        targets.single.push(rel);
        split(rel);
      } else targets.recursive.push(rel);
    }
  };
  split('');
  return targets;
}

class TreeWalker {
  entries = 0;
  /** Set once the root's metadata (which this walker reads) started the archive. */
  encoder!: PxarEncoder;
  private readonly hardlinks = new Map<string, { path: Buffer; offset: LinkOffset }>();

  constructor(
    private readonly options: CreateArchiveOptions,
    /** Devices whose directories are descended into (unless allFileSystems). */
    private readonly devices: Set<bigint>,
    /** The archived attributes by path relative to the root (latin1), if they could be read. */
    private readonly xattrs: Map<string, Xattr[]> | undefined,
    private readonly directories: DirectoryReuse | undefined,
  ) {}

  /** A member's pxar metadata: its lstat, and its attributes as PBS maps them. */
  metadataOf(st: MemberStats, rel: Buffer, full: string | Buffer): PxarMetadata {
    const meta = metadataFromStats(st);
    const attrs = this.xattrs?.get(rel.toString('latin1'));
    if (attrs === undefined) return meta;
    const kind = st.isFile()
      ? 'file'
      : st.isDirectory()
        ? 'directory'
        : st.isSymbolicLink()
          ? 'symlink'
          : 'other';
    try {
      return { ...meta, ...xattrMetadataOf(attrs, kind) };
    } catch (err) {
      // a malformed ACL attribute costs that entry its attributes, not the backup
      this.warn(`skipping extended attributes of ${full.toString()}: ${(err as Error).message}`);
      return meta;
    }
  }

  async walkDirectory(dir: Buffer, rel: Buffer, dev: bigint): Promise<void> {
    await this.walkNames(dir, rel, readdirSync(dir, { encoding: 'buffer' }), dev);
  }

  private async walkNames(dir: Buffer, rel: Buffer, names: Buffer[], dev: bigint): Promise<void> {
    // bytes, not strings: names need not be UTF-8, and the archive orders them bytewise
    names.sort(Buffer.compare);
    for (const name of names) {
      await this.turn();
      const full = Buffer.concat([dir, Buffer.from('/'), name]);
      const relPath = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]);
      await this.addMember(full, relPath, name, dev);
    }
  }

  /** Lets worker answers and uploads through during a walk that reads no file (loop-turns.ts). */
  private readonly turn = loopTurns();

  /** Warnings so far: a file whose reading warned is not offered for reuse. */
  private warnings = 0;

  private warn(message: string): void {
    this.warnings++;
    this.directories?.poison();
    this.options.onWarning?.(message);
  }

  private async addMember(full: Buffer, rel: Buffer, name: Buffer, parentDev: bigint): Promise<void> {
    // metadata calls are synchronous: a few microseconds each, where a thread-pool round trip
    // per member would dominate archiving many small files
    const st =
      this.options.knownStats?.take(rel) ??
      (this.options.ahead && (await this.options.ahead.stat(rel))) ??
      lstatSync(full, { bigint: true, throwIfNoEntry: false });
    if (st === undefined) return this.warn(`file vanished while reading: ${full.toString()}`);
    if (this.options.exclude?.(rel.toString('utf8'), st.isDirectory())) return;
    this.options.onMember?.(rel, st);
    this.directories?.member(name, st);
    const meta = this.metadataOf(st, rel, full);
    const catalog = this.options.catalog;
    const type = Number(st.mode) & MODE.IFMT;
    switch (type) {
      case MODE.IFREG: {
        const key = `${st.dev}:${st.ino}`;
        const earlier = st.nlink > 1n ? this.hardlinks.get(key) : undefined;
        if (earlier) {
          await this.encoder.addHardlink(name, earlier.path, earlier.offset);
          catalog?.addHardlink(name);
          break;
        }
        const offset = await this.addRegularFile(full, rel, st, name, meta);
        if (offset === null) return;
        if (st.nlink > 1n) this.hardlinks.set(key, { path: rel, offset });
        catalog?.addFile(name, Number(st.size), meta.stat.mtimeSecs);
        break;
      }
      case MODE.IFDIR: {
        const start = this.encoder.position;
        const whole = this.directories?.enter(rel, st);
        try {
          if (whole && st.dev === parentDev) {
            await this.addWholeDirectory(full, rel, name, meta, whole);
            break;
          }
          // a mount point: archived, its contents only where PBS's client would descend
          const skipContents =
            st.dev !== parentDev && skipsContents(this.options, this.devices, full, st.dev);
          // listed before anything of it is written, so that a directory that vanished is skipped
          const names = skipContents ? [] : vanishedAsNull(() => readdirSync(full, { encoding: 'buffer' }));
          if (names === null) return this.warn(`directory vanished while reading: ${full.toString()}`);
          if (skipContents) this.warn(`skipping mount point: ${full.toString()}`);
          catalog?.startDirectory(name);
          await this.encoder.createDirectory(name, meta);
          await this.walkNames(full, rel, names, st.dev);
          await this.encoder.finishDirectory();
          catalog?.endDirectory();
        } finally {
          this.directories?.leave(start, this.encoder.position - start);
        }
        break;
      }
      case MODE.IFLNK:
        {
          const target = vanishedAsNull(() => readlinkSync(full, { encoding: 'buffer' }));
          if (target === null) return this.warn(`file vanished while reading: ${full.toString()}`);
          await this.encoder.addSymlink(meta, name, target);
        }
        catalog?.addSymlink(name);
        break;
      case MODE.IFBLK:
      case MODE.IFCHR:
        await this.encoder.addDevice(meta, name, deviceFromDevT(st.rdev));
        if (type === MODE.IFBLK) catalog?.addBlockDevice(name);
        else catalog?.addCharDevice(name);
        break;
      case MODE.IFIFO:
        await this.encoder.addFifo(meta, name);
        catalog?.addFifo(name);
        break;
      case MODE.IFSOCK:
        await this.encoder.addSocket(meta, name);
        catalog?.addSocket(name);
        break;
      default:
        throw ERR_PXAR_UNKNOWN_FILE_TYPE(full.toString());
    }
    this.entries++;
    this.options.onEntry?.(rel, st);
  }

  /**
   * A directory taken whole from the previous archive: one reusable piece in the archive, its
   * members in the catalog as the metadata walk recorded them. Its bytes are encoded again only
   * where its old chunks cannot be taken (`reencoded`).
   */
  private async addWholeDirectory(
    full: Buffer,
    rel: Buffer,
    name: Buffer,
    meta: PxarMetadata,
    whole: ReusableDirectory,
  ): Promise<void> {
    const catalog = this.options.catalog;
    catalog?.startDirectory(name);
    const open = [rel];
    for (const m of whole.members()) {
      while (!isBelow(m.rel, open.at(-1)!)) {
        open.pop();
        catalog?.endDirectory();
      }
      const memberName = m.rel.subarray(m.rel.lastIndexOf(SLASH) + 1);
      switch (Number(m.st.mode) & MODE.IFMT) {
        case MODE.IFDIR:
          catalog?.startDirectory(memberName);
          open.push(m.rel);
          break;
        case MODE.IFREG:
          catalog?.addFile(memberName, Number(m.st.size), statFromStats(m.st).mtimeSecs);
          break;
        case MODE.IFLNK:
          catalog?.addSymlink(memberName);
          break;
        case MODE.IFBLK:
          catalog?.addBlockDevice(memberName);
          break;
        case MODE.IFCHR:
          catalog?.addCharDevice(memberName);
          break;
        case MODE.IFIFO:
          catalog?.addFifo(memberName);
          break;
        case MODE.IFSOCK:
          catalog?.addSocket(memberName);
          break;
        default:
          throw ERR_PXAR_UNKNOWN_FILE_TYPE(m.rel.toString());
      }
      this.entries++;
      this.options.onEntry?.(m.rel, m.st);
    }
    for (let i = open.length; i > 0; i--) catalog?.endDirectory();
    await this.encoder.addWholeDirectory(name, {
      key: whole.key,
      oldStart: whole.oldStart,
      length: whole.length,
      read: (from, to) => this.reencoded(full, rel, name, meta, whole, from, to),
    });
  }

  /**
   * Bytes [from, to) of a directory taken whole, encoded again from the members its key was made
   * of: files' contents as reusable pieces, read only inside [from, to), and the encoding stopped
   * past `to`. A symlink's target is the one thing read again: one whose length moved since its
   * lstat would move every byte after it, so that fails the backup.
   */
  private async *reencoded(
    full: Buffer,
    rel: Buffer,
    name: Buffer,
    meta: PxarMetadata,
    whole: ReusableDirectory,
    from: number,
    to: number,
  ): AsyncGenerator<Buffer> {
    // the parts that reach into [from, to), the first of them at `kept`
    const parts: Array<Buffer | ReusablePiece> = [];
    let kept = 0;
    let length = 0;
    const enough = new Error('enough');
    const take = (part: Buffer | ReusablePiece): Promise<void> => {
      if (length + part.length <= from) kept += part.length;
      else parts.push(part);
      length += part.length;
      return length >= to ? Promise.reject(enough) : Promise.resolve();
    };
    try {
      await take(encodeFilename(name));
      const encoder = await PxarEncoder.create({ write: take, writeReusable: take }, meta);
      const open = [rel];
      const reuse = this.options.reuse;
      for (const m of whole.members()) {
        while (!isBelow(m.rel, open.at(-1)!)) {
          open.pop();
          await encoder.finishDirectory();
        }
        const memberName = m.rel.subarray(m.rel.lastIndexOf(SLASH) + 1);
        const memberFull = Buffer.concat([full, m.rel.subarray(rel.length)]);
        const memberMeta = this.metadataOf(m.st, m.rel, memberFull);
        const size = Number(m.st.size);
        const type = Number(m.st.mode) & MODE.IFMT;
        if (type === MODE.IFDIR) {
          await encoder.createDirectory(memberName, memberMeta);
          open.push(m.rel);
        } else if (type === MODE.IFREG) {
          const key = reuse?.key(m.rel, m.st) ?? '';
          const old = key ? reuse?.previous?.get(key) : undefined;
          const read = (a: number, b: number) => this.payloadOf(memberFull, size, a, b);
          await encoder.addFile(
            memberMeta,
            memberName,
            size,
            old?.[1] === size ? { key, oldStart: old[0], length: size, read } : read(0, size),
          );
        } else if (type === MODE.IFLNK) {
          const target = readlinkSync(memberFull, { encoding: 'buffer' });
          if (target.length !== size) throw ERR_PXAR_CHANGED_WHILE_ARCHIVING(memberFull.toString());
          await encoder.addSymlink(memberMeta, memberName, target);
        } else if (type === MODE.IFBLK || type === MODE.IFCHR)
          await encoder.addDevice(memberMeta, memberName, deviceFromDevT(m.st.rdev));
        else if (type === MODE.IFIFO) await encoder.addFifo(memberMeta, memberName);
        else if (type === MODE.IFSOCK) await encoder.addSocket(memberMeta, memberName);
      }
      for (let i = open.length; i > 1; i--) await encoder.finishDirectory();
      await encoder.finish();
      if (length !== whole.length) throw ERR_PXAR_CHANGED_WHILE_ARCHIVING(full.toString());
    } catch (err) {
      if (err !== enough) throw err;
    }
    yield* readParts(parts, from, to, kept);
  }

  private async addRegularFile(
    full: Buffer,
    rel: Buffer,
    st: MemberStats,
    name: Buffer,
    meta: PxarMetadata,
  ): Promise<LinkOffset | null> {
    const size = Number(st.size);
    const reuse = this.options.reuse;
    const key = reuse?.key(rel, st) ?? '';
    const old = key ? reuse!.previous?.get(key) : undefined;
    if (old && old[1] === size) {
      const offset = await this.encoder.addFile(meta, name, size, {
        key,
        oldStart: old[0],
        length: size,
        read: (from, to) => this.payloadOf(full, size, from, to),
      });
      reuse!.onPayload(key, this.encoder.position - size, size);
      return offset;
    }
    if (size <= SMALL_FILE) {
      const warned = this.warnings;
      const ahead = this.options.ahead?.content(rel);
      // the thread's memory is reused once the walk has passed the file: copied here when the
      // encoder would not copy it
      const content = ahead
        ? this.sized(
            full,
            size < PAYLOAD_COPIED_BELOW ? ahead.data : Buffer.from(ahead.data),
            ahead.got,
            size,
          )
        : this.unlessUnopenable(full, () => this.smallPayload(full, size));
      if (content === null) return null;
      const offset = await this.encoder.addFile(meta, name, size, content);
      if (key && this.warnings === warned) reuse!.onPayload(key, this.encoder.position - size, size);
      return offset;
    }
    const fh = await open(full, 'r').catch((err: unknown) => {
      if (isUnopenable(err)) return this.skipUnopenable(full, err);
      throw err;
    });
    if (fh === null) return null;
    const warned = this.warnings;
    try {
      const offset = await this.encoder.addFile(meta, name, size, this.payload(fh, size, full));
      if (key && this.warnings === warned) reuse!.onPayload(key, this.encoder.position - size, size);
      return offset;
    } finally {
      await fh.close();
    }
  }

  /**
   * Bytes [from, to) of an unchanged file's contents, read when its reusable piece is consumed
   * (after the walk passed it): `size` bytes in all whatever happened to the file since, as
   * `payload` reads them (a file gone by then is zeros, with a warning).
   */
  private async *payloadOf(full: Buffer, size: number, from: number, to: number): AsyncGenerator<Buffer> {
    if (size <= SMALL_FILE) {
      // synchronous calls, as the walk reads small files: four thread-pool round trips per file
      // (open, read, probe, close) made reading the thousands of small files around a change
      // take seconds, the main thread idle
      let content: Buffer;
      try {
        content = this.smallPayload(full, size);
      } catch (err) {
        if (!isUnopenable(err)) throw err;
        this.warnVanishedPadded(full);
        content = Buffer.alloc(size);
      }
      yield content.subarray(from, to);
      return;
    }
    const fh = await open(full, 'r').catch((err: unknown) => {
      if (isUnopenable(err)) return null;
      throw err;
    });
    if (fh === null) {
      this.warnVanishedPadded(full);
      for (let done = from; done < to; done += IO_CHUNK) yield Buffer.alloc(Math.min(IO_CHUNK, to - done));
      return;
    }
    try {
      yield* this.payload(fh, size, full, from, to);
    } finally {
      await fh.close();
    }
  }

  /** PBS's warning for an unchanged file gone when its reused bytes were needed: zeros stand in. */
  private warnVanishedPadded(full: Buffer): void {
    this.warn(`file vanished while reading: ${full.toString()}, file will be padded with zeros!`);
  }

  /** PBS's warning for a file that ended before the size its lstat gave: zeros stand in. */
  private warnShrunkPadded(full: Buffer): void {
    this.warn(`file size shrunk while reading: ${full.toString()}, file will be padded with zeros!`);
  }

  /** `call`'s result, or null with PBS's warning if the file vanished or may not be read. */
  private unlessUnopenable<T>(full: Buffer, call: () => T): T | null {
    try {
      return call();
    } catch (err) {
      if (isUnopenable(err)) return this.skipUnopenable(full, err);
      throw err;
    }
  }

  private skipUnopenable(full: Buffer, err: NodeJS.ErrnoException): null {
    this.warn(
      `${err.code === 'ENOENT' ? 'file vanished while reading' : 'access denied'}: ${full.toString()}`,
    );
    return null;
  }

  /**
   * A small file read with synchronous calls into one buffer (thread-pool round trips would
   * dominate); one byte more than `size` is asked for, to notice that it grew.
   */
  private smallPayload(full: Buffer, size: number): Buffer {
    const fd = openSync(full, 'r');
    const b = Buffer.allocUnsafe(size + 1);
    let got = 0;
    try {
      while (got < b.length) {
        const n = readSync(fd, b, got, b.length - got, got);
        if (n === 0) break;
        got += n;
      }
    } finally {
      closeSync(fd);
    }
    return this.sized(full, b, got, size);
  }

  /**
   * `size` bytes of a file of which `got` were read into `b` (asking for one more than `size`),
   * with PBS's warnings when it grew or shrank since its lstat.
   */
  private sized(full: Buffer, b: Buffer, got: number, size: number): Buffer {
    if (got > size)
      this.warn(`file size increased while reading: ${full.toString()}, file will be truncated!`);
    if (got < size) {
      this.warnShrunkPadded(full);
      const padded = Buffer.alloc(size);
      b.copy(padded, 0, 0, got);
      return padded;
    }
    return b.subarray(0, size);
  }

  /**
   * The first `size` bytes of a file (the size lstat saw; the archive's item sizes are fixed by
   * it), as PBS's client reads it: a file that grew is cut at that size, one that shrank is
   * padded with zeros, each with a warning.
   */
  private async *payload(
    fh: FileHandle,
    size: number,
    full: Buffer,
    from = 0,
    to = size,
  ): AsyncGenerator<Buffer> {
    let done = from;
    while (done < to) {
      // a fresh buffer per chunk: the encoder's sink may still hold the previous one
      const b = Buffer.allocUnsafe(Math.min(IO_CHUNK, to - done));
      const { bytesRead } = await fh.read(b, 0, b.length, done);
      if (bytesRead === 0) {
        this.warnShrunkPadded(full);
        for (; done < to; done += IO_CHUNK) yield Buffer.alloc(Math.min(IO_CHUNK, to - done));
        return;
      }
      done += bytesRead;
      yield b.subarray(0, bytesRead);
    }
    if (to < size) return;
    const probe = await fh.read(Buffer.alloc(1), 0, 1, size);
    if (probe.bytesRead > 0)
      this.warn(`file size increased while reading: ${full.toString()}, file will be truncated!`);
  }
}

/**
 * statfs magics of virtual filesystems (linux/magic.h, the list of pxar's `util.rs`): never
 * archived (binfmt_misc, cgroup, cgroup2, configfs, debugfs, devpts, efivarfs, fusectl,
 * hugetlbfs, mqueue, nfsd, proc, pstore, rpc_pipefs, securityfs, selinuxfs, smackfs, sysfs).
 */
const VIRTUAL_FS_MAGIC = new Set([
  0x42494e4d, 0x0027e0eb, 0x63677270, 0x62656570, 0x64626720, 0x00001cd1, 0xde5e81e4, 0x65735543, 0x958458f6,
  0x19800202, 0x6e667364, 0x00009fa0, 0x6165676c, 0x67596969, 0x73636673, 0xf97cff8c, 0x43415d53, 0x62656572,
]);

function isVirtualFileSystem(path: string | Buffer): boolean {
  try {
    return VIRTUAL_FS_MAGIC.has(statfsSync(path).type >>> 0);
  } catch {
    return false;
  }
}

const SLASH = 0x2f;

/** Whether `rel` lies below directory `dir` (both relative to the root, '/'-separated). */
export function isBelow(rel: Buffer, dir: Buffer): boolean {
  return (
    rel.length > dir.length &&
    rel[dir.length] === SLASH &&
    rel.compare(dir, 0, dir.length, 0, dir.length) === 0
  );
}

/** An open that PBS's client answers with a warning and a skipped member. */
function isUnopenable(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'EACCES';
}

/** A filesystem call's result, or null if the path vanished meanwhile (ENOENT). */
function vanishedAsNull<T>(call: () => T): T | null {
  try {
    return call();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
