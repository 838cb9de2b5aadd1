/**
 * The pxar archive format (the `pxar` crate's `format/mod.rs`, as proxmox-backup-client writes
 * `NAME.pxar.didx` streams): pure codecs for its items, no IO.
 *
 * Every item is a 16-byte header `htype u64 LE || full_size u64 LE` (full_size includes the
 * header) followed by its content; all integers little endian. An archive is its root
 * directory:
 *
 * ```
 * ENTRY                     stat of the root directory
 *   XATTR* ACL_USER* ACL_GROUP* ACL_GROUP_OBJ? ACL_DEFAULT? ACL_DEFAULT_USER* ACL_DEFAULT_GROUP*
 *   FCAPS? QUOTA_PROJID?
 * then per directory member, in strictly increasing byte order of the name:
 *   FILENAME name\0
 *   HARDLINK offset u64 || target\0           (a later name of a file already archived; no ENTRY)
 *   or ENTRY + metadata items as above, then
 *     PAYLOAD bytes                           regular file
 *     SYMLINK target\0                        symlink
 *     DEVICE major u64 || minor u64           block / char device
 *     (nothing)                               FIFO, socket
 *     members ... GOODBYE                     directory (recursively)
 * GOODBYE                   the root's lookup table
 * ```
 *
 * Format version 2 (split archives, `.mpxar` + `.ppxar`) starts with a FORMAT_VERSION item and
 * may carry a PRELUDE, and regular files carry PAYLOAD_REF (offset, size into the payload stream)
 * instead of PAYLOAD; the decoder recognises those, the encoder writes version 1.
 */
import { CorruptDataError } from '../errors.js';
import { sipHash24, sipKey } from './siphash.js';

export const HEADER_SIZE = 16;

/** Item types (`PXAR_*` in the crate; generated there from sha of their names, fixed forever). */
export const PXAR = {
  FORMAT_VERSION: 0x730f6c75df16a40dn,
  ENTRY: 0xd5956474e588acefn,
  /** The entry of archives from pxar before 0.6: mtime as u64 nanoseconds. Decoded, never written. */
  ENTRY_V1: 0x11da850a1c1cceffn,
  PRELUDE: 0xe309d79d9f7b771bn,
  FILENAME: 0x16701121063917b3n,
  SYMLINK: 0x27f971e7dbf5dc5fn,
  DEVICE: 0x9fc9e906586d5ce9n,
  XATTR: 0x0dab0229b57dcd03n,
  ACL_USER: 0x2ce8540a457d55b8n,
  ACL_GROUP: 0x136e3eceb04c03abn,
  ACL_GROUP_OBJ: 0x10868031e9582876n,
  ACL_DEFAULT: 0xbbbb13415a6896f5n,
  ACL_DEFAULT_USER: 0xc89357b40532cd1fn,
  ACL_DEFAULT_GROUP: 0xf90a8a5816038ffen,
  FCAPS: 0x2da9dd9db5f7fb67n,
  QUOTA_PROJID: 0xe07540e82f7d1cbbn,
  HARDLINK: 0x51269c8422bd7275n,
  PAYLOAD: 0x28147a1b0b7c1a25n,
  PAYLOAD_REF: 0x419d3d6bc4ba977en,
  GOODBYE: 0x2fec4fa642d5731dn,
  GOODBYE_TAIL_MARKER: 0xef5eed5b753e1555n,
} as const;

/** Names for messages ("unexpected SYMLINK item"). */
export function itemName(htype: bigint): string {
  for (const [name, value] of Object.entries(PXAR)) if (value === htype) return name;
  return `unknown item 0x${htype.toString(16)}`;
}

/** File type bits of `mode` (fixed by the format, equal to Linux's S_IF*). */
export const MODE = {
  IFMT: 0o170000,
  IFSOCK: 0o140000,
  IFLNK: 0o120000,
  IFREG: 0o100000,
  IFBLK: 0o060000,
  IFDIR: 0o040000,
  IFCHR: 0o020000,
  IFIFO: 0o010000,
} as const;

// Content limits of the crate (`util.rs`): a corrupt size is refused before anything is allocated.
export const MAX_FILENAME_LEN = 4096;
export const MAX_PATH_LEN = 4096;
export const MAX_XATTR_LEN = 255 + 64 * 1024;

