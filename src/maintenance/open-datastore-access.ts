import { join } from 'node:path';
import { DatastoreConfigFile } from '../config/datastore-config.js';
import type { StowagePaths } from '../config/paths.js';
import { DatastoreAccess, type ChunkBackendOpener } from './datastore-access.js';
import { LocalAdmissionBackend } from './local-admission-backend.js';
import { LocalLockService } from './local-lock-service.js';
import { SqliteOperationRegistry } from './sqlite-operation-registry.js';
import { SqliteMaintenanceEventLog } from './maintenance-events.js';
import { LowSpaceMonitor } from './low-space-monitor.js';

/** The registry file every process of one Stowage instance shares (tmpfs under /run when installed). */
export function operationRegistryPath(paths: Pick<StowagePaths, 'runDir'>): string {
  return join(paths.runDir, 'active-operations.sqlite');
}

/** The maintenance history of the instance: under the data dir, so it outlives reboots. */
export function maintenanceEventLogPath(paths: Pick<StowagePaths, 'dataDir'>): string {
  return join(paths.dataDir, 'maintenance-events.sqlite');
}

/** Where an operator's forced release of the low-space hold is kept (low-space-monitor.ts). */
export function lowSpaceOverrideDir(paths: Pick<StowagePaths, 'dataDir'>): string {
  return join(paths.dataDir, 'low-space-override');
}

/** Datastore access for this process, on the instance's config dir and shared operation registry. */
export function openDatastoreAccess(
  paths: StowagePaths,
  opts: { lockTimeoutMs?: number; openChunks?: ChunkBackendOpener } = {},
): DatastoreAccess {
  const { openChunks, ...backendOpts } = opts;
  const config = new DatastoreConfigFile(paths.configDir);
  const backend = new LocalAdmissionBackend({
    config,
    registry: new SqliteOperationRegistry(operationRegistryPath(paths)),
    events: new SqliteMaintenanceEventLog(maintenanceEventLogPath(paths)),
    locks: new LocalLockService({ runDir: paths.runDir, dataDir: paths.dataDir, config }),
    ...backendOpts,
  });
  const lowSpace = new LowSpaceMonitor({ config, backend, overrideDir: lowSpaceOverrideDir(paths) });
  return new DatastoreAccess({ config, backend, openChunks, lowSpace });
}
