/**
 * The local lock service: a flock on one `.lck` file per lock name (src/sys/file-lock.ts), the
 * kernel drops it when the holder dies. The files:
 *
 *   group      <runDir>/locks/<store>/[ns/<a>/]<type>/<id>/group.lck
 *   snapshot   <runDir>/locks/<store>/[ns/<a>/]<type>/<id>/<time>.lck
 *   manifest   <runDir>/locks/<store>/[ns/<a>/]<type>/<id>/<time>.index.json.lck (PBS's name, §7.1)
 *   job        <dataDir>/jobstates/<type>-<id>.lck
 *   chunk      <runDir>/locks/<store>/.chunks/<4 hex>/<digest> (S3 datastores; PBS 4's
 *              `chunk_lock_path` under its locks dir)
 *   gc         <datastore path>/.lock (the file the filesystem chunk backend keeps open, as PBS's
 *              ProcessLocker; the backend never flocks it, so only GC holders exclude each other)
 *
 * Group, snapshot and manifest locks live under the run dir, not in the datastore: a lock held on
 * a file inside the datastore would be an open file under its mount point and keep an `offline`
 * datastore from being unmounted (maintenance.md invariant 7), and a lock file survives the
 * removal of the directory it guards, so a delete holds its lock until the very end. `group.lck`
 * cannot collide with a snapshot lock: backup times never spell `group`. The lock files are never
 * unlinked (unlinking a flocked file lets two holders in at once); they are empty and the run dir
 * is a tmpfs cleared at boot.
 */
import { join } from 'node:path';
import { validateDatastoreName } from '../api-types/names.js';
import type { DatastoreConfigSource } from '../config/datastore-config.js';
import { NotFoundError } from '../errors.js';
import { acquireFileLock, tryAcquireFileLock } from '../sys/file-lock.js';
import type { HeldLock, LockName, LockOptions, LockService } from './lock-service.js';

export interface LocalLockServiceOptions {
  runDir: string;
  dataDir: string;
  /** Where the GC lock of a datastore is found (its path). */
  config: DatastoreConfigSource;
}

export class LocalLockService implements LockService {
  constructor(private readonly opts: LocalLockServiceOptions) {}

  /** The `.lck` file that stands for `name`. */
  lockPath(name: LockName): string {
    switch (name.kind) {
      case 'group':
        return join(this.storeRoot(name.store), name.group.relativePath, 'group.lck');
      case 'snapshot':
        return join(
          this.storeRoot(name.store),
          name.snapshot.group.relativePath,
          `${name.snapshot.timeString}.lck`,
        );
      case 'manifest':
        return join(
          this.storeRoot(name.store),
          name.snapshot.group.relativePath,
          `${name.snapshot.timeString}.index.json.lck`,
        );
      case 'job':
        if (
          !/^[A-Za-z0-9_-]+$/.test(name.jobType) ||
          !/^[A-Za-z0-9_.-]+$/.test(name.id) ||
          name.id.startsWith('.')
        ) {
          throw new TypeError(`invalid job lock name ${name.jobType}-${name.id}`);
        }
        return join(this.opts.dataDir, 'jobstates', `${name.jobType}-${name.id}.lck`);
      case 'chunk':
        if (!/^[0-9a-f]{64}$/.test(name.digest))
          throw new TypeError(`invalid chunk lock name ${name.digest}`);
        return join(this.storeRoot(name.store), '.chunks', name.digest.slice(0, 4), name.digest);
      case 'gc': {
        const cfg = this.opts.config.readCached().stores.get(name.store);
        if (!cfg) throw new NotFoundError(`datastore '${name.store}' does not exist`);
        return join(cfg.path, '.lock');
      }
    }
  }

  /** `<runDir>/locks/<store>`; the name is validated, so the path stays under the run dir. */
  private storeRoot(store: string): string {
    return join(this.opts.runDir, 'locks', validateDatastoreName(store));
  }

  async acquire(name: LockName, opts: LockOptions & { timeoutMs?: number } = {}): Promise<HeldLock> {
    return acquireFileLock(this.lockPath(name), opts);
  }

  async tryAcquire(name: LockName, opts: LockOptions = {}): Promise<HeldLock | undefined> {
    return tryAcquireFileLock(this.lockPath(name), opts);
  }
}
