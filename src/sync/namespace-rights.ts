/**
 * What a pull's owner may do with the target's namespaces, as PBS checks it against the sync's
 * owner (the caller of `/pull`, a job's `owner`): creating or removing one needs Datastore.Modify
 * on its parent (`check_ns_modification_privs`); a vanished one is only looked at when the owner
 * has Datastore.Backup or Datastore.Audit on it (`check_and_remove_vanished_ns`).
 */
import type { BackupNamespace } from '../datastore/index.js';
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
