/** A token bucket: `ratePerSecond` sustained, `burst` at once. Pure and clock-injected. */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.updatedAt = now;
  }

  take(now: number, cost = 1): boolean {
    const elapsed = Math.max(0, now - this.updatedAt) / 1000;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.ratePerSecond);
    this.updatedAt = now;
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }
}

/** Buckets keyed by agent id, shared by all of that agent's connections; idle ones are pruned. */
export class KeyedRateLimiter {
  private readonly buckets = new Map<string, { bucket: TokenBucket; lastUsed: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
  ) {}

  take(key: string, now: number): boolean {
    let entry = this.buckets.get(key);
    if (!entry) {
      if (this.buckets.size > 50_000) this.prune(now);
      entry = { bucket: new TokenBucket(this.ratePerSecond, this.burst, now), lastUsed: now };
      this.buckets.set(key, entry);
    }
    entry.lastUsed = now;
    return entry.bucket.take(now);
  }

  private prune(now: number): void {
    const idleMs = (this.burst / this.ratePerSecond) * 1000;
    for (const [key, entry] of this.buckets) if (now - entry.lastUsed > idleMs) this.buckets.delete(key);
  }
}
