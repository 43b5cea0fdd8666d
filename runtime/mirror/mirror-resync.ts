/**
 * The mirror's resync (dm-raid1's do_recovery): regions the log says are out of sync are copied
 * from the default leg to every other leg, one region at a time, in the order the log hands them
 * out (GET_RESYNC_WORK: a clustered log puts regions other nodes wait to write first). The log
 * picks, so this is a loop over GET_RESYNC_WORK rather than the region walker's bitmap scan; it
 * shares the walker's parts: RegionOps (a region being copied holds its writes back, as dm delays
 * writes to a RECOVERING region) and RangeCopier (copy_file_range between file legs).
 *
 * Per region: wait until no write to it is in flight, hold it (new writes wait), copy, then
 * SET_REGION_SYNC(in sync) and queue its clear (sent after the legs are flushed). A copy that
 * fails leaves the region out of sync (SET_REGION_SYNC 0) and reports the leg (S); the loop goes
 * on with the next region. Nothing here is durable by itself: the region's clear is.
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { RangeCopier } from '../regions/range-copy.ts';
import type { RegionOps } from '../regions/region-ops.ts';
import { nextMacrotask } from '../regions/time-slice.ts';
import type { UlogClient } from '../ulog/ulog-client.ts';
import type { RegionMarks } from './region-marks.ts';

export interface ResyncLeg {
  readonly device: BlockDevice;
}

/** How often a clustered mirror asks again for resync work while another member recovers. */
const CLUSTERED_POLL_MS = 200;
/** Copies of one region tried in a row while legs keep leaving (at most the mirror's legs). */
const MAX_LEGS_FOR_RETRY = 9;

export interface ResyncHost {
  /** The log is clustered: "no work" may mean another member recovers a region now. */
  clustered(): boolean;
  log(): UlogClient;
  readonly regionBytes: number;
  readonly sizeBytes: number;
  readonly regionOps: RegionOps;
  readonly marks: RegionMarks;
  /** The leg copied from, and the legs copied to (null: nothing to copy with, stop). */
  copyPlan(): { source: ResyncLeg; targets: ResyncLeg[] } | null;
  canRun(): boolean;
  regionSynced(region: number): void;
  /** A copy failed on `leg` (read: the source; write: a target). */
  legFailed(leg: ResyncLeg, error: unknown, reading: boolean): Promise<void>;
  /**
   * The log hands out no more work: `allInSync` when its every region is in sync, false when some
   * copy failed (those regions wait, out of sync, for the next resume): a leg being copied to
   * holds every region only in the first case.
   */
  complete(allInSync: boolean): void;
  note(message: string): void;
}

/** What `ask` answers when the log it asked was replaced meanwhile. */
const REPLACED = Symbol('log replaced');

export class MirrorResync {
  private running: Promise<void> | null = null;
  private readonly copiers = new Map<string, RangeCopier>();
  regionsCopied = 0;
  bytesCopied = 0;
  failures = 0;

  constructor(private readonly host: ResyncHost) {}

  get active(): boolean {
    return this.running !== null;
  }

  /** Starts the loop unless it runs. */
  kick(): void {
    if (this.running !== null || !this.host.canRun()) return;
    this.running = this.loop().catch((error: unknown) => {
      this.host.note(`resync stopped: ${error instanceof Error ? error.message : String(error)}`);
    }).finally(() => {
      this.running = null;
    });
  }

  /** Resolves when the loop has stopped (it stops when canRun turns false or nothing is left). */
  async idle(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  /** `call`'s answer from `log`, or REPLACED when the log was replaced meanwhile (its answer, or failure, no longer counts). */
  private async ask<T>(log: ReturnType<ResyncHost['log']>, call: () => Promise<T>): Promise<T | typeof REPLACED> {
    try {
      const answer = await call();
      return this.host.log() === log ? answer : REPLACED;
    } catch (error) {
      if (this.host.log() !== log) return REPLACED;
      throw error;
    }
  }

  private async loop(): Promise<void> {
    while (this.host.canRun()) {
      // The log may be replaced under the loop (a leg added, the log failed): whatever the old
      // one said is dropped and the new one asked again.
      const log = this.host.log();
      const region = await this.ask(log, () => log.resyncWork());
      if (region === REPLACED) continue;
      if (region === null) {
        const inSync = await this.ask(log, () => log.syncCount());
        if (inSync === REPLACED) continue;
        // A clustered log answers "no work" while another member recovers a region: come back
        // until every region is in sync (a local log's answer is final: regions whose copy
        // failed wait for the next resume).
        if (this.host.clustered() && inSync < log.regionCount) {
          await new Promise((resolve) => setTimeout(resolve, CLUSTERED_POLL_MS));
          continue;
        }
        this.host.complete(inSync >= log.regionCount);
        return;
      }
      // No write to the region in flight and no other operation on it, both seen in one turn
      // (a write woken before us may have started meanwhile: look again after every wait).
      for (;;) {
        if (this.host.marks.writesIn(region) > 0) await this.host.marks.whenIdle(region);
        else if (this.host.regionOps.has(region)) await this.host.regionOps.get(region)!.done;
        else break;
      }
      // Held from here, in the same turn as the checks: a write to the region waits for us.
      const op = this.host.regionOps.begin(region, region + 1);
      let synced = false;
      try {
        // A copy that failed because a leg failed and left the mirror (handle_errors) is done
        // again with the legs left; one that fails on legs that stay is left out of sync.
        for (let attempt = 0; attempt < MAX_LEGS_FOR_RETRY && !synced; attempt++) {
          const before = this.planKey();
          synced = await this.copyRegion(region);
          if (synced || this.planKey() === before) break;
        }
      } finally {
        op.settle(synced);
      }
      if (this.host.log() !== log) continue; // copied for the old legs: the new log hands it out again
      try {
        await log.setRegionSync(region, synced);
      } catch (error) {
        if (this.host.log() !== log) continue;
        throw error;
      }
      if (synced) {
        this.host.regionSynced(region);
        this.host.marks.clearLater(region);
      }
      await nextMacrotask();
    }
  }

  private async copyRegion(region: number): Promise<boolean> {
    const plan = this.host.copyPlan();
    if (plan === null) return false;
    const offsetBytes = region * this.host.regionBytes;
    const lengthBytes = Math.min(this.host.regionBytes, this.host.sizeBytes - offsetBytes);
    let ok = true;
    await Promise.all(plan.targets.map(async (target) => {
      try {
        await this.copier(plan.source, target).copy(offsetBytes, lengthBytes);
        this.bytesCopied += lengthBytes;
      } catch (error) {
        ok = false;
        this.failures += 1;
        // Which side failed: read the source again; if it reads, the target's write failed.
        const reading = await plan.source.device.read(offsetBytes, new Uint8Array(plan.source.device.logicalBlockBytes)).then(() => false, () => true);
        await this.host.legFailed(reading ? plan.source : target, error, reading);
      }
    }));
    if (ok) this.regionsCopied += 1;
    return ok; // one leg left: in sync with itself
  }

  /** Which legs a copy goes from and to now (changes when a leg leaves or joins). */
  private planKey(): string {
    const plan = this.host.copyPlan();
    return plan === null ? '' : [plan.source, ...plan.targets].map((leg) => leg.device.name).join('\u0000');
  }

  private copier(source: ResyncLeg, target: ResyncLeg): RangeCopier {
    const key = `${source.device.name}\u0000${target.device.name}`;
    let copier = this.copiers.get(key);
    if (copier === undefined) this.copiers.set(key, (copier = new RangeCopier(source.device, target.device)));
    return copier;
  }
}
