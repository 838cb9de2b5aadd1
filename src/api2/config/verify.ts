/**
 * `/config/verify` and `/config/verify/{id}`: verify jobs in verification.cfg (PBS
 * `src/api2/config/verify.rs`; parameter names of `VerificationJobConfig`). Reading a job needs
 * Datastore.Audit or Datastore.Verify on its datastore (namespace); changing one, Datastore.Verify.
 */
import { Type } from 'typebox';
import { verifyJobConfig, type VerifyJobConfig } from '../../config/job-config.js';
import { jobConfigRoutes } from './job-config-api.js';
import type { AnyRoute } from '../../http/route.js';
import { CommentSchema } from '../../http/schemas.js';
import { NsSchema, StoreSchema } from '../admin/datastore/common.js';
import { ScheduleSchema } from './prune.js';

export const routes: AnyRoute[] = jobConfigRoutes<VerifyJobConfig>({
  path: 'verify',
  noun: 'verify job',
  jobType: 'verificationjob',
  file: (server) => verifyJobConfig(server.paths.configDir),
  fields: {
    store: Type.Optional(StoreSchema),
    ns: Type.Optional(NsSchema),
    'max-depth': Type.Optional(Type.Integer({ minimum: 0, maximum: 7 })),
    schedule: Type.Optional(ScheduleSchema),
    'ignore-verified': Type.Optional(
      Type.Boolean({ description: 'Do not verify snapshots already verified successfully.' }),
    ),
    'outdated-after': Type.Optional(
      Type.Integer({ minimum: 1, description: 'Days after which a verification becomes outdated.' }),
    ),
    'read-only': Type.Optional(
      Type.Boolean({
        description:
          'Stowage: verify as a read operation that records nothing, so the job also runs in read-only maintenance.',
      }),
    ),
    comment: Type.Optional(CommentSchema),
  },
  deletable: ['comment', 'schedule', 'ns', 'max-depth', 'ignore-verified', 'outdated-after', 'read-only'],
  readPrivs: ['Datastore.Audit', 'Datastore.Verify'],
  modifyPriv: 'Datastore.Verify',
});
