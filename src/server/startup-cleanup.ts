/**
 * Start-up cleanup (issue 12, defect 3): a server killed mid-backup (SIGKILL, power loss) cannot
 * remove its unfinished snapshot the way a failed session does, so the next server start removes
 * every unfinished snapshot that no live backup session owns (`removeAbandonedSnapshots`; GC does
 * the same in its first phase).
 *
 * Each datastore is reached through a `write` admission like any other writer: a datastore in
 * offline, read-only or delete maintenance is refused there and so never touched (an offline
 * store may be unmounted or being checked), and one that cannot be opened is reported and
 * skipped. A backup still running in another server process (the old one of a graceful restart)
 * holds its snapshot lock, so its snapshot stays.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { DatastoreAccess } from '../maintenance/datastore-access.js';
import { isAdmissionRefusal } from '../maintenance/datastore-access.js';

/** Clean every configured datastore in turn; never rejects (each failure is logged). */
export async function removeAbandonedSnapshotsAtStartup(
  datastores: DatastoreAccess,
  log: Pick<FastifyBaseLogger, 'warn' | 'info'>,
): Promise<void> {
  let names: string[];
  try {
    names = [...datastores.config.readCached().stores.keys()];
  } catch (err) {
    log.warn({ err }, 'start-up cleanup: cannot read the datastore configuration');
    return;
  }
  for (const name of names) {
    try {
      const handle = await datastores.lookupDatastore(name, 'reclaim', {
        kind: 'cleanup',
        detail: 'unfinished snapshots',
      });
      try {
        await handle.datastore.removeAbandonedSnapshots((line) => log.warn(`datastore '${name}': ${line}`));
      } finally {
        await handle.release();
      }
    } catch (err) {
      if (isAdmissionRefusal(err)) {
        log.info(`datastore '${name}': start-up cleanup skipped: ${(err as Error).message}`);
      } else {
        log.warn({ err }, `datastore '${name}': start-up cleanup failed: ${(err as Error).message}`);
      }
    }
  }
}
