/**
 * Login rate limiting, which PBS does not have beyond its fixed delay on failures. Policy:
 * per (remote address, username), after `maxFailures` failed logins within `windowMs` further
 * attempts are refused without checking the password until the window has passed since the
 * oldest counted failure; a successful login clears the record. Refusals look like any other
 * failure (401 "authentication failed", plus a Retry-After header) so they reveal nothing.
 * In memory only: a restart forgets, which is acceptable for a brute-force brake.
 */
export interface LoginLimiterOptions {
  maxFailures?: number;
  windowMs?: number;
}

export class LoginLimiter {
  private readonly failures = new Map<string, number[]>();
  private readonly maxFailures: number;
  private readonly windowMs: number;

  constructor(opts: LoginLimiterOptions = {}) {
    this.maxFailures = opts.maxFailures ?? 5;
    this.windowMs = opts.windowMs ?? 60_000;
  }

  private key(remote: string, username: string): string {
    return `${remote}\0${username}`;
  }

  private recent(key: string, now: number): number[] {
    const list = (this.failures.get(key) ?? []).filter((t) => now - t < this.windowMs);
    if (list.length === 0) this.failures.delete(key);
    else this.failures.set(key, list);
    return list;
  }

  /** Milliseconds until another attempt is allowed, or 0 when it is allowed now. */
  retryAfterMs(remote: string, username: string, now = Date.now()): number {
    const list = this.recent(this.key(remote, username), now);
    if (list.length < this.maxFailures) return 0;
    return list[list.length - this.maxFailures]! + this.windowMs - now;
  }

  recordFailure(remote: string, username: string, now = Date.now()): void {
    const key = this.key(remote, username);
    this.failures.set(key, [...this.recent(key, now), now]);
    // bound memory when someone sprays usernames: forget the oldest records
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }

  recordSuccess(remote: string, username: string): void {
    this.failures.delete(this.key(remote, username));
  }
}
