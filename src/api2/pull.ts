/**
 * `POST /pull` (PBS `src/api2/pull.rs`): sync a remote's (or, without `remote`, another local)
 * datastore into a local one now, as a `sync` task. Permissions as PBS's `check_pull_privs`:
 * Datastore.Backup on the target (and Datastore.Prune with `remove-vanished`), Remote.Read on
 * `/remote/{remote}/{remote-store}` or, for a local source, Datastore.Backup on it. The synced
 * groups are owned by the caller.
 *
 * Admission comes first (PBS "pre-task", reference §2): the target as an ingest operation of
 * kind `sync` (so read-only, sealed and offline refuse it with their message, and a drain hold
 * does too), a local source as read. A remote's refusal (its datastore offline) happens inside
 * the task and is logged with the remote's message.
 */
import { Type } from 'typebox';
import { BackupNamespace } from '../datastore/index.js';
import { BadRequestError, NotFoundError } from '../errors.js';
import { defineRoute, filtered, type AnyRoute } from '../http/route.js';
import type { ServerContext } from '../http/context.js';
import type { UserInfo } from '../http/permissions.js';
import type { ReadHandle, WriteHandle } from '../maintenance/datastore-access.js';
import { remoteConfig } from '../config/remote-config.js';
import { ownTogether, spawnTaskOwning } from '../tasks/admitted-task.js';
import { checkPullRequest, runPull, type PullRequest } from '../sync/run-sync.js';
import { ownerNamespaceRights } from '../sync/sync-rights.js';
import { MAX_SYNC_WORKERS } from '../config/job-config.js';
import { NsSchema, StoreSchema } from './admin/datastore/common.js';

export const RemoteIdSchema = Type.String({
  pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$',
  minLength: 3,
  maxLength: 32,
});
const StringOrList = Type.Union([
  Type.String({ maxLength: 256 }),
  Type.Array(Type.String({ maxLength: 256 })),
]);

/** A PBS HumanByte (`10MiB`, `1.5 GB`, `500000`); fully checked where it is parsed (400 naming it). */
export const ByteSizeSchema = (description: string) => Type.String({ maxLength: 32, description });

/** PBS 4's `worker-threads` (pull, push and sync jobs). */
export const WorkerThreadsSchema = Type.Optional(
  Type.Integer({ minimum: 1, maximum: MAX_SYNC_WORKERS, description: 'Groups synced at once (default 1).' }),
);

/** PBS 4's `verified-only` and `encrypted-only` (pull, push and sync jobs). */
export const SnapshotFlagSchemas = {
  'verified-only': Type.Optional(
    Type.Boolean({ description: 'Only snapshots whose last verification succeeded.' }),
  ),
  'encrypted-only': Type.Optional(
    Type.Boolean({ description: 'Only snapshots whose every archive is encrypted.' }),
  ),
};

export const PullBodySchema = Type.Object({
  store: StoreSchema,
  ns: Type.Optional(NsSchema),
  remote: Type.Optional(RemoteIdSchema),
  'remote-store': StoreSchema,
  'remote-ns': Type.Optional(NsSchema),
  'remove-vanished': Type.Optional(Type.Boolean()),
  'max-depth': Type.Optional(Type.Integer({ minimum: 0, maximum: 7 })),
  'group-filter': Type.Optional(StringOrList),
  'transfer-last': Type.Optional(Type.Integer({ minimum: 1 })),
  'rate-in': Type.Optional(ByteSizeSchema('Most bytes per second downloaded (pull)')),
  'burst-in': Type.Optional(ByteSizeSchema('Burst of downloads (pull)')),
  'rate-out': Type.Optional(ByteSizeSchema('Most bytes per second uploaded (push)')),
  'burst-out': Type.Optional(ByteSizeSchema('Burst of uploads (push)')),
  ...SnapshotFlagSchemas,
  'worker-threads': WorkerThreadsSchema,
  'resync-corrupt': Type.Optional(
    Type.Boolean({ description: 'Sync again the snapshots whose last verification failed here.' }),
  ),
});

