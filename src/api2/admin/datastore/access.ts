/**
 * PBS's "A or B+owner" rule (reference §2 legend; `check_ns_privs_full`, `check_backup_owner` in
 * PBS `src/backup/hierarchy.rs`): a caller with any privilege of A on `/datastore/{store}[/{ns}]`
 * has full access; one with any privilege of B only to the groups it owns; anyone else gets 403
 * naming both. Every ownership-checked datastore route calls these helpers and nothing else.
 *
 * The privilege part needs no disk and runs before admission; the owner part reads the group's
 * `owner` file and so runs on an admitted datastore.
 */
import { ForbiddenError, isStowageError } from '../../../errors.js';
import { isBackupOwner } from '../../../config/user-config.js';
import type { BackupGroup, BackupNamespace } from '../../../datastore/backup-info.js';
import type { Datastore } from '../../../datastore/datastore.js';
import { datastoreAclPath, type UserInfo } from '../../../server/permissions.js';
import { withDatastore, type AdmissionInfo, type Caller } from './common.js';

export { datastoreAclPath };

/** What a caller may do on one namespace: everything, or only what it owns. */
export interface NamespaceAccess {
  readonly authId: string;
  /** Holds a privilege of the full-access set: no ownership check. */
  readonly full: boolean;
}

/**
 * "Any of `fullPrivs`, or any of `ownerPrivs` (then only owned groups)" on the namespace, or
 * undefined when neither holds: for walks over many namespaces, which skip the ones the caller
 * may not touch instead of failing.
 */
export function namespaceAccess(
  userInfo: UserInfo,
  authId: string,
  store: string,
  ns: BackupNamespace | undefined,
  fullPrivs: readonly string[],
  ownerPrivs: readonly string[],
): NamespaceAccess | undefined {
  const path = datastoreAclPath(store, ns);
  if (userInfo.hasPrivs(authId, path, fullPrivs, { partial: true })) return { authId, full: true };
  if (userInfo.hasPrivs(authId, path, ownerPrivs, { partial: true })) return { authId, full: false };
  return undefined;
}

/**
 * Check "any of `fullPrivs`, or any of `ownerPrivs` (then only owned groups)" on the namespace.
 * Throws the 403 `permission check failed - missing A|B on /datastore/...` when neither holds.
 */
export function checkNamespaceAccess(
  userInfo: UserInfo,
  authId: string,
  store: string,
  ns: BackupNamespace | undefined,
  fullPrivs: readonly string[],
  ownerPrivs: readonly string[],
): NamespaceAccess {
  const access = namespaceAccess(userInfo, authId, store, ns, fullPrivs, ownerPrivs);
  if (access) return access;
  const path = datastoreAclPath(store, ns);
  userInfo.checkPrivs(authId, path, [...new Set([...fullPrivs, ...ownerPrivs])], { partial: true });
  return { authId, full: false }; // not reached: checkPrivs threw
}

/**
 * Whether the caller may act on `group`: always with full access, else when it owns the group. A
 * group without an owner file belongs to nobody.
 */
export function mayAccessGroup(datastore: Datastore, group: BackupGroup, access: NamespaceAccess): boolean {
  if (access.full) return true;
  let owner: string;
  try {
    owner = datastore.getOwner(group);
  } catch (err) {
    if (isStowageError(err) && err.code === 'NOT_FOUND') return false;
    throw err;
  }
  return isBackupOwner(owner, access.authId);
}

/** Throw 403 (PBS wording) unless `mayAccessGroup`. */
export function checkGroupAccess(datastore: Datastore, group: BackupGroup, access: NamespaceAccess): void {
  if (mayAccessGroup(datastore, group, access)) return;
  let owner = 'nobody';
  try {
    owner = datastore.getOwner(group);
  } catch {
    // no owner file: nobody owns it
  }
  throw new ForbiddenError(`backup owner check failed (${access.authId} != ${owner})`);
}

/**
 * A route on one group, the whole "A or B+owner" sequence in PBS's order: the privilege check
 * (403, thrown before anything is admitted), then `fn` under an admitted `op` on `store` (503 in
 * maintenance) once the owner check on the admitted datastore passed.
 */
export function withGroupAccess<T>(
  caller: Caller & { userInfo: UserInfo },
  store: string,
  group: BackupGroup,
  privs: { full: readonly string[]; owner: readonly string[] },
  op: 'read' | 'write',
  info: AdmissionInfo,
  fn: (datastore: Datastore) => T | Promise<T>,
): Promise<T> {
  const { userInfo, authId } = caller;
  const access = checkNamespaceAccess(userInfo, authId, store, group.ns, privs.full, privs.owner);
  return withDatastore(caller, store, op, info, (datastore) => {
    checkGroupAccess(datastore, group, access);
    return fn(datastore);
  });
}
