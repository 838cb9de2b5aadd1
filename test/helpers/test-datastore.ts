/**
 * A Datastore opened below admission, for tests of the datastore itself: what admission injects
 * (the chunk backend chosen for the datastore, src/maintenance/chunk-backend-for.ts) is built
 * here, in one place. Locks go under `<root>/run`, as a test instance's.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChunkBackend, SyncLevel } from '../../src/datastore/chunk-backend.js';
import { FilesystemChunkBackend } from '../../src/datastore/chunk-store.js';
import { Datastore } from '../../src/datastore/datastore.js';

export interface TestDatastoreOptions {
  name?: string;
  /** Default `<root>/store`. */
  basePath?: string;
  /**
   * `create`: a full chunk store (65536 subdirectories, seconds on a busy disk); `bare`: only
   * `.chunks` and `.lock`, all opening needs (default); `open`: whatever is there already.
   */
  chunkStore?: 'create' | 'bare' | 'open';
  syncLevel?: SyncLevel;
  /** Another chunk backend instead of the filesystem one at `basePath`. */
  chunks?: ChunkBackend;
}

/** `.chunks` and `.lock`: all a filesystem chunk store needs to open. */
export function makeBareChunkStore(basePath: string): void {
  mkdirSync(join(basePath, '.chunks'), { recursive: true });
  writeFileSync(join(basePath, '.lock'), '', { flag: 'a' });
}

/** The filesystem chunk backend at `basePath`, created, bare or as it is. */
export function testChunkBackend(
  basePath: string,
  how: 'create' | 'bare' | 'open' = 'bare',
  syncLevel?: SyncLevel,
): FilesystemChunkBackend {
  if (how === 'create') return FilesystemChunkBackend.create(basePath, { syncLevel });
  if (how === 'bare') makeBareChunkStore(basePath);
  return FilesystemChunkBackend.open(basePath, { syncLevel });
}

/** Open (or, with `chunkStore: 'create'`, create) datastore `name` at `basePath` under `root`. */
export function openTestDatastore(root: string, opts: TestDatastoreOptions = {}): Datastore {
  const name = opts.name ?? 'store1';
  const basePath = opts.basePath ?? join(root, 'store');
  const how = opts.chunkStore ?? 'bare';
  const chunks = opts.chunks ?? testChunkBackend(basePath, how, opts.syncLevel);
  const dsOpts = { chunks, runDir: join(root, 'run'), syncLevel: opts.syncLevel };
  return how === 'create' ? Datastore.create(name, basePath, dsOpts) : Datastore.open(name, basePath, dsOpts);
}
