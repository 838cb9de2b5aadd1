/**
 * The chunk backend of a datastore, chosen from its configuration: the opener (admission,
 * datastore-access.ts) and datastore creation (create-datastore.ts) hand it to the Datastore,
 * which never picks one itself. A datastore without `backend` (or `type=filesystem`) keeps its
 * chunks under its path; PBS 4's `type=s3,client=ID,bucket=NAME[,max-cache-size=SIZE]` keeps them
 * in the bucket of the `s3.cfg` endpoint `ID`, under `<store name>/`, with the path as the local
 * cache (PBS `DataStore::lookup_datastore` with an S3 backend). A backend type a newer PBS wrote
 * is refused before it gets here (unsupported-datastore.ts, UNSUPPORTED).
 */
import { mkdirSync, statfsSync } from 'node:fs';
import { parseHumanByte } from '../api-types/human-byte.js';
import { parsePropertyString } from '../config/property-string.js';
import {
  datastoreAbsolutePath,
  parseDatastoreBackend,
  type DatastoreConfig,
} from '../config/datastore-config.js';
import { s3EndpointConfig } from '../config/s3-config.js';
import type { ChunkBackend, SyncLevel } from '../datastore/chunk-backend.js';
import { FilesystemChunkBackend } from '../datastore/chunk-store.js';
import { S3ChunkBackend } from '../datastore/s3-chunk-backend.js';
import { writeS3InUseMarker, type S3StoreLocation } from '../datastore/s3-datastore.js';
import { BadConfigError, ERR_S3_ENDPOINT_NOT_CONFIGURED } from '../errors.js';
import { emptyS3RequestCounters, s3ClientOptionsFor, type S3RequestCounters } from '../s3/s3-client.js';
import type { LockService } from './lock-service.js';
import { checkSupportedDatastore } from './unsupported-datastore.js';

/** Where the backend finds what the datastore's section does not hold. */
export interface ChunkBackendContext {
  /** Where `s3.cfg` is. */
  configDir: string;
  /** The host's lock service: an S3 datastore's per-chunk locks are shared through it. */
  locks: LockService;
}

/** The datastore's `tuning` sync-level (PBS's default: `filesystem`). */
export function syncLevelOf(cfg: DatastoreConfig): SyncLevel {
  if (!cfg.tuning) return 'filesystem';
  const level = parsePropertyString(cfg.tuning, { name: 'tuning' }).find(([k]) => k === 'sync-level')?.[1];
  if (level === undefined) return 'filesystem';
  if (level === 'none' || level === 'filesystem' || level === 'file') return level;
  throw new BadConfigError(`datastore '${cfg.name}': invalid tuning sync-level '${level}'`);
}

/** The backend type of a datastore this version can open; UNSUPPORTED for any other. */
function backendType(cfg: DatastoreConfig): 'filesystem' | 's3' {
  checkSupportedDatastore(cfg);
  const { type } = parseDatastoreBackend(cfg);
  if (type !== 'filesystem' && type !== 's3') {
    throw new BadConfigError(`datastore '${cfg.name}': backend type '${type}'`);
  }
  return type;
}

/** Whether `cfg` keeps its chunks and metadata in an S3 bucket (PBS 4 `type=s3`). */
export function isS3Datastore(cfg: DatastoreConfig): boolean {
  try {
    return parseDatastoreBackend(cfg).type === 's3';
  } catch {
    return false;
  }
}

/**
 * Where an S3 datastore's objects are: its endpoint from `s3.cfg` (ERR_S3_ENDPOINT_NOT_CONFIGURED when
 * `client` names none), its bucket, its name as the prefix.
 */
export function s3LocationOf(
  cfg: DatastoreConfig,
  ctx: Pick<ChunkBackendContext, 'configDir'>,
): S3StoreLocation {
  const backend = parseDatastoreBackend(cfg);
  if (backend.type !== 's3') throw new BadConfigError(`datastore '${cfg.name}' is not an S3 datastore`);
  const endpoint = s3EndpointConfig(ctx.configDir).get(backend.client!);
  if (!endpoint) throw ERR_S3_ENDPOINT_NOT_CONFIGURED(cfg.name, backend.client!);
  return { client: s3ClientOptionsFor(endpoint), bucket: backend.bucket!, storePrefix: cfg.name };
}

