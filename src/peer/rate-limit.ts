// A bandwidth limit on what a peer connection sends (--limit-rate): a token bucket
// holding at most one second of bytes. A frame larger than the bucket goes out when the
// bucket is full and leaves it in debt, so the average stays at the rate whatever the
// frame sizes.

export interface Clock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export class RateLimiter {
  private tokens: number;
  private last: number;

  /** `bytesPerSecond` 0: unlimited. */
  constructor(private readonly bytesPerSecond: number, private readonly clock: Clock = realClock) {
    if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) throw new RangeError(`invalid rate ${bytesPerSecond}`);
    this.tokens = bytesPerSecond;
    this.last = clock.now();
  }

  get unlimited(): boolean {
    return this.bytesPerSecond === 0;
  }

  /** Waits until `bytes` may be sent. Calls must not overlap (the channel sends one frame at a time). */
  async take(bytes: number): Promise<void> {
    if (this.unlimited) return;
    this.refill();
    // wait for a full bucket, or for enough for a small frame
    const need = Math.min(bytes, this.bytesPerSecond);
    if (this.tokens < need) {
      await this.clock.sleep(Math.ceil(((need - this.tokens) * 1000) / this.bytesPerSecond));
      this.refill();
    }
    this.tokens -= bytes;
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.last) * this.bytesPerSecond) / 1000);
    this.last = now;
  }
}
