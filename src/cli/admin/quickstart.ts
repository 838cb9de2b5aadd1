/**
 * The embedded default of `npm start`: a datastore named `local` under the data dir, created on
 * the first start when no datastore is configured yet.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { StowagePaths } from '../../config/paths.js';
import { DatastoreConfigFile } from '../../config/datastore-config.js';
import { Datastore } from '../../datastore/datastore.js';

export const QUICKSTART_STORE = 'local';

export async function ensureQuickstartDatastore(
  paths: StowagePaths,
  log: (line: string) => void,
): Promise<void> {
  const config = new DatastoreConfigFile(paths.configDir);
  if (config.read().stores.size > 0) return;
  const path = join(paths.dataDir, 'datastores', QUICKSTART_STORE);
  if (!existsSync(join(path, '.chunks'))) {
    log(`creating datastore '${QUICKSTART_STORE}' at ${path} ...`);
    Datastore.create(QUICKSTART_STORE, path, { runDir: paths.runDir }).close();
  }
  await config.update((stores) => {
    if (stores.size === 0)
      stores.set(QUICKSTART_STORE, { name: QUICKSTART_STORE, path, comment: 'created by npm start' });
  });
  log(`datastore '${QUICKSTART_STORE}' ready`);
}
