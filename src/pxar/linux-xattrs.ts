/**
 * Linux extended attributes as pxar metadata and back, the way PBS's client maps them
 * (pbs-client/src/pxar/create.rs `get_xattr_fcaps_acl`, `process_acl`; metadata.rs
 * `apply_xattrs`, `add_fcaps`, `apply_acls`): pure, no IO (src/sys/xattr-tools.ts reads and
 * writes the attributes with getfattr and setfattr).
 *
 * - `user.*`, `trusted.*` and `security.NTACL` (Samba's Windows ACLs) become XATTR items; every
 *   other name (`security.selinux`, `system.*`, ...) is not archived, as in PBS
 *   (proxmox-sys `is_valid_xattr_name`);
 * - `security.capability` becomes the FCAPS item, its bytes as they are;
 * - `system.posix_acl_access` / `system.posix_acl_default` (the kernel's binary ACL,
 *   include/uapi/linux/posix_acl_xattr.h) become the ACL_* items. The owner, group and other
 *   entries of an access ACL are the mode's bits and are not stored; the group entry is stored
 *   (ACL_GROUP_OBJ) only when the ACL has a mask, which the mode's group bits then hold.
 * Symlinks carry none of them (PBS reads them through the file, which a symlink is not).
 */
import { ERR_LINUX_ACL_INVALID } from '../errors.js';
import { ACL_NO_MASK, MODE, emptyAcl, type PxarAcl, type PxarMetadata, type PxarXattr } from './format.js';

export const XATTR_ACL_ACCESS = Buffer.from('system.posix_acl_access');
export const XATTR_ACL_DEFAULT = Buffer.from('system.posix_acl_default');
export const XATTR_FCAPS = Buffer.from('security.capability');
const XATTR_NTACL = Buffer.from('security.NTACL');
const USER_PREFIX = Buffer.from('user.');
const TRUSTED_PREFIX = Buffer.from('trusted.');

/**
 * The names PBS archives, as a POSIX extended regular expression for `getfattr -m`: what the
 * tool lists is only what the archive keeps (a tree labelled by SELinux lists no attributes).
 */
export const ARCHIVED_XATTR_PATTERN =
  '^(user\\.|trusted\\.|security\\.(NTACL|capability)$|system\\.posix_acl_(access|default)$)';

/** An ordinary attribute PBS keeps as an XATTR item (proxmox-sys `is_valid_xattr_name`). */
export function isArchivedXattrName(name: Buffer): boolean {
  if (name.length === 0 || name.length > 255) return false;
  return startsWith(name, USER_PREFIX) || startsWith(name, TRUSTED_PREFIX) || name.equals(XATTR_NTACL);
}

/** Whether setting the attribute takes privileges (CAP_SYS_ADMIN, CAP_SETFCAP) an owner lacks. */
export function xattrNeedsRoot(name: Buffer): boolean {
  return !startsWith(name, USER_PREFIX) && !name.equals(XATTR_ACL_ACCESS) && !name.equals(XATTR_ACL_DEFAULT);
}

function startsWith(b: Buffer, prefix: Buffer): boolean {
  return b.length >= prefix.length && b.subarray(0, prefix.length).equals(prefix);
}

// ----- the kernel's binary POSIX ACL ---------------------------------------------------------------

/** `e_tag` values of posix_acl_xattr_entry (include/uapi/linux/posix_acl.h). */
export const ACL_TAG = {
  USER_OBJ: 0x01,
  USER: 0x02,
  GROUP_OBJ: 0x04,
  GROUP: 0x08,
  MASK: 0x10,
  OTHER: 0x20,
} as const;
const ACL_XATTR_VERSION = 2;
/** `e_id` of the entries without a qualifier. */
const ACL_UNDEFINED_ID = 0xffffffff;

export interface LinuxAclEntry {
  tag: number;
  /** rwx bits (4, 2, 1). */
  perm: number;
  /** uid or gid for USER and GROUP entries. */
  id?: number;
}

/** `system.posix_acl_*`'s bytes: version 2, then 8-byte entries `tag u16, perm u16, id u32` (LE). */
export function decodeLinuxAcl(b: Buffer): LinuxAclEntry[] {
  if (b.length < 4 || (b.length - 4) % 8 !== 0) throw ERR_LINUX_ACL_INVALID(`${b.length} bytes`);
  const version = b.readUInt32LE(0);
  if (version !== ACL_XATTR_VERSION) throw ERR_LINUX_ACL_INVALID(`version ${version}`);
  const out: LinuxAclEntry[] = [];
  for (let at = 4; at < b.length; at += 8) {
    const tag = b.readUInt16LE(at);
    const perm = b.readUInt16LE(at + 2);
    if (!Object.values(ACL_TAG).includes(tag as never))
      throw ERR_LINUX_ACL_INVALID(`unknown tag 0x${tag.toString(16)}`);
    out.push(
      tag === ACL_TAG.USER || tag === ACL_TAG.GROUP
        ? { tag, perm, id: b.readUInt32LE(at + 4) }
        : { tag, perm },
    );
  }
  return out;
}

