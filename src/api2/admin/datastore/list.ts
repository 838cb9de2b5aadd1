/**
 * `GET /admin/datastore` (PBS `get_datastore_list`, reference §6.2): `[{store, comment?,
 * mount-status, maintenance?, backend-type}]`, where `maintenance` is the raw stored property
 * string as PBS sends it, `mount-status` is `mounted`/`notmounted` for a removable datastore and
 * `nonremovable` otherwise, and `backend-type` is `filesystem` or `s3` (PBS 4).
 *
 * Config only, no admission: it works in every mode, and lists the PBS 4 removable and S3
 * datastores this version does not open. For callers with privileges only below the store (on a
 * namespace) PBS does a Lookup and walks the namespaces on disk; we decide from the ACL alone, so
 * no disk is touched (design §2: no IO without a read/write admission). The mount status looks at
 * /dev and /proc/self/mountinfo, never under the datastore's path.
 */
import { Type } from 'typebox';
import { parseDatastoreBackend, type DatastoreConfig } from '../../../config/datastore-config.js';
import { defineRoute, filtered, type AnyRoute } from '../../../http/route.js';
import { datastoreAclPath } from './access.js';
import { DatastoreListItemSchema, type DatastoreListItem } from '../../../api-types/datastore-replies.js';
import { nextWindows } from '../../../maintenance/window-schedule.js';
import { deviceFailure, holdItem, mountStatus, s3EndpointFailure } from './common.js';

const LIST_PRIVS = ['Datastore.Audit', 'Datastore.Backup'];

type ListItem = DatastoreListItem;

/** PBS: the backend's type, `filesystem` when there is none or it does not parse. */
function backendType(cfg: DatastoreConfig): string {
  try {
    return parseDatastoreBackend(cfg).type;
  } catch {
    return 'filesystem';
  }
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore',
    permission: filtered('only the datastores the caller holds any privilege on (or below)'),
    returns: Type.Array(DatastoreListItemSchema),
    description:
      'List the datastores the caller can use: with Datastore.Audit or Datastore.Backup on the store ' +
      'with its comment, with such a privilege only on a namespace below it without. `maintenance` ' +
      'is the raw stored maintenance-mode; `mount-status` and `backend-type` as PBS 4; ' +
      '`unavailable` (Stowage) why a mounted removable datastore cannot be used (its device failed); ' +
      "`s3-endpoint-error` (Stowage) why an S3 datastore's object store is failing (its last request); " +
      '`next-maintenance-window` (Stowage) the scheduled window in force or next; `holds` (Stowage) the ' +
      'system holds (low space, windows; absent when none), which refuse operations apart from the mode. Reads the ' +
      'configuration and the holds only.',
    handler: async ({ authId, userInfo, server }) => {
      const windows = nextWindows(server.paths.configDir);
      const out: ListItem[] = [];
      for (const cfg of server.datastores.config.readCached().stores.values()) {
        const path = datastoreAclPath(cfg.name);
        const full = userInfo.hasPrivs(authId, path, LIST_PRIVS, { partial: true });
        if (!full && !userInfo.anyPrivsBelow(authId, path, LIST_PRIVS)) continue;
        const maintenance = cfg['maintenance-mode'];
        const holds = await server.datastores.backend.holds(cfg.name);
        const unavailable = deviceFailure(cfg);
        const s3Error = s3EndpointFailure(cfg);
        out.push({
          store: cfg.name,
          ...(full && cfg.comment !== undefined && { comment: cfg.comment }),
          'mount-status': mountStatus(cfg),
          ...(unavailable !== undefined && { unavailable }),
          ...(s3Error !== undefined && { 's3-endpoint-error': s3Error }),
          ...(maintenance !== undefined && { maintenance }),
          'backend-type': backendType(cfg),
          ...(windows.has(cfg.name) && { 'next-maintenance-window': windows.get(cfg.name) }),
          // only when there is one: without, the answer is PBS's to the letter
          ...(holds.length > 0 && { holds: holds.map(holdItem) }),
        });
      }
      return out;
    },
  }),
];
