/**
 * `maintenance-window.cfg`: scheduled maintenance windows, in the section-config format of the
 * job files (and with their digest, lock and verbatim unknown properties, job-config.ts):
 *
 *   maintenance-window: disk-check
 *   	store store1
 *   	schedule sat 02:00
 *   	duration 2h 30min
 *   	type offline
 *   	message monthly fsck
 *   	drain-before 30min
 */
import { isWindowType, WINDOW_TYPES, type MaintenanceWindowConfig } from '../api-types/maintenance-window.js';
import { parseTimeSpan } from '../api-types/time-span.js';
import { BadRequestError } from '../errors.js';
import { validateMaintenanceMessage } from '../maintenance/maintenance-mode.js';
import { JobConfigFile, type JobKind } from './job-config.js';

export type { MaintenanceWindowConfig };

export const MAINTENANCE_WINDOWS: JobKind<MaintenanceWindowConfig> = {
  file: 'maintenance-window.cfg',
  lock: '.maintenance-window.lck',
  sectionType: 'maintenance-window',
  props: [
    ['store', 'store'],
    ['schedule', 'schedule'],
    ['duration', 'string'],
    ['type', 'string'],
    ['message', 'string'],
    ['drain-before', 'string'],
    ['disable', 'bool'],
    ['comment', 'string'],
  ],
  required: ['store', 'schedule', 'duration', 'type'],
  check(window) {
    if (!isWindowType(window.type)) {
      throw new BadRequestError(
        `invalid type '${String(window.type)}': must be one of ${WINDOW_TYPES.join(', ')}`,
        { param: 'type' },
      );
    }
    if (parseTimeSpan(window.duration, 'duration') === 0) {
      throw new BadRequestError(`invalid duration '${window.duration}': must be longer than 0`, {
        param: 'duration',
      });
    }
    if (window['drain-before'] !== undefined) parseTimeSpan(window['drain-before'], 'drain-before');
    if (window.message !== undefined) validateMaintenanceMessage(window.message, 'message');
  },
};

export const maintenanceWindowConfig = (configDir: string) =>
  new JobConfigFile(MAINTENANCE_WINDOWS, configDir);
