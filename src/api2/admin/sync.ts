/**
 * `/admin/sync`: sync jobs with their schedule status, and "run now" (PBS
 * `src/api2/admin/sync.rs`, pull direction). A run skipped for maintenance on either end shows in
 * the list as `skipped: maintenance: ...`.
 */
import { Type } from 'typebox';
import { NotFoundError } from '../../errors.js';
import { jobAclPath, syncJobConfig } from '../../config/job-config.js';
import { canSeeJob, jobView } from '../config/job-config-api.js';
import { checkSyncJobModify } from '../config/sync.js';
import { jobScheduleStatus, runJobNow } from '../../jobs/job-runner.js';
import { syncJob } from '../../jobs/jobs.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { StoreSchema } from './datastore/common.js';
import { JobScheduleStatusFields } from './prune.js';

const JobIdParams = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$', minLength: 3, maxLength: 32 }),
});

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/sync',
    query: Type.Object({
      store: Type.Optional(StoreSchema),
      'sync-direction': Type.Optional(
        Type.Union([Type.Literal('pull'), Type.Literal('push'), Type.Literal('all')]),
      ),
    }),
    permission: filtered(
      'only the jobs on whose target datastore (namespace) the caller has Datastore.Audit',
    ),
    description:
      'List sync jobs with their schedule status: pull jobs, or those of `sync-direction` (push, all).',
    returns: Type.Array(
      Type.Object({
        id: Type.String(),
        store: Type.String(),
        'remote-store': Type.String(),
        ...JobScheduleStatusFields,
      }),
    ),
    handler: ({ query, authId, userInfo, server }) =>
      Promise.all(
        [...syncJobConfig(server.paths.configDir).read().jobs.values()]
          .filter((j) => query.store === undefined || j.store === query.store)
          .filter((j) => {
            const dir = query['sync-direction'] ?? 'pull'; // PBS lists pull jobs unless asked
            return dir === 'all' || (j['sync-direction'] ?? 'pull') === dir;
          })
          .filter((j) => canSeeJob(userInfo, authId, j, ['Datastore.Audit']))
          .map(async (j) => ({ ...jobView(j), ...(await jobScheduleStatus(server, syncJob(j))) })),
      ),
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/sync/:id/run',
    params: JobIdParams,
    permission: filtered(
      "the job's modify access: Datastore.Backup on its target, Remote.Read on its source, …",
    ),
    protected: true,
    description:
      'Run a sync job now; returns the UPID. Needs the access that changing the job needs. The target ' +
      '(ingest) and a local source (read) are admitted first: in maintenance the answer is 503 with ' +
      'the mode’s message and no task is created.',
    handler: ({ params, authId, userInfo, server }) => {
      const job = syncJobConfig(server.paths.configDir).get(params.id);
      if (!job) throw new NotFoundError(`sync job '${params.id}' does not exist.`);
      userInfo.checkPrivs(authId, jobAclPath(job), ['Datastore.Backup']);
      checkSyncJobModify(userInfo, authId, job);
      return runJobNow(server, syncJob(job), authId);
    },
  }),
];
