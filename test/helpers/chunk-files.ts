import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { chunkFilePath } from '../../src/datastore/chunk-store.js';

/**
 * Put a chunk file straight into a datastore's `.chunks` (creating its subdirectory, which light
 * test stores lack), as a fixture does: synchronous, and no backend between the test and the
 * layout it sets up. Returns the file's path.
 */
export function writeChunkFile(basePath: string, digest: Uint8Array, blob: Uint8Array): string {
  const path = chunkFilePath(basePath, digest);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, blob);
  return path;
}
