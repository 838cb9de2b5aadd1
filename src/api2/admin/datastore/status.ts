/**
 * `GET /admin/datastore/{store}/status` (PBS `status`, reference §2 and §6.2): `{total, used,
 * avail, gc-status?, counts?, backend-type, s3-statistics?}` under a `read` admission, so it fails
 * in `offline` and `delete`.
 *
 * Privileges as PBS: Audit or Backup on the store see the filesystem usage (and with `verbose` the
 * last GC status); Read on the store or any privilege on a namespace below it see zeros, and with
 * `verbose` the counts; only Audit counts every group, the others only their own.
 */
import { DatastoreStatusSchema } from '../../../api-types/datastore-replies.js';
import { Type } from 'typebox';
import {
  BackupNamespace,
  type DatastoreCounts,
  emptyGcStatus,
  type ReadonlyDatastore,
} from '../../../datastore/index.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { datastoreAclPath, mayAccessGroup, type NamespaceAccess } from './access.js';
import { holdItem, s3EndpointFailure, StoreParams, withDatastore } from './common.js';
import { nextWindows } from '../../../maintenance/window-schedule.js';

const STORE_STATS_PRIVS = ['Datastore.Audit', 'Datastore.Backup'];
const ANY_DATASTORE_PRIV = [
  'Datastore.Audit',
  'Datastore.Backup',
  'Datastore.Read',
  'Datastore.Modify',
  'Datastore.Prune',
  'Datastore.Verify',
];

/** Groups and snapshots per type over all namespaces, counting only the groups `access` reaches. */
export function countSnapshots(ds: ReadonlyDatastore, access: NamespaceAccess): DatastoreCounts {
  if (access.full) return ds.counts();
  const counts: DatastoreCounts = {
    ct: { groups: 0, snapshots: 0 },
    host: { groups: 0, snapshots: 0 },
    vm: { groups: 0, snapshots: 0 },
    other: { groups: 0, snapshots: 0 },
  };
  for (const ns of ds.listNamespaces(BackupNamespace.root())) {
    for (const group of ds.listGroups(ns)) {
      if (!mayAccessGroup(ds, group, access)) continue;
      const n = ds.listSnapshots(group).length;
      if (n === 0) continue;
      counts[group.type].groups++;
      counts[group.type].snapshots += n;
    }
  }
  return counts;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore/:store/status',
    params: StoreParams,
    query: Type.Object({ verbose: Type.Optional(Type.Boolean()) }),
    // Audit|Backup first, so a refusal names them as PBS does
    permission: {
      anyOf: [
        { path: '/datastore/{store}', privs: STORE_STATS_PRIVS, partial: true },
        { path: '/datastore/{store}', privs: ['Datastore.Read'] },
        { path: '/datastore/{store}', privs: ANY_DATASTORE_PRIV, partial: true, orBelow: true },
      ],
    },
    returns: DatastoreStatusSchema,
    description:
      'Datastore status (read operation). Datastore.Audit or Datastore.Backup: filesystem usage, with ' +
      '`verbose` also the last GC status and the counts; Datastore.Read or any datastore privilege on a ' +
      'namespace below: zeros, with `verbose` the counts. Counts include only owned groups without Audit. ' +
      '`holds` (Stowage): the system holds on the store, when there are any. `backend-type` and, on S3 ' +
      'datastores, `s3-statistics` (requests by method and bytes moved since the server started) as PBS 4, ' +
      'and (Stowage) `s3-endpoint-error`, why the object store is failing (its last request).',
    handler: async ({ params, query, authId, userInfo, server }) => {
      const path = datastoreAclPath(params.store);
      const storeStats = userInfo.hasPrivs(authId, path, STORE_STATS_PRIVS, { partial: true });
      const access: NamespaceAccess = {
        authId,
        full: userInfo.hasPrivs(authId, path, ['Datastore.Audit']),
      };
      return withDatastore({ server, authId }, params.store, 'read', { kind: 'status' }, async (ds) => {
        const window = nextWindows(server.paths.configDir).get(params.store);
        const holds = await server.datastores.backend.holds(params.store);
        const s3 = ds.s3Statistics();
        const cfg = server.datastores.config.readCached().stores.get(params.store);
        const s3Error = cfg && s3EndpointFailure(cfg);
        const usage = {
          ...(storeStats ? ds.status() : { total: 0, used: 0, avail: 0 }),
          ...(window && { 'next-maintenance-window': window }),
          ...(holds.length > 0 && { holds: holds.map(holdItem) }),
          'backend-type': ds.backendType,
          ...(s3Error !== undefined && { 's3-endpoint-error': s3Error }),
          // PBS's field order; since this server process started (PBS: shared memory, kept)
          ...(s3 && {
            's3-statistics': {
              downloaded: s3.downloaded,
              uploaded: s3.uploaded,
              get: s3.get,
              post: s3.post,
              put: s3.put,
              head: s3.head,
              delete: s3.delete,
            },
          }),
        };
        if (!query.verbose) return usage;
        return {
          ...usage,
          ...(storeStats && { 'gc-status': ds.gcStatus() ?? emptyGcStatus() }),
          counts: countSnapshots(ds, access),
        };
      });
    },
  }),
];
