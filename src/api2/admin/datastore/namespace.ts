/**
 * Namespaces of a datastore: `GET/POST/DELETE /admin/datastore/{store}/namespace` (PBS
 * `src/api2/admin/namespace.rs`, reference §2). Listing is `read`, creating and deleting are
 * `write` (design §2).
 *
 * Privileges as PBS: listing needs any of Audit, Modify, Read or Backup (`NS_PRIVS_OK`) and shows
 * only the namespaces the caller holds one of them on; creating and deleting need Datastore.Modify
 * on the *parent* of the namespace (`check_ns_modification_privs`), so whoever may change a level
 * may add and remove the levels below it.
 */
import { Type } from 'typebox';
import { MAX_NAMESPACE_DEPTH, MAX_NAMESPACE_LENGTH, SAFE_ID_REGEX_STR } from '../../../api-types/names.js';
import {
  BadRequestError,
  ERR_GROUP_PARTIALLY_DELETED,
  ERR_NAMESPACE_HAS_GROUPS,
  ForbiddenError,
  isStowageError,
} from '../../../errors.js';
import { BackupNamespace } from '../../../datastore/index.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { datastoreAclPath, namespacePrivilege } from './access.js';
import {
  BackupGroupDeleteStatsSchema,
  deleteStatsOf,
  ErrorOnProtectedSchema,
  NsSchema,
  StoreParams,
  withDatastore,
} from './common.js';

/** PBS `NS_PRIVS_OK`: any of these on a namespace makes it visible. */
export const NS_PRIVS_OK = ['Datastore.Modify', 'Datastore.Read', 'Datastore.Backup', 'Datastore.Audit'];
const MODIFY = ['Datastore.Modify'];

/** PBS `NamespaceListItem` (PBS never fills `comment` yet). */
const NamespaceListItem = Type.Object({ ns: Type.String(), comment: Type.Optional(Type.String()) });

/** PBS `check_ns_modification_privs`: Datastore.Modify on the namespace's parent (403 otherwise). */

/**
 * `parent` plus `name` as PBS's `BackupNamespace::push` checks it: the depth limit (7 below the
 * root) and the length limit (256 characters of `a/b/c`) are errors of `name`, which crosses them.
 */
