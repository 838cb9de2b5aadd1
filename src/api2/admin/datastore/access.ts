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
import { authIdUser, isTokenId } from '../../../config/user-config.js';
import type { BackupGroup, BackupNamespace } from '../../../datastore/backup-info.js';
import type { Datastore } from '../../../datastore/datastore.js';
import type { UserInfo } from '../../../server/permissions.js';

/** The ACL path of a datastore namespace: `/datastore/store[/a/b]`. */
export function datastoreAclPath(store: string, ns?: BackupNamespace): string {
  return ['', 'datastore', store, ...(ns?.components ?? [])].join('/');
}

/** What a caller may do on one namespace: everything, or only what it owns. */
export interface NamespaceAccess {
  readonly authId: string;
  /** Holds a privilege of the full-access set: no ownership check. */
  readonly full: boolean;
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
  const path = datastoreAclPath(store, ns);
  if (userInfo.hasPrivs(authId, path, fullPrivs, { partial: true })) return { authId, full: true };
  if (ownerPrivs.length > 0 && userInfo.hasPrivs(authId, path, ownerPrivs, { partial: true })) {
    return { authId, full: false };
  }
  userInfo.checkPrivs(authId, path, [...new Set([...fullPrivs, ...ownerPrivs])], { partial: true });
  return { authId, full: false }; // not reached: checkPrivs threw
}

/**
 * PBS `check_backup_owner`: the owner itself, or a user whose API token owns the group (a token
 * never owns what its user owns).
 */
export function isBackupOwner(owner: string, authId: string): boolean {
  if (owner === authId) return true;
  return isTokenId(owner) && !isTokenId(authId) && authIdUser(owner) === authId;
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
