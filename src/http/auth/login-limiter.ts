/**
 * Login brute-force brake, which PBS does not have beyond its fixed delay on failures.
 *
 * Policy, per (remote address, username):
 * - the first `freeFailures` failed logins cost nothing but the fixed failure delay;
 * - every further failure makes the next attempt wait, twice as long each time: `baseDelayMs`,
 *   then 2×, 4×, … up to `maxDelayMs`. An attempt during the wait is refused without checking
 *   the password (401 "authentication failed" plus Retry-After, so it reveals nothing);
 * - a success, or `resetAfterMs` without a failure, clears the record.
 *
 * Nobody can lock anyone out: a wait applies only to the one address that failed, it grows
 * gradually rather than closing a door, and attempts from the host itself (loopback) are always
 * checked — the right password from localhost is never refused, so an administrator can get in
 * while someone hammers the account from elsewhere (`exemptLoopback`, on by default).
 * In memory only: a restart forgets, which is acceptable for a brake.
 */
export interface LoginLimiterOptions {
  /** Failures that cost nothing but the fixed delay (default 5). */
  freeFailures?: number;
  /** The wait after the first failure beyond the free ones (default 1 s); doubles each time. */
  baseDelayMs?: number;
  /** The longest wait (default 5 min). */
  maxDelayMs?: number;
  /** A record with no failure for this long is forgotten (default 15 min). */
  resetAfterMs?: number;
  /** Always check attempts from loopback addresses (default true). */
  exemptLoopback?: boolean;
}

interface FailureRecord {
  count: number;
  last: number;
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped IPv6 forms. */
export function isLoopback(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return address === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

export class LoginLimiter {
  private readonly failures = new Map<string, FailureRecord>();
  private readonly freeFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly resetAfterMs: number;
  private readonly exemptLoopback: boolean;

  constructor(opts: LoginLimiterOptions = {}) {
    this.freeFailures = opts.freeFailures ?? 5;
    this.baseDelayMs = opts.baseDelayMs ?? 1000;
    this.maxDelayMs = opts.maxDelayMs ?? 300_000;
    this.resetAfterMs = opts.resetAfterMs ?? 15 * 60_000;
    this.exemptLoopback = opts.exemptLoopback ?? true;
  }

  private key(remote: string, username: string): string {
    return `${remote}\0${username}`;
  }

  private record(key: string, now: number): FailureRecord | undefined {
    const rec = this.failures.get(key);
    if (rec && now - rec.last >= this.resetAfterMs) {
      this.failures.delete(key);
      return undefined;
    }
    return rec;
  }

  /** The wait that `count` failures impose after the last of them. */
  private delayFor(count: number): number {
    const over = count - this.freeFailures;
    if (over <= 0) return 0;
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(over - 1, 30));
  }

  /**
   * Milliseconds until an attempt from `remote` for `username` is checked, or 0 when it is
   * checked now (always 0 from loopback while `exemptLoopback`).
   */
  retryAfterMs(remote: string, username: string, now = Date.now()): number {
    if (this.exemptLoopback && isLoopback(remote)) return 0;
    const rec = this.record(this.key(remote, username), now);
    if (!rec) return 0;
    return Math.max(0, rec.last + this.delayFor(rec.count) - now);
  }

  recordFailure(remote: string, username: string, now = Date.now()): void {
    const key = this.key(remote, username);
    const rec = this.record(key, now);
    // re-insert so that the map's order is by last failure
    this.failures.delete(key);
    this.failures.set(key, { count: (rec?.count ?? 0) + 1, last: now });
    // bound memory when someone sprays usernames: forget the records failed least recently
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }

  recordSuccess(remote: string, username: string): void {
    this.failures.delete(this.key(remote, username));
  }
}
