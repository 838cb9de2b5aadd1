/**
 * The lock service on etcd (issue 17): the group, snapshot, manifest, job, GC and chunk locks of
 * a cluster of Stowage servers, so that two hosts cannot back up the same group or run GC on one
 * datastore at the same time.
 *
 * Each holder (or waiter) of a lock is one key `<prefix>locks/<name>#<uuid>` put under the
 * server's lease, so a server that dies gives its locks up when its lease expires. Who holds the
 * lock follows from the keys' create revisions, etcd's total order of writes: an exclusive
 * request is granted when no key of the lock was created before its own, a shared one when no
 * exclusive key was (etcd's read-write lock recipe). Waiters queue in that order, so a stream of
 * shared holders cannot starve an exclusive one. A refused try or a timed-out wait deletes its key.
 */
import { randomUUID } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { validateDatastoreName } from '../api-types/names.js';
import { LockTimeoutError } from '../errors.js';
import type { HeldLock, LockName, LockOptions, LockService } from './lock-service.js';

/** What the lock service needs of the admission backend: its client and its lease. */
export interface EtcdLockContext {
  readonly client: Etcd3;
  /** The key prefix of the cluster's state (ends with `/`). */
  readonly prefix: string;
  /** This server's lease id, granted on first use; rejects when etcd cannot be reached. */
  leaseId(): Promise<string>;
  /** Whether `err` says etcd no longer knows our lease; if so the next `leaseId()` grants a new one. */
  leaseGone(err: unknown): boolean;
  /** Turn an etcd failure into the operator's error. */
  unreachable(subject: string, err: unknown): Error;
  readonly node: string;
}

interface HolderValue {
  mode: 'shared' | 'exclusive';
  node: string;
  pid: number;
}

/** How long a waiter sleeps between looks at the lock's holders (doubling up to the maximum). */
const POLL_MIN_MS = 20;
const POLL_MAX_MS = 250;

const keyEnd = (prefix: string) => {
  const b = Buffer.from(prefix);
  b[b.length - 1]!++;
  return b;
};

export class EtcdLockService implements LockService {
  /** Deletes of released keys still in flight, by lock: a new request of this process waits for them. */
  private readonly releasing = new Map<string, Set<Promise<void>>>();

  constructor(private readonly ctx: EtcdLockContext) {}

  /** The key every holder key of `name` starts with (`...#`); names are validated so keys cannot collide. */
  lockKey(name: LockName): string {
    const base = `${this.ctx.prefix}locks/`;
    const safe = (what: string, v: string) => {
      if (!/^[A-Za-z0-9_.:-][A-Za-z0-9_.:/-]*$/.test(v) || v.includes('#') || v.includes('..')) {
        throw new TypeError(`invalid ${what} lock name ${v}`);
      }
      return v;
    };
    switch (name.kind) {
      case 'group':
        return `${base}group/${validateDatastoreName(name.store)}/${safe('group', name.group.relativePath)}#`;
      case 'snapshot':
      case 'manifest':
        return `${base}${name.kind}/${validateDatastoreName(name.store)}/${safe('snapshot', name.snapshot.group.relativePath)}/${safe('snapshot', name.snapshot.timeString)}#`;
      case 'job':
        return `${base}job/${safe('job', name.jobType)}/${safe('job', name.id)}#`;
      case 'gc':
        return `${base}gc/${validateDatastoreName(name.store)}#`;
      case 'chunk':
        if (!/^[0-9a-f]{64}$/.test(name.digest))
          throw new TypeError(`invalid chunk lock name ${name.digest}`);
        return `${base}chunk/${validateDatastoreName(name.store)}/${name.digest}#`;
    }
  }

