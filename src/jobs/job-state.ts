/**
 * Per-job state, as PBS's `src/server/jobstate.rs`: one JSON file per job at
 * `<dataDir>/jobstates/<jobtype>-<jobid>.json`, replaced atomically, and a lock file beside it
 * (`.lck`) that whoever decides whether the job runs, or records its outcome, holds. Several
 * server processes run during a graceful restart, and each has a scheduler; the lock plus the
 * state make sure one slot of a job runs once.
 *
 * Job types are PBS's: `garbage_collection` (id = datastore), `prunejob`, `verificationjob`.
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

function statePath(dataDir: string, type: JobType, id: string): string {
  return join(jobStateDir(dataDir), `${type}-${id}.json`);
}

/** The stored state; undefined when the job has none yet. A malformed file is a BadConfigError. */
export function readJobState(dataDir: string, type: JobType, id: string): JobState | undefined {
  const path = statePath(dataDir, type, id);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadConfigError(`job state ${path} is not valid JSON`);
  }
  const s = value as Partial<JobState>;
  if (
    typeof s !== 'object' ||
    s === null ||
    !['created', 'started', 'finished'].includes(s.state as string) ||
    typeof s.time !== 'number'
  ) {
    throw new BadConfigError(`job state ${path} is malformed`);
  }
  return s as JobState;
}

/** Replace the state file atomically (temp file, fsync, rename). Hold the job lock. */
export function writeJobState(dataDir: string, type: JobType, id: string, state: JobState): void {
  mkdirSync(jobStateDir(dataDir), { recursive: true });
  replaceFile(statePath(dataDir, type, id), JSON.stringify(state) + '\n', { fsync: true, mode: 0o644 });
}

/**
 * Remove a job's state (job deleted, or gc-schedule changed). The lock file stays: removing a
 * file someone may hold a lock on would let a second holder lock a new inode of the same name.
 */
export function removeJobState(dataDir: string, type: JobType, id: string): void {
  rmSync(statePath(dataDir, type, id), { force: true });
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
