/**
 * The part every AdmissionWatch shares (admission-backend.ts): one waiter at a time, changes
 * coalesced into one wake-up, a change seen while nobody waited reported by the next call, close
 * and an aborted signal ending a pending wait with `false`. A backend's watch says how it learns
 * of changes: `moved()` asked on every call and `startWaiting()`/`stopWaiting()` around a wait (a
 * poll timer, say), or `mark()` whenever it is told (an etcd watch event).
 */
import type { AdmissionWatch } from './admission-backend.js';

export abstract class CoalescingWatch implements AdmissionWatch {
  private dirty = false;
  private closed = false;
  private waiter: { resolve: (v: boolean) => void; reject: (e: unknown) => void } | undefined;
  /** Set by `broke()`: every wait from then on fails with it. */
  private broken: unknown;
  private readonly onAbort = () => this.close();

  constructor(private readonly signal: AbortSignal | undefined) {
    if (signal?.aborted) this.closed = true;
    else signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Whether the watched state moved since the last report (checked at each `changed()`). */
  protected abstract moved(): boolean;
  /** A caller now waits: start looking. */
  protected abstract startWaiting(): void;
  /** Nobody waits any more: stop looking. */
  protected abstract stopWaiting(): void;
  /** The watch is closed: let go of what it holds. */
  protected onClose(): void {}

  protected get isClosed(): boolean {
    return this.closed;
  }

  /** Something changed: wake the waiter, or report it at the next `changed()`. */
  protected mark(): void {
    if (this.waiter) this.settle(true);
    else this.dirty = true;
  }

  /** Fail the pending wait with `err` (the next `changed()` looks again). */
  protected fail(err: unknown): void {
    const w = this.waiter;
    this.stopWaiting();
    this.waiter = undefined;
    w?.reject(err);
  }

  /** The watch cannot work any more: the pending wait and every later one fail with `err`. */
  protected broke(err: unknown): void {
    this.broken = err;
    this.fail(err);
  }

  changed(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.waiter) return Promise.reject(new Error('AdmissionWatch.changed() is already pending'));
    if (this.broken !== undefined) return Promise.reject(this.broken);
    try {
      if (this.dirty || this.moved()) {
        this.dirty = false;
        return Promise.resolve(true);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<boolean>((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.startWaiting();
    });
  }

  private settle(value: boolean): void {
    this.stopWaiting();
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve(value);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.onClose();
    this.settle(false);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
