/**
 * RateMeter: bytes per second over a sliding window of the last `windowMs`, for the progress and
 * ETA of a background walk (clone hydration, resync). Samples are kept in time order and dropped
 * once older than the window; the rate divides the bytes in the window by the time since its
 * oldest sample (at least 250 ms, so a single early sample does not claim a huge rate).
 * Nothing here is durable; it only describes what happened recently.
 */
export class RateMeter {
  private readonly samples: Array<{ atMs: number; bytes: number }> = [];

  constructor(private readonly windowMs = 5000) {}

  add(bytes: number, atMs = performance.now()): void {
    this.samples.push({ atMs, bytes });
    this.trim(atMs);
  }

  bytesPerSecond(atMs = performance.now()): number {
    this.trim(atMs);
    if (this.samples.length === 0) return 0;
    const spanMs = Math.max(atMs - this.samples[0]!.atMs, 250);
    const total = this.samples.reduce((sum, s) => sum + s.bytes, 0);
    return (total * 1000) / spanMs;
  }

  private trim(atMs: number): void {
    while (this.samples.length && atMs - this.samples[0]!.atMs > this.windowMs) this.samples.shift();
  }
}