/** `echo -n 'PROXMOX ARCHIVE FORMAT' | sha1sum`, split into the two SipHash keys. */
const HASH_KEY = sipKey(0x83ac3f1cfbb450dbn, 0xaa4f1b6879369fbdn);

/** The goodbye-table hash of a directory member's name. */
export function hashFilename(name: Uint8Array): bigint {
  return sipHash24(HASH_KEY, name);
}

/** stat data of an ENTRY: mode with file type bits, chattr/FAT flags, owner, mtime. */
export interface PxarStat {
  mode: number;
  flags: bigint;
  uid: number;
  gid: number;
  /** Seconds since the epoch (negative before 1970). */
  mtimeSecs: number;
  /** 0..999999999, added to mtimeSecs (also before 1970: PBS's StatxTimestamp). */
  mtimeNanos: number;
}

export interface PxarXattr {
  name: Buffer;
  value: Buffer;
}

/** ACL permission bits (4 read, 2 write, 1 execute) or NO_MASK in ACL_DEFAULT's mask. */
export const ACL_NO_MASK = 0xffffffffffffffffn;

export interface PxarAcl {
  users: { uid: number; permissions: bigint }[];
  groups: { gid: number; permissions: bigint }[];
  groupObj?: { permissions: bigint };
  /** The default ACL's base entries; present when the directory has a default ACL. */
  default?: { userObj: bigint; groupObj: bigint; other: bigint; mask: bigint };
  defaultUsers: { uid: number; permissions: bigint }[];
  defaultGroups: { gid: number; permissions: bigint }[];
}

export interface PxarMetadata {
  stat: PxarStat;
  xattrs: PxarXattr[];
  acl: PxarAcl;
  /** security.capability in Linux's on-disk form. */
  fcaps?: Buffer;
  quotaProjectId?: bigint;
}

export function emptyAcl(): PxarAcl {
  return { users: [], groups: [], defaultUsers: [], defaultGroups: [] };
}

export function metadataOf(stat: PxarStat, extra: Partial<Omit<PxarMetadata, 'stat'>> = {}): PxarMetadata {
  return { stat, xattrs: extra.xattrs ?? [], acl: extra.acl ?? emptyAcl(), ...pick(extra) };
}

function pick(extra: Partial<PxarMetadata>): Partial<PxarMetadata> {
  const out: Partial<PxarMetadata> = {};
  if (extra.fcaps !== undefined) out.fcaps = extra.fcaps;
  if (extra.quotaProjectId !== undefined) out.quotaProjectId = extra.quotaProjectId;
  return out;
}

export interface PxarDevice {
  major: number;
  minor: number;
}

/** Linux's dev_t → major/minor (glibc sysmacros.h), as the crate's `Device::from_dev_t`. */
export function deviceFromDevT(dev: bigint): PxarDevice {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/** One goodbye table item: name hash, distance back from the GOODBYE to the FILENAME, size. */
export interface GoodbyeItem {
  hash: bigint;
  offset: number;
  size: number;
}
export const GOODBYE_ITEM_SIZE = 24;

// ----- encoding (pure) ---------------------------------------------------------------------------

export function encodeHeader(htype: bigint, contentSize: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  b.writeBigUInt64LE(htype, 0);
  b.writeBigUInt64LE(BigInt(contentSize + HEADER_SIZE), 8);
  return b;
}

/** One whole item: header and content. */
export function encodeItem(htype: bigint, content: Uint8Array): Buffer {
  return Buffer.concat([encodeHeader(htype, content.length), content]);
}

/** The current ENTRY content (40 bytes): mode, flags, uid, gid, mtime {secs i64, nanos u32, pad u32}. */
export function encodeStat(s: PxarStat): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(BigInt(s.mode), 0);
  b.writeBigUInt64LE(s.flags, 8);
  b.writeUInt32LE(s.uid, 16);
  b.writeUInt32LE(s.gid, 20);
  b.writeBigInt64LE(BigInt(s.mtimeSecs), 24);
  b.writeUInt32LE(s.mtimeNanos, 32);
  return b;
}

