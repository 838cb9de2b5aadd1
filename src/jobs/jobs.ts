/**
 * What each job does once admitted: garbage collection (a datastore's `gc-schedule`), prune jobs
 * (prune.cfg) and verify jobs (verification.cfg). Each job is a `JobSpec`: its PBS job type and
 * task names, the admission it needs, and the work it does on the admitted datastore.
 *
 * Admission classes (maintenance.md §2, reference §2): GC and prune write. Verify writes too —
 * it records `verify_state` in manifests and renames corrupt chunks (docs/adr/002) — so a
 * verify job on a read-only datastore is skipped rather than modifying it as PBS does.
 */
import {
  BackupNamespace,
  createVerifyCache,
  KEEP_OPTION_NAMES,
  type KeepOptions,
} from '../datastore/index.js';
import { CorruptDataError } from '../errors.js';
import type { DataClass, DatastoreHandle, DatastoreHandleFor } from '../maintenance/datastore-access.js';
import { oldestWriteStart } from '../maintenance/oldest-writer.js';
import type { PruneJobConfig, SyncJobConfig, VerifyJobConfig } from '../config/job-config.js';
import { isRemovable, startUnmount } from '../maintenance/removable-datastore.js';
import { SUPERUSER } from '../config/user-config.js';
import { runPull, runPush } from '../sync/run-sync.js';
import { ownerNamespaceRights, pushableGroups } from '../sync/sync-rights.js';
import { parseUpid } from '../tasks/upid.js';
import type { WorkerTask } from '../tasks/worker-task.js';
import type { JobType } from './job-state.js';
import type { ServerContext } from '../http/context.js';

/** The parts of the server context jobs and the scheduler use. */
export type JobContext = Pick<ServerContext, 'paths' | 'tasks' | 'datastores'> & {
  log?: Pick<ServerContext['log'], 'info' | 'warn' | 'error'>;
  /** The job owners' privileges (a pull job's namespace checks); none: not checked. */
  userInfo?: ServerContext['userInfo'];
};

export interface JobSpec<Op extends DataClass = DataClass> {
  type: JobType;
  /** Job id: the datastore for GC, the configured id otherwise. */
  id: string;
  store: string;
  /** Task worker type and id, as PBS names them (`garbage_collection` / store, `prunejob` / `store:id`). */
  workerType: string;
  workerId: string;
  schedule?: string;
  /** Admission class and the `kind` shown in active-operations. */
  operation: Op;
  kind: string;
  /** For log lines: "garbage collection", "prune job 'x'". */
  title: string;
  /**
   * Admissions of other datastores the job uses, made before its own (a local sync's source, as
   * read): a refusal skips a scheduled run like a refusal of its own datastore. The task owns and
   * releases them.
   */
  admitOthers?(ctx: JobContext, authId: string): Promise<DatastoreHandle[]>;
  /** Runs on the handle admitted with `operation` (read-only under `read`) and the others. */
  run(
    task: WorkerTask,
    handle: DatastoreHandleFor<Op>,
    ctx: JobContext,
    others: readonly DatastoreHandle[],
  ): Promise<void>;
}

/** Garbage collection of one datastore, scheduled by its `gc-schedule`. */
export function gcJob(store: string, schedule?: string): JobSpec<'reclaim'> {
  return {
    type: 'garbage_collection',
    id: store,
    store,
    workerType: 'garbage_collection',
    workerId: store,
    schedule,
    operation: 'reclaim',
    kind: 'gc',
    title: 'garbage collection',
    async run(task, handle, ctx) {
      // Chunks a running backup writes may not be referenced by any index yet; GC keeps chunks
      // newer than the oldest writer's start (reference §7.6).
      const oldest = await oldestWriteStart(ctx.datastores.backend, store, handle.record.id);
      task.log(`starting garbage collection on store ${store}`);
      await handle.datastore.garbageCollection({
        upid: task.upid,
        log: (line) => task.log(line),
        signal: task.signal,
        ...(oldest !== undefined && { oldestWriterStartMs: oldest }),
      });
    },
  };
}

function keepOptions(job: PruneJobConfig): KeepOptions {
  const keep: KeepOptions = {};
  for (const name of KEEP_OPTION_NAMES) if (job[name] !== undefined) keep[name] = job[name];
  return keep;
}

