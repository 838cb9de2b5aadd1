/**
 * Whole directories of a pxar tree taken from the previous archive without walking them: the
 * nightly case where a few directories changed and the rest did not. Per-file reuse
 * (tree-reuse.ts) spares reading unchanged files but still encodes every entry again (about
 * 100 microseconds each on this kind of machine: 0.7 s of a 1.3 s backup of 6 000 files with one
 * changed); a directory whose every member is as before is one reusable piece instead.
 *
 * A directory's key digests its own lstat and path and, in walk order, every member's name and
 * lstat (mode, owner, size, times with ctime, inode, device, link count), a subdirectory by its own
 * digest: equal keys mean equal members, and with them the same archived bytes from its FILENAME to
 * its GOODBYE (pxar's offsets inside a directory are relative, so its bytes do not depend on where
 * it lies). Attributes, ACLs and capabilities are not in the key: changing one moves the ctime.
 * The previous backup records where each keyed directory lay (the tree cache's `dirs`); this one
 * computes the keys before its walk from the metadata walk's lstats (`recordedDirectories`), and
 * while its walk goes, from what it archives (`DirectoryKeyer`), for the next backup.
 *
 * Never keyed (so always walked): a directory holding, at any depth, a member changed within the
 * racy margin, a file with more than one link (hard links point across directories by offset), a
 * member on another device (mount points are archived by options), a name that is not UTF-8 (the
 * metadata walk records names as text), or anything the walk warned about.
 */
import { isUtf8 } from 'node:buffer';
import { createHash, type Hash } from 'node:crypto';
import { isBelow, type DirectoryReuse, type MemberStats, type ReusableDirectory } from '../pxar/create.js';
import { ENTRY_KEY_HEX } from './tar-archive.js';
import { MAX_RECORDED, type RecordedStats } from './walk-stats.js';

const SLASH = 0x2f;
/** U+FFFD in UTF-8: what a name that was not UTF-8 became in the metadata walk's text. */
const REPLACEMENT = Buffer.from('\ufffd');
const S_IFMT = 0o170000n;
const S_IFREG = 0o100000n;

interface OpenDirectory {
  hash: Hash;
  dev: bigint;
  /** A member makes it unkeyable. */
  poisoned: boolean;
}

/** The lstat fields a key holds, as 80 bytes (as RecordedStats keeps them, `fieldsAt`). */
function fields(st: MemberStats, out: Buffer): Buffer {
  const v = [st.mode, st.uid, st.gid, st.size, st.mtimeNs, st.ctimeNs, st.ino, st.dev, st.nlink, st.rdev];
  for (let i = 0; i < v.length; i++) out.writeBigUInt64LE(BigInt.asUintN(64, v[i]!), i * 8);
  return out;
}

/**
 * Directory keys from the members of a walk, given in walk order: `enter` a directory, `member`
 * each of its members (a subdirectory before it is entered), `leave` it for its key.
 */
export class DirectoryKeyer {
  private readonly open: OpenDirectory[] = [];
  private readonly scratch = Buffer.alloc(80);
  private readonly length = Buffer.alloc(4);

  constructor(private readonly racyAfterNs: bigint) {}

  /** `fieldBytes`: the lstat fields as `fields` writes them, when they are at hand. */
  member(name: Buffer, st: MemberStats, fieldBytes?: Buffer): void {
    const top = this.open.at(-1);
    if (!top) return;
    if (
      st.ctimeNs >= this.racyAfterNs ||
      st.dev !== top.dev ||
      ((st.mode & S_IFMT) === S_IFREG && st.nlink > 1n) ||
      !isUtf8(name) ||
      name.includes(REPLACEMENT)
    )
      top.poisoned = true;
    this.length.writeUInt32LE(name.length);
    top.hash
      .update(this.length)
      .update(name)
      .update(fieldBytes ?? fields(st, this.scratch));
  }

  enter(rel: Buffer, st: MemberStats): void {
    this.length.writeUInt32LE(rel.length);
    const hash = createHash('sha256')
      .update('pxar directory\n')
      .update(this.length)
      .update(rel)
      .update(fields(st, this.scratch));
    this.open.push({ hash, dev: st.dev, poisoned: st.ctimeNs >= this.racyAfterNs });
  }

