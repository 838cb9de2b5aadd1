/**
 * `/admin/verify`: verify jobs with their schedule status, and "run now" (PBS
 * `src/api2/admin/verify.rs`). Verify is a `write` operation in Stowage (it records verify_state
 * and renames bad chunks; docs/adr/002), so run-now on a read-only datastore is a 503.
 */
import { Type } from 'typebox';
import { NotFoundError } from '../../errors.js';
import { jobAclPath, verifyJobConfig } from '../../config/job-config.js';
import { canSeeJob, jobView } from '../config/job-config-api.js';
import { jobScheduleStatus, runJobNow } from '../../jobs/job-runner.js';
import { verifyJob } from '../../jobs/jobs.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { StoreSchema } from './datastore/common.js';
import { JobScheduleStatusFields } from './prune.js';

const JobIdParams = Type.Object({
  id: Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9._\\-]*$', minLength: 3, maxLength: 32 }),
});

const READ_PRIVS = ['Datastore.Audit', 'Datastore.Verify'];

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/verify',
    query: Type.Object({ store: Type.Optional(StoreSchema) }),
    permission: filtered(
      'only the jobs on whose datastore (namespace) the caller has Datastore.Audit or Datastore.Verify',
    ),
    description:
      'List verify jobs with their schedule status. Shows the jobs on whose datastore (namespace) the caller has Datastore.Audit or Datastore.Verify.',
    returns: Type.Array(Type.Object({ id: Type.String(), store: Type.String(), ...JobScheduleStatusFields })),
    handler: ({ query, authId, userInfo, server }) =>
      Promise.all(
        [...verifyJobConfig(server.paths.configDir).read().jobs.values()]
          .filter((j) => query.store === undefined || j.store === query.store)
          .filter((j) => canSeeJob(userInfo, authId, j, READ_PRIVS))
          .map(async (j) => ({ ...jobView(j), ...(await jobScheduleStatus(server, verifyJob(j))) })),
      ),
  }),
  defineRoute({
    method: 'POST',
    path: '/admin/verify/:id/run',
    params: JobIdParams,
    permission: filtered("Datastore.Verify on the job's datastore (namespace), which the job config names"),
    protected: true,
    description:
      "Run a verify job now; returns the UPID. Needs Datastore.Verify on the job's datastore (namespace). The write admission comes first: in read-only or offline maintenance the answer is 503 with the mode's message and no task is created.",
    handler: ({ params, authId, userInfo, server }) => {
      const job = verifyJobConfig(server.paths.configDir).get(params.id);
      if (!job) throw new NotFoundError(`verify job '${params.id}' does not exist.`);
      userInfo.checkPrivs(authId, jobAclPath(job), ['Datastore.Verify']);
      return runJobNow(server, verifyJob(job), authId);
    },
  }),
];
