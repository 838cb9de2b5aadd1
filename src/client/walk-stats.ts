/**
 * The lstat of every entry the metadata walk saw (`measureTree`'s `record`), handed to the pxar
 * walk that follows it when the tree changed since its last backup: one lstat per entry instead of
 * two. On this kind of virtual machine an lstat costs about 12 microseconds: with 100 000 files
 * the second walk's lstats were 1.3 s of a 9.5 s backup.
 *
 * Kept compactly (ten 64-bit numbers and the path's bytes per entry, at most `MAX_RECORDED`) and
 * taken in walk order: both walks go depth first, a directory before its members, names sorted
 * bytewise, so a cursor suffices. An entry the metadata walk did not see (created since) is not
 * found and the pxar walk lstats it; entries the pxar walk passes by (removed since, or below a
 * mount point it does not descend into) are skipped. A file changed between the two walks (a
 * second or so apart) is archived as a file changing during any backup is: its contents reused as
 * the metadata walk saw them when its key is unchanged, else read, with PBS's warnings if its size
 * moved.
 */
import type { MemberStats } from '../pxar/create.js';

/** Entries recorded at most (about 130 bytes each: 65 MB); the pxar walk lstats the ones beyond. */
export const MAX_RECORDED = 500_000;

const FIELDS = 10;
/** The file type bits of a mode (S_IFMT). */
const S_IFMT = 0o170000n;

/** A recorded lstat, answering what the pxar walk asks of a BigIntStats. */
export class RecordedStat implements MemberStats {
  constructor(
    readonly mode: bigint,
    readonly uid: bigint,
    readonly gid: bigint,
    readonly size: bigint,
    readonly mtimeNs: bigint,
    readonly ctimeNs: bigint,
    readonly ino: bigint,
    readonly dev: bigint,
    readonly nlink: bigint,
    readonly rdev: bigint,
  ) {}
  // prototype methods, not arrow properties: one recorded stat is made per entry of the walk
  private is(type: bigint): boolean {
    return (this.mode & S_IFMT) === type;
  }
  isDirectory(): boolean {
    return this.is(0o040000n);
  }
  isFile(): boolean {
    return this.is(0o100000n);
  }
  isSymbolicLink(): boolean {
    return this.is(0o120000n);
  }
  isFIFO(): boolean {
    return this.is(0o010000n);
  }
  isCharacterDevice(): boolean {
    return this.is(0o020000n);
  }
  isBlockDevice(): boolean {
    return this.is(0o060000n);
  }
  isSocket(): boolean {
    return this.is(0o140000n);
  }
}

const SLASH = 0x2f;

/**
 * Whether path `a` comes before `b` in the walks' order (paths relative to the root,
 * '/'-separated): component by component bytewise, a directory before its members.
 */
export function walksBefore(a: Buffer, aStart: number, aEnd: number, b: Buffer): boolean {
  const aLength = aEnd - aStart;
  const n = Math.min(aLength, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[aStart + i]!;
    const y = b[i]!;
    if (x === y) continue;
    if (x === SLASH) return true; // a's name ends first: a prefix of b's name
    if (y === SLASH) return false;
    return x < y;
  }
  return aLength < b.length;
}

export class RecordedStats {
  /** Every entry's path, UTF-8, one after the other (no string per entry stays alive). */
  private paths: Buffer;
  private pathEnds: Uint32Array;
  private pathBytes = 0;
  /** The lstat fields, FIELDS per entry; `unsigned` is the same memory read unsigned. */
  private nums: BigInt64Array;
  private unsigned: BigUint64Array;
  private count = 0;
  private next = 0;

  /** Room for `entries` at first (it grows). */
  constructor(entries = 4096) {
    this.paths = Buffer.allocUnsafe(entries * 64);
    this.pathEnds = new Uint32Array(entries);
    this.nums = new BigInt64Array(entries * FIELDS);
    this.unsigned = new BigUint64Array(this.nums.buffer);
  }

