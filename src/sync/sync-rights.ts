/**
 * What a sync's local user may do here, as PBS checks it against that user (the caller of
 * `/pull` or `/push`, a job's `owner`, root@pam by default):
 * - a pull's target namespaces: creating or removing one needs Datastore.Modify on its parent
 *   (`check_ns_modification_privs`); a vanished one is only looked at when the user has
 *   Datastore.Backup or Datastore.Audit on it (`check_and_remove_vanished_ns`);
 * - a push's source groups: all of them with Datastore.Read on the namespace, otherwise only the
 *   user's own (PBS `LocalSource::list_groups` for the push's local user).
 */
import { isBackupOwner } from '../config/user-config.js';
import type { BackupGroup, BackupNamespace, ReadonlyDatastore } from '../datastore/index.js';
import type { UserInfo } from '../http/permissions.js';

export interface NamespaceRights {
  /** Throws (403 naming the privilege) unless the owner may create or remove `ns`. */
  checkModify(ns: BackupNamespace): void;
  /** Whether the owner sees `ns` at all. */
  sees(ns: BackupNamespace): boolean;
}

const aclPath = (store: string, ns: BackupNamespace) =>
  ns.isRoot() ? `/datastore/${store}` : `/datastore/${store}/${ns.name}`;

export function ownerNamespaceRights(userInfo: UserInfo, owner: string, store: string): NamespaceRights {
  return {
    checkModify: (ns) => userInfo.checkPrivs(owner, aclPath(store, ns.parent()), ['Datastore.Modify']),
    sees: (ns) =>
      userInfo.hasPrivs(owner, aclPath(store, ns), ['Datastore.Backup', 'Datastore.Audit'], {
        partial: true,
      }),
  };
}

/** Which local groups `user` may push from `store`/`ns`: undefined when all of them. */
export function pushableGroups(
  userInfo: UserInfo,
  user: string,
  source: ReadonlyDatastore,
  ns: BackupNamespace,
): ((group: BackupGroup) => boolean) | undefined {
  if (userInfo.hasPrivs(user, aclPath(source.name, ns), ['Datastore.Read'])) return undefined;
  return (group) => isBackupOwner(source.getOwner(group), user);
}