function nsText(ns: string | undefined): string {
  return ns ? `namespace '${ns}'` : 'root namespace';
}

/** A prune job of prune.cfg. */
export function pruneJob(job: PruneJobConfig): JobSpec<'reclaim'> {
  return {
    type: 'prunejob',
    id: job.id,
    store: job.store,
    workerType: 'prunejob',
    workerId: `${job.store}:${job.id}`,
    schedule: job.schedule,
    operation: 'reclaim',
    kind: 'prune',
    title: `prune job '${job.id}'`,
    async run(task, handle) {
      const keep = keepOptions(job);
      const depth = job['max-depth'];
      task.log(
        `Starting datastore prune on datastore '${job.store}', ${nsText(job.ns)}, ` +
          (depth === undefined ? 'down to full depth' : `down to depth ${depth}`),
      );
      const options = Object.entries(keep).map(([k, v]) => `--${k} ${v}`);
      task.log(
        options.length ? `retention options: ${options.join(' ')}` : 'no retention options: keeping all',
      );
      const ds = handle.datastore;
      for (const ns of ds.listNamespaces(BackupNamespace.parse(job.ns ?? ''), depth)) {
        for (const group of ds.listGroups(ns)) {
          task.throwIfAborted();
          task.log(`Pruning group ${ns.isRoot() ? '' : ns.name + ':'}"${group}"`);
          for (const r of await ds.prune(group, keep)) {
            const what = r.keep ? `keep (${r.reason})` : 'remove';
            if (r.error) task.warn(`${r.dir}: failed to remove - ${r.error}`);
            else task.log(`${what} ${r.dir}`);
          }
        }
      }
    },
  };
}

/**
 * A verify job of verification.cfg: a `write` that records verify_state, or with the job's
 * `read-only` option a `read` that changes nothing (docs/adr/002).
 */
export function verifyJob(job: VerifyJobConfig): JobSpec {
  const readOnly = job['read-only'] === true;
  return {
    type: 'verificationjob',
    id: job.id,
    store: job.store,
    workerType: 'verificationjob',
    workerId: `${job.store}:${job.id}`,
    schedule: job.schedule,
    operation: readOnly ? 'read' : 'reclaim',
    kind: 'verify',
    title: `verify job '${job.id}'`,
    async run(task, handle) {
      const ds = handle.datastore;
      const cache = createVerifyCache();
      const outdatedAfter = job['outdated-after'];
      const nowSec = Math.floor(Date.now() / 1000);
      task.log(
        `verify datastore ${job.store}, ${nsText(job.ns)}${readOnly ? ' (read-only: recording nothing)' : ''}`,
      );
      const failed: string[] = [];
      let checked = 0;
      for (const ns of ds.listNamespaces(BackupNamespace.parse(job.ns ?? ''), job['max-depth'])) {
        for (const group of ds.listGroups(ns)) {
          for (const snap of ds.listSnapshots(group).reverse()) {
            task.throwIfAborted();
            if (!snap.finished) continue;
            if (job['ignore-verified']) {
              const state = ds.loadManifest(snap.dir).unprotected.verify_state;
              if (state?.state === 'ok') {
                const at = parseUpidTime(state.upid);
                const outdated =
                  outdatedAfter !== undefined && at !== undefined && nowSec - at > outdatedAfter * 86_400;
                if (!outdated) continue;
              }
            }
            checked++;
            const opts = {
              upid: task.upid,
              cache,
              log: (line: string) => task.log(line),
              signal: task.signal,
            };
            // the mode follows the admission: only a write admission may record verify_state
            const result =
              handle.operation !== 'read'
                ? await handle.datastore.verifySnapshot(snap.dir, { ...opts, mode: 'write' })
                : await handle.datastore.verifySnapshot(snap.dir, { ...opts, mode: 'read' });
            if (!result.ok) failed.push(String(snap.dir));
          }
        }
      }
      task.log(`verified ${checked} snapshot(s)`);
      if (failed.length > 0) {
        task.log('Failed to verify the following snapshots/groups:');
        for (const f of failed) task.log(`\t${f}`);
        // PBS's wording for a verify job with failures
        throw new CorruptDataError('verification failed - please check the log for details');
      }
    },
  };
}

function parseUpidTime(upid: string): number | undefined {
  try {
    return parseUpid(upid).starttime;
  } catch {
    return undefined;
  }
}

