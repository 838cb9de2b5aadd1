/**
 * `/config/prune` and `/config/prune/{id}`: prune jobs in prune.cfg (PBS
 * `src/api2/config/prune.rs`; parameter names of `PruneJobConfig`). Reading a job needs
 * Datastore.Audit or Datastore.Modify on its datastore (namespace); changing one, Datastore.Modify.
 */
import { Type } from 'typebox';
import { KEEP_OPTION_NAMES } from '../../api-types/prune-options.js';
import { pruneJobConfig, type PruneJobConfig } from '../../config/job-config.js';
import { jobConfigRoutes } from './job-config-api.js';
import type { AnyRoute } from '../../http/route.js';
import { CommentSchema } from '../../http/schemas.js';
import { KeepSchemas, NsSchema, StoreSchema } from '../admin/datastore/common.js';

/** A PBS calendar event; fully checked by the calendar-event parser (400 naming `schedule`). */
export const ScheduleSchema = Type.String({
  maxLength: 128,
  description: 'Run schedule (calendar event, UTC).',
});

const MaxDepthSchema = Type.Integer({ minimum: 0, maximum: 7, description: 'Namespace depth to prune.' });

export const routes: AnyRoute[] = jobConfigRoutes<PruneJobConfig>({
  path: 'prune',
  noun: 'prune job',
  jobType: 'prunejob',
  file: (server) => pruneJobConfig(server.paths.configDir),
  fields: {
    store: Type.Optional(StoreSchema),
    ns: Type.Optional(NsSchema),
    'max-depth': Type.Optional(MaxDepthSchema),
    schedule: Type.Optional(ScheduleSchema),
    disable: Type.Optional(Type.Boolean({ description: 'Disable this job.' })),
    ...KeepSchemas,
    comment: Type.Optional(CommentSchema),
  },
  deletable: ['comment', 'disable', 'ns', 'max-depth', ...KEEP_OPTION_NAMES],
  readPrivs: ['Datastore.Audit', 'Datastore.Modify'],
  modifyPriv: 'Datastore.Modify',
});
