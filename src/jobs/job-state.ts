/**
 * Per-job state, as PBS's `src/server/jobstate.rs`: one JSON file per job at
 * `<dataDir>/jobstates/<jobtype>-<jobid>.json`, replaced atomically, and a lock file beside it
 * (`.lck`) that whoever decides whether the job runs, or records its outcome, holds. Several
 * server processes run during a graceful restart, and each has a scheduler; the lock plus the
 * state make sure one slot of a job runs once.
 *
 * Job types are PBS's: `garbage_collection` (id = datastore), `prunejob`, `verificationjob`.
 *
 * Where the states live is the admission backend's choice (`backend.jobStates`): these files on a
 * server alone, the cluster's etcd in cluster mode (etcd-job-states.ts), so that every server of a
 * cluster shows the runs the scheduler's leader made, whichever server that was.
 *
 * Unlike PBS, a run refused by maintenance is a run: it is recorded as `finished` with the
 * `skipped: maintenance: ...` task, so the next run is the next slot (design invariant 9).
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BadConfigError } from '../errors.js';
import { replaceFile } from '../sys/atomic-file.js';
import type { HeldLock, LockService } from '../maintenance/lock-service.js';

export const JOB_TYPES = ['garbage_collection', 'prunejob', 'verificationjob', 'syncjob'] as const;
export type JobType = (typeof JOB_TYPES)[number];

export interface JobState {
  /**
   * `created`: never ran (`time` is when the job was created; its first slot is after that);
   * `started`: the task `upid` is running (or its process died: see the task index);
   * `finished`: the last run, task `upid`, ended with `status`.
   */
  state: 'created' | 'started' | 'finished';
  /** Epoch seconds: creation, or the slot the last run belonged to. Next runs come after it. */
  time: number;
  upid?: string;
  /** Epoch seconds the last run ended (`finished` only). */
  endtime?: number;
  /** Final task status as the task list shows it (`OK`, `skipped: maintenance: ...`, an error). */
  status?: string;
}

export function jobStateDir(dataDir: string): string {
  return join(dataDir, 'jobstates');
}

/**
 * Where job states are kept: read, replaced whole and removed by type and id. Hold the job's lock
 * (lockJob) around a read that decides a write.
 */
export interface JobStateStore {
  /** The stored state; undefined when the job has none yet. A malformed one is a BadConfigError. */
  read(type: JobType, id: string): Promise<JobState | undefined>;
  /** Replace the state whole (durably: temp file, fsync, rename; or one etcd put). */
  write(type: JobType, id: string, state: JobState): Promise<void>;
  /** Forget it (job deleted, or gc-schedule changed). */
  remove(type: JobType, id: string): Promise<void>;
}

/** A stored state's text parsed and checked; `where` names it in the error. */
export function parseJobState(text: string, where: string): JobState {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadConfigError(`job state ${where} is not valid JSON`);
  }
  const s = value as Partial<JobState>;
  if (
    typeof s !== 'object' ||
    s === null ||
    !['created', 'started', 'finished'].includes(s.state as string) ||
    typeof s.time !== 'number'
  ) {
    throw new BadConfigError(`job state ${where} is malformed`);
  }
  return s as JobState;
}

/** Job states as PBS keeps them: `<dataDir>/jobstates/<type>-<id>.json`. */
export class FileJobStateStore implements JobStateStore {
  constructor(private readonly dataDir: string) {}

  private path(type: JobType, id: string): string {
    return join(jobStateDir(this.dataDir), `${type}-${id}.json`);
  }

  read(type: JobType, id: string): Promise<JobState | undefined> {
    const path = this.path(type, id);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Promise.resolve(undefined);
      return Promise.reject(err as Error);
    }
    try {
      return Promise.resolve(parseJobState(text, path));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  write(type: JobType, id: string, state: JobState): Promise<void> {
    mkdirSync(jobStateDir(this.dataDir), { recursive: true });
    replaceFile(this.path(type, id), JSON.stringify(state) + '\n', { fsync: true, mode: 0o644 });
    return Promise.resolve();
  }

  /**
   * The lock file stays: removing a file someone may hold a lock on would let a second holder
   * lock a new inode of the same name.
   */
  remove(type: JobType, id: string): Promise<void> {
    rmSync(this.path(type, id), { force: true });
    return Promise.resolve();
  }
}

/** Take the job's lock, waiting at most `timeoutMs` (to record an outcome). */
export function lockJob(
  locks: LockService,
  type: JobType,
  id: string,
  timeoutMs = 10_000,
): Promise<HeldLock> {
  return locks.acquire({ kind: 'job', jobType: type, id }, { timeoutMs });
}

/** Take the job's lock if free; undefined when another process (or caller) is deciding about it. */
export function tryLockJob(locks: LockService, type: JobType, id: string): Promise<HeldLock | undefined> {
  return locks.tryAcquire({ kind: 'job', jobType: type, id });
}
