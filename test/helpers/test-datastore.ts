/**
 * A Datastore opened below admission, for tests of the datastore itself: what admission injects
 * (the chunk backend chosen for the datastore, src/maintenance/chunk-backend-for.ts, and the
 * admission backend's lock service) is built here, in one place. The lock service is the local
 * one on a test root's run dir (`<root>/run`) and config dir (`<root>/etc`, where the datastore
 * is registered so its GC lock is found at `<path>/.lock`), as a test instance's.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DatastoreConfigFile,
  formatDatastoreConfig,
  parseDatastoreConfig,
  validateDatastoreName,
} from '../../src/config/datastore-config.js';
import type { ChunkBackend, SyncLevel } from '../../src/datastore/chunk-backend.js';
import { FilesystemChunkBackend } from '../../src/datastore/chunk-store.js';
import { Datastore } from '../../src/datastore/datastore.js';
import { DatastoreLocks } from '../../src/datastore/datastore-locks.js';
import type { LockService } from '../../src/datastore/lock-service.js';
import { LocalLockService } from '../../src/maintenance/local-lock-service.js';

export interface TestDatastoreOptions {
  name?: string;
  /** Default `<root>/store`. */
  basePath?: string;
  /**
   * `bare`: only `.chunks` and `.lock`, all opening needs (default); `open`: whatever is there
   * already (a full chunk store: `await FilesystemChunkBackend.create(basePath)` first).
   */
  chunkStore?: 'bare' | 'open';
  syncLevel?: SyncLevel;
  /** Another chunk backend instead of the filesystem one at `basePath`. */
  chunks?: ChunkBackend;
  /** Another lock service instead of the local one of `root`. */
  locks?: LockService;
}

/** `.chunks` and `.lock`: all a filesystem chunk store needs to open. */
export function makeBareChunkStore(basePath: string): void {
  mkdirSync(join(basePath, '.chunks'), { recursive: true });
  writeFileSync(join(basePath, '.lock'), '', { flag: 'a' });
}

/** The filesystem chunk backend at `basePath`, created, bare or as it is. */
export function testChunkBackend(
  basePath: string,
  how: 'bare' | 'open' = 'bare',
  syncLevel?: SyncLevel,
): FilesystemChunkBackend {
  if (how === 'bare') makeBareChunkStore(basePath);
  return FilesystemChunkBackend.open(basePath, { syncLevel });
}

/**
 * The local lock service of a test root, with datastore `name` at `basePath` registered in
 * `<root>/etc/datastore.cfg` (written directly, without the config lock: tests only).
 */
export function testLockService(root: string, stores: Record<string, string> = {}): LocalLockService {
  const configDir = join(root, 'etc');
  const cfgPath = join(configDir, 'datastore.cfg');
  const current = existsSync(cfgPath)
    ? parseDatastoreConfig(readFileSync(cfgPath, 'utf8')).stores
    : new Map();
  let changed = false;
  for (const [name, path] of Object.entries(stores)) {
    if (current.get(name)?.path === path) continue;
    current.set(name, { name, path });
    changed = true;
  }
  if (changed) {
    mkdirSync(configDir, { recursive: true });
    writeFileSync(cfgPath, formatDatastoreConfig(current));
  }
  return new LocalLockService({
    runDir: join(root, 'run'),
    dataDir: root,
    config: new DatastoreConfigFile(configDir),
  });
}

/** A datastore's locks through the local lock service of `root` (for functions below the facade). */
export function testDatastoreLocks(root: string, basePath: string, name = 'store1'): DatastoreLocks {
  return new DatastoreLocks(testLockService(root, { [name]: basePath }), name);
}

function validName(name: string): boolean {
  try {
    validateDatastoreName(name);
    return true;
  } catch {
    return false;
  }
}

/** Open datastore `name` at `basePath` under `root`. */
export function openTestDatastore(root: string, opts: TestDatastoreOptions = {}): Datastore {
  const name = opts.name ?? 'store1';
  const basePath = opts.basePath ?? join(root, 'store');
  const how = opts.chunkStore ?? 'bare';
  const chunks = opts.chunks ?? testChunkBackend(basePath, how, opts.syncLevel);
  // a bad name is the Datastore's to refuse (datastore.cfg could not hold it): not registered
  const locks = opts.locks ?? testLockService(root, validName(name) ? { [name]: basePath } : {});
  const dsOpts = { chunks, locks, syncLevel: opts.syncLevel };
  return Datastore.open(name, basePath, dsOpts);
}
