/**
 * Background hydration of a clone: copy every unhydrated region from the source to the
 * destination, behind the user's I/O.
 *
 * State machine: the loop runs while `host.canHydrate()` (enabled, rw mode, not suspended, not
 * closed, threshold > 0, not stopped by failures) and regions remain. Each turn it
 *   1. waits while user I/O is in flight (dm-clone pauses hydration then);
 *   2. waits while `threshold` regions are already being copied by it;
 *   3. picks the next region: first any region a user read recently found unhydrated (the "hot"
 *      queue: a hot region is read from a slow source a bounded number of times), else
 *      find-next-zero from a cursor, wrapping (a WASM scan);
 *   4. extends it to a run of contiguous unhydrated, idle regions of at most
 *      min(batch size, threshold - in flight) and starts one copy for the run.
 * A copy failure leaves the region unhydrated; after `maxConsecutiveFailures` failures in a row
 * the loop stops and reports the error (dm-clone would retry forever); `resume()` clears it.
 */
import type { RegionBitmap } from '../bitmap.ts';
import type { RegionOps } from './region-ops.ts';

export interface HydrationHost {
  readonly regionCount: number;
  readonly regionOps: RegionOps;
  /** The in-core bitmap, or null when every region is hydrated. */
  bitmap(): RegionBitmap | null;
  canHydrate(): boolean;
  threshold(): number;
  batchSize(): number;
  /** Resolves when no user I/O is in flight (at once if none is). */
  userIdle(): Promise<void>;
  userBusy(): boolean;
  /** Copies regions [start, end); resolves true on success, false on failure (already reported). */
  copy(start: number, end: number): Promise<boolean>;
  /** All regions hydrated. */
  complete(): void;
  /** `maxConsecutiveFailures` copies failed in a row; the loop has stopped. */
  stopped(lastError: unknown): void;
}

/** Hot regions remembered at most; older ones fall back to the cursor scan. */
const HOT_REGIONS_MAX = 4096;

export class Hydrator {
  private running: Promise<void> | null = null;
  private cursor = 0;
  private inFlightRegions = 0;
  private readonly hot = new Set<number>();
  private consecutiveFailures = 0;
  lastError: unknown = null;
  /** Set when stopped after too many failures; cleared by resume(). */
  failed = false;
  /** Wakes the loop (and idle()) after one of its copies has finished and been counted. */
  private wakeups: Array<() => void> = [];

  constructor(private readonly host: HydrationHost, private readonly maxConsecutiveFailures: number) {}

  get regionsInFlight(): number {
    return this.inFlightRegions;
  }

  /** Starts the loop if it may run and is not running. */
  kick(): void {
    if (this.running || this.failed || !this.host.canHydrate()) return;
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  /** Clears a failure stop and restarts. */
  resume(): void {
    this.failed = false;
    this.consecutiveFailures = 0;
    this.kick();
  }

  /** A user read found this region unhydrated: hydrate it soon. */
  markHot(region: number): void {
    if (this.hot.size >= HOT_REGIONS_MAX) return;
    this.hot.add(region);
    this.kick();
  }

  /** Resolves when the loop and every copy it started have finished. */
  async idle(): Promise<void> {
    while (this.running || this.inFlightRegions > 0) {
      if (this.running) await this.running;
      else await this.copyFinished();
    }
  }

  /** Resolves after the next of this loop's copies is finished and counted. */
  private copyFinished(): Promise<void> {
    return new Promise((resolve) => this.wakeups.push(resolve));
  }

  private notify(): void {
    const wakeups = this.wakeups;
    this.wakeups = [];
    for (const wake of wakeups) wake();
  }

  private async loop(): Promise<void> {
    const host = this.host;
    for (;;) {
      if (this.failed || !host.canHydrate()) return;
      const bitmap = host.bitmap();
      if (bitmap === null || bitmap.isFull()) {
        if (this.inFlightRegions === 0) {
          host.complete();
          return;
        }
        await this.copyFinished();
        continue;
      }
      if (host.userBusy()) {
        await host.userIdle();
        continue;
      }
      const room = host.threshold() - this.inFlightRegions;
      if (room <= 0) {
        await this.copyFinished();
        continue;
      }
      const start = this.pick(bitmap);
      if (start < 0) {
        // Every unhydrated region is being copied or overwritten right now (by us or by users).
        await Promise.race([host.regionOps.anySettled(), this.copyFinished()]);
        continue;
      }
      const limit = Math.min(host.batchSize(), room);
      const run = bitmap.nextRun(start, false, limit);
      let end = run === null ? start + 1 : run.start + run.length;
      const busy = host.regionOps.firstBusy(start, end);
      if (busy >= 0) end = busy;
      this.cursor = end >= host.regionCount ? 0 : end;
      this.launch(start, end);
      // Yield so user I/O that arrived meanwhile gets its turn before the next pick.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }

  private pick(bitmap: RegionBitmap): number {
    for (const region of this.hot) {
      this.hot.delete(region);
      if (!bitmap.get(region) && !this.host.regionOps.has(region)) return region;
    }
    let from = this.cursor;
    for (let scanned = 0; scanned < this.host.regionCount; ) {
      const region = bitmap.nextZeroWrapping(from);
      if (region < 0) return -1;
      if (!this.host.regionOps.has(region)) return region;
      // Busy: skip past the operation's regions.
      scanned += region >= from ? region - from + 1 : this.host.regionCount - from + region + 1;
      from = region + 1 >= this.host.regionCount ? 0 : region + 1;
    }
    return -1;
  }

  private launch(start: number, end: number): void {
    const count = end - start;
    this.inFlightRegions += count;
    void this.host.copy(start, end).then((ok) => {
      this.inFlightRegions -= count;
      this.notify();
      if (ok) {
        this.consecutiveFailures = 0;
        this.kick();
        return;
      }
      this.consecutiveFailures++;
      if (this.consecutiveFailures >= this.maxConsecutiveFailures && !this.failed) {
        this.failed = true;
        this.host.stopped(this.lastError);
      } else {
        this.kick();
      }
    });
  }
}