  async acquire(name: LockName, opts: LockOptions & { timeoutMs?: number } = {}): Promise<HeldLock> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const lockKey = this.lockKey(name);
    const mine = await this.enqueue(lockKey, opts.shared === true);
    const deadline = Date.now() + timeoutMs;
    let pause = POLL_MIN_MS;
    try {
      while (!(await this.granted(lockKey, mine))) {
        if (Date.now() >= deadline) throw new LockTimeoutError(lockKey.slice(0, -1), timeoutMs);
        await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(1, deadline - Date.now()))));
        pause = Math.min(pause * 2, POLL_MAX_MS);
      }
    } catch (err) {
      await this.dequeue(mine.key).catch(() => undefined);
      throw err;
    }
    return this.held(lockKey, mine.key);
  }

  async tryAcquire(name: LockName, opts: LockOptions = {}): Promise<HeldLock | undefined> {
    const lockKey = this.lockKey(name);
    const mine = await this.enqueue(lockKey, opts.shared === true);
    let ok = false;
    try {
      ok = await this.granted(lockKey, mine);
    } finally {
      if (!ok) await this.dequeue(mine.key).catch(() => undefined);
    }
    return ok ? this.held(lockKey, mine.key) : undefined;
  }

  /** Put this request's key under the lease; its create revision is its place in the queue. */
  private async enqueue(
    lockKey: string,
    shared: boolean,
  ): Promise<{ key: string; revision: bigint; exclusive: boolean }> {
    // a lock this process just released must not stand in the way of its next request
    await Promise.all(this.releasing.get(lockKey) ?? []);
    const key = `${lockKey}${randomUUID()}`;
    const value: HolderValue = {
      mode: shared ? 'shared' : 'exclusive',
      node: this.ctx.node,
      pid: process.pid,
    };
    for (let attempt = 0; ; attempt++) {
      try {
        const lease = await this.ctx.leaseId();
        const res = await this.ctx.client.kv.put({
          key: Buffer.from(key),
          value: Buffer.from(JSON.stringify(value)),
          lease,
        });
        return { key, revision: BigInt(res.header.revision), exclusive: !shared };
      } catch (err) {
        // our lease expired before the client noticed: once more under a new one
        if (attempt === 0 && this.ctx.leaseGone(err)) continue;
        throw this.ctx.unreachable(`lock ${lockKey.slice(0, -1)}`, err);
      }
    }
  }

  /** Whether no key queued before `mine` conflicts with it. */
  private async granted(
    lockKey: string,
    mine: { key: string; revision: bigint; exclusive: boolean },
  ): Promise<boolean> {
    let kvs;
    try {
      ({ kvs } = await this.ctx.client.kv.range({ key: Buffer.from(lockKey), range_end: keyEnd(lockKey) }));
    } catch (err) {
      throw this.ctx.unreachable(`lock ${lockKey.slice(0, -1)}`, err);
    }
    if (!kvs.some((kv) => kv.key.toString() === mine.key)) {
      // our key is gone: the lease expired while we waited (etcd unreachable for a TTL)
      throw this.ctx.unreachable(
        `lock ${lockKey.slice(0, -1)}`,
        new Error('the lock request expired with its lease'),
      );
    }
    return !kvs.some((kv) => {
      if (BigInt(kv.create_revision) >= mine.revision) return false;
      if (mine.exclusive) return true;
      return (JSON.parse(kv.value.toString()) as HolderValue).mode === 'exclusive';
    });
  }

  private async dequeue(key: string): Promise<void> {
    await this.ctx.client.kv.deleteRange({ key: Buffer.from(key) });
  }

  private held(lockKey: string, key: string): HeldLock {
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        // HeldLock.release is synchronous; the delete follows at once, and should it fail the
        // lease's expiry gives the lock up
        const inFlight = this.releasing.get(lockKey) ?? new Set<Promise<void>>();
        this.releasing.set(lockKey, inFlight);
        const done: Promise<void> = this.dequeue(key)
          .catch(() => undefined)
          .finally(() => {
            inFlight.delete(done);
            if (inFlight.size === 0) this.releasing.delete(lockKey);
          });
        inFlight.add(done);
      },
    };
  }
}