function u64(...values: bigint[]): Buffer {
  const b = Buffer.allocUnsafe(8 * values.length);
  values.forEach((v, i) => b.writeBigUInt64LE(v, 8 * i));
  return b;
}

function zeroTerminated(bytes: Uint8Array): Buffer {
  return Buffer.concat([bytes, Buffer.from([0])]);
}

/**
 * The items that follow an ENTRY, in the format's order: xattrs, ACL (users, groups, group_obj,
 * default, default users, default groups), fcaps, quota project id.
 */
export function encodeMetadataItems(m: PxarMetadata): Buffer[] {
  const out: Buffer[] = [encodeItem(PXAR.ENTRY, encodeStat(m.stat))];
  for (const x of m.xattrs)
    out.push(encodeItem(PXAR.XATTR, Buffer.concat([x.name, Buffer.from([0]), x.value])));
  for (const u of m.acl.users) out.push(encodeItem(PXAR.ACL_USER, u64(BigInt(u.uid), u.permissions)));
  for (const g of m.acl.groups) out.push(encodeItem(PXAR.ACL_GROUP, u64(BigInt(g.gid), g.permissions)));
  if (m.acl.groupObj) out.push(encodeItem(PXAR.ACL_GROUP_OBJ, u64(m.acl.groupObj.permissions)));
  const d = m.acl.default;
  if (d) out.push(encodeItem(PXAR.ACL_DEFAULT, u64(d.userObj, d.groupObj, d.other, d.mask)));
  for (const u of m.acl.defaultUsers)
    out.push(encodeItem(PXAR.ACL_DEFAULT_USER, u64(BigInt(u.uid), u.permissions)));
  for (const g of m.acl.defaultGroups)
    out.push(encodeItem(PXAR.ACL_DEFAULT_GROUP, u64(BigInt(g.gid), g.permissions)));
  if (m.fcaps) out.push(encodeItem(PXAR.FCAPS, m.fcaps));
  if (m.quotaProjectId !== undefined) out.push(encodeItem(PXAR.QUOTA_PROJID, u64(m.quotaProjectId)));
  return out;
}

export function encodeFilename(name: Uint8Array): Buffer {
  return encodeItem(PXAR.FILENAME, zeroTerminated(name));
}

export function encodeSymlink(target: Uint8Array): Buffer {
  return encodeItem(PXAR.SYMLINK, zeroTerminated(target));
}

export function encodeHardlink(offset: number, target: Uint8Array): Buffer {
  return encodeItem(PXAR.HARDLINK, Buffer.concat([u64(BigInt(offset)), zeroTerminated(target)]));
}

export function encodeDevice(d: PxarDevice): Buffer {
  return encodeItem(PXAR.DEVICE, u64(BigInt(d.major), BigInt(d.minor)));
}

/**
 * A directory's GOODBYE item: `items` (offsets absolute in the archive) sorted by hash in binary
 * tree order with offsets made relative to the GOODBYE's start, then the tail item whose offset
 * leads back to the directory's ENTRY and whose size is the whole GOODBYE item's.
 */
export function encodeGoodbye(
  items: GoodbyeItem[],
  goodbyeOffset: number,
  entryOffset: number,
  treeOrder: (n: number) => number[],
): Buffer {
  const sorted = [...items].sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  const order = treeOrder(sorted.length);
  const size = HEADER_SIZE + (sorted.length + 1) * GOODBYE_ITEM_SIZE;
  const b = Buffer.allocUnsafe(size);
  encodeHeader(PXAR.GOODBYE, size - HEADER_SIZE).copy(b, 0);
  order.forEach((src, slot) => {
    const item = sorted[src]!;
    const at = HEADER_SIZE + slot * GOODBYE_ITEM_SIZE;
    b.writeBigUInt64LE(item.hash, at);
    b.writeBigUInt64LE(BigInt(goodbyeOffset - item.offset), at + 8);
    b.writeBigUInt64LE(BigInt(item.size), at + 16);
  });
  const tail = HEADER_SIZE + sorted.length * GOODBYE_ITEM_SIZE;
  b.writeBigUInt64LE(PXAR.GOODBYE_TAIL_MARKER, tail);
  b.writeBigUInt64LE(BigInt(goodbyeOffset - entryOffset), tail + 8);
  b.writeBigUInt64LE(BigInt(size), tail + 16);
  return b;
}

