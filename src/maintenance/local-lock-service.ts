/**
 * The local lock service: a flock on one `.lck` file per lock name (src/sys/file-lock.ts), the
 * kernel drops it when the holder dies. The files are the ones the code that still calls the
 * flock primitive directly uses, so both exclude each other while callers move over:
 *
 *   group, snapshot, manifest   <runDir>/locks/<store>/<group path>/{group,<time>,<time>.index.json}.lck
 *   job                         <dataDir>/jobstates/<type>-<id>.lck
 *   gc                          <datastore path>/.lock (the chunk store's lock, as PBS)
 */
import { join } from 'node:path';
import { BackupLocks } from '../datastore/backup-info.js';
import type { DatastoreConfigFile } from '../config/datastore-config.js';
import { NotFoundError } from '../errors.js';
import { acquireFileLock, tryAcquireFileLock } from '../sys/file-lock.js';
import type { HeldLock, LockName, LockOptions, LockService } from './lock-service.js';

export interface LocalLockServiceOptions {
  runDir: string;
  dataDir: string;
  /** Where the GC lock of a datastore is found (its path). */
  config: DatastoreConfigFile;
}

export class LocalLockService implements LockService {
  constructor(private readonly opts: LocalLockServiceOptions) {}

  /** The `.lck` file that stands for `name`. */
  lockPath(name: LockName): string {
    switch (name.kind) {
      case 'group':
        return new BackupLocks(this.opts.runDir, name.store).groupLockPath(name.group);
      case 'snapshot':
        return new BackupLocks(this.opts.runDir, name.store).snapshotLockPath(name.snapshot);
      case 'manifest':
        return new BackupLocks(this.opts.runDir, name.store).manifestLockPath(name.snapshot);
      case 'job':
        if (
          !/^[A-Za-z0-9_-]+$/.test(name.jobType) ||
          !/^[A-Za-z0-9_.-]+$/.test(name.id) ||
          name.id.startsWith('.')
        ) {
          throw new TypeError(`invalid job lock name ${name.jobType}-${name.id}`);
        }
        return join(this.opts.dataDir, 'jobstates', `${name.jobType}-${name.id}.lck`);
      case 'gc': {
        const cfg = this.opts.config.readCached().stores.get(name.store);
        if (!cfg) throw new NotFoundError(`datastore '${name.store}' does not exist`);
        return join(cfg.path, '.lock');
      }
    }
  }

  async acquire(name: LockName, opts: LockOptions & { timeoutMs?: number } = {}): Promise<HeldLock> {
    return acquireFileLock(this.lockPath(name), opts);
  }

  async tryAcquire(name: LockName, opts: LockOptions = {}): Promise<HeldLock | undefined> {
    return tryAcquireFileLock(this.lockPath(name), opts);
  }
}