const aclPath = (store: string, ns: BackupNamespace) =>
  ns.isRoot() ? `/datastore/${store}` : `/datastore/${store}/${ns.name}`;

/** PBS `check_pull_privs`: 403 naming the missing privilege. */
export function checkPullPrivs(
  userInfo: UserInfo,
  authId: string,
  req: PullRequest,
  ns: BackupNamespace,
): void {
  const target = aclPath(req.store, ns);
  userInfo.checkPrivs(authId, target, ['Datastore.Backup']);
  if (req.remote !== undefined) {
    userInfo.checkPrivs(authId, `/remote/${req.remote}/${req['remote-store']}`, ['Remote.Read']);
  } else {
    userInfo.checkPrivs(authId, `/datastore/${req['remote-store']}`, ['Datastore.Backup']);
  }
  if (req['remove-vanished']) userInfo.checkPrivs(authId, target, ['Datastore.Prune']);
}

/**
 * Admit and start a pull as a `sync` task (PBS's worker type for /pull) owned by the caller;
 * returns the UPID. Refusals before the task (maintenance, unknown store or remote, bad
 * parameters) are thrown.
 */
async function spawnPull(server: ServerContext, authId: string, req: PullRequest): Promise<string> {
  if (req.remote === undefined && req.store === req['remote-store']) {
    throw new BadRequestError("can't sync to same datastore", { param: 'remote-store' });
  }
  checkPullRequest(req);
  if (req.remote !== undefined && !remoteConfig(server.paths.configDir).get(req.remote)) {
    throw new NotFoundError(`remote '${req.remote}' does not exist`);
  }
  const detail = `pull from ${req.remote ?? '-'}/${req['remote-store']}`;
  const source: ReadHandle | undefined =
    req.remote === undefined
      ? await server.datastores.lookupDatastore(req['remote-store'], 'read', {
          kind: 'sync',
          detail: `sync to ${req.store}`,
          authId,
        })
      : undefined;
  let target: WriteHandle;
  try {
    target = await server.datastores.lookupDatastore(req.store, 'ingest', { kind: 'sync', detail, authId });
  } catch (err) {
    await source?.release();
    throw err;
  }
  return spawnTaskOwning(
    server.tasks,
    ownTogether(source ? [target, source] : [target]),
    { type: 'sync', id: req.store, authId },
    async (worker) => {
      worker.log(`pull datastore '${req.store}' from '${req.remote ?? '-'}/${req['remote-store']}'`);
      await runPull(req, {
        configDir: server.paths.configDir,
        target: target.datastore,
        ...(source && { source: source.datastore }),
        owner: authId,
        log: (line) => worker.log(line),
        signal: worker.signal,
        namespaceRights: ownerNamespaceRights(server.userInfo.get(), authId, req.store),
      });
      worker.log(`pull datastore '${req.store}' end`);
    },
  );
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'POST',
    path: '/pull',
    body: PullBodySchema,
    returns: Type.String({ description: 'UPID of the sync task.' }),
    permission: filtered(
      'Datastore.Backup on /datastore/{store}[/{ns}] (and Datastore.Prune with remove-vanished); ' +
        'Remote.Read on /remote/{remote}/{remote-store}, or Datastore.Backup on a local source',
    ),
    protected: true,
    description:
      'Sync `remote-store` of `remote` (without `remote`: a local datastore) into `store` now, as a ' +
      '`sync` task; the groups it creates are owned by the caller. The target is admitted as ingest ' +
      '(kind sync) before the task: maintenance refuses it at once with 503. Returns the UPID.',
    handler: async ({ body, authId, userInfo, server }) => {
      checkPullPrivs(userInfo, authId, body, BackupNamespace.parse(body.ns ?? '', 'ns'));
      return spawnPull(server, authId, body);
    },
  }),
];