/**
 * A sync job of sync.cfg, PBS `do_sync_job`. Pull: the target is admitted as ingest (kind sync)
 * and a local source as read, both before the task, so maintenance on either end skips a
 * scheduled run with its message; the synced groups belong to the job's `owner` (root@pam by
 * default, as PBS). Push: the local store is admitted as read; the remote's refusals fail the run
 * with the remote's message in the task log.
 */
export function syncJob(job: SyncJobConfig): JobSpec {
  const owner = job.owner ?? SUPERUSER;
  const push = job['sync-direction'] === 'push';
  // PBS: remote:remote-store:store:ns:id
  const workerId = `${job.remote ?? '-'}:${job['remote-store']}:${job.store}:${job.ns ?? ''}:${job.id}`;
  return {
    type: 'syncjob',
    id: job.id,
    store: job.store,
    workerType: 'syncjob',
    workerId,
    schedule: job.schedule,
    operation: push ? 'read' : 'ingest',
    kind: 'sync',
    title: `sync job '${job.id}'`,
    async admitOthers(ctx, authId) {
      if (push || job.remote !== undefined) return [];
      return [
        await ctx.datastores.lookupDatastore(job['remote-store'], 'read', {
          kind: 'sync',
          detail: `sync job '${job.id}' to ${job.store}`,
          authId,
        }),
      ];
    },
    async run(task, handle, ctx, others) {
      task.log(`Starting datastore sync job '${workerId}'`);
      const remote = job.remote ? `${job.remote}/` : '';
      if (push) {
        task.log(`sync datastore '${job.store}' to '${remote}${job['remote-store']}'`);
        const stats = await runPush(job, {
          configDir: ctx.paths.configDir,
          source: handle.datastore,
          // the job's owner is its local user: only what it may read is pushed
          ...(ctx.userInfo && {
            mayPush: pushableGroups(
              ctx.userInfo.get(),
              owner,
              handle.datastore,
              BackupNamespace.parse(job.ns ?? ''),
            ),
          }),
          log: (line) => task.log(line),
          signal: task.signal,
        });
        task.log(
          stats.bytes > 0
            ? `Summary: sync job pushed ${stats.bytes} bytes in ${stats.chunks} chunks`
            : 'Summary: sync job found no new data to push',
        );
        if (job['unmount-on-done']) await unmountWhenDone(ctx, job, task);
        return;
      }
      if (handle.operation === 'read') throw new Error('a pull needs its target admitted for writing');
      task.log(`sync datastore '${job.store}' from '${remote}${job['remote-store']}'`);
      const source = others[0];
      const stats = await runPull(job, {
        configDir: ctx.paths.configDir,
        target: handle.datastore,
        ...(source && { source: source.datastore }),
        owner,
        log: (line) => task.log(line),
        signal: task.signal,
        ...(ctx.userInfo && { namespaceRights: ownerNamespaceRights(ctx.userInfo.get(), owner, job.store) }),
      });
      task.log(
        stats.bytes > 0
          ? `Summary: sync job pulled ${stats.bytes} bytes in ${stats.chunks} chunks`
          : 'Summary: sync job found no new data to pull',
      );
      if (job['unmount-on-done']) await unmountWhenDone(ctx, job, task);
    },
  };
}

/**
 * `unmount-on-done`: start the unmount of the job's removable datastores (its store, a local
 * source). Their unmount waits for this job's own operations, which end when it returns, so the
 * disk is unmounted right after the job. A datastore that is not removable is left alone; one that
 * cannot be unmounted now is a warning, the sync itself succeeded.
 */
async function unmountWhenDone(
  ctx: JobContext,
  job: SyncJobConfig,
  task: { log(line: string): void; warn(line: string): void },
): Promise<void> {
  const stores = [job.store, ...(job.remote === undefined ? [job['remote-store']] : [])];
  for (const store of stores) {
    const cfg = ctx.datastores.config.readCached().stores.get(store);
    if (!cfg || !isRemovable(cfg)) continue;
    try {
      const upid = await startUnmount(ctx.datastores, ctx.tasks, store, SUPERUSER);
      task.log(`unmount-on-done: unmounting datastore '${store}' (task ${upid})`);
    } catch (err) {
      task.warn(`unmount-on-done: datastore '${store}' not unmounted: ${(err as Error).message}`);
    }
  }
}
