/**
 * `GET /admin/datastore` (PBS `get_datastore_list`, reference §6.2): `[{store, comment?,
 * maintenance?}]`, where `maintenance` is the raw stored property string as PBS sends it.
 *
 * Config only, no admission: it works in every mode. For callers with privileges only below the
 * store (on a namespace) PBS does a Lookup and walks the namespaces on disk; we decide from the ACL
 * alone, so no disk is touched (design §2: no IO without a read/write admission).
 */
import { Type } from 'typebox';
import { defineRoute, type AnyRoute } from '../../../server/route.js';
import { datastoreAclPath } from './access.js';

const LIST_PRIVS = ['Datastore.Audit', 'Datastore.Backup'];

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/datastore',
    permission: 'authenticated',
    returns: Type.Array(
      Type.Object({
        store: Type.String(),
        comment: Type.Optional(Type.String()),
        maintenance: Type.Optional(Type.String()),
      }),
    ),
    description:
      'List the datastores the caller can use: with Datastore.Audit or Datastore.Backup on the store ' +
      'with its comment, with such a privilege only on a namespace below it without. `maintenance` ' +
      'is the raw stored maintenance-mode. Reads the configuration only.',
    handler: ({ authId, userInfo, server }) => {
      const out: Array<{ store: string; comment?: string; maintenance?: string }> = [];
      for (const cfg of server.datastores.config.readCached().stores.values()) {
        const path = datastoreAclPath(cfg.name);
        const maintenance = cfg['maintenance-mode'];
        if (userInfo.hasPrivs(authId, path, LIST_PRIVS, { partial: true })) {
          out.push({
            store: cfg.name,
            ...(cfg.comment !== undefined && { comment: cfg.comment }),
            ...(maintenance !== undefined && { maintenance }),
          });
        } else if (userInfo.anyPrivsBelow(authId, path, LIST_PRIVS)) {
          out.push({ store: cfg.name, ...(maintenance !== undefined && { maintenance }) });
        }
      }
      return out;
    },
  }),
];
