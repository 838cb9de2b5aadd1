/**
 * Extract a pxar archive into a directory, as `proxmox-backup-client restore` does (PBS:
 * pbs-client/src/pxar/extract.rs): every entry kind, owner (as root), permission bits and mtime;
 * files with their all-zero blocks as holes; a directory's metadata set when the archive leaves
 * it (its members would change its mtime, a read-only one could not receive them); the root's
 * metadata on the target at the end.
 *
 * Extended attributes, POSIX ACLs and file capabilities are set once every entry is written,
 * by one `setfattr --restore` run over all entries that have any (none is started for a tree
 * without them), in PBS's order (xattrs, capability, ACLs; after the owner, which would clear a
 * capability, and after the contents). Setting them changes no mtime. Not as root, trusted.* and
 * security.* attributes and capabilities cannot be set: they are counted in `skipped` with one
 * warning per kind; so is everything when setfattr is not installed. An attribute setfattr
 * could not set is a warning and counted in `attributeErrors`; the restore goes on.
 *
 * What differs from PBS, because Node has no call for it:
 * - chattr flags and quota project ids are not restored: each kind is warned about once and
 *   counted in `skipped`;
 * - mtimes are exact to the microsecond (the nanoseconds below it are dropped) from 1970 to 2106,
 *   to the millisecond before 1970 (see `restoreTime`); atime is set to the mtime;
 * - a socket is made by binding one and keeping a hard link to it (PBS: mknod S_IFSOCK).
 *
 * Safety: the target must be empty or missing; every member is created below the directory the
 * extractor itself made for its parent (names are checked, directories are made with a plain
 * mkdir, files with O_EXCL), an entry below a symlink the archive made is refused, and so is a
 * hardlink to a path outside the target or through such a symlink. A refusal is
 * ERR_PXAR_UNSAFE_ENTRY or ERR_PXAR_BELOW_SYMLINK and stops the restore before the entry is
 * written.
 */
import { chmod, link, mkdir, symlink } from 'node:fs/promises';
import { ERR_PXAR_BELOW_SYMLINK, ERR_PXAR_UNSAFE_ENTRY } from '../errors.js';
import {
  beginRestore,
  emptyExtractResult,
  makeSpecialNode,
  restoreTime,
  setFdMetadata,
  setPathMetadata,
  setSymlinkMetadata,
  SMALL_FILE,
  writeFileEntryOut,
  type ExtractResult,
  type RestoredMetadata,
} from '../sys/restore-files.js';
import type { PxarEntry, PxarEntryKind } from './decoder.js';
import { RestoreWriter } from '../sys/restore-writer.js';
import { formatXattrDump, type XattrDumpEntry } from '../sys/xattr-dump.js';
import { restoreXattrs, TOOL_UNAVAILABLE } from '../sys/xattr-tools.js';
import type { PxarMetadata } from './format.js';
import { compileGlob } from './glob.js';
import {
  XATTR_ACL_ACCESS,
  XATTR_ACL_DEFAULT,
  XATTR_FCAPS,
  xattrNeedsRoot,
  xattrsToRestore,
} from './linux-xattrs.js';

/** What the extractor reads: a `PxarDecoder` (entries in archive order, a file's contents right after it). */
export interface PxarEntrySource extends AsyncIterable<PxarEntry> {
  contents(): AsyncIterable<Buffer>;
}

export interface PxarExtractOptions {
  /**
   * PBS's `restore --pattern`: restore only the entries that match (glob.ts's syntax). A
   * matching directory brings everything below it; the directories leading to a match are made
   * with their archived metadata. A pattern starting with '!' excludes what it matches; of
   * several matching patterns the last one decides (PBS's match lists). None: everything.
   */
  patterns?: readonly string[];
  /** What could not be restored as archived (a device when not root, metadata Node cannot set). */
  onWarning?: (message: string) => void;
  /** Called after each entry was restored: its path and bytes, and the totals so far (progress). */
  onEntry?: (entry: { path: string; kind: PxarEntryKind; bytes: number }, totals: ExtractResult) => void;
  /**
   * Small files written on the main thread before the rest of the tree goes to a writer thread
   * (sys/restore-writer.ts): default `WRITER_AFTER_FILES`; Infinity never starts it, 0 from the
   * first entry (tests).
   */
  writerAfterFiles?: number;
}