  /**
   * The directory entered last is done: its key ('' when it may not be reused) and digest. A
   * directory taken whole gives the `digest` its members had when they were keyed.
   */
  leave(digest?: Buffer): { key: string; digest: Buffer } {
    const d = this.open.pop()!;
    const own = digest ?? d.hash.digest();
    const parent = this.open.at(-1);
    if (parent) {
      parent.hash.update(own);
      if (d.poisoned) parent.poisoned = true;
    }
    return { key: d.poisoned ? '' : own.toString('hex', 0, ENTRY_KEY_HEX / 2), digest: own };
  }

  /** Something in the open directories was left out or read changing (a warning): none is keyed. */
  poison(): void {
    for (const d of this.open) d.poisoned = true;
  }
}

/** A keyed directory of the metadata walk's record: its members are entries `index + 1` to `end - 1`. */
interface RecordedDirectory {
  key: string;
  digest: Buffer;
  index: number;
  end: number;
}

/** The keyed directories of a metadata walk's record, by path (latin1 of its bytes). */
export function recordedDirectories(
  stats: RecordedStats,
  racyAfterNs: bigint,
): Map<string, RecordedDirectory> {
  const out = new Map<string, RecordedDirectory>();
  // a record cut short holds only part of the last directories
  if (stats.size >= MAX_RECORDED) return out;
  const keyer = new DirectoryKeyer(racyAfterNs);
  const open: Array<{ rel: Buffer; index: number }> = [];
  const close = (end: number) => {
    const d = open.pop()!;
    const { key, digest } = keyer.leave();
    if (key) out.set(d.rel.toString('latin1'), { key, digest, index: d.index, end });
  };
  for (let i = 0; i < stats.size; i++) {
    const rel = stats.pathAt(i);
    while (open.length > 0 && !isBelow(rel, open.at(-1)!.rel)) close(i);
    const st = stats.statAt(i);
    keyer.member(rel.subarray(rel.lastIndexOf(SLASH) + 1), st, stats.fieldsAt(i));
    if (st.isDirectory()) {
      keyer.enter(rel, st);
      open.push({ rel, index: i });
    }
  }
  while (open.length > 0) close(stats.size);
  return out;
}

/** Where each directory lay in an archive, by key, in archive order. */
export interface DirectorySpan {
  key: string;
  start: number;
  length: number;
}

/**
 * Directory reuse for a pxar walk (`PayloadReuse.directories`): keys its directories for the next
 * backup (`onLeave` for each one it walked), and, with the metadata walk's record and the
 * previous archive's directories, offers those whose key the previous archive has.
 */
export function directoryReuse(opts: {
  racyAfterNs: bigint;
  recorded?: RecordedStats;
  previous?: ReadonlyMap<string, readonly [number, number]>;
  /** A directory is walked (not taken whole): called before its first byte. */
  onEnter: () => void;
  /** A walked directory ended: where it lies, with its key ('' when it has none). */
  onLeave: (span: DirectorySpan) => void;
}): DirectoryReuse {
  const keyer = new DirectoryKeyer(opts.racyAfterNs);
  let recorded: Map<string, RecordedDirectory> | undefined;
  /** Per open directory: the recorded one when it is taken whole. */
  const taken: Array<RecordedDirectory | undefined> = [];
  return {
    member: (name, st) => keyer.member(name, st),
    enter(rel, st) {
      keyer.enter(rel, st);
      let reusable: ReusableDirectory | undefined;
      let found: RecordedDirectory | undefined;
      if (opts.recorded && opts.previous && opts.previous.size > 0) {
        recorded ??= recordedDirectories(opts.recorded, opts.racyAfterNs);
        found = recorded.get(rel.toString('latin1'));
        const old = found && opts.previous.get(found.key);
        if (old) {
          const { index, end } = found!;
          const stats = opts.recorded;
          reusable = {
            key: found!.key,
            oldStart: old[0],
            length: old[1],
            *members() {
              for (let i = index + 1; i < end; i++) yield { rel: stats.pathAt(i), st: stats.statAt(i) };
            },
          };
        }
      }
      taken.push(reusable && found);
      if (!reusable) opts.onEnter();
      return reusable;
    },
    leave(start, length) {
      const whole = taken.pop();
      const { key } = keyer.leave(whole?.digest);
      // a directory taken whole is recorded with what it holds (the span recorder's `reused`)
      if (!whole) opts.onLeave({ key, start, length });
    },
    poison: () => keyer.poison(),
  };
}
