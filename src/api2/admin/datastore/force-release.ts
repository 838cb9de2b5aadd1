/**
 * `POST /admin/datastore/{store}/force-release` (Stowage extension): the operator lifts a system
 * hold by force (`stowage datastore maintenance clear NAME --force`). Clearing the operator's mode
 * never lifts a hold (docs/maintenance.md "System holds"); this is the one way to. A forced
 * release of the low-space hold stands until free space has once risen above the release level
 * (src/maintenance/low-space-monitor.ts), and the answer warns what it risks.
 *
 * Admits nothing: it changes the holds, as setting the mode does, so it answers in every mode.
 */
import { Type } from 'typebox';
import { SAFE_ID_REGEX_STR } from '../../../api-types/names.js';
import { defineRoute, type AnyRoute } from '../../../http/route.js';
import { LOW_SPACE_SOURCE } from '../../../maintenance/low-space-hold.js';
import { holdItem, StoreParams, SystemHoldItemSchema } from './common.js';

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/admin/datastore/:store/force-release',
    params: StoreParams,
    body: Type.Object({
      source: Type.Optional(
        Type.String({
          pattern: `^(${LOW_SPACE_SOURCE}|window:${SAFE_ID_REGEX_STR})$`,
          maxLength: 64,
          description: "The hold's source: `low-space` (the default) or `window:<id>`.",
        }),
      ),
    }),
    // as setting the mode: whoever may take the store offline may let writes in again
    permission: { path: '/datastore/{store}', privs: ['Datastore.Modify'] },
    protected: true,
    returns: Type.Object({
      released: Type.Optional(SystemHoldItemSchema),
      warning: Type.Optional(Type.String()),
    }),
    description:
      'Stowage: lift the system hold of `source` (default `low-space`) by force, recorded in the ' +
      'maintenance history as a forced release. Returns the hold `released` (none when there was ' +
      'none) and a `warning` of what writing now risks. A forced low-space release stands until ' +
      'free space has once risen above the release level.',
    handler: async ({ params, body, authId, server }) => {
      const access = server.datastores;
      access.datastoreConfig(params.store); // 404 for an unknown store
      const source = body.source ?? LOW_SPACE_SOURCE;
      // every server's access has the monitor (open-datastore-access.ts); it keeps the override
      const { released, warning } = await access.lowSpace!.forceRelease(params.store, source, authId);
      return {
        ...(released && { released: holdItem(released) }),
        ...(warning !== undefined && { warning }),
      };
    },
  }),
];