/**
 * Small files a restore writes itself before it starts a writer thread: a small tree is done
 * before a thread would have started (tens of milliseconds), a large one gains from the second
 * core.
 */
export const WRITER_AFTER_FILES = 200;

/** Counts of entries whose metadata of a kind was not restored (see the module comment). */
export interface SkippedMetadata {
  xattrs: number;
  acls: number;
  fcaps: number;
  /** chattr flags (FS_IOC_SETFLAGS). */
  flags: number;
  quotaProjectIds: number;
}

export interface PxarExtractResult extends ExtractResult {
  skipped: SkippedMetadata;
  /** Attributes setfattr failed to set (each one warned about). */
  attributeErrors: number;
}

const SKIPPED_WHAT: Record<keyof SkippedMetadata, string> = {
  xattrs: 'extended attributes',
  acls: 'POSIX ACLs',
  fcaps: 'file capabilities',
  flags: 'file attribute flags (chattr)',
  quotaProjectIds: 'quota project ids',
};

type PatternResult = 'include' | 'exclude' | undefined;

/**
 * A `--pattern` list as one test: for an archive path ('/dir/name') and whether it is a
 * directory, 'include' or 'exclude' by the last pattern that matches, or undefined when none
 * does (the entry then follows its directory). Null for an empty list.
 */
export function compileRestorePatterns(
  patterns: readonly string[],
): ((path: string, isDirectory: boolean) => PatternResult) | null {
  if (patterns.length === 0) return null;
  const rules = patterns.map((p) => {
    const exclude = p.startsWith('!');
    return { exclude, matches: compileGlob(exclude ? p.slice(1) : p) };
  });
  return (path, isDirectory) => {
    for (let i = rules.length - 1; i >= 0; i--) {
      const r = rules[i]!;
      if (r.matches(path, isDirectory)) return r.exclude ? 'exclude' : 'include';
    }
    return undefined;
  };
}

interface OpenDirectory {
  /** Archive path ('/' for the root). */
  pathBytes: Buffer;
  path: string;
  disk: Buffer;
  meta: RestoredMetadata;
  created: boolean;
  /** Whether its members are restored when no pattern decides for them (PBS's current_match). */
  matched: boolean;
  /** The archive made a symlink of this name before: nothing may be created below it. */
  shadowedBySymlink: boolean;
  /** Its archived metadata, for the attributes set once the tree is written. */
  archived: PxarMetadata;
}

/** An entry's attributes to set at the end, and its archived mode. */
interface PendingAttributes extends XattrDumpEntry {
  mode: number;
}

type AttributeKind = 'xattrs' | 'acls' | 'fcaps';

function attributeKind(name: Buffer): AttributeKind {
  if (name.equals(XATTR_FCAPS)) return 'fcaps';
  if (name.equals(XATTR_ACL_ACCESS) || name.equals(XATTR_ACL_DEFAULT)) return 'acls';
  return 'xattrs';
}

/** Warnings about setfattr's complaints: the first ones, then how many more. */
const MAX_ATTRIBUTE_WARNINGS = 10;

const SLASH = Buffer.from('/');

/**
 * Extract the archive `source` yields into `target` (created if missing; an existing one must
 * be empty). Returns what was restored; throws on the first entry that cannot be, naming it.
 */
