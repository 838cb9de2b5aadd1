/**
 * One datastore's locks, taken through the injected LockService (lock-service.ts) and named for
 * what they protect: a backup group, a snapshot, a snapshot's manifest and garbage collection.
 * The try-variants fail at once with the datastore's CONFLICT errors, as PBS's
 * `lock_dir_noblock`: a delete or a flag change must not queue behind a long restore.
 *
 * Which lock is held when (PBS `backup_info.rs`, reference §7.1):
 *
 *   group      exclusive: a backup session, group deletion, owner change
 *   snapshot   exclusive to write or delete it; shared to read it, verify it, add a blob to it or
 *              change its protection (so a running backup or delete refuses those)
 *   manifest   while the manifest's unprotected part is rewritten (notes, verify state)
 *   gc         garbage collection, one at a time in any process
 *
 * Where a lock lives is the service's business: the local one keeps them under the run dir, not
 * in the datastore, so an `offline` datastore's filesystem can be unmounted while locks exist
 * (maintenance.md invariant 7), and a lock survives the removal of what it guards.
 */
import { ERR_GC_RUNNING, ERR_GROUP_LOCKED, ERR_SNAPSHOT_LOCKED } from '../errors.js';
import type { BackupDir, BackupGroup } from './backup-info.js';
import type { HeldLock, LockService } from './lock-service.js';

export class DatastoreLocks {
  constructor(
    readonly service: LockService,
    /** The datastore's name: every lock name carries it. */
    readonly store: string,
  ) {}

  /** Wait for the group lock (a running backup holds it for its whole session). */
  lockGroup(group: BackupGroup, opts: { timeoutMs?: number } = {}): Promise<HeldLock> {
    return this.service.acquire({ kind: 'group', store: this.store, group }, opts);
  }

  /** Take the group lock or fail at once with CONFLICT (`why` says what may hold it). */
  async tryLockGroup(group: BackupGroup, why: string): Promise<HeldLock> {
    const lock = await this.service.tryAcquire({ kind: 'group', store: this.store, group });
    if (!lock) throw ERR_GROUP_LOCKED(group, why);
    return lock;
  }

  lockSnapshot(dir: BackupDir, opts: { shared?: boolean; timeoutMs?: number } = {}): Promise<HeldLock> {
    return this.service.acquire({ kind: 'snapshot', store: this.store, snapshot: dir }, opts);
  }

  /** Take the snapshot lock (exclusive unless `shared`) or fail at once with CONFLICT. */
  async tryLockSnapshot(dir: BackupDir, why: string, opts: { shared?: boolean } = {}): Promise<HeldLock> {
    const lock = await this.service.tryAcquire({ kind: 'snapshot', store: this.store, snapshot: dir }, opts);
    if (!lock) throw ERR_SNAPSHOT_LOCKED(dir, why);
    return lock;
  }

  /**
   * The snapshot lock, exclusive, if nobody holds it; undefined when someone does (a backup
   * session writing it, in any process, a reader, a delete). The abandoned-snapshot cleanup
   * asks this to tell a live session's snapshot from a dead one's.
   */
  lockSnapshotIfFree(dir: BackupDir): Promise<HeldLock | undefined> {
    return this.service.tryAcquire({ kind: 'snapshot', store: this.store, snapshot: dir });
  }

  /** The group lock if nobody holds it (a backup session holds it for its whole run), else undefined. */
  lockGroupIfFree(group: BackupGroup): Promise<HeldLock | undefined> {
    return this.service.tryAcquire({ kind: 'group', store: this.store, group });
  }

  /** Wait for the manifest lock of a snapshot at most `timeoutMs` (LOCK_TIMEOUT after). */
  lockManifest(dir: BackupDir, opts: { timeoutMs?: number } = {}): Promise<HeldLock> {
    return this.service.acquire({ kind: 'manifest', store: this.store, snapshot: dir }, opts);
  }

  /** Take the GC lock or fail at once with CONFLICT: another GC runs, in this process or another. */
  async tryLockGc(): Promise<HeldLock> {
    const lock = await this.service.tryAcquire({ kind: 'gc', store: this.store });
    if (!lock) throw ERR_GC_RUNNING();
    return lock;
  }
}
