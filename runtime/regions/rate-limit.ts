/**
 * ByteRateLimit: a ceiling on the bytes a background copy moves per second (md's sync_speed_max,
 * DRBD's resync-rate), so a resync or recovery leaves the legs' bandwidth to the users, or stays
 * slow on purpose while an operator watches it. Each copy reserves its bytes on a virtual clock
 * before it starts: it may start at max(now, end of the previous reservation), and its own
 * reservation ends bytes / rate later. Copies running at once reserve one after the other, so the
 * average over any stretch of copying stays at or below the rate; an idle stretch earns no
 * credit (no burst after a pause). No limit (null) lets every copy start at once. Nothing here is
 * durable: it only shapes when copies start.
 */
import { BlockError } from '../errors.ts';

/** The longest single timer a wait uses. */
const SLEEP_MAX_MS = 60_000;

export class ByteRateLimit {
  private bytesPerSecondValue: number | null = null;
  /** The end of the last reservation, performance.now() time. */
  private reservedUntilMs = 0;
  /** Wakes a copy waiting under the current limit. */
  private readonly waiters = new Set<() => void>();

  constructor(bytesPerSecond: number | null = null) {
    this.bytesPerSecond = bytesPerSecond;
  }

  get bytesPerSecond(): number | null {
    return this.bytesPerSecondValue;
  }

  /** A new limit applies to the copies that reserve from now on. */
  set bytesPerSecond(value: number | null) {
    if (value !== null && !(Number.isFinite(value) && value > 0)) throw new BlockError('EINVAL', `a rate limit must be a positive number of bytes per second, got ${value}`);
    this.bytesPerSecondValue = value;
    this.reservedUntilMs = 0;
    for (const wake of [...this.waiters]) wake();
  }

  /** How long a copy of `bytes` reserving now waits, in ms; the reservation is taken. */
  reserve(bytes: number, nowMs = performance.now()): number {
    const rate = this.bytesPerSecondValue;
    if (rate === null) return 0;
    const startMs = Math.max(nowMs, this.reservedUntilMs);
    this.reservedUntilMs = startMs + (bytes * 1000) / rate;
    return startMs - nowMs;
  }

  /** Resolves when a copy of `bytes` may start; rejects with EBUSY once `signal` aborts. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    // A new limit wakes the copies waiting under the old one: they reserve again under the new.
    for (let waitMs = this.reserve(bytes); waitMs > 0; waitMs = this.reserve(bytes)) {
      // In pieces a timer can hold (a slow limit can mean hours; timers take at most 2^31-1 ms).
      const untilMs = performance.now() + waitMs;
      let how: 'elapsed' | 'changed' = 'elapsed';
      for (let left = waitMs; left > 0 && how === 'elapsed'; left = untilMs - performance.now()) how = await this.sleep(Math.min(left, SLEEP_MAX_MS), signal);
      if (how === 'elapsed') return;
    }
  }

  private sleep(waitMs: number, signal: AbortSignal | undefined): Promise<'elapsed' | 'changed'> {
    return new Promise((resolve, reject) => {
      const end = (how: 'elapsed' | 'changed' | Error) => {
        clearTimeout(timer);
        this.waiters.delete(changed);
        signal?.removeEventListener('abort', aborted);
        if (how instanceof Error) reject(how);
        else resolve(how);
      };
      const aborted = () => end(new BlockError('EBUSY', 'the copy was stopped while it waited for the rate limit'));
      const changed = () => end('changed');
      const timer = setTimeout(() => end('elapsed'), waitMs);
      this.waiters.add(changed);
      if (signal?.aborted) aborted();
      else signal?.addEventListener('abort', aborted, { once: true });
    });
  }
}
