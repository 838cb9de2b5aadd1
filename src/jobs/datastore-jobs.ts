/**
 * What removing a datastore does to its jobs (PBS `delete_datastore`): its GC job state goes, and
 * unless the operator keeps them, the prune and verify jobs on it with their state. Run after the
 * removal succeeded (PBS removes them first, losing them when the removal fails).
 */
import { pruneJobConfig, verifyJobConfig } from '../config/job-config.js';
import type { JobStateStore } from './job-state.js';

export async function forgetDatastoreJobs(
  paths: { configDir: string },
  jobStates: JobStateStore,
  store: string,
  opts: { keepJobConfigs?: boolean; log?: (line: string) => void } = {},
): Promise<void> {
  const log = opts.log ?? (() => {});
  await jobStates.remove('garbage_collection', store);
  if (opts.keepJobConfigs) return;
  for (const file of [pruneJobConfig(paths.configDir), verifyJobConfig(paths.configDir)]) {
    const removed: string[] = [];
    await file.update((jobs) => {
      for (const [id, job] of jobs) {
        if (job.store === store) {
          jobs.delete(id);
          removed.push(id);
        }
      }
    });
    for (const id of removed) {
      await jobStates.remove(file.kind.sectionType === 'prune' ? 'prunejob' : 'verificationjob', id);
      log(`removed job '${id}'`);
    }
  }
}
