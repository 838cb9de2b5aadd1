/**
 * The embedded default of `npm start`: a datastore named `local` under the data dir, created on
 * the first start when no datastore is configured yet — through the same domain function as
 * `POST /config/datastore`, under the config change lock.
 */
import { join } from 'node:path';
import type { StowagePaths } from '../../config/paths.js';
import { createDatastore, prepareDatastoreCreation } from '../../maintenance/create-datastore.js';
import { openInstanceDatastores } from '../../maintenance/open-datastore-access.js';

export const QUICKSTART_STORE = 'local';

export async function ensureQuickstartDatastore(
  paths: StowagePaths,
  log: (line: string) => void,
): Promise<void> {
  // in cluster mode, in the cluster's configuration (shared by every server of the cluster)
  const { access } = await openInstanceDatastores(paths);
  try {
    if (access.config.read().stores.size > 0) return;
    const path = join(paths.dataDir, 'datastores', QUICKSTART_STORE);
    // a chunk store left by an earlier start whose configuration is gone is taken over
    const prepared = await prepareDatastoreCreation(access, {
      name: QUICKSTART_STORE,
      path,
      set: { comment: 'created by npm start' },
      adoptExisting: true,
    });
    log(`creating datastore '${QUICKSTART_STORE}' at ${path} ...`);
    await createDatastore(access, prepared);
    log(`datastore '${QUICKSTART_STORE}' ready`);
  } finally {
    access.close();
  }
}
