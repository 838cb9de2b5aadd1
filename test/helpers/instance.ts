/** A throw-away Stowage instance (config, data and run dirs in a temp dir) for tests. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StowagePaths } from '../../src/config/paths.js';
import { DatastoreConfigFile } from '../../src/config/datastore-config.js';
import { FilesystemChunkBackend } from '../../src/datastore/chunk-store.js';
import { openDatastoreAccess } from '../../src/maintenance/open-datastore-access.js';
import type { DatastoreAccess } from '../../src/maintenance/datastore-access.js';

export interface TestInstance {
  root: string;
  paths: StowagePaths;
  access: DatastoreAccess;
  /** Create a datastore on disk and in datastore.cfg; returns its path. */
  createStore(name: string, extra?: Record<string, string>, opts?: { full?: boolean }): Promise<string>;
  cleanup(): void;
}

export function makeInstance(prefix = 'stowage-test-'): TestInstance {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const paths: StowagePaths = { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
  const access = openDatastoreAccess(paths, { lockTimeoutMs: 20_000 });
  return {
    root,
    paths,
    access,
    async createStore(name, extra = {}, opts = {}) {
      const path = join(root, 'stores', name);
      if (opts.full) (await FilesystemChunkBackend.create(path)).closeSync();
      else {
        // .chunks with only the first subdir: creating all 65536 takes seconds on a busy disk,
        // and admission tests insert no chunks.
        mkdirSync(join(path, '.chunks', '0000'), { recursive: true });
        writeFileSync(join(path, '.lock'), '');
      }
      await new DatastoreConfigFile(paths.configDir).update((stores) => {
        stores.set(name, { name, path, ...extra });
      });
      return path;
    },
    cleanup() {
      access.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