export async function extractPxar(
  source: PxarEntrySource,
  target: string,
  opts: PxarExtractOptions = {},
): Promise<PxarExtractResult> {
  const { asRoot, warn } = await beginRestore(target, opts.onWarning);
  const result: PxarExtractResult = {
    ...emptyExtractResult(),
    skipped: { xattrs: 0, acls: 0, fcaps: 0, flags: 0, quotaProjectIds: 0 },
    attributeErrors: 0,
  };
  const patternOf = compileRestorePatterns(opts.patterns ?? []);
  const targetBytes = Buffer.from(target.replace(/\/+$/, '') || '/');
  const openDirs: OpenDirectory[] = [];
  /** Archive paths (as latin1 keys, exact for any bytes) of the symlinks made. */
  const symlinks = new Set<string>();

  const skip = (kind: keyof SkippedMetadata, path: string, why: string) => {
    if (result.skipped[kind]++ === 0)
      warn(`${SKIPPED_WHAT[kind]} are not restored (${why}): first on '${path}'`);
  };
  const noteSkipped = (path: string, m: PxarMetadata) => {
    if (m.stat.flags !== 0n) skip('flags', path, 'Node.js cannot set them');
    if (m.quotaProjectId !== undefined) skip('quotaProjectIds', path, 'Node.js cannot set them');
  };

  /** Attributes of restored entries, set at the end (only entries that have any). */
  const pending: PendingAttributes[] = [];
  /** Remember what `m` asks to set on the restored entry at archive path `pathBytes`. */
  const collectAttributes = (path: string, pathBytes: Buffer, m: PxarMetadata, isSymlink: boolean) => {
    let attrs = xattrsToRestore(m, (w) => warn(`'${path}': ${w}`));
    if (attrs.length === 0) return;
    // PBS's client never archives a symlink's attributes; another client's are not followed
    if (isSymlink) {
      for (const kind of new Set(attrs.map((a) => attributeKind(a.name))))
        skip(kind, path, 'not set on symlinks');
      return;
    }
    if (!asRoot) {
      const needRoot = attrs.filter((a) => xattrNeedsRoot(a.name));
      for (const kind of new Set(needRoot.map((a) => attributeKind(a.name))))
        skip(kind, path, 'setting them needs root');
      attrs = attrs.filter((a) => !xattrNeedsRoot(a.name));
      if (attrs.length === 0) return;
    }
    const rel = pathBytes.length <= 1 ? Buffer.from('.') : pathBytes.subarray(1);
    pending.push({ path: rel, attrs, mode: m.stat.mode });
  };

  /** Make the open directories not made yet (those leading to a matched entry). */
  const makeOpenDirectories = async (forPath: string) => {
    for (const dir of openDirs) {
      if (dir.created) continue;
      if (dir.shadowedBySymlink) throw ERR_PXAR_BELOW_SYMLINK(forPath, dir.path);
      // 0700 until its own metadata is set when the archive leaves it
      if (writer) await writer.mkdir(dir.disk);
      else await mkdir(dir.disk, { mode: 0o700 });
      dir.created = true;
      result.dirs++;
    }
  };

  const leave = async (dir: OpenDirectory) => {
    if (!dir.created) return;
    if (writer) await writer.metadata(dir.disk, dir.meta);
    else await setPathMetadata(dir.disk, dir.meta, asRoot);
    collectAttributes(dir.path, dir.pathBytes, dir.archived, false);
  };

  /** The writer thread, once `writerAfterFiles` small files were written here. */
  let writer: RestoreWriter | undefined;
  let smallFilesHere = 0;
  const writerAfterFiles = opts.writerAfterFiles ?? WRITER_AFTER_FILES;

  let sawRoot = false;
  try {
    for await (const entry of source) {
      const meta = restoredMetadata(entry.metadata);
      if (!sawRoot) {
        sawRoot = true;
        if (entry.kind !== 'directory' || entry.path !== '/')
          throw ERR_PXAR_UNSAFE_ENTRY(entry.path, 'the archive does not start with its root directory');
        noteSkipped('/', entry.metadata);
        openDirs.push({
          pathBytes: entry.pathBytes,
          path: '/',
          disk: targetBytes,
          meta,
          created: true,
          matched: patternOf === null,
          shadowedBySymlink: false,
          archived: entry.metadata,
        });
        continue;
      }
      const { parent, name } = splitPath(entry.pathBytes);
      checkName(entry.path, name);
      // the decoder yields no end of a directory: an entry outside the innermost open one ends it
      while (openDirs.length > 1 && !openDirs[openDirs.length - 1]!.pathBytes.equals(parent))
        await leave(openDirs.pop()!);
      const dir = openDirs[openDirs.length - 1];
      if (dir === undefined || !dir.pathBytes.equals(parent))
        throw ERR_PXAR_UNSAFE_ENTRY(
          entry.path,
          `its parent is not a directory of the archive (a name with '/'?)`,
        );
      const disk = Buffer.concat([dir.disk, SLASH, name]);
      const key = entry.pathBytes.toString('latin1');
      const decided = patternOf?.(entry.path, entry.kind === 'directory');
      const selected = decided === undefined ? dir.matched : decided === 'include';

      if (entry.kind === 'directory') {
        openDirs.push({
          pathBytes: entry.pathBytes,
          path: entry.path,
          disk,
          meta,
          created: false,
          matched: selected,
          shadowedBySymlink: symlinks.has(key),
          archived: entry.metadata,
        });
        // a selected directory is restored even when empty, one on the way to a match when a
        // member needs it; one named like an earlier symlink only to refuse its first member
        if (selected && !symlinks.has(key)) {
          noteSkipped(entry.path, entry.metadata);
          await makeOpenDirectories(entry.path);
          opts.onEntry?.({ path: entry.path, kind: entry.kind, bytes: 0 }, result);
        }
        continue;
      }
      if (!selected) continue;
      await makeOpenDirectories(entry.path);
      if (entry.kind !== 'hardlink') noteSkipped(entry.path, entry.metadata);
      const size = entry.kind === 'file' ? (entry.size ?? 0) : 0;
      const smallFile = entry.kind === 'file' && size <= SMALL_FILE;
      const queued = entry.kind === 'symlink' || smallFile;
      if (!writer && smallFile && smallFilesHere++ >= writerAfterFiles) writer = new RestoreWriter(asRoot);
      // what is done here comes after what the writer has queued (a hard link's target, a large
      // file's directory)
      if (writer && !queued) await writer.flush();
      let bytes = 0;
      switch (entry.kind) {
        case 'file':
          bytes = size;
          if (writer && smallFile) await writer.file(disk, size, source.contents(), meta);
          else
            await writeFileEntryOut(source.contents(), disk, bytes, (fd) => setFdMetadata(fd, meta, asRoot));
          collectAttributes(entry.path, entry.pathBytes, entry.metadata, false);
          result.files++;
          result.bytes += bytes;
          break;
        case 'symlink':
          if (writer) await writer.symlink(entry.linkTarget!, disk, meta);
          else {
            // Node takes the target's exact bytes (names need not be UTF-8); its types say string only
            await symlink(entry.linkTarget! as unknown as string, disk);
            await setSymlinkMetadata(disk, meta, asRoot);
          }
          symlinks.add(key);
          collectAttributes(entry.path, entry.pathBytes, entry.metadata, true);
          result.symlinks++;
          break;
        case 'hardlink': {
          const targetPath = hardlinkTargetPath(entry);
          // below the target, and reached through directories this extraction made: the target
          // was empty, and link(2) does not follow a symlink in the last component
          const via = symlinkAncestor(targetPath, symlinks);
          if (via !== undefined)
            throw ERR_PXAR_UNSAFE_ENTRY(entry.path, `its hardlink target is below the symlink '${via}'`);
          try {
            await link(Buffer.concat([targetBytes, targetPath]), disk);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
            warn(`skipping hardlink '${entry.path}': its target '${targetPath.toString()}' was not restored`);
            continue;
          }
          result.special++;
          break;
        }
        case 'device': {
          const { major, minor } = entry.device!;
          const type = (entry.metadata.stat.mode & 0o170000) === 0o060000 ? 'b' : 'c';
          if (!asRoot) {
            warn(`skipping device '${entry.path}' (${type} ${major},${minor}): creating devices needs root`);
            continue;
          }
          const node = { kind: 'device', type, major, minor } as const;
          if (await makeSpecialNode(disk, node, meta, asRoot, warn, `device '${entry.path}'`)) {
            collectAttributes(entry.path, entry.pathBytes, entry.metadata, false);
            result.special++;
          }
          break;
        }
        case 'fifo':
        case 'socket': {
          const node =
            entry.kind === 'fifo'
              ? ({ kind: 'fifo' } as const)
              : ({ kind: 'socket', scratchDir: target } as const);
          if (await makeSpecialNode(disk, node, meta, asRoot, warn, `${entry.kind} '${entry.path}'`)) {
            collectAttributes(entry.path, entry.pathBytes, entry.metadata, false);
            result.special++;
          }
          break;
        }
      }
      opts.onEntry?.({ path: entry.path, kind: entry.kind, bytes }, result);
    }
    if (!sawRoot) throw ERR_PXAR_UNSAFE_ENTRY(target, 'the archive is empty');
    // the root last: its metadata goes to the target itself, as PBS's extractor does
    while (openDirs.length > 0) await leave(openDirs.pop()!);
    await writer?.close();
  } finally {
    // after a failure: nothing more is written once the restore has returned
    await writer?.abort();
  }
  if (pending.length > 0) await setAttributes(target, pending, asRoot, result, warn);
  return result;
}

