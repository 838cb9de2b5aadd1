/**
 * `/config/maintenance-window` and `/config/maintenance-window/{id}`: scheduled maintenance
 * windows in maintenance-window.cfg (a Stowage extension, src/maintenance/maintenance-windows.ts).
 * Same shape as the job configs: list and read with `digest`, update with a `delete` list.
 * Reading needs Datastore.Audit or Datastore.Modify on the window's datastore; changing one,
 * Datastore.Modify, as setting the datastore's maintenance mode does.
 */
import { Type } from 'typebox';
import { WINDOW_TYPES, type MaintenanceWindowConfig } from '../../api-types/maintenance-window.js';
import { MAX_MESSAGE_LENGTH } from '../../api-types/maintenance.js';
import { maintenanceWindowConfig } from '../../config/maintenance-window-config.js';
import type { AnyRoute } from '../../http/route.js';
import { CommentSchema } from '../../http/schemas.js';
import { StoreSchema } from '../admin/datastore/common.js';
import { jobConfigRoutes } from './job-config-api.js';
import { applyMaintenanceWindows } from '../../maintenance/maintenance-windows.js';
import { ScheduleSchema } from './prune.js';

// Checked fully by the window's validation (400 naming the field); the schemas only bound them.
const TimeSpanSchema = (what: string) =>
  Type.String({ maxLength: 64, description: `${what} (time span, e.g. 2h 30min).` });

export const routes: AnyRoute[] = jobConfigRoutes<MaintenanceWindowConfig>({
  path: 'maintenance-window',
  noun: 'maintenance window',
  file: (server) => maintenanceWindowConfig(server.paths.configDir),
  fields: {
    store: Type.Optional(StoreSchema),
    schedule: Type.Optional(ScheduleSchema),
    duration: Type.Optional(TimeSpanSchema('How long each window lasts')),
    type: Type.Optional(
      Type.String({ description: `Hold type during the window: ${WINDOW_TYPES.join(', ')}.` }),
    ),
    message: Type.Optional(
      Type.String({
        maxLength: 4 * MAX_MESSAGE_LENGTH,
        description: 'Shown to refused clients (at most 64 characters).',
      }),
    ),
    'drain-before': Type.Optional(
      TimeSpanSchema('Admit no new backup, verify, GC or sync this long before each start'),
    ),
    disable: Type.Optional(Type.Boolean({ description: 'Disable this window.' })),
    comment: Type.Optional(CommentSchema),
  },
  deletable: ['comment', 'disable', 'message', 'drain-before'],
  readPrivs: ['Datastore.Audit', 'Datastore.Modify'],
  modifyPriv: 'Datastore.Modify',
  // a window created in force, moved, disabled or removed takes or lifts its hold at once, not at
  // the scheduler's next pass
  async changed(server) {
    await applyMaintenanceWindows(server.datastores, server.paths.configDir, new Date(), server.log);
  },
});
