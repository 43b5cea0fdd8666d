/**
 * RateMeter: bytes per second over a sliding window of the last `windowMs`, for the progress and
 * ETA of a background walk (clone hydration, resync). Samples are summed into buckets of
 * `windowMs / BUCKETS_PER_WINDOW` (a walk of 4 KiB regions adds 100k samples a second: one object
 * each would cost memory and garbage collection); a bucket leaves the window once its first sample
 * is older than the window. The rate divides the bytes in the window by the time since the oldest
 * bucket's first sample (at least 250 ms, so a single early sample does not claim a huge rate).
 * Nothing here is durable; it only describes what happened recently.
 */
const BUCKETS_PER_WINDOW = 50;
const SPAN_MIN_MS = 250;

export class RateMeter {
  /** First sample time and bytes of each bucket, oldest first. */
  private readonly startsMs: number[] = [];
  private readonly bytes: number[] = [];
  private totalBytes = 0;
  private readonly bucketMs: number;

  constructor(private readonly windowMs = 5000) {
    this.bucketMs = windowMs / BUCKETS_PER_WINDOW;
  }

  add(bytes: number, atMs = performance.now()): void {
    const last = this.startsMs.length - 1;
    if (last >= 0 && atMs - this.startsMs[last]! < this.bucketMs) {
      this.bytes[last] = this.bytes[last]! + bytes;
    } else {
      this.startsMs.push(atMs);
      this.bytes.push(bytes);
    }
    this.totalBytes += bytes;
    this.trim(atMs);
  }

  bytesPerSecond(atMs = performance.now()): number {
    this.trim(atMs);
    if (this.startsMs.length === 0) return 0;
    const spanMs = Math.max(atMs - this.startsMs[0]!, SPAN_MIN_MS);
    return (this.totalBytes * 1000) / spanMs;
  }

  private trim(atMs: number): void {
    while (this.startsMs.length && atMs - this.startsMs[0]! > this.windowMs) {
      this.startsMs.shift();
      this.totalBytes -= this.bytes.shift()!;
    }
  }
}
