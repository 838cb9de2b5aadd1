import { join } from 'node:path';
import { DatastoreConfigFile } from '../config/datastore-config.js';
import type { StowagePaths } from '../config/paths.js';
import { DatastoreAccess } from './datastore-access.js';
import { SqliteOperationRegistry } from './sqlite-operation-registry.js';

/** The registry file every process of one Stowage instance shares (tmpfs under /run when installed). */
export function operationRegistryPath(paths: Pick<StowagePaths, 'runDir'>): string {
  return join(paths.runDir, 'active-operations.sqlite');
}

/** Datastore access for this process, on the instance's config dir and shared operation registry. */
export function openDatastoreAccess(
  paths: StowagePaths,
  opts: { lockTimeoutMs?: number } = {},
): DatastoreAccess {
  return new DatastoreAccess({
    config: new DatastoreConfigFile(paths.configDir),
    registry: new SqliteOperationRegistry(operationRegistryPath(paths)),
    runDir: paths.runDir,
    ...opts,
  });
}