// ----- decoding (pure) ---------------------------------------------------------------------------

export interface ItemHeader {
  htype: bigint;
  /** Content bytes after the header. */
  contentSize: number;
}

/** Exact content sizes of the fixed-size items; a mismatch is corruption (`read_simple_entry`). */
const FIXED_SIZE = new Map<bigint, number>([
  [PXAR.ENTRY, 40],
  [PXAR.ENTRY_V1, 32],
  [PXAR.DEVICE, 16],
  [PXAR.ACL_USER, 16],
  [PXAR.ACL_GROUP, 16],
  [PXAR.ACL_DEFAULT_USER, 16],
  [PXAR.ACL_DEFAULT_GROUP, 16],
  [PXAR.ACL_GROUP_OBJ, 8],
  [PXAR.ACL_DEFAULT, 32],
  [PXAR.QUOTA_PROJID, 8],
  [PXAR.PAYLOAD_REF, 16],
  [PXAR.FORMAT_VERSION, 8],
]);

/** Upper bounds of the variable-size items that are read whole into memory. */
const MAX_SIZE = new Map<bigint, number>([
  [PXAR.FILENAME, MAX_FILENAME_LEN + 1],
  [PXAR.SYMLINK, MAX_PATH_LEN + 1],
  [PXAR.HARDLINK, MAX_PATH_LEN + 1 + 8],
  [PXAR.XATTR, MAX_XATTR_LEN],
  [PXAR.FCAPS, MAX_XATTR_LEN],
  [PXAR.PRELUDE, 16 * 1024 * 1024],
]);

/** Parse and check a 16-byte item header; `at` names the archive offset in messages. */
export function decodeHeader(b: Buffer, at: number): ItemHeader {
  if (b.length < HEADER_SIZE) throw corrupt(at, 'truncated item header');
  const htype = b.readBigUInt64LE(0);
  const fullSize = b.readBigUInt64LE(8);
  if (fullSize < BigInt(HEADER_SIZE)) throw corrupt(at, `${itemName(htype)} size ${fullSize} is below 16`);
  if (fullSize > BigInt(Number.MAX_SAFE_INTEGER))
    throw corrupt(at, `${itemName(htype)} size ${fullSize} too large`);
  const contentSize = Number(fullSize) - HEADER_SIZE;
  const fixed = FIXED_SIZE.get(htype);
  if (fixed !== undefined && contentSize !== fixed)
    throw corrupt(at, `${itemName(htype)} has ${contentSize} content bytes, not ${fixed}`);
  const max = MAX_SIZE.get(htype);
  if (max !== undefined && contentSize > max)
    throw corrupt(at, `${itemName(htype)} of ${contentSize} bytes exceeds the format's ${max}`);
  return { htype, contentSize };
}

export function corrupt(at: number, what: string): CorruptDataError {
  return new CorruptDataError(`pxar archive is corrupt at offset ${at}: ${what}`);
}

export function decodeStat(htype: bigint, c: Buffer, at: number): PxarStat {
  const mode = c.readBigUInt64LE(0);
  if (mode > 0xffffffffn) throw corrupt(at, `mode 0x${mode.toString(16)} out of range`);
  const base = {
    mode: Number(mode),
    flags: c.readBigUInt64LE(8),
    uid: c.readUInt32LE(16),
    gid: c.readUInt32LE(20),
  };
  if (htype === PXAR.ENTRY_V1) {
    // mtime as u64 nanoseconds since the epoch (pxar `Stat_V1`)
    const ns = c.readBigUInt64LE(24);
    return { ...base, mtimeSecs: Number(ns / 1_000_000_000n), mtimeNanos: Number(ns % 1_000_000_000n) };
  }
  const nanos = c.readUInt32LE(32);
  if (nanos >= 1_000_000_000) throw corrupt(at, `mtime nanoseconds ${nanos} out of range`);
  return { ...base, mtimeSecs: Number(c.readBigInt64LE(24)), mtimeNanos: nanos };
}