/**
 * Entries as the kernel wants them (posix_acl_valid): by tag (owner, users, group, groups, mask,
 * other), named ones by id.
 */
export function encodeLinuxAcl(entries: readonly LinuxAclEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => a.tag - b.tag || (a.id ?? 0) - (b.id ?? 0));
  const b = Buffer.alloc(4 + 8 * sorted.length);
  b.writeUInt32LE(ACL_XATTR_VERSION, 0);
  sorted.forEach((e, i) => {
    b.writeUInt16LE(e.tag, 4 + 8 * i);
    b.writeUInt16LE(e.perm & 7, 6 + 8 * i);
    b.writeUInt32LE(e.id ?? ACL_UNDEFINED_ID, 8 + 8 * i);
  });
  return b;
}

/**
 * The pxar ACL of an entry from its `system.posix_acl_access` and (directories)
 * `system.posix_acl_default` values, as PBS's `process_acl`: named users and groups sorted; the
 * access group entry only when there is a mask; the default ACL's base entries with NO_MASK for
 * one that is missing.
 */
export function pxarAclFromLinux(access?: Buffer, dflt?: Buffer): PxarAcl {
  const acl = emptyAcl();
  if (access) {
    const entries = decodeLinuxAcl(access);
    acl.users = namedUsers(entries);
    acl.groups = namedGroups(entries);
    const groupObj = entries.find((e) => e.tag === ACL_TAG.GROUP_OBJ);
    if (groupObj && entries.some((e) => e.tag === ACL_TAG.MASK))
      acl.groupObj = { permissions: BigInt(groupObj.perm) };
  }
  if (dflt) {
    const entries = decodeLinuxAcl(dflt);
    const perm = (tag: number) => {
      const e = entries.find((x) => x.tag === tag);
      return e === undefined ? ACL_NO_MASK : BigInt(e.perm);
    };
    const base = {
      userObj: perm(ACL_TAG.USER_OBJ),
      groupObj: perm(ACL_TAG.GROUP_OBJ),
      other: perm(ACL_TAG.OTHER),
      mask: perm(ACL_TAG.MASK),
    };
    if (Object.values(base).some((p) => p !== ACL_NO_MASK)) acl.default = base;
    acl.defaultUsers = namedUsers(entries);
    acl.defaultGroups = namedGroups(entries);
  }
  return acl;
}

function namedUsers(entries: LinuxAclEntry[]): PxarAcl['users'] {
  return entries
    .filter((e) => e.tag === ACL_TAG.USER)
    .map((e) => ({ uid: e.id!, permissions: BigInt(e.perm) }))
    .sort((a, b) => a.uid - b.uid || Number(a.permissions - b.permissions));
}

function namedGroups(entries: LinuxAclEntry[]): PxarAcl['groups'] {
  return entries
    .filter((e) => e.tag === ACL_TAG.GROUP)
    .map((e) => ({ gid: e.id!, permissions: BigInt(e.perm) }))
    .sort((a, b) => a.gid - b.gid || Number(a.permissions - b.permissions));
}

/** Whether the access part of a pxar ACL holds anything the mode does not say. */
function hasAccessAcl(acl: PxarAcl): boolean {
  return acl.users.length > 0 || acl.groups.length > 0 || acl.groupObj !== undefined;
}

/** Whether a pxar ACL holds anything to restore. */
export function hasPxarAcl(acl: PxarAcl): boolean {
  return (
    hasAccessAcl(acl) ||
    acl.default !== undefined ||
    acl.defaultUsers.length > 0 ||
    acl.defaultGroups.length > 0
  );
}

/**
 * The kernel ACL values for a pxar ACL on an entry of mode `mode`, as PBS's `apply_acls`: the
 * access ACL's owner, other and mask entries from the mode (the group entry from the mode
 * unless stored); a default ACL when the archive has one. An access ACL with named entries but
 * no stored group entry gets the mode's group bits as its mask (PBS warns the same way).
 */
