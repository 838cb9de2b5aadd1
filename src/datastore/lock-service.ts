/**
 * The lock service (architecture "Where it grows: two seams"): the cross-process locks that
 * order work on a datastore — a backup group, a snapshot, a snapshot's manifest, a scheduled
 * job's slot, garbage collection — named for what they protect, not for where a backend keeps
 * them. The local implementation (src/maintenance/local-lock-service.ts) takes flocks on `.lck`
 * files (src/sys/file-lock.ts); a cluster one would take etcd leases. The admission backend
 * hands out the one its processes share (`AdmissionBackend.locks`), and the opener injects it
 * into each Datastore, which takes its group, snapshot, manifest and GC locks only through it
 * (datastore-locks.ts).
 *
 * The interface lives here, below admission, so the datastore needs nothing from
 * src/maintenance/; src/maintenance/lock-service.ts re-exports it.
 */
import type { BackupDir, BackupGroup } from './backup-info.js';

/** What a lock protects. */
export type LockName =
  /** A group: a backup session, group deletion and prune hold it (PBS `lock_dir_noblock` on the group). */
  | { kind: 'group'; store: string; group: BackupGroup }
  /** A snapshot: exclusive to write or delete it, shared to read it. */
  | { kind: 'snapshot'; store: string; snapshot: BackupDir }
  /** A snapshot's manifest while it is rewritten (PBS `index.json.lck`). */
  | { kind: 'manifest'; store: string; snapshot: BackupDir }
  /** A scheduled job: whoever holds it decides about the job's current slot and writes its state. */
  | { kind: 'job'; jobType: string; id: string }
  /** Garbage collection of a datastore: one at a time, in any process. */
  | { kind: 'gc'; store: string }
  /**
   * One chunk of an S3 datastore (PBS 4 `lock_chunk`): an insert holds it from asking whether the
   * chunk is stored until its upload or mark is done, GC's sweep from judging the chunk until
   * its deletion is sent, so a backup in any process never has its chunk removed under it.
   */
  | { kind: 'chunk'; store: string; digest: string };

export interface HeldLock {
  /** Give the lock up. Idempotent. A holder that dies gives up its locks too. */
  release(): void;
}

export interface LockOptions {
  /** Share the lock with other shared holders (readers); exclusive by default. */
  shared?: boolean;
}

export interface LockService {
  /**
   * Take `name`, waiting at most `timeoutMs` (default 10 s, as PBS): LockTimeoutError after.
   * Holders in one process exclude each other as holders in two processes do.
   */
  acquire(name: LockName, opts?: LockOptions & { timeoutMs?: number }): Promise<HeldLock>;
  /** Take `name` if nobody holds it in a conflicting way, else undefined, without waiting. */
  tryAcquire(name: LockName, opts?: LockOptions): Promise<HeldLock | undefined>;
}