/** Content of FILENAME / SYMLINK / HARDLINK target: bytes up to the mandatory final zero. */
export function decodeZeroTerminated(c: Buffer, at: number, what: string): Buffer {
  if (c.length === 0 || c[c.length - 1] !== 0) throw corrupt(at, `${what} lacks its terminating zero`);
  return c.subarray(0, c.length - 1);
}

/** A member name must be one path component: not empty, '.', '..', no '/' and no NUL. */
export function checkFilename(name: Buffer, at: number): Buffer {
  if (
    name.length === 0 ||
    name.includes(0x2f) ||
    name.includes(0) ||
    (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)
  )
    throw corrupt(at, `invalid file name ${JSON.stringify(name.toString('utf8'))}`);
  return name;
}

export function decodeGoodbyeItem(b: Buffer, off: number, at: number): GoodbyeItem {
  const offset = b.readBigUInt64LE(off + 8);
  const size = b.readBigUInt64LE(off + 16);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER) || size > BigInt(Number.MAX_SAFE_INTEGER))
    throw corrupt(at, 'goodbye item offset or size too large');
  return { hash: b.readBigUInt64LE(off), offset: Number(offset), size: Number(size) };
}

/** Apply one metadata item (XATTR, ACL_*, FCAPS, QUOTA_PROJID) to `m`. */
export function applyMetadataItem(m: PxarMetadata, htype: bigint, c: Buffer, at: number): void {
  switch (htype) {
    case PXAR.XATTR: {
      const sep = c.indexOf(0);
      if (sep < 0) throw corrupt(at, 'XATTR lacks the zero between name and value');
      m.xattrs.push({ name: Buffer.from(c.subarray(0, sep)), value: Buffer.from(c.subarray(sep + 1)) });
      return;
    }
    case PXAR.ACL_USER:
    case PXAR.ACL_DEFAULT_USER: {
      const e = { uid: safeId(c.readBigUInt64LE(0), at), permissions: c.readBigUInt64LE(8) };
      (htype === PXAR.ACL_USER ? m.acl.users : m.acl.defaultUsers).push(e);
      return;
    }
    case PXAR.ACL_GROUP:
    case PXAR.ACL_DEFAULT_GROUP: {
      const e = { gid: safeId(c.readBigUInt64LE(0), at), permissions: c.readBigUInt64LE(8) };
      (htype === PXAR.ACL_GROUP ? m.acl.groups : m.acl.defaultGroups).push(e);
      return;
    }
    case PXAR.ACL_GROUP_OBJ:
      if (m.acl.groupObj) throw corrupt(at, 'second ACL_GROUP_OBJ');
      m.acl.groupObj = { permissions: c.readBigUInt64LE(0) };
      return;
    case PXAR.ACL_DEFAULT:
      if (m.acl.default) throw corrupt(at, 'second ACL_DEFAULT');
      m.acl.default = {
        userObj: c.readBigUInt64LE(0),
        groupObj: c.readBigUInt64LE(8),
        other: c.readBigUInt64LE(16),
        mask: c.readBigUInt64LE(24),
      };
      return;
    case PXAR.FCAPS:
      if (m.fcaps) throw corrupt(at, 'second FCAPS');
      m.fcaps = Buffer.from(c);
      return;
    case PXAR.QUOTA_PROJID:
      if (m.quotaProjectId !== undefined) throw corrupt(at, 'second QUOTA_PROJID');
      m.quotaProjectId = c.readBigUInt64LE(0);
      return;
    default:
      throw corrupt(at, `unexpected ${itemName(htype)}`);
  }
}

export const METADATA_ITEMS = new Set<bigint>([
  PXAR.XATTR,
  PXAR.ACL_USER,
  PXAR.ACL_GROUP,
  PXAR.ACL_GROUP_OBJ,
  PXAR.ACL_DEFAULT,
  PXAR.ACL_DEFAULT_USER,
  PXAR.ACL_DEFAULT_GROUP,
  PXAR.FCAPS,
  PXAR.QUOTA_PROJID,
]);

function safeId(v: bigint, at: number): number {
  if (v > 0xffffffffn) throw corrupt(at, `ACL id ${v} out of range`);
  return Number(v);
}

export function fileTypeOf(mode: number): number {
  return mode & MODE.IFMT;
}