export function linuxAclFromPxar(
  acl: PxarAcl,
  mode: number,
  warn: (message: string) => void = () => {},
): { access?: Buffer; default?: Buffer } {
  const out: { access?: Buffer; default?: Buffer } = {};
  const named = (users: PxarAcl['users'], groups: PxarAcl['groups']): LinuxAclEntry[] => [
    ...users.map((u) => ({ tag: ACL_TAG.USER, perm: Number(u.permissions & 7n), id: u.uid })),
    ...groups.map((g) => ({ tag: ACL_TAG.GROUP, perm: Number(g.permissions & 7n), id: g.gid })),
  ];
  if (hasAccessAcl(acl)) {
    const groupBits = (mode >> 3) & 7;
    const entries: LinuxAclEntry[] = [
      { tag: ACL_TAG.USER_OBJ, perm: (mode >> 6) & 7 },
      { tag: ACL_TAG.OTHER, perm: mode & 7 },
      ...named(acl.users, acl.groups),
    ];
    if (acl.groupObj) {
      entries.push({ tag: ACL_TAG.GROUP_OBJ, perm: Number(acl.groupObj.permissions & 7n) });
      entries.push({ tag: ACL_TAG.MASK, perm: groupBits });
    } else {
      warn("ACL without its group entry: the group entry and mask are set to the mode's group bits");
      entries.push({ tag: ACL_TAG.GROUP_OBJ, perm: groupBits }, { tag: ACL_TAG.MASK, perm: groupBits });
    }
    out.access = encodeLinuxAcl(entries);
  }
  const d = acl.default;
  if (d) {
    const entries: LinuxAclEntry[] = [
      { tag: ACL_TAG.USER_OBJ, perm: Number(d.userObj & 7n) },
      { tag: ACL_TAG.GROUP_OBJ, perm: Number(d.groupObj & 7n) },
      { tag: ACL_TAG.OTHER, perm: Number(d.other & 7n) },
      ...named(acl.defaultUsers, acl.defaultGroups),
    ];
    if (d.mask !== ACL_NO_MASK) entries.push({ tag: ACL_TAG.MASK, perm: Number(d.mask & 7n) });
    out.default = encodeLinuxAcl(entries);
  }
  return out;
}

// ----- whole entries -------------------------------------------------------------------------------

/** One extended attribute of a file on disk. */
export interface Xattr {
  name: Buffer;
  value: Buffer;
}

/** What an entry's attributes add to its pxar metadata. */
export type XattrMetadata = Pick<PxarMetadata, 'xattrs' | 'acl' | 'fcaps'>;

/**
 * An entry's attributes (as getfattr lists them) as pxar metadata: archived ones sorted by name
 * (PBS keeps listxattr's order; sorted, equal trees give equal archives), the ACL (a default one
 * for directories only) and the capability (regular files only). None for a symlink.
 */
export function xattrMetadataOf(
  attrs: readonly Xattr[],
  kind: 'file' | 'directory' | 'symlink' | 'other',
): XattrMetadata {
  const out: XattrMetadata = { xattrs: [], acl: emptyAcl() };
  if (kind === 'symlink') return out;
  let access: Buffer | undefined;
  let dflt: Buffer | undefined;
  for (const a of attrs) {
    if (a.name.equals(XATTR_FCAPS)) {
      if (kind === 'file') out.fcaps = Buffer.from(a.value);
    } else if (a.name.equals(XATTR_ACL_ACCESS)) access = a.value;
    else if (a.name.equals(XATTR_ACL_DEFAULT)) {
      if (kind === 'directory') dflt = a.value;
    } else if (isArchivedXattrName(a.name))
      out.xattrs.push({ name: Buffer.from(a.name), value: Buffer.from(a.value) });
  }
  out.xattrs.sort((a, b) => Buffer.compare(a.name, b.name));
  out.acl = pxarAclFromLinux(access, dflt);
  return out;
}

/**
 * The attributes to set on a restored entry for its pxar metadata, in PBS's order (xattrs, file
 * capability, ACLs). XATTR items with names PBS would not restore are left out, and so are a
 * default ACL of anything but a directory and a capability of anything but a regular file. `warn` hears
 * about an ACL PBS warns about too.
 */
export function xattrsToRestore(meta: PxarMetadata, warn?: (message: string) => void): Xattr[] {
  const out: Xattr[] = meta.xattrs.filter((x: PxarXattr) => isArchivedXattrName(x.name));
  // the kernel takes a capability on a regular file only
  if (meta.fcaps && (meta.stat.mode & MODE.IFMT) === MODE.IFREG)
    out.push({ name: XATTR_FCAPS, value: meta.fcaps });
  const acl = linuxAclFromPxar(meta.acl, meta.stat.mode, warn);
  if (acl.access) out.push({ name: XATTR_ACL_ACCESS, value: acl.access });
  // only a directory can have one (the kernel refuses it on anything else)
  if (acl.default && (meta.stat.mode & MODE.IFMT) === MODE.IFDIR)
    out.push({ name: XATTR_ACL_DEFAULT, value: acl.default });
  return out;
}
