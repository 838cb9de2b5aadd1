/**
 * `/config/sync` and `/config/sync/{id}`: sync jobs in sync.cfg (PBS `src/api2/config/sync.rs`,
 * pull direction; parameter names of `SyncJobConfig`). Access as PBS's
 * `check_sync_job_read_access` and `check_sync_job_modify_access`:
 * - reading: Datastore.Audit on the target datastore (namespace), and Remote.Audit on the remote
 *   (or Datastore.Audit on a local source);
 * - changing: Datastore.Backup on the target, Remote.Read on `/remote/{remote}/{remote-store}` (or
 *   Datastore.Backup on a local source), Datastore.Prune with `remove-vanished`, and
 *   Datastore.Modify to make anyone but oneself the owner of the synced groups.
 */
import { Type } from 'typebox';
import { syncJobConfig, type SyncJobConfig } from '../../config/job-config.js';
import { SUPERUSER, isBackupOwner } from '../../config/user-config.js';
import type { AnyRoute } from '../../http/route.js';
import type { UserInfo } from '../../http/permissions.js';
import { AuthidSchema, CommentSchema } from '../../http/schemas.js';
import { NsSchema, StoreSchema } from '../admin/datastore/common.js';
import { jobAclPath } from '../../config/job-config.js';
import { jobConfigRoutes } from './job-config-api.js';
import { ScheduleSchema } from './prune.js';
import { ByteSizeSchema, RemoteIdSchema, SnapshotFlagSchemas, WorkerThreadsSchema } from '../pull.js';

function sourceReadable(userInfo: UserInfo, authId: string, job: SyncJobConfig): boolean {
  return job.remote !== undefined
    ? userInfo.hasPrivs(authId, `/remote/${job.remote}`, ['Remote.Audit'])
    : userInfo.hasPrivs(authId, `/datastore/${job['remote-store']}`, ['Datastore.Audit']);
}

/** PBS `check_sync_job_modify_access` beyond Datastore.Backup on the target. */
export function checkSyncJobModify(userInfo: UserInfo, authId: string, job: SyncJobConfig): void {
  if (job['sync-direction'] === 'push') {
    // PBS: write into the remote; see the local store; read all of it, or push as its owner
    const remote = `/remote/${job.remote}/${job['remote-store']}${job['remote-ns'] ? `/${job['remote-ns']}` : ''}`;
    userInfo.checkPrivs(authId, remote, ['Remote.DatastoreBackup']);
    if (job['remove-vanished']) userInfo.checkPrivs(authId, remote, ['Remote.DatastorePrune']);
    const source = jobAclPath(job);
    userInfo.checkPrivs(authId, source, ['Datastore.Audit']);
    if (userInfo.hasPrivs(authId, source, ['Datastore.Read'])) return;
    // the job pushes what its owner may read: naming another owner is changing ownership
    if (!isBackupOwner(job.owner ?? SUPERUSER, authId))
      userInfo.checkPrivs(authId, source, ['Datastore.Modify']);
    userInfo.checkPrivs(authId, source, ['Datastore.Backup']);
    return;
  }
  const target = jobAclPath(job);
  if (job.remote !== undefined) {
    userInfo.checkPrivs(authId, `/remote/${job.remote}/${job['remote-store']}`, ['Remote.Read']);
  } else {
    userInfo.checkPrivs(authId, `/datastore/${job['remote-store']}`, ['Datastore.Backup']);
  }
  if (job['remove-vanished']) userInfo.checkPrivs(authId, target, ['Datastore.Prune']);
  const owner = job.owner ?? SUPERUSER;
  if (!isBackupOwner(owner, authId)) userInfo.checkPrivs(authId, target, ['Datastore.Modify']);
}

export const routes: AnyRoute[] = jobConfigRoutes<SyncJobConfig>({
  path: 'sync',
  noun: 'sync job',
  jobType: 'syncjob',
  file: (server) => syncJobConfig(server.paths.configDir),
  fields: {
    store: Type.Optional(StoreSchema),
    ns: Type.Optional(NsSchema),
    owner: Type.Optional(AuthidSchema),
    remote: Type.Optional(RemoteIdSchema),
    'remote-store': Type.Optional(StoreSchema),
    'remote-ns': Type.Optional(NsSchema),
    'remove-vanished': Type.Optional(Type.Boolean({ description: 'Delete vanished backups.' })),
    'max-depth': Type.Optional(Type.Integer({ minimum: 0, maximum: 7 })),
    'group-filter': Type.Optional(
      Type.Array(Type.String({ maxLength: 256 }), {
        description: 'Group filters: type:TYPE, group:TYPE/ID, regex:RE, each optionally exclude:…',
      }),
    ),
    'transfer-last': Type.Optional(Type.Integer({ minimum: 1 })),
    schedule: Type.Optional(ScheduleSchema),
    'sync-direction': Type.Optional(
      Type.Union([Type.Literal('pull'), Type.Literal('push')], {
        description: 'pull (default): from the remote into store; push: from store into the remote.',
      }),
    ),
    'rate-in': Type.Optional(ByteSizeSchema('Most bytes per second downloaded (pull)')),
    'burst-in': Type.Optional(ByteSizeSchema('Burst of downloads (pull)')),
    'rate-out': Type.Optional(ByteSizeSchema('Most bytes per second uploaded (push)')),
    'burst-out': Type.Optional(ByteSizeSchema('Burst of uploads (push)')),
    'run-on-mount': Type.Optional(
      Type.Boolean({ description: 'Run when a removable datastore of the job is mounted (PBS 4).' }),
    ),
    'unmount-on-done': Type.Optional(
      Type.Boolean({ description: "Unmount the job's removable datastores once it succeeded." }),
    ),
    ...SnapshotFlagSchemas,
    'worker-threads': WorkerThreadsSchema,
    'resync-corrupt': Type.Optional(
      Type.Boolean({ description: 'Pull only: sync again the snapshots whose last verification failed.' }),
    ),
    comment: Type.Optional(CommentSchema),
  },
  deletable: [
    'worker-threads',
    'verified-only',
    'encrypted-only',
    'run-on-mount',
    'unmount-on-done',
    'rate-in',
    'burst-in',
    'rate-out',
    'burst-out',
    'comment',
    'ns',
    'owner',
    'remote',
    'remote-ns',
    'remove-vanished',
    'max-depth',
    'group-filter',
    'transfer-last',
    'schedule',
    'sync-direction',
  ],
  readPrivs: ['Datastore.Audit'],
  modifyPriv: 'Datastore.Backup',
  checkModify: checkSyncJobModify,
  canRead: sourceReadable,
});
