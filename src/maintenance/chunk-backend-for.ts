/**
 * The chunk backend of a datastore, chosen from its configuration: the opener (admission,
 * datastore-access.ts) and datastore creation (create-datastore.ts) hand it to the Datastore,
 * which never picks one itself. Today every datastore Stowage opens keeps its chunks on the
 * filesystem (`.chunks/` under its path); a datastore with another `backend` (PBS 4's S3) is
 * refused before it gets here (unsupported-datastore.ts, UNSUPPORTED). An S3 backend (issue 16)
 * plugs in here.
 */
import { parsePropertyString } from '../config/property-string.js';
import {
  datastoreAbsolutePath,
  parseDatastoreBackend,
  type DatastoreConfig,
} from '../config/datastore-config.js';
import type { ChunkBackend, SyncLevel } from '../datastore/chunk-backend.js';
import { FilesystemChunkBackend } from '../datastore/chunk-store.js';
import { BadConfigError } from '../errors.js';
import { checkSupportedDatastore } from './unsupported-datastore.js';

/** The datastore's `tuning` sync-level (PBS's default: `filesystem`). */
export function syncLevelOf(cfg: DatastoreConfig): SyncLevel {
  if (!cfg.tuning) return 'filesystem';
  const level = parsePropertyString(cfg.tuning, { name: 'tuning' }).find(([k]) => k === 'sync-level')?.[1];
  if (level === undefined) return 'filesystem';
  if (level === 'none' || level === 'filesystem' || level === 'file') return level;
  throw new BadConfigError(`datastore '${cfg.name}': invalid tuning sync-level '${level}'`);
}

/** The backend type of a datastore this version can open; UNSUPPORTED for any other. */
function backendType(cfg: DatastoreConfig): 'filesystem' {
  checkSupportedDatastore(cfg);
  const { type } = parseDatastoreBackend(cfg);
  if (type !== 'filesystem') throw new BadConfigError(`datastore '${cfg.name}': backend type '${type}'`);
  return type;
}

/** Open the chunk backend of an existing datastore (NOT_FOUND when its chunk store is missing). */
export function openChunkBackend(cfg: DatastoreConfig): ChunkBackend {
  switch (backendType(cfg)) {
    case 'filesystem':
      return FilesystemChunkBackend.open(datastoreAbsolutePath(cfg), { syncLevel: syncLevelOf(cfg) });
  }
}

/** Create the chunk backend of a new datastore (its chunk store at the path) and open it. */
export async function createChunkBackend(cfg: DatastoreConfig): Promise<ChunkBackend> {
  switch (backendType(cfg)) {
    case 'filesystem':
      return FilesystemChunkBackend.create(datastoreAbsolutePath(cfg), { syncLevel: syncLevelOf(cfg) });
  }
}