/**
 * Set the collected attributes with one setfattr run. Not as root, an entry whose mode has no
 * owner write bit is made writable for the run (user.* attributes need write access; chmod
 * changes no mtime) and given its mode back.
 */
async function setAttributes(
  target: string,
  pending: PendingAttributes[],
  asRoot: boolean,
  result: PxarExtractResult,
  warn: (message: string) => void,
): Promise<void> {
  const targetBytes = Buffer.from(target);
  const diskPath = (e: PendingAttributes) => Buffer.concat([targetBytes, SLASH, e.path]);
  const readOnly = asRoot ? [] : pending.filter((e) => (e.mode & 0o200) === 0);
  for (const e of readOnly) await chmod(diskPath(e), (e.mode & 0o7777) | 0o200).catch(() => {});
  let complaints: string[] | typeof TOOL_UNAVAILABLE;
  try {
    complaints = await restoreXattrs(target, formatXattrDump(pending));
  } finally {
    for (const e of readOnly) await chmod(diskPath(e), e.mode & 0o7777).catch(() => {});
  }
  if (complaints === TOOL_UNAVAILABLE) {
    const why = 'setfattr (Debian package attr) is not available';
    for (const e of pending)
      for (const kind of new Set(e.attrs.map((a) => attributeKind(a.name)))) {
        if (result.skipped[kind]++ === 0) warn(`${SKIPPED_WHAT[kind]} are not restored (${why})`);
      }
    return;
  }
  result.attributeErrors += complaints.length;
  for (const c of complaints.slice(0, MAX_ATTRIBUTE_WARNINGS)) warn(`setting extended attributes: ${c}`);
  if (complaints.length > MAX_ATTRIBUTE_WARNINGS)
    warn(`setting extended attributes: ${complaints.length - MAX_ATTRIBUTE_WARNINGS} more failures`);
}

