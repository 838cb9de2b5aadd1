/**
 * Starting a job — by the scheduler or by "run now" — and recording it in its job state.
 *
 * Admission happens before the task (reference §2 "pre-task"): a refused run-now is a synchronous
 * error (503 with the maintenance message) and creates no task. A refused *scheduled* run is
 * different, and better than PBS (reference §5, which logs to the journal every minute and
 * records nothing): it becomes a task that ends as `skipped: maintenance: <type>[: message]`,
 * with a log line saying why, recorded as the job's last run, so the UI shows it and the next
 * attempt is the next slot (design invariant 9). A scheduled run on a datastore this version does
 * not support (PBS 4 S3) is recorded the same way, as `skipped: unsupported: ...`, and one on a
 * removable datastore that is not mounted as `skipped: not mounted: ...`.
 */
import { ERR_DATASTORE_NOT_MOUNTED, ERR_JOB_RUNNING, StowageError } from '../errors.js';
import { MaintenanceError } from '../maintenance/maintenance-mode.js';
import type { DatastoreHandle } from '../maintenance/datastore-access.js';
import { ownTogether, spawnTaskOwning } from '../tasks/admitted-task.js';
import { lockJob, tryLockJob, type JobState, type JobStateStore } from './job-state.js';
import { LOCAL_LEADERSHIP, type SchedulerLeadership, type SlotClaim } from './scheduler-leadership.js';
import type { JobContext, JobSpec } from './jobs.js';
import { nextEvent } from '../api-types/calendar-event.js';
import type { JobType } from './job-state.js';

/** Where the jobs' states are: the admission backend's (files alone, etcd in a cluster). */
function jobStates(ctx: JobContext): JobStateStore {
  return ctx.datastores.backend.jobStates;
}

/** Scheduled runs are done as root@pam, as PBS's proxy runs them. */
export const SCHEDULER_AUTH_ID = 'root@pam';

export interface JobRun {
  type: JobSpec['type'];
  id: string;
  upid: string;
  /** `started`: the job runs; `skipped`: refused by maintenance; `failed`: could not start. */
  outcome: 'started' | 'skipped' | 'failed';
}

/**
 * The skip reason of a maintenance refusal: `maintenance: offline: disk swap` for the operator's
 * mode, `maintenance: sealed: low space: 4% free` for a system hold (its message says why).
 */
export function maintenanceSkipReason(err: MaintenanceError): string {
  const { type, message } = err.hold ?? err.mode ?? { type: 'unknown' };
  return message ? `maintenance: ${type}: ${message}` : `maintenance: ${type}`;
}

/**
 * Why a scheduled run is skipped rather than failed, or undefined for a failure: a maintenance
 * mode, a datastore this version cannot serve (an unknown backend type, an S3 endpoint missing), or a removable datastore
 * that is not mounted (PBS skips jobs on it too, `docs/storage.rst`) — except a sync job, which
 * fails then, as in PBS.
 */
function skipReason(err: unknown, job: JobSpec): string | undefined {
  if (err instanceof MaintenanceError) return maintenanceSkipReason(err);
  // a backend type this version lacks, or an S3 datastore whose endpoint is not configured
  if (err instanceof StowageError && err.code === 'UNSUPPORTED') return `unsupported: ${err.message}`;
  // PBS lets a sync job to or from an unmounted removable datastore fail, so the operator sees it
  if (ERR_DATASTORE_NOT_MOUNTED.is(err) && job.type !== 'syncjob') return `not mounted: ${err.message}`;
  return undefined;
}

/** The `type` field of a job's notifications, as PBS's notification matchers name them (`exact:type=gc`). */
export const JOB_NOTIFICATION_TYPE: Readonly<Record<JobType, string>> = {
  garbage_collection: 'gc',
  prunejob: 'prune',
  verificationjob: 'verify',
  syncjob: 'sync',
};

/** Whether a final task status is a failure (PBS: anything but OK and WARNINGS; skipped is not). */
function isFailedStatus(status: string): boolean {
  return status !== 'OK' && !status.startsWith('WARNINGS') && !status.startsWith('skipped');
}

