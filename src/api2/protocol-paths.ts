/**
 * `GET /backup` and `GET /reader` without an `Upgrade` header. PBS declares both protocols as GET
 * routes (`Router::upgrade` is a GET), so a plain GET runs the upgrade handler's checks in order
 * (authentication 401, parameters 400, privileges 403, datastore 404/503) and then fails with
 * 400 `missing Upgrade header`; it is never a 404. With the header, the request is taken by the
 * server's `upgrade` listener (src/protocol/upgrade.ts) and never reaches these routes.
 */
import { BACKUP_PATH, READER_PATH } from '../api-types/protocol.js';
import { defineRoute, filtered, type AnyRoute } from '../http/route.js';
import { refuseWithoutUpgrade } from '../protocol/upgrade.js';

function plainGet(kind: 'backup' | 'reader', path: string): AnyRoute {
  return defineRoute({
    method: 'GET',
    path: path.replace(/^\/api2\/json/, ''),
    permission: filtered(
      `PBS Permission::Anybody: the ${kind} protocol checks ${kind === 'backup' ? 'Datastore.Backup' : 'Datastore.Read or Datastore.Backup'} on the store itself`,
    ),
    description: `Upgrade to the ${kind} protocol; without the Upgrade header, 400 after the same checks.`,
    handler: (ctx) =>
      refuseWithoutUpgrade(kind, ctx.authId, new URL(ctx.request.url, 'https://localhost').searchParams, {
        context: ctx.server,
      }),
  });
}

export const routes: AnyRoute[] = [plainGet('backup', BACKUP_PATH), plainGet('reader', READER_PATH)];