function childNamespace(parent: BackupNamespace, name: string): BackupNamespace {
  if (parent.depth >= MAX_NAMESPACE_DEPTH) {
    throw new BadRequestError(
      `invalid name '${name}': namespace too deep, ${parent.depth} >= max ${MAX_NAMESPACE_DEPTH}`,
      { param: 'name' },
    );
  }
  const length = parent.name.length + (parent.isRoot() ? 0 : 1) + name.length;
  if (length > MAX_NAMESPACE_LENGTH) {
    throw new BadRequestError(
      `invalid name '${name}': namespace length exceeded (${length} > ${MAX_NAMESPACE_LENGTH})`,
      { param: 'name' },
    );
  }
  return parent.child(name);
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/namespace',
    params: StoreParams,
    query: Type.Object({
      parent: Type.Optional(NsSchema),
      'max-depth': Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_NAMESPACE_DEPTH })),
    }),
    returns: Type.Array(NamespaceListItem),
    // PBS answers a bare "permission check failed" here, so that a caller without rights learns
    // nothing about which namespaces exist; one with no right at all below `parent` gets it
    // before anything is admitted (design: privilege checks come before admission)
    permission: namespacePrivilege({
      path: '/datastore/{store}/{parent}',
      privs: NS_PRIVS_OK,
      partial: true,
      orBelow: true,
    }),
    description:
      'List the namespaces of a datastore (read operation): `parent` (the root when omitted) and ' +
      'those below it, at most `max-depth` levels further down (default 7), as PBS ' +
      'NamespaceListItem; the root namespace is `""`. Needs Datastore.Audit, Datastore.Modify, ' +
      'Datastore.Read or Datastore.Backup; only the namespaces the caller holds one of them on are listed.',
    handler: ({ params, query, authId, userInfo, server }) => {
      const parent = BackupNamespace.parse(query.parent ?? '', 'parent');
      const parentPath = datastoreAclPath(params.store, parent);
      const parentAccess = userInfo.hasPrivs(authId, parentPath, NS_PRIVS_OK, { partial: true });
      return withDatastore(
        { server, authId },
        params.store,
        'read',
        { kind: 'list', detail: 'namespaces' },
        (ds) => {
          let all: BackupNamespace[];
          try {
            all = ds.listNamespaces(parent, query['max-depth']);
          } catch (err) {
            if (!parentAccess && isStowageError(err) && err.code === 'NOT_FOUND') {
              throw new ForbiddenError('permission check failed');
            }
            throw err;
          }
          const visible = all.filter((ns) =>
            userInfo.hasPrivs(authId, datastoreAclPath(params.store, ns), NS_PRIVS_OK, { partial: true }),
          );
          if (visible.length === 0 && !parentAccess) throw new ForbiddenError('permission check failed');
          return visible.map((ns) => ({ ns: ns.name }));
        },
      );
    },
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/namespace',
    params: StoreParams,
    body: Type.Object({
      name: Type.String({ pattern: `^${SAFE_ID_REGEX_STR}$`, minLength: 1, maxLength: 32 }),
      parent: Type.Optional(NsSchema),
    }),
    returns: Type.String(),
    permission: namespacePrivilege({ path: '/datastore/{store}/{parent}', privs: MODIFY }),
    protected: true,
    description:
      'Create namespace `name` below `parent` (write operation); returns the new namespace. ' +
      'Datastore.Modify on the parent. The parent must exist; at most 7 levels below the root and ' +
      '256 characters in all. Creating a namespace that exists succeeds, as in PBS.',
    handler: ({ params, body, authId, server }) => {
      const parent = BackupNamespace.parse(body.parent ?? '', 'parent');
      const ns = childNamespace(parent, body.name);
      return withDatastore(
        { server, authId },
        params.store,
        'ingest',
        { kind: 'create-namespace', detail: ns.name },
        async (ds) => {
          try {
            await ds.createNamespace(ns);
          } catch (err) {
            // PBS creates with create_dir_all: an existing namespace is no error
            if (!(isStowageError(err) && err.code === 'ALREADY_EXISTS')) throw err;
          }
          return ns.name;
        },
      );
    },
  }),
  defineRoute({
    method: 'DELETE',
    path: '/admin/datastore/:store/namespace',
    params: StoreParams,
    query: Type.Object({
      ns: NsSchema,
      'delete-groups': Type.Optional(Type.Boolean({ default: false })),
      'error-on-protected': ErrorOnProtectedSchema,
    }),
    returns: BackupGroupDeleteStatsSchema,
    permission: namespacePrivilege({ path: '/datastore/{store}/{ns}', privs: MODIFY, parentOf: true }),
    protected: true,
    description:
      'Delete a namespace and every namespace below it (write operation), PBS ' +
      'BackupGroupDeleteStats. Without `delete-groups` only empty namespaces are removed; with it ' +
      'their backup groups are destroyed too, except protected snapshots. When something stays the ' +
      'call fails (409) after removing what it could, unless `error-on-protected` is false. ' +
      'Datastore.Modify on the parent; the root namespace cannot be deleted.',
    handler: ({ params, query, authId, server }) => {
      const ns = BackupNamespace.parse(query.ns, 'ns');
      if (ns.isRoot()) {
        throw new BadRequestError("invalid ns '': the root namespace cannot be deleted", { param: 'ns' });
      }
      const deleteGroups = query['delete-groups'] ?? false;
      const errorOnProtected = query['error-on-protected'] ?? true;
      return withDatastore(
        { server, authId },
        params.store,
        'reclaim',
        { kind: 'delete-namespace', detail: ns.name },
        async (ds) => {
          const { removedAll, stats } = await ds.deleteNamespace(ns, { deleteGroups });
          if (!removedAll && errorOnProtected) {
            throw deleteGroups ? ERR_GROUP_PARTIALLY_DELETED() : ERR_NAMESPACE_HAS_GROUPS();
          }
          return deleteStatsOf(stats);
        },
      );
    },
  }),
];
