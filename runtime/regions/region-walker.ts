/**
 * RegionWalker: the background walk over every region still to do, behind the user's I/O. The
 * engine says what "do region i" means (a clone copies it from its source, a resync from the good
 * leg); the walker decides which regions, how many at once, and when to hold back. It knows no
 * engine: a bitmap says which regions are done, RegionOps says which are busy, and `copy` moves a
 * run of regions.
 *
 * Polarity: `pendingBit` is the bit value of a region still to do (false for hydration: a set bit
 * is a hydrated region; true for a resync over a dirty bitmap).
 *
 * State machine: the loop runs while `host.canRun()` (the engine allows it: enabled, writable,
 * not suspended, open, threshold > 0) and the walker has not stopped on failures, and regions
 * remain. Each turn it
 *   1. waits while user I/O is in flight (dm-clone pauses hydration then);
 *   2. waits while `threshold` regions are already being copied by it, and while the host asks
 *      it to hold back (`holdBackMs`: a pace giving way to user load);
 *   3. picks the next region: first any region the engine marked hot (`prioritize`: a user read
 *      found it still to do, so a slow source is read a bounded number of times), else the next
 *      pending bit from a cursor, wrapping (a WASM scan);
 *   4. extends it to a run of contiguous pending, idle regions of at most
 *      min(batch size, threshold - in flight) and starts one copy for the run;
 *   5. yields a macrotask once it has held the event loop for a time slice (time-slice.ts):
 *      copies that complete at once (small page-cache copies) would otherwise chain in microtasks
 *      and starve the event loop. A yield per pick instead (a setTimeout, about 1 ms) capped a
 *      clone of 4 KiB regions at threshold 1 at ~800 regions/s. That is still there as
 *      `turns: 'timer-per-copy'`, for seeded simulations: how much a time-sliced walk does
 *      between a caller's timer turns depends on the machine's speed, a timer turn per copy does
 *      not, so a trial paced by timers replays exactly.
 * A copy that fails leaves its regions to do; after `maxConsecutiveFailures` failures in a row the
 * loop stops and reports the last error (dm-clone would retry forever); `resume()` clears it. A
 * copy the engine dropped (not failed: it stopped wanting it, e.g. on a switch to read-only) does
 * not count as a failure.
 * Nothing here is durable: the engine marks done regions in its bitmap and commits them.
 */
import type { RegionBitmap } from '../bitmap.ts';
import type { RegionOps } from './region-ops.ts';
import { TimeSlice } from './time-slice.ts';

/**
 * How the walk gives the event loop back: 'slice' after a time slice (full speed, the default),
 * 'timer-per-copy' a timer turn after every copy it starts (the same interleaving on every run).
 */
export type WalkTurns = 'slice' | 'timer-per-copy';

/** What one copy ended as: done, dropped by the engine (no failure), or failed with an error. */
export type CopyResult = 'done' | 'dropped' | { error: unknown };

export interface WalkerHost {
  readonly regionCount: number;
  readonly regionOps: RegionOps;
  /** The bitmap of done regions, or null when every region is done. */
  bitmap(): RegionBitmap | null;
  canRun(): boolean;
  threshold(): number;
  batchSize(): number;
  /** Optional: wait this long before the next copy (a pace giving way to user load; 0: go). */
  holdBackMs?(): number;
  /** Resolves when no user I/O is in flight (at once if none is). */
  userIdle(): Promise<void>;
  userBusy(): boolean;
  /** Does regions [start, end), which the walker found pending and idle. */
  copy(start: number, end: number): Promise<CopyResult>;
  /** Every region is done. */
  complete(): void;
  /** `maxConsecutiveFailures` copies failed in a row; the loop has stopped. */
  stopped(lastError: unknown): void;
}

/** Hot regions remembered at most; older ones fall back to the cursor scan. */
const HOT_REGIONS_MAX = 4096;
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class RegionWalker {
  private running: Promise<void> | null = null;
  private cursor = 0;
  private inFlightRegions = 0;
  private readonly hot = new Set<number>();
  private consecutiveFailures = 0;
  /** The error of the last copy of ours that failed. */
  lastError: unknown = null;
  /** Set when stopped after too many failures; cleared by resume(). */
  failed = false;
  /** Wakes the loop (and idle()) after one of its copies has finished and been counted. */
  private wakeups: Array<() => void> = [];

  constructor(
    private readonly host: WalkerHost,
    private readonly maxConsecutiveFailures: number,
    private readonly pendingBit = false,
    private readonly turns: WalkTurns = 'slice',
  ) {}

  /** Starts the loop if it may run and is not running. */
  kick(): void {
    if (this.running || this.failed || !this.host.canRun()) return;
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

  /** Do this region soon (a user found it still to do). */
  prioritize(region: number): void {
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

  private allDone(bitmap: RegionBitmap | null): boolean {
    return bitmap === null || (this.pendingBit ? bitmap.isEmpty() : bitmap.isFull());
  }

  private async loop(): Promise<void> {
    const host = this.host;
    const slice = new TimeSlice();
    for (;;) {
      if (this.failed || !host.canRun()) return;
      const bitmap = host.bitmap();
      if (bitmap === null || this.allDone(bitmap)) {
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
      const holdMs = host.holdBackMs?.() ?? 0;
      if (holdMs > 0) {
        await sleep(holdMs);
        slice.restart();
        continue;
      }
      const start = this.pick(bitmap);
      if (start < 0) {
        // Every pending region is being copied or overwritten right now (by us or by users).
        await Promise.race([host.regionOps.anySettled(), this.copyFinished()]);
        continue;
      }
      const limit = Math.min(host.batchSize(), room);
      const run = bitmap.nextRun(start, this.pendingBit, limit);
      let end = run === null ? start + 1 : run.start + run.length;
      const busy = host.regionOps.firstBusy(start, end);
      if (busy >= 0) end = busy;
      this.cursor = end >= host.regionCount ? 0 : end;
      this.launch(start, end);
      if (this.turns === 'timer-per-copy') await sleep(0);
      else await slice.yieldIfSpent();
    }
  }

  private nextPendingWrapping(bitmap: RegionBitmap, from: number): number {
    return this.pendingBit ? bitmap.nextSetWrapping(from) : bitmap.nextZeroWrapping(from);
  }

  private pick(bitmap: RegionBitmap): number {
    const ops = this.host.regionOps;
    for (const region of this.hot) {
      this.hot.delete(region);
      if (bitmap.get(region) === this.pendingBit && !ops.has(region)) return region;
    }
    const regionCount = this.host.regionCount;
    let from = this.cursor;
    for (let scanned = 0; scanned < regionCount; ) {
      const region = this.nextPendingWrapping(bitmap, from);
      if (region < 0) return -1;
      if (!ops.has(region)) return region;
      // Busy: skip past the operation's regions.
      scanned += region >= from ? region - from + 1 : regionCount - from + region + 1;
      from = region + 1 >= regionCount ? 0 : region + 1;
    }
    return -1;
  }

  private launch(start: number, end: number): void {
    const count = end - start;
    this.inFlightRegions += count;
    void this.host.copy(start, end).then((result) => {
      this.inFlightRegions -= count;
      this.notify();
      if (result === 'done' || result === 'dropped') {
        if (result === 'done') this.consecutiveFailures = 0;
        this.kick();
        return;
      }
      this.lastError = result.error;
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
