/**
 * `/admin/prune`: prune jobs with their schedule status, and "run now" (PBS
 * `src/api2/admin/prune.rs`). The list shows `PruneJobStatus`: the job's configuration with PBS's
 * `JobScheduleStatus` fields (`next-run`, `last-run-upid`, `last-run-state`, `last-run-endtime`),
 * so a run skipped for maintenance shows there as `skipped: maintenance: ...`.
 */
import { Type } from 'typebox';
import { NotFoundError } from '../../errors.js';
import { jobAclPath, pruneJobConfig } from '../../config/job-config.js';
import { canSeeJob, jobView } from '../config/job-config-api.js';
import { jobScheduleStatus, runJobNow } from '../../jobs/job-runner.js';
import { pruneJob } from '../../jobs/jobs.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { StoreSchema } from './datastore/common.js';

/** PBS `JobScheduleStatus`, shared by the job lists. */
export const JobScheduleStatusFields = {
  'next-run': Type.Optional(Type.Integer({ description: 'Next scheduled run (epoch seconds).' })),
  'last-run-upid': Type.Optional(Type.String()),
  'last-run-state': Type.Optional(
    Type.String({
      description: 'Final status of the last run: OK, WARNINGS: n, an error, or skipped: <reason>.',
    }),
  ),
  'last-run-endtime': Type.Optional(Type.Integer()),
};

const JobIdParams = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$', minLength: 3, maxLength: 32 }),
});

const READ_PRIVS = ['Datastore.Audit', 'Datastore.Modify'];

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/prune',
    query: Type.Object({ store: Type.Optional(StoreSchema) }),
    permission: filtered(
      'only the jobs on whose datastore (namespace) the caller has Datastore.Audit or Datastore.Modify',
    ),
    description:
      'List prune jobs with their schedule status. Shows the jobs on whose datastore (namespace) the caller has Datastore.Audit or Datastore.Modify.',
    returns: Type.Array(
      Type.Object({
        id: Type.String(),
        store: Type.String(),
        schedule: Type.String(),
        ...JobScheduleStatusFields,
      }),
    ),
    handler: ({ query, authId, userInfo, server }) =>
      Promise.all(
        [...pruneJobConfig(server.paths.configDir).read().jobs.values()]
          .filter((j) => query.store === undefined || j.store === query.store)
          .filter((j) => canSeeJob(userInfo, authId, j, READ_PRIVS))
          .map(async (j) => ({ ...jobView(j), ...(await jobScheduleStatus(server, pruneJob(j))) })),
      ),
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/prune/:id/run',
    params: JobIdParams,
    permission: filtered("Datastore.Modify on the job's datastore (namespace), which the job config names"),
    protected: true,
    description:
      "Run a prune job now; returns the UPID. Needs Datastore.Modify on the job's datastore (namespace). The write admission comes first: in maintenance the answer is 503 with the mode's message and no task is created.",
    handler: ({ params, authId, userInfo, server }) => {
      const job = pruneJobConfig(server.paths.configDir).get(params.id);
      if (!job) throw new NotFoundError(`prune job '${params.id}' does not exist.`);
      userInfo.checkPrivs(authId, jobAclPath(job), ['Datastore.Modify']);
      return runJobNow(server, pruneJob(job), authId);
    },
  }),
];
