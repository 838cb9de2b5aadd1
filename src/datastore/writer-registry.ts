/**
 * Who is writing chunks that no index references yet, and since when. GC must not sweep a chunk
 * newer than the oldest such writer (reference §7.6): a backup's chunks are protected only by
 * their atime until its index is renamed into place.
 *
 * This is the one place that answers "when did the oldest writer start": writers of this process
 * register here; writers of other processes come from the cross-process operation registry,
 * either through `setExternal` or as the `write` operations passed to `oldestWriteOperation`.
 */

export interface WriterRegistration {
  readonly startTime: number;
  /** Idempotent. */
  release(): void;
}

/** The fields of an admitted operation (maintenance's OperationRecord) that matter here. */
export interface WriteOperationLike {
  readonly id: number;
  readonly class: string;
  readonly startedAt: number;
}

/** The earliest of `times`, ignoring undefined; undefined when there is none. */
export function earliest(...times: (number | undefined)[]): number | undefined {
  let out: number | undefined;
  for (const t of times) if (t !== undefined && (out === undefined || t < out)) out = t;
  return out;
}

/**
 * Start (ms) of the oldest `ingest` operation among `ops` (the only class that inserts chunks;
 * reclaim only removes), leaving out `ownId`; undefined when there is none.
 */
export function oldestWriteOperation(ops: Iterable<WriteOperationLike>, ownId?: number): number | undefined {
  let oldest: number | undefined;
  for (const op of ops) {
    if (op.class !== 'ingest' || op.id === ownId) continue;
    oldest = earliest(oldest, op.startedAt);
  }
  return oldest;
}

export class WriterRegistry {
  private readonly writers = new Map<number, number>();
  private nextId = 1;
  private external: (() => number | undefined) | undefined;

  constructor(external?: () => number | undefined) {
    this.external = external;
  }

  /**
   * Announce a writer whose new chunks are not indexed yet; GC will not sweep chunks touched
   * after the oldest writer's start. `startTimeMs` defaults to now (pass an earlier time when the
   * session began earlier).
   */
  register(startTimeMs: number = Date.now()): WriterRegistration {
    const id = this.nextId++;
    this.writers.set(id, startTimeMs);
    return {
      startTime: startTimeMs,
      release: () => {
        this.writers.delete(id);
      },
    };
  }

  /** Plug in the cross-process registry's view of active writers (ms since epoch). */
  setExternal(provider: (() => number | undefined) | undefined): void {
    this.external = provider;
  }

  /** Start time (ms) of the oldest active writer, in this process or (via the provider) others. */
  oldestStart(): number | undefined {
    return earliest(...this.writers.values(), this.external?.());
  }
}
