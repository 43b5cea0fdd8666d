/**
 * RegionPace: the threshold and batch size of a region walk, chosen as it goes, for tables that
 * leave them unset. In the spirit of DRBD's dynamic resync controller (c-min-rate: resync at full
 * speed while the application is quiet, and give way when it is not), in bytes per copy:
 *   - after a copy during which no user I/O arrived, the batch doubles, up to MAX_BATCH_BYTES, and
 *     two copies may run at once (one is read while the other is written: the device stays busy);
 *   - after a copy during which user I/O arrived, the batch halves, down to one region, and one
 *     copy runs at a time: a user request then waits behind less background work in the device's
 *     queue and in the copier's.
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

export class RegionPace {
  private batchRegions = 1;
  private copiesAtOnce = 1;
  /** Counts user requests; a copy compares it at start and end. */
  private userEpoch = 0;
  private readonly maxBatchRegions: number;

  constructor(regionBytes: number) {
    this.maxBatchRegions = Math.max(1, Math.floor(MAX_BATCH_BYTES / regionBytes));
  }

  get batchSize(): number {
    return this.batchRegions;
  }

  get threshold(): number {
    return this.batchRegions * this.copiesAtOnce;
  }

  /** A user request arrived. */
  userArrived(): void {
    this.userEpoch++;
  }

  /** A copy starts: returns the token to hand to `copyEnded`. */
  copyStarted(): number {
    return this.userEpoch;
  }

  /** A copy that started with `token` ended (done or not). */
  copyEnded(token: number): void {
    if (token === this.userEpoch) {
      this.batchRegions = Math.min(this.maxBatchRegions, this.batchRegions * 2);
      this.copiesAtOnce = IDLE_COPIES;
    } else {
      this.batchRegions = Math.max(1, this.batchRegions >> 1);
      this.copiesAtOnce = 1;
    }
  }
}