/**
 * Put a job's skip or failure in the maintenance history (source `job:<id>`), from which the
 * notifier tells the operator. Never fails the caller: the job's own record is the job state.
 */
async function recordJobEvent(
  ctx: JobContext,
  job: JobSpec,
  type: 'job-skipped' | 'job-failed',
  message: string,
  upid: string,
): Promise<void> {
  try {
    await ctx.datastores.backend.events.append({
      store: job.store,
      type,
      source: `job:${job.id}`,
      message,
      detail: { job: { id: job.id, type: JOB_NOTIFICATION_TYPE[job.type], 'job-type': job.type }, upid },
    });
  } catch (err) {
    ctx.log?.error({ err }, `recording ${type} of ${job.title} in the maintenance history failed`);
  }
}

/**
 * Record the task's final status in the job state once it ends. If this process exits first
 * (graceful restart), the state stays `started` and readers take the status from the task index.
 */
function recordWhenDone(ctx: JobContext, job: JobSpec, upid: string, time: number): void {
  void ctx.tasks
    .waitForTask(upid)
    .then(async (status) => {
      if (isFailedStatus(status)) await recordJobEvent(ctx, job, 'job-failed', status, upid);
      const lock = await lockJob(ctx.datastores.backend.locks, job.type, job.id);
      try {
        const current = await jobStates(ctx).read(job.type, job.id);
        if (current?.upid !== upid) return; // a newer run was recorded meanwhile
        const endtime = ctx.tasks.item(upid).endtime ?? Math.floor(Date.now() / 1000);
        await jobStates(ctx).write(job.type, job.id, {
          state: 'finished',
          time,
          upid,
          endtime,
          status,
        });
      } finally {
        lock.release();
      }
    })
    .catch((err: unknown) => ctx.log?.error({ err }, `recording the end of ${job.title} failed`));
}

/**
 * Whether the job's last recorded run is still going: a task of this server (any of its
 * processes) that has not ended, or, in a cluster, another server's task whose operation on the
 * job's datastore still counts (a job's task holds its admission until it ends; a dead server's
 * stops counting when its lease expires).
 */
async function runningUpid(
  ctx: JobContext,
  job: JobSpec,
  state: JobState | undefined,
): Promise<string | undefined> {
  if (state?.state !== 'started' || !state.upid) return undefined;
  const upid = state.upid;
  try {
    return ctx.tasks.isRunning(upid) ? upid : undefined;
  } catch {
    // not in this server's task index: another server's task, or one the index no longer knows
  }
  try {
    const ops = await ctx.datastores.backend.list(job.store);
    return ops.some((op) => op.taskId === upid) ? upid : undefined;
  } catch {
    return undefined; // the datastore is gone: nothing of the job runs on it
  }
}

/** Spawn the job's task, which owns the admitted handle, and record the start. Caller holds the job lock. */
async function spawnAdmitted(
  ctx: JobContext,
  job: JobSpec,
  handle: DatastoreHandle,
  others: readonly DatastoreHandle[],
  authId: string,
  time: number,
): Promise<string> {
  const upid = await spawnTaskOwning(
    ctx.tasks,
    ownTogether([handle, ...others]),
    { type: job.workerType, id: job.workerId, authId },
    (task) => job.run(task, handle, ctx, others),
  );
  await jobStates(ctx).write(job.type, job.id, { state: 'started', time, upid });
  recordWhenDone(ctx, job, upid, time);
  return upid;
}

/**
 * Admit what a job needs before its task exists: the other datastores it uses (a local sync's
 * source), then its own. A refusal of any is thrown (run-now: 503; scheduled: skipped), and what
 * was admitted before it is released.
 */