  /** Record an entry (path relative to the root, never the root itself), in walk order. */
  add(rel: string | Buffer, st: MemberStats): void {
    if (this.count >= MAX_RECORDED) return;
    const bytes = Buffer.byteLength(rel);
    if (this.pathBytes + bytes > this.paths.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.paths.length * 2, this.pathBytes + bytes));
      this.paths.copy(grown, 0, 0, this.pathBytes);
      this.paths = grown;
    }
    if (this.count === this.pathEnds.length) {
      const ends = new Uint32Array(this.pathEnds.length * 2);
      ends.set(this.pathEnds);
      this.pathEnds = ends;
      const nums = new BigInt64Array(this.nums.length * 2);
      nums.set(this.nums);
      this.nums = nums;
      this.unsigned = new BigUint64Array(nums.buffer);
    }
    this.pathBytes +=
      typeof rel === 'string' ? this.paths.write(rel, this.pathBytes) : rel.copy(this.paths, this.pathBytes);
    this.pathEnds[this.count] = this.pathBytes;
    // in RecordedStat's order; a typed array stores a bigint modulo 2^64
    const at = this.count * FIELDS;
    const v = [st.mode, st.uid, st.gid, st.size, st.mtimeNs, st.ctimeNs, st.ino, st.dev, st.nlink, st.rdev];
    for (let f = 0; f < FIELDS; f++) this.nums[at + f] = v[f]!;
    this.count++;
  }

  /**
   * The recorded lstat of `rel` (the walks' next entry, in their order), or undefined when the
   * metadata walk did not record it. Entries before it that were never asked for are dropped.
   * A name that is not UTF-8 is never found: the metadata walk recorded it as text.
   */
  take(rel: Buffer): MemberStats | undefined {
    // compared in place: no view of the recorded path is made per step
    const at = this.seek(rel);
    return typeof at === 'object' ? this.statAt(at.index) : undefined;
  }

  /** Entries recorded. */
  get size(): number {
    return this.count;
  }

  /**
   * Where `rel` stands against the next entry not yet taken: 'found' (taken: `statAt(index)`),
   * 'not-recorded' (the next recorded entry comes after it in walk order), or 'end' (every entry
   * was taken or passed). Entries before it are passed.
   */
  seek(rel: Buffer): { index: number } | 'not-recorded' | 'end' {
    while (this.next < this.count) {
      const start = this.next === 0 ? 0 : this.pathEnds[this.next - 1]!;
      const end = this.pathEnds[this.next]!;
      if (rel.compare(this.paths, start, end) === 0) return { index: this.next++ };
      if (!walksBefore(this.paths, start, end, rel)) return 'not-recorded';
      this.next++;
    }
    return 'end';
  }

  /** The arrays behind the entries, to move them to another thread (`fromArrays` there). */
  arrays(): { paths: Uint8Array; pathEnds: Uint32Array; nums: BigInt64Array; count: number } {
    return {
      paths: this.paths.subarray(0, this.pathBytes),
      pathEnds: this.pathEnds.subarray(0, this.count),
      nums: this.nums.subarray(0, this.count * FIELDS),
      count: this.count,
    };
  }

  static fromArrays(a: ReturnType<RecordedStats['arrays']>): RecordedStats {
    const r = new RecordedStats();
    r.paths = Buffer.from(a.paths.buffer, a.paths.byteOffset, a.paths.byteLength);
    r.pathBytes = a.paths.byteLength;
    r.pathEnds = a.pathEnds;
    r.nums = a.nums;
    r.unsigned = new BigUint64Array(a.nums.buffer, a.nums.byteOffset, a.nums.length);
    r.count = a.count;
    return r;
  }

  /** The path of entry `i` (a view of the record: valid until the next `add`). */
  pathAt(i: number): Buffer {
    return this.paths.subarray(i === 0 ? 0 : this.pathEnds[i - 1]!, this.pathEnds[i]!);
  }

  /**
   * Entry `i`'s lstat fields as stored: ten 64-bit numbers, little-endian (every platform Node
   * runs on), in RecordedStat's order. A view of the record.
   */
  fieldsAt(i: number): Buffer {
    return Buffer.from(this.nums.buffer, this.nums.byteOffset + i * FIELDS * 8, FIELDS * 8);
  }

  statAt(i: number): MemberStats {
    const at = i * FIELDS;
    const n = this.nums;
    const u = this.unsigned;
    // in RecordedStat's order; the times read signed (before 1970 they are negative), the rest unsigned
    return new RecordedStat(
      u[at]!,
      u[at + 1]!,
      u[at + 2]!,
      u[at + 3]!,
      n[at + 4]!,
      n[at + 5]!,
      u[at + 6]!,
      u[at + 7]!,
      u[at + 8]!,
      u[at + 9]!,
    );
  }
}
