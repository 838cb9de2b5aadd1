/**
 * Datastore permissions declared on the route (PBS `src/backup/hierarchy.rs`, reference §2):
 *
 * - `ownerChecked({ path, full, owner })`: PBS's "A or B+owner" (`check_privs_and_load_store`,
 *   `check_priv_or_backup_owner`). A caller with any privilege of `full` on
 *   `/datastore/{store}[/{ns}]` has full access; one with any privilege of `owner` only to the
 *   groups it owns; anyone else gets 403 naming both. The registrar applies the privilege part
 *   (no disk, before admission); the ownership part reads the group's `owner` file and so runs on
 *   the admitted datastore, through `GroupAccess` — the one helper, handed to the handler as
 *   `ctx.access`. No route checks ownership any other way.
 * - `namespacePrivilege({ path, privs })`: a plain privilege on a namespace named by a query or
 *   body parameter (namespace create and delete, prune-datastore).
 *
 * In the path template `{store}` is a URL parameter; any other `{name}` is the namespace
 * parameter of that name (query or body), parsed as PBS does (400 naming it) and appended as path
 * components (nothing for the root namespace).
 */
import { ForbiddenError, isStowageError } from '../../../errors.js';
import { isBackupOwner } from '../../../config/user-config.js';
import { type BackupGroup, BackupNamespace, type ReadonlyDatastore } from '../../../datastore/index.js';
import type { DataClass, DatastoreFor } from '../../../maintenance/datastore-access.js';
import { datastoreAclPath, type UserInfo } from '../../../http/permissions.js';
import type { CheckedPermission, PermissionInput } from '../../../http/route.js';
import { withDatastore, type AdmissionInfo, type Caller } from './common.js';

export { datastoreAclPath };

/** What a caller may do on one namespace: everything, or only what it owns. */
export interface NamespaceAccess {
  readonly authId: string;
  /** Holds a privilege of the full-access set: no ownership check. */
  readonly full: boolean;
}

/**
 * Whether the caller may act on `group`: always with full access, else when it owns the group. A
 * group without an owner file belongs to nobody. The one ownership rule; `GroupAccess` and the
 * filtered counts of the status route use it.
 */
export function mayAccessGroup(
  datastore: ReadonlyDatastore,
  group: BackupGroup,
  access: NamespaceAccess,
): boolean {
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

/** The privileges of an "A or B+owner" rule. */
export interface OwnerPrivs {
  readonly full: readonly string[];
  readonly owner: readonly string[];
}

/**
 * The outcome of an `ownerChecked` permission, `ctx.access` of the route: the privilege part has
 * passed on `ns`; `full` says whether ownership still has to be checked, which these methods do.
 */
export class GroupAccess implements NamespaceAccess {
  readonly authId: string;

  constructor(
    private readonly caller: Caller & { userInfo: UserInfo },
    readonly store: string,
    readonly ns: BackupNamespace,
    readonly full: boolean,
    private readonly privs: OwnerPrivs,
  ) {
    this.authId = caller.authId;
  }

  /** Whether the caller may act on `group` (for listings filtered per group). */
  mayAccess(datastore: ReadonlyDatastore, group: BackupGroup): boolean {
    return mayAccessGroup(datastore, group, this);
  }

  /** Throw 403 (PBS wording) unless `mayAccess`. */
  check(datastore: ReadonlyDatastore, group: BackupGroup): void {
    if (this.mayAccess(datastore, group)) return;
    let owner = 'nobody';
    try {
      owner = datastore.getOwner(group);
    } catch {
      // no owner file: nobody owns it
    }
    throw new ForbiddenError(`backup owner check failed (${this.authId} != ${owner})`);
  }

  /**
   * Run `fn` under an admitted `op` on the store (503 in maintenance), released in every exit
   * path; for listings, which filter per group with `mayAccess`.
   */
  withStore<Op extends DataClass, T>(
    op: Op,
    info: AdmissionInfo,
    fn: (datastore: DatastoreFor<Op>) => T | Promise<T>,
  ): Promise<T> {
    return withDatastore(this.caller, this.store, op, info, fn);
  }

  /**
   * Run `fn` under an admitted `op` on the store (503 in maintenance) once the owner check on the
   * admitted datastore passed (403); released in every exit path.
   */
  withGroup<Op extends DataClass, T>(
    group: BackupGroup,
    op: Op,
    info: AdmissionInfo,
    fn: (datastore: DatastoreFor<Op>) => T | Promise<T>,
  ): Promise<T> {
    return withDatastore(this.caller, this.store, op, info, (datastore) => {
      this.check(datastore, group);
      return fn(datastore);
    });
  }

  /**
   * The same rule on another namespace, for walks over many namespaces (prune-datastore, verify):
   * undefined when the caller holds neither privilege there, so the walk skips it.
   */
  forNamespace(ns: BackupNamespace): GroupAccess | undefined {
    const { userInfo, authId } = this.caller;
    const path = datastoreAclPath(this.store, ns);
    if (userInfo.hasPrivs(authId, path, this.privs.full, { partial: true }))
      return new GroupAccess(this.caller, this.store, ns, true, this.privs);
    if (userInfo.hasPrivs(authId, path, this.privs.owner, { partial: true }))
      return new GroupAccess(this.caller, this.store, ns, false, this.privs);
    return undefined;
  }
}

/** `/datastore/{store}/{ns}` with its placeholders filled, and the namespace it names. */
function resolvePath(
  template: string,
  input: PermissionInput,
  parentOf: boolean,
): { path: string; store: string; ns: BackupNamespace } {
  let ns = BackupNamespace.root();
  let bad = false;
  const parts: string[] = [];
  for (const segment of template.split('/').filter(Boolean)) {
    const m = /^\{([^}]+)\}$/.exec(segment);
    if (!m) {
      parts.push(segment);
      continue;
    }
    const name = m[1]!;
    if (name in input.params) {
      const v = input.params[name] ?? '';
      // a decoded `%2F` must not reach a deeper (or shallower) ACL node than the route means
      if (v === '' || v.includes('/') || v === '.' || v === '..') bad = true;
      parts.push(v);
      continue;
    }
    const value = input.parameters[name];
    ns = BackupNamespace.parse(typeof value === 'string' ? value : '', name);
    if (parentOf && !ns.isRoot()) ns = ns.parent();
    parts.push(...ns.components);
  }
  if (bad) throw new ForbiddenError('permission check failed');
  const store = input.params.store ?? '';
  return { path: '/' + parts.join('/'), store, ns };
}