async function admitJob(
  ctx: JobContext,
  job: JobSpec,
  detail: string,
  authId: string,
): Promise<{ handle: DatastoreHandle; others: DatastoreHandle[] }> {
  const others = (await job.admitOthers?.(ctx, authId)) ?? [];
  try {
    const handle = await ctx.datastores.lookupDatastore(job.store, job.operation, {
      kind: job.kind,
      detail,
      authId,
    });
    return { handle, others };
  } catch (err) {
    for (const h of others) await h.release();
    throw err;
  }
}

/**
 * Run a job now on behalf of `authId` (the `run` endpoints). Admission errors are thrown as they
 * are (MaintenanceError → 503) and create no task; a job whose last run is still going is a
 * CONFLICT. Returns the UPID.
 */
export async function runJobNow(ctx: JobContext, job: JobSpec, authId: string): Promise<string> {
  const lock = await lockJob(ctx.datastores.backend.locks, job.type, job.id);
  try {
    const state = await jobStates(ctx).read(job.type, job.id);
    const running = await runningUpid(ctx, job, state);
    if (running) throw ERR_JOB_RUNNING(job.title, running);
    const { handle, others } = await admitJob(ctx, job, `${job.title} (manual)`, authId);
    return await spawnAdmitted(ctx, job, handle, others, authId, Math.floor(Date.now() / 1000));
  } finally {
    lock.release();
  }
}

/**
 * The slot a job is due for at `now`, or undefined when it is not due: the next event after its
 * last run (or creation) that is not in the future. A job without state gets one created now, so
 * a slot is not lost when the scheduler's tick comes late in the minute.
 */
export async function dueSlot(
  ctx: JobContext,
  job: JobSpec,
  now: Date,
  state: JobState | undefined,
): Promise<Date | undefined> {
  if (!job.schedule) return undefined;
  const nowSec = Math.floor(now.getTime() / 1000);
  if (!state) {
    // PBS treats a missing state as created 30 s ago (jobstate.rs `JobState::load`)
    state = { state: 'created', time: nowSec - 30 };
    await jobStates(ctx).write(job.type, job.id, state);
  }
  if (await runningUpid(ctx, job, state)) return undefined;
  const next = nextEvent(job.schedule, new Date(state.time * 1000));
  return next && next.getTime() <= now.getTime() ? next : undefined;
}

async function releaseAll(admitted: { handle: DatastoreHandle; others: DatastoreHandle[] } | undefined) {
  if (!admitted) return;
  for (const h of [admitted.handle, ...admitted.others]) await h.release();
}

/**
 * The scheduler's decision for one job at `now`, under the job's lock (taken without waiting:
 * when another process holds it, that process is deciding this slot). Returns what happened, or
 * undefined when the job was not due or was being handled elsewhere.
 */
export async function runScheduledJob(
  ctx: JobContext,
  job: JobSpec,
  now: Date,
  leadership: SchedulerLeadership = LOCAL_LEADERSHIP,
): Promise<JobRun | undefined> {
  const lock = await tryLockJob(ctx.datastores.backend.locks, job.type, job.id);
  if (!lock) return undefined;
  try {
    const state = await jobStates(ctx).read(job.type, job.id);
    const slot = await dueSlot(ctx, job, now, state);
    if (!slot) return undefined;
    // The run belongs to `now`: the next one is the first slot after it, however many slots the
    // server missed while it was down (PBS runs a missed job once, too).
    const time = Math.floor(now.getTime() / 1000);
    let admitted: Awaited<ReturnType<typeof admitJob>> | undefined;
    let refusal: unknown;
    try {
      admitted = await admitJob(ctx, job, `${job.title} (scheduled)`, SCHEDULER_AUTH_ID);
    } catch (err) {
      // A mode change holding the config lock past the timeout is not this slot's outcome: try
      // again next minute rather than record a failure.
      if (err instanceof StowageError && err.code === 'LOCK_TIMEOUT') throw err;
      refusal = err;
    }
    // Claimed once decided (run, skipped or failed), so that a cluster runs or records it once.
    const slotSec = Math.floor(slot.getTime() / 1000);
    let claim: SlotClaim;
    try {
      claim = await leadership.claimSlot(`${job.type}/${job.id}`, slotSec);
    } catch (err) {
      await releaseAll(admitted);
      throw err;
    }
    if (!claim.claimed) {
      // another server of the cluster ran (or skipped) this slot: go on after the last it took
      await releaseAll(admitted);
      await jobStates(ctx).write(job.type, job.id, { state: 'created', time: claim.last });
      return undefined;
    }
    if (!admitted) return await recordRefusal(ctx, job, refusal, time);
    const upid = await spawnAdmitted(ctx, job, admitted.handle, admitted.others, SCHEDULER_AUTH_ID, time);
    return { type: job.type, id: job.id, upid, outcome: 'started' };
  } finally {
    lock.release();
  }
}

