/**
 * The job scheduler of the server process (PBS `run_task_scheduler` in proxmox-backup-proxy):
 * once a minute, aligned to the minute, it starts every job whose next slot has come — GC by
 * each datastore's `gc-schedule`, prune jobs, verify jobs, sync jobs. See job-runner.ts for what a due job
 * does when its datastore is in maintenance.
 *
 * Several server processes may run a scheduler at once (an old one finishing its tasks after a
 * graceful restart); the per-job lock and job state make each slot run once. In a cluster only
 * the elected leader passes, and claims each slot in etcd before it runs it
 * (scheduler-leadership.ts): each slot runs once per cluster.
 */
import { BadRequestError } from '../errors.js';
import { pruneJobConfig, syncJobConfig, verifyJobConfig } from '../config/job-config.js';
import { gcJob, pruneJob, syncJob, verifyJob, type JobContext, type JobSpec } from './jobs.js';
import { jobScheduleStatus, runScheduledJob, type JobRun } from './job-runner.js';
import { modeAdmits, type MaintenanceMode } from '../maintenance/maintenance-mode.js';
import { applyMaintenanceWindows } from '../maintenance/maintenance-windows.js';
import { LOCAL_LEADERSHIP, type SchedulerLeadership } from './scheduler-leadership.js';

/** Every job that has a schedule: GC per datastore, then prune, verify and sync jobs. */
export function scheduledJobs(ctx: JobContext): JobSpec[] {
  const jobs: JobSpec[] = [];
  for (const store of ctx.datastores.config.readCached().stores.values()) {
    if (store['gc-schedule']) jobs.push(gcJob(store.name, store['gc-schedule']));
  }
  for (const job of pruneJobConfig(ctx.paths.configDir).read().jobs.values()) {
    if (!job.disable) jobs.push(pruneJob(job));
  }
  for (const job of verifyJobConfig(ctx.paths.configDir).read().jobs.values()) {
    if (job.schedule) jobs.push(verifyJob(job));
  }
  for (const job of syncJobConfig(ctx.paths.configDir).read().jobs.values()) {
    if (job.schedule) jobs.push(syncJob(job));
  }
  return jobs;
}

/** A scheduled job a maintenance mode would skip, as `dry-run` answers it. */
export interface RefusedJob {
  /** PBS job type: garbage_collection, prunejob, verificationjob. */
  type: string;
  id: string;
  schedule?: string;
  /** Epoch seconds of its next slot: when it would be recorded as skipped. */
  'next-run'?: number;
}

/**
 * The scheduled jobs of `store` that `mode` refuses: while the mode is in force each of them is
 * recorded as skipped (maintenance: MESSAGE) at its slots instead of running.
 */
export function jobsRefusedBy(
  ctx: JobContext,
  store: string,
  mode: MaintenanceMode | undefined,
  now = new Date(),
): Promise<RefusedJob[]> {
  const refused = scheduledJobs(ctx).filter((job) => job.store === store && !modeAdmits(mode, job.operation));
  return Promise.all(
    refused.map(async (job) => {
      const next = (await jobScheduleStatus(ctx, job, now))['next-run'];
      return {
        type: job.type,
        id: job.id,
        ...(job.schedule !== undefined && { schedule: job.schedule }),
        ...(next !== undefined && { 'next-run': next }),
      };
    }),
  );
}

/**
 * One scheduler pass at `now`: put on the maintenance windows' holds (first, so that a job due at
 * a window's start is skipped with the window's message), then start (or record as skipped or
 * failed) every due job. A job that cannot be decided (unreadable state, bad schedule) is logged
 * and the others go on. Returns what was done, for tests and logs.
 */
export async function runSchedulerOnce(
  ctx: JobContext,
  now: Date = new Date(),
  leadership: SchedulerLeadership = LOCAL_LEADERSHIP,
): Promise<JobRun[]> {
  // another server of the cluster leads: it applies the windows and runs the jobs
  if (!leadership.leads()) return [];
  await applyMaintenanceWindows(ctx.datastores, ctx.paths.configDir, now, ctx.log);
  let jobs: JobSpec[];
  try {
    jobs = scheduledJobs(ctx);
  } catch (err) {
    ctx.log?.error({ err }, 'scheduler: reading the job configuration failed');
    return [];
  }
  const runs: JobRun[] = [];
  for (const job of jobs) {
    try {
      const run = await runScheduledJob(ctx, job, now, leadership);
      if (run) runs.push(run);
    } catch (err) {
      ctx.log?.error({ err }, `scheduler: ${job.title} on datastore '${job.store}' not started`);
    }
  }
  return runs;
}

export interface SchedulerOptions {
  /** Clock, for tests; default `new Date()`. */
  now?: () => Date;
  /**
   * Run every `intervalMs` instead of at each full minute (tests). The real scheduler waits for
   * the next minute boundary, as PBS does, so that `*:00` runs at :00 and not up to 59 s late.
   */
  intervalMs?: number;
  /** Who runs the jobs: default this server; in a cluster the elected leader (EtcdSchedulerLeadership). */
  leadership?: SchedulerLeadership;
}

/**
 * The scheduler options a server takes from its environment: `STOWAGE_SCHEDULER_TICK_MS` makes
 * it pass every N ms instead of at each full minute (tests of schedules with seconds, such as a
 * short maintenance window).
 */
export function schedulerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): SchedulerOptions {
  const raw = env.STOWAGE_SCHEDULER_TICK_MS;
  if (raw === undefined || raw === '') return {};
  if (!/^\d+$/.test(raw) || Number(raw) < 100)
    throw new BadRequestError(
      `STOWAGE_SCHEDULER_TICK_MS: '${raw}' is not a whole number of milliseconds >= 100`,
    );
  return { intervalMs: Number(raw) };
}

export interface Scheduler {
  /** Stop ticking (and leave the cluster's election); resolves when a pass in progress has ended. */
  stop(): Promise<void>;
}

/** Start the scheduler loop. */
export function startScheduler(ctx: JobContext, opts: SchedulerOptions = {}): Scheduler {
  const now = opts.now ?? (() => new Date());
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let pass: Promise<unknown> = Promise.resolve();

  const delay = () => {
    if (opts.intervalMs !== undefined) return opts.intervalMs;
    const ms = Date.now();
    return 60_000 - (ms % 60_000) + 50; // just past the boundary, so `now` is in the new minute
  };
  const tick = () => {
    pass = runSchedulerOnce(ctx, now(), opts.leadership).finally(() => {
      if (!stopped) arm();
    });
  };
  const arm = () => {
    timer = setTimeout(tick, delay());
    timer.unref();
  };
  arm();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await pass;
      await opts.leadership?.close();
    },
  };
}
