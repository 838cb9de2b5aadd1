/**
 * `POST /push` (PBS 4 `src/api2/push.rs`): copy a local datastore's snapshots into a remote's now,
 * as a `sync` task, through the remote's API and backup protocol. Permissions as PBS's
 * `check_push_privs`: Remote.DatastoreBackup on `/remote/{remote}/{remote-store}[/{remote-ns}]`
 * (and Remote.DatastorePrune with `remove-vanished`), and Datastore.Read or Datastore.Backup on
 * the local datastore (namespace) — with Backup only, only the caller's own groups are pushed.
 *
 * The local store is admitted as read (kind sync) before the task: `read-only` lets a push go on,
 * `offline` refuses it at once. The remote's own refusals (its maintenance mode, a failed owner
 * check) are logged in the task with the remote's message.
 */
import { Type } from 'typebox';
import { BackupNamespace } from '../datastore/index.js';
import { NotFoundError } from '../errors.js';
import { remoteConfig } from '../config/remote-config.js';
import { defineRoute, filtered, type AnyRoute } from '../http/route.js';
import type { UserInfo } from '../http/permissions.js';
import { spawnTaskOwning } from '../tasks/admitted-task.js';
import { checkPullRequest, runPush, type PullRequest } from '../sync/run-sync.js';
import { pushableGroups } from '../sync/sync-rights.js';
import { PullBodySchema, RemoteIdSchema } from './pull.js';

/** PBS's push parameters: a pull's, with `remote` required and no `resync-corrupt`. */
const { 'resync-corrupt': _pullOnly, ...pushProperties } = PullBodySchema.properties;
const PushBodySchema = Type.Object({ ...pushProperties, remote: RemoteIdSchema });

const nsAclPath = (base: string, ns: BackupNamespace) => (ns.isRoot() ? base : `${base}/${ns.name}`);

/** PBS `check_push_privs`: 403 naming the missing privilege. */
export function checkPushPrivs(userInfo: UserInfo, authId: string, req: PullRequest): void {
  const { ns, sourceNs: remoteNs } = checkPullRequest(req);
  const target = nsAclPath(`/remote/${req.remote}/${req['remote-store']}`, remoteNs);
  userInfo.checkPrivs(authId, target, ['Remote.DatastoreBackup']);
  if (req['remove-vanished']) userInfo.checkPrivs(authId, target, ['Remote.DatastorePrune']);
  userInfo.checkPrivs(
    authId,
    nsAclPath(`/datastore/${req.store}`, ns),
    ['Datastore.Read', 'Datastore.Backup'],
    {
      partial: true,
    },
  );
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/push',
    body: PushBodySchema,
    returns: Type.String({ description: 'UPID of the sync task.' }),
    permission: filtered(
      'Remote.DatastoreBackup on /remote/{remote}/{remote-store}[/{remote-ns}] (and Remote.DatastorePrune ' +
        'with remove-vanished); Datastore.Read or Datastore.Backup (own groups only) on /datastore/{store}[/{ns}]',
    ),
    protected: true,
    description:
      'Push `store` (namespace `ns`) into `remote-store` (namespace `remote-ns`) of `remote` now, as a ' +
      '`sync` task. The local store is admitted as read before the task (offline refuses it with 503). ' +
      'Returns the UPID.',
    handler: async ({ body, authId, userInfo, server }) => {
      checkPushPrivs(userInfo, authId, body);
      if (!remoteConfig(server.paths.configDir).get(body.remote)) {
        throw new NotFoundError(`remote '${body.remote}' does not exist`);
      }
      const source = await server.datastores.lookupDatastore(body.store, 'read', {
        kind: 'sync',
        detail: `push to ${body.remote}/${body['remote-store']}`,
        authId,
      });
      return spawnTaskOwning(
        server.tasks,
        source,
        { type: 'sync', id: body.store, authId },
        async (worker) => {
          worker.log(`push datastore '${body.store}' to '${body.remote}/${body['remote-store']}'`);
          await runPush(body, {
            configDir: server.paths.configDir,
            source: source.datastore,
            mayPush: pushableGroups(
              userInfo,
              authId,
              source.datastore,
              BackupNamespace.parse(body.ns ?? '', 'ns'),
            ),
            log: (line) => worker.log(line),
            signal: worker.signal,
          });
          worker.log(`push datastore '${body.store}' end`);
        },
      );
    },
  }),
];