/** A scheduled run that could not start: a task that says why, recorded as the last run. */
async function recordRefusal(ctx: JobContext, job: JobSpec, err: unknown, time: number): Promise<JobRun> {
  const message = err instanceof Error ? err.message : String(err);
  const reason = skipReason(err, job);
  const skipped = reason !== undefined;
  const upid = ctx.tasks.spawnTask(job.workerType, job.workerId, SCHEDULER_AUTH_ID, (task) => {
    if (reason !== undefined) {
      task.log(`skipping scheduled ${job.title} on datastore '${job.store}': ${message}`);
      task.log(
        err instanceof MaintenanceError
          ? 'it runs again at its next scheduled time after the maintenance mode is cleared'
          : 'nothing was done on the datastore; every scheduled run is skipped like this one',
      );
      task.markSkipped(reason);
      return;
    }
    task.log(`unable to start scheduled ${job.title} on datastore '${job.store}'`);
    throw err;
  });
  const status = skipped ? `skipped: ${reason}` : message;
  // The task ends on the next tick; its status is already known, so record it at once.
  await jobStates(ctx).write(job.type, job.id, {
    state: 'finished',
    time,
    upid,
    endtime: Math.floor(Date.now() / 1000),
    status,
  });
  ctx.log?.warn(
    `scheduled ${job.title} on datastore '${job.store}' ${skipped ? 'skipped' : 'failed'}: ${message}`,
  );
  await recordJobEvent(ctx, job, skipped ? 'job-skipped' : 'job-failed', skipped ? reason : message, upid);
  return { type: job.type, id: job.id, upid, outcome: skipped ? 'skipped' : 'failed' };
}

/** PBS `JobScheduleStatus` (kebab-case wire names). */
export interface JobScheduleStatus {
  'next-run'?: number;
  'last-run-upid'?: string;
  'last-run-state'?: string;
  'last-run-endtime'?: number;
}

/**
 * The schedule status of a job for the job lists (PBS `compute_schedule_status`): the last run
 * from the job state — a run whose process died reads its status from the task index — and the
 * next run after it. A job that never ran has no `last-run-*` and its next run is computed from
 * its creation (or from now, without a state).
 */
export async function jobScheduleStatus(
  ctx: JobContext,
  job: JobSpec,
  now = new Date(),
): Promise<JobScheduleStatus> {
  const state = await jobStates(ctx).read(job.type, job.id);
  const out: JobScheduleStatus = {};
  const last = state?.time ?? Math.floor(now.getTime() / 1000) - 30;
  if (state?.upid) {
    out['last-run-upid'] = state.upid;
    if (state.state === 'finished') {
      if (state.status !== undefined) out['last-run-state'] = state.status;
      if (state.endtime !== undefined) out['last-run-endtime'] = state.endtime;
    } else {
      try {
        const item = ctx.tasks.item(state.upid);
        if (item.status !== undefined) out['last-run-state'] = item.status;
        if (item.endtime !== undefined) out['last-run-endtime'] = item.endtime;
      } catch {
        // unknown to the task index: only the UPID is known
      }
    }
  }
  if (job.schedule) {
    try {
      const next = nextEvent(job.schedule, new Date(last * 1000));
      if (next) out['next-run'] = Math.floor(next.getTime() / 1000);
    } catch {
      // an invalid schedule in a hand-edited file: no next run
    }
  }
  return out;
}
