/**
 * `GET /status/datastore-usage` (PBS `src/api2/status.rs`, reference §2 notes, §6.2).
 *
 * For callers with Datastore.Audit or Datastore.Backup on a store, its usage is read under a
 * `read` admission; a refusal (maintenance) or any other failure becomes that store's `error`
 * field rather than failing the whole list, as PBS does. Callers with privileges only on a
 * namespace below see `{store}` and nothing else, under a `lookup` admission as PBS (reference
 * §2): a store the lookup refuses (being deleted, an unparsable mode) is left out. PBS then walks
 * the namespaces on disk, breaking its own "no IO under Lookup" rule even in `offline`; we do not,
 * and the lookup handle has no datastore to do it with.
 */
import { Type } from 'typebox';
import { emptyGcStatus } from '../../datastore/index.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { datastoreAclPath } from '../admin/datastore/access.js';
import { DatastoreUsageItemSchema, type DatastoreUsageItem } from '../../api-types/datastore-replies.js';
import { withDatastore } from '../admin/datastore/common.js';

const USAGE_PRIVS = ['Datastore.Audit', 'Datastore.Backup'];

type UsageItem = DatastoreUsageItem;

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/status/datastore-usage',
    permission: filtered(
      'only the datastores the caller holds a datastore privilege on; usage figures with Audit or Backup',
    ),
    returns: Type.Array(DatastoreUsageItemSchema),
    description:
      'Usage of every datastore the caller may see. With Datastore.Audit or Datastore.Backup on the ' +
      'store: total/used/avail and gc-status (a read operation; a maintenance refusal becomes `error`). ' +
      'With privileges only below the store: `{store}` alone, without touching the datastore.',
    handler: async ({ authId, userInfo, server }) => {
      const out: UsageItem[] = [];
      for (const cfg of server.datastores.config.readCached().stores.values()) {
        const path = datastoreAclPath(cfg.name);
        if (userInfo.hasPrivs(authId, path, USAGE_PRIVS, { partial: true })) {
          try {
            out.push(
              await withDatastore({ server, authId }, cfg.name, 'read', { kind: 'status' }, (ds) => ({
                store: cfg.name,
                ...ds.status(),
                'gc-status': ds.gcStatus() ?? emptyGcStatus(),
              })),
            );
          } catch (err) {
            out.push({ store: cfg.name, error: err instanceof Error ? err.message : String(err) });
          }
        } else if (userInfo.anyPrivsBelow(authId, path, USAGE_PRIVS)) {
          // PBS's Lookup fails for a datastore being deleted and leaves it out; so does ours
          let visible = false;
          try {
            const handle = await server.datastores.lookupDatastore(cfg.name, 'lookup', {
              kind: 'status',
              authId,
            });
            await handle.release();
            visible = true;
          } catch {
            // refused (delete mode) or unreadable mode: not listed
          }
          if (visible) out.push({ store: cfg.name });
        }
      }
      return out;
    },
  }),
];
