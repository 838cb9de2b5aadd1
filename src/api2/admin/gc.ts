/**
 * `/admin/gc` and `/admin/gc/{store}`: the garbage collection jobs, one per datastore (PBS
 * `src/api2/admin/gc.rs`), as `GarbageCollectionJobStatus`: the last GC result of `.gc-status`
 * with the schedule and PBS's `JobScheduleStatus` fields, plus `last-run-upid`.
 *
 * The last run is whichever ended later: the last GC that produced `.gc-status` (a manual one
 * included) or the last scheduled run in the job state — which may be a run skipped for
 * maintenance, so that shows here as `skipped: maintenance: ...`.
 *
 * Reading `.gc-status` is a `read` operation. PBS silently drops a store whose lookup fails from
 * the list (reference §2); Stowage keeps it, without the GC result fields, so an offline
 * datastore's skipped GC stays visible (likewise a PBS 4 removable or S3 datastore, which is never
 * read). `/admin/gc/{store}` answers the refusal (503 for maintenance, 400 for those).
 */
import type { DatastoreConfig } from '../../config/datastore-config.js';
import type { GarbageCollectionStatus } from '../../datastore/index.js';
import { isAdmissionRefusal } from '../../maintenance/datastore-access.js';
import type { ServerContext } from '../../http/context.js';
import { jobScheduleStatus } from '../../jobs/job-runner.js';
import { gcJob } from '../../jobs/jobs.js';
import { defineRoute, filtered, type AnyRoute } from '../../http/route.js';
import { gcJobStatus, type GarbageCollectionJobStatus } from './datastore/gc.js';
import { StoreParams } from './datastore/common.js';

type GcJobListItem = Partial<GarbageCollectionJobStatus> & { store: string; 'last-run-upid'?: string };

const READ_PRIVS = ['Datastore.Audit', 'Datastore.Modify'];

async function readStatus(
  server: ServerContext,
  authId: string,
  store: string,
): Promise<GarbageCollectionStatus | undefined> {
  const handle = await server.datastores.lookupDatastore(store, 'read', { kind: 'gc-status', authId });
  try {
    return handle.datastore.gcStatus();
  } finally {
    await handle.release();
  }
}

/** One store's entry; `status` undefined when `.gc-status` could not be read (maintenance). */
async function gcListItem(
  server: ServerContext,
  cfg: DatastoreConfig,
  status: GarbageCollectionStatus | undefined,
  readable: boolean,
): Promise<GcJobListItem> {
  const out: GcJobListItem = readable
    ? gcJobStatus(cfg, status, server.tasks)
    : { store: cfg.name, ...(cfg['gc-schedule'] !== undefined && { schedule: cfg['gc-schedule'] }) };
  if (status?.upid) out['last-run-upid'] = status.upid;
  const job = await jobScheduleStatus(server, gcJob(cfg.name, cfg['gc-schedule']));
  delete out['next-run'];
  if (job['next-run'] !== undefined && cfg['gc-schedule'] !== undefined) out['next-run'] = job['next-run'];
  const jobEnd = job['last-run-endtime'] ?? Number.MAX_SAFE_INTEGER; // a running job is the newest
  if (
    job['last-run-upid'] &&
    job['last-run-upid'] !== out['last-run-upid'] &&
    jobEnd >= (out['last-run-endtime'] ?? 0)
  ) {
    out['last-run-upid'] = job['last-run-upid'];
    delete out.duration;
    delete out['last-run-state'];
    delete out['last-run-endtime'];
    if (job['last-run-state'] !== undefined) out['last-run-state'] = job['last-run-state'];
    if (job['last-run-endtime'] !== undefined) out['last-run-endtime'] = job['last-run-endtime'];
  }
  return out;
}

export const routes: AnyRoute[] = [
  defineRoute({
    method: 'GET',
    path: '/admin/gc',
    permission: filtered('only the datastores with Datastore.Audit or Datastore.Modify'),
    description:
      'List the garbage collection job of every datastore on which the caller has Datastore.Audit or Datastore.Modify. A datastore whose status cannot be read (maintenance, or a removable/S3 datastore this version does not support) is listed with its schedule and last run only.',
    handler: async ({ authId, userInfo, server }) => {
      const out: GcJobListItem[] = [];
      for (const cfg of server.datastores.config.readCached().stores.values()) {
        if (!userInfo.hasPrivs(authId, `/datastore/${cfg.name}`, READ_PRIVS, { partial: true })) continue;
        try {
          out.push(await gcListItem(server, cfg, await readStatus(server, authId, cfg.name), true));
        } catch (err) {
          if (!isAdmissionRefusal(err)) throw err;
          out.push(await gcListItem(server, cfg, undefined, false));
        }
      }
      return out;
    },
  }),
  defineRoute({
    method: 'GET',
    path: '/admin/gc/:store',
    params: StoreParams,
    permission: { path: '/datastore/{store}', privs: READ_PRIVS, partial: true },
    description: 'The garbage collection job of one datastore (read operation: 503 in offline maintenance).',
    handler: async ({ params, authId, server }) => {
      const cfg = server.datastores.datastoreConfig(params.store);
      return [await gcListItem(server, cfg, await readStatus(server, authId, params.store), true)];
    },
  }),
];