/** PBS sizes the cache in 16 MiB steps: the chunks that fit the free space and `max-cache-size`. */
const CACHE_SLOT_BYTES = 16 * 1024 * 1024;

/**
 * How many chunks an S3 datastore's cache keeps with content (PBS `lookup_datastore`): what the
 * cache directory's free space holds, at most `max-cache-size`, counted in 16 MiB chunks.
 */
export function s3CacheCapacity(cfg: DatastoreConfig): number {
  const path = datastoreAbsolutePath(cfg);
  const st = statfsSync(path);
  let capacity = Math.floor((st.bavail * st.bsize) / CACHE_SLOT_BYTES);
  const max = parseDatastoreBackend(cfg)['max-cache-size'];
  if (max !== undefined)
    capacity = Math.min(capacity, Math.floor(parseHumanByte(max, 'max-cache-size') / CACHE_SLOT_BYTES));
  return Math.max(0, capacity);
}

/**
 * Each S3 datastore's request counters (PBS 4's `S3Statistics`), by cache directory: one object
 * per datastore for the life of the process, since the datastore is opened and closed with its
 * operations. PBS keeps them in shared memory across its processes and restarts.
 */
const requestCounters = new Map<string, S3RequestCounters>();

function countersFor(cachePath: string): S3RequestCounters {
  let counters = requestCounters.get(cachePath);
  if (!counters) {
    counters = emptyS3RequestCounters();
    requestCounters.set(cachePath, counters);
  }
  return counters;
}

/**
 * Why an S3 datastore's object store cannot be used right now, as the last request found it
 * (`endpoint 'ID' failing since TIME: ERROR`), or undefined when its last request was answered,
 * it has sent none since the server started, or it is not an S3 datastore.
 */
export function s3EndpointFailure(cfg: DatastoreConfig): string | undefined {
  if (!isS3Datastore(cfg)) return undefined;
  const failure = requestCounters.get(datastoreAbsolutePath(cfg))?.failure;
  if (!failure) return undefined;
  const client = parseDatastoreBackend(cfg).client ?? '?';
  return `object store endpoint '${client}' failing since ${new Date(failure.since).toISOString()}: ${failure.message}`;
}

function openS3ChunkBackend(cfg: DatastoreConfig, ctx: ChunkBackendContext): S3ChunkBackend {
  const loc = s3LocationOf(cfg, ctx);
  // the cache directory is ours to recreate (a wiped cache is refilled from the bucket)
  mkdirSync(datastoreAbsolutePath(cfg), { recursive: true });
  return new S3ChunkBackend({
    client: loc.client,
    bucket: loc.bucket,
    storePrefix: loc.storePrefix,
    cacheDir: datastoreAbsolutePath(cfg),
    cacheCapacity: s3CacheCapacity(cfg),
    counters: countersFor(datastoreAbsolutePath(cfg)),
    lockService: ctx.locks,
  });
}

/** Open the chunk backend of an existing datastore (NOT_FOUND when its chunk store is missing). */
export function openChunkBackend(cfg: DatastoreConfig, ctx: ChunkBackendContext): ChunkBackend {
  switch (backendType(cfg)) {
    case 'filesystem':
      return FilesystemChunkBackend.open(datastoreAbsolutePath(cfg), { syncLevel: syncLevelOf(cfg) });
    case 's3':
      return openS3ChunkBackend(cfg, ctx);
  }
}

/**
 * Create the chunk backend of a new datastore and open it: a chunk store at the path, or for an
 * S3 datastore the cache directory and the bucket's `.in-use` marker naming this host (the
 * bucket was checked when the creation was prepared).
 */
export async function createChunkBackend(
  cfg: DatastoreConfig,
  ctx: ChunkBackendContext,
): Promise<ChunkBackend> {
  switch (backendType(cfg)) {
    case 'filesystem':
      return FilesystemChunkBackend.create(datastoreAbsolutePath(cfg), { syncLevel: syncLevelOf(cfg) });
    case 's3': {
      const backend = openS3ChunkBackend(cfg, ctx);
      try {
        await writeS3InUseMarker(s3LocationOf(cfg, ctx));
      } catch (err) {
        await backend.close();
        throw err;
      }
      return backend;
    }
  }
}
