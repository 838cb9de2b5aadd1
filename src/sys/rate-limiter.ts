/**
 * A token bucket for traffic (PBS `RateLimitConfig`: sync jobs, S3 endpoints): on average at most
 * `rate` bytes per second, with bursts of up to `burst` bytes (default: one second's worth).
 * `consume(n)` is called for each transfer of n bytes and waits as long as the bucket is in debt,
 * so the next transfer starts only when the average allows it.
 */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst: number = rate,
    private readonly now: () => number = () => Date.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  async consume(bytes: number, signal?: AbortSignal): Promise<void> {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
    this.tokens -= bytes;
    if (this.tokens < 0 && !signal?.aborted) await this.sleep((-this.tokens / this.rate) * 1000);
  }
}