/**
 * PBS's "A or B+owner" declared on a route: the registrar checks "any of `full` or `owner`" on
 * `path` after validation (403 `permission check failed - missing A|B on /datastore/...`), and
 * the handler gets a `GroupAccess` in `ctx.access` that checks ownership on the admitted
 * datastore. `full` may be empty (upload-backup-log: ownership even for Datastore.Modify).
 */
export function ownerChecked(spec: {
  path: string;
  full: readonly string[];
  owner: readonly string[];
}): CheckedPermission<GroupAccess> {
  const privs: OwnerPrivs = { full: spec.full, owner: spec.owner };
  return {
    checked: { path: spec.path, privs: spec.full, owner: spec.owner },
    check(input) {
      const { authId, userInfo, server } = input;
      const { path, store, ns } = resolvePath(spec.path, input, false);
      const caller = { server, authId, userInfo };
      if (userInfo.hasPrivs(authId, path, spec.full, { partial: true }))
        return new GroupAccess(caller, store, ns, true, privs);
      if (userInfo.hasPrivs(authId, path, spec.owner, { partial: true }))
        return new GroupAccess(caller, store, ns, false, privs);
      userInfo.checkPrivs(authId, path, [...new Set([...spec.full, ...spec.owner])], { partial: true });
      throw new ForbiddenError('permission check failed'); // not reached: checkPrivs threw
    },
  };
}

/**
 * A privilege on a namespace named by a query or body parameter, checked after validation.
 * - `parentOf`: on the namespace's parent (PBS `check_ns_modification_privs`);
 * - `orBelow`: also passes with any of `privs` on a namespace below (listings filtered per
 *   namespace), and then refuses with PBS's bare "permission check failed", so a caller without
 *   rights learns nothing about which namespaces exist.
 */
export function namespacePrivilege(spec: {
  path: string;
  privs: readonly string[];
  partial?: boolean;
  parentOf?: boolean;
  orBelow?: boolean;
}): CheckedPermission<undefined> {
  return {
    checked: { path: spec.path, privs: spec.privs, owner: [], orBelow: spec.orBelow },
    check(input) {
      const { authId, userInfo } = input;
      const { path } = resolvePath(spec.path, input, spec.parentOf ?? false);
      if (spec.orBelow) {
        if (
          !userInfo.hasPrivs(authId, path, spec.privs, { partial: spec.partial }) &&
          !userInfo.anyPrivsBelow(authId, path, spec.privs)
        )
          throw new ForbiddenError('permission check failed');
        return undefined;
      }
      userInfo.checkPrivs(authId, path, spec.privs, { partial: spec.partial });
      return undefined;
    },
  };
}
