/**
 * RegionPace: the threshold and batch size of a region walk, chosen as it goes, for tables that
 * leave them unset. In the spirit of DRBD's dynamic resync controller (c-min-rate: resync at full
 * speed while the application is quiet, and give way when it is not), in bytes per copy:
 *   - after a copy during which no user I/O arrived, the batch doubles, up to MAX_BATCH_BYTES, and
 *     two copies may run at once (one is read while the other is written: the device stays busy);
 *   - after a copy during which user I/O arrived, the batch halves, down to one region, one copy
 *     runs at a time, and the walk holds back LOAD_HOLD_FACTOR times as long as that copy took
 *     (at least LOAD_HOLD_MIN_MS, at most LOAD_HOLD_MAX_MS) before the next: under user load the
 *     background gets at most about a quarter of the device, so a user request waits behind
 *     less background work in the device's queue (on a shared disk, a read that misses the page
 *     cache waited milliseconds behind full-speed copies and their writeback).
 * threshold = batch x copies at once. It starts at one region and one copy (the kernel's default
 * table), so a clone that is not hydrating shows the kernel's numbers; from there an idle walk
 * reaches MAX_BATCH_BYTES after about log2(MAX_BATCH_BYTES / region size) copies. The walker's
 * own pause while user I/O is in flight comes on top (region-walker.ts).
 * Nothing here is durable: it only shapes how fast regions are copied.
 */

/** Largest batch the pace grows to: one piece of the copier (range-copy.ts), 4 MiB. */
export const MAX_BATCH_BYTES = 4 << 20;
/** Copies at once while the user is quiet. */
export const IDLE_COPIES = 2;
/** Under user load, hold back this many times the last copy's duration before the next. */
export const LOAD_HOLD_FACTOR = 3;
export const LOAD_HOLD_MIN_MS = 1;
export const LOAD_HOLD_MAX_MS = 50;

/** What `copyStarted` hands out, for `copyEnded`. */
export interface PaceToken {
  readonly userEpoch: number;
  readonly startMs: number;
}

export class RegionPace {
  private batchRegions = 1;
  private copiesAtOnce = 1;
  /** Counts user requests; a copy compares it at start and end. */
  private userEpoch = 0;
  private readonly maxBatchRegions: number;
  /** No copy starts before this time (performance.now()). */
  private holdUntilMs = 0;

  constructor(regionBytes: number) {
    this.maxBatchRegions = Math.max(1, Math.floor(MAX_BATCH_BYTES / regionBytes));
  }

  get batchSize(): number {
    return this.batchRegions;
  }

  get threshold(): number {
    return this.batchRegions * this.copiesAtOnce;
  }

  /** How long the walk should wait before its next copy (0: go). */
  holdBackMs(nowMs = performance.now()): number {
    return Math.max(0, this.holdUntilMs - nowMs);
  }

  /** A user request arrived. */
  userArrived(): void {
    this.userEpoch++;
  }

  /** A copy starts: returns the token to hand to `copyEnded`. */
  copyStarted(nowMs = performance.now()): PaceToken {
    return { userEpoch: this.userEpoch, startMs: nowMs };
  }

  /** A copy that started with `token` ended (done or not). */
  copyEnded(token: PaceToken, nowMs = performance.now()): void {
    if (token.userEpoch === this.userEpoch) {
      this.batchRegions = Math.min(this.maxBatchRegions, this.batchRegions * 2);
      this.copiesAtOnce = IDLE_COPIES;
      this.holdUntilMs = 0;
    } else {
      this.batchRegions = Math.max(1, this.batchRegions >> 1);
      this.copiesAtOnce = 1;
      const holdMs = Math.min(LOAD_HOLD_MAX_MS, Math.max(LOAD_HOLD_MIN_MS, LOAD_HOLD_FACTOR * (nowMs - token.startMs)));
      this.holdUntilMs = nowMs + holdMs;
    }
  }
}