function restoredMetadata(m: PxarMetadata): RestoredMetadata {
  const s = m.stat;
  return { mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, mtime: restoreTime(s.mtimeSecs, s.mtimeNanos) };
}

function splitPath(path: Buffer): { parent: Buffer; name: Buffer } {
  const slash = path.lastIndexOf(0x2f);
  return { parent: slash <= 0 ? SLASH : path.subarray(0, slash), name: path.subarray(slash + 1) };
}

/** PBS refuses the same: a member name is one path component (its decoder checks this too). */
function checkName(path: string, name: Buffer): void {
  if (name.length === 0 || name.includes(0) || name.equals(DOT) || name.equals(DOT_DOT))
    throw ERR_PXAR_UNSAFE_ENTRY(path, `'${name.toString()}' is not a file name`);
}

/** The first proper ancestor of `path` (an archive path) that the extraction made a symlink. */
function symlinkAncestor(path: Buffer, symlinks: ReadonlySet<string>): string | undefined {
  for (let i = path.indexOf(0x2f, 1); i > 0; i = path.indexOf(0x2f, i + 1)) {
    const key = path.subarray(0, i).toString('latin1');
    if (symlinks.has(key)) return path.subarray(0, i).toString();
  }
  return undefined;
}

const DOT = Buffer.from('.');
const DOT_DOT = Buffer.from('..');

/**
 * A hardlink's target as an archive path ('/dir/file'). PBS's client stores it relative to the
 * archive root; one with '.', '..' or empty components would leave what the archive made.
 */
function hardlinkTargetPath(entry: PxarEntry): Buffer {
  const raw = entry.linkTarget!.toString('latin1');
  const parts = raw.replace(/^\/+/, '').split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..'))
    throw ERR_PXAR_UNSAFE_ENTRY(
      entry.path,
      `its hardlink target '${entry.linkTarget!.toString()}' leaves the archive`,
    );
  return Buffer.from(`/${parts.join('/')}`, 'latin1');
}
