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
import type { DatastoreHandle, ReadHandle, WriteHandle } from '../maintenance/datastore-access.js';
import { remoteConfig } from '../config/remote-config.js';
import { spawnTaskOwning } from '../tasks/admitted-task.js';
import type { WorkerTask } from '../tasks/worker-task.js';
import { parseGroupFilter } from '../sync/group-filter.js';
import { LocalSyncSource } from '../sync/local-source.js';
import { pullStore } from '../sync/pull.js';
import { connectRemote } from '../sync/remote-client.js';
import { RemoteSyncSource } from '../sync/remote-source.js';
import type { SyncSource } from '../sync/sync-source.js';
import { NsSchema, StoreSchema } from './admin/datastore/common.js';

const RemoteIdSchema = Type.String({
  pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$',
  minLength: 3,
  maxLength: 32,
});
const StringOrList = Type.Union([
  Type.String({ maxLength: 256 }),
  Type.Array(Type.String({ maxLength: 256 })),
]);

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
});

/** What one pull needs, from `POST /pull` or a sync job. */
export interface PullRequest {
  store: string;
  ns?: string;
  remote?: string;
  'remote-store': string;
  'remote-ns'?: string;
  'remove-vanished'?: boolean;
  'max-depth'?: number;
  'group-filter'?: string | string[];
  'transfer-last'?: number;
}

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

/** The checked parameters of a pull (400 naming the bad one). */
function pullParameters(req: PullRequest) {
  if (req.remote === undefined && req.store === req['remote-store']) {
    throw new BadRequestError("can't sync to same datastore", { param: 'remote-store' });
  }
  const filters = req['group-filter'] === undefined ? [] : [req['group-filter']].flat();
  return {
    ns: BackupNamespace.parse(req.ns ?? '', 'ns'),
    sourceNs: BackupNamespace.parse(req['remote-ns'] ?? '', 'remote-ns'),
    groupFilter: filters.map((f) => parseGroupFilter(f)),
  };
}

/**
 * Admit and start a pull as a task of `type` (`sync` for /pull, `syncjob` for a job) with `id`,
 * owned by `owner`; returns the UPID. Refusals before the task (maintenance, unknown store or
 * remote) are thrown.
 */
export async function spawnPull(
  server: ServerContext,
  authId: string,
  req: PullRequest,
  task: { type: string; id: string; owner: string; detail: string; header?: (worker: WorkerTask) => void },
): Promise<string> {
  const params = pullParameters(req);
  const remote = req.remote !== undefined ? remoteConfig(server.paths.configDir).get(req.remote) : undefined;
  if (req.remote !== undefined && !remote) throw new NotFoundError(`remote '${req.remote}' does not exist`);
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
    target = await server.datastores.lookupDatastore(req.store, 'ingest', {
      kind: 'sync',
      detail: task.detail,
      authId,
    });
  } catch (err) {
    await source?.release();
    throw err;
  }
  const handles: DatastoreHandle[] = source ? [target, source] : [target];
  const both = {
    release: async () => {
      for (const h of handles) await h.release();
    },
    attachTask: (upid: string) => handles.forEach((h) => h.attachTask(upid)),
  };
  return spawnTaskOwning(server.tasks, both, { type: task.type, id: task.id, authId }, async (worker) => {
    task.header?.(worker);
    worker.log(`pull datastore '${req.store}' from '${req.remote ?? '-'}/${req['remote-store']}'`);
    let syncSource: SyncSource;
    if (remote) {
      const api = await connectRemote(remote);
      syncSource = new RemoteSyncSource(api, remote.name, req['remote-store']);
    } else {
      syncSource = new LocalSyncSource(source!.datastore);
    }
    await pullStore(syncSource, target.datastore, {
      ...params,
      ...(req['max-depth'] !== undefined && { maxDepth: req['max-depth'] }),
      ...(req['transfer-last'] !== undefined && { transferLast: req['transfer-last'] }),
      owner: task.owner,
      removeVanished: req['remove-vanished'] ?? false,
      log: (line) => worker.log(line),
      signal: worker.signal,
      mayCreateNamespace: (ns) =>
        server.userInfo.get().checkPrivs(authId, aclPath(req.store, ns.parent()), ['Datastore.Modify']),
    });
    worker.log(`pull datastore '${req.store}' end`);
  });
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
      return spawnPull(server, authId, body, {
        type: 'sync',
        id: body.store,
        owner: authId,
        detail: `pull from ${body.remote ?? '-'}/${body['remote-store']}`,
      });
    },
  }),
];
