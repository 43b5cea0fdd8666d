/**
 * A clone's hydration: copying regions from the source to the destination and marking them in
 * the metadata, in the background (a RegionWalker over the metadata bitmap) and on demand (a
 * partial write to an unhydrated region, cache()). CloneDevice routes the user's I/O; this file
 * does the copying and owns what copying needs: RegionOps (at most one operation per region), the
 * walker, the rate meter, the range copier and the settings (enabled, threshold, batch size).
 *
 * A copy of regions [start, end): the range from the source to the destination (RangeCopier: in
 * the kernel with copy_file_range when both are files on one filesystem, else through pooled
 * buffers), then, only if the clone is still rw, mark the regions hydrated in core (durable at the
 * next commit, which flushes the destination first). A copy that ends after the switch to
 * ro is dropped: its regions stay unhydrated, and it is no copy failure (the walker counts only
 * failures towards stopping). The first copy that completes the last region announces completion.
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { RangeCopier } from '../regions/range-copy.ts';
import { RateMeter } from '../regions/rate-meter.ts';
import { RegionOps, type RegionOp } from '../regions/region-ops.ts';
import { RegionPace } from '../regions/region-pace.ts';
import { RegionWalker, type CopyResult, type WalkTurns } from '../regions/region-walker.ts';
import type { CloneMetadata } from './metadata.ts';
import type { CloneModes } from './mode.ts';
import { DEFAULT_HYDRATION_BATCH_SIZE, DEFAULT_HYDRATION_THRESHOLD } from './table.ts';

export const DEFAULT_MAX_CONSECUTIVE_COPY_FAILURES = 8;

export interface HydrationHost {
  readonly metadata: CloneMetadata;
  readonly source: BlockDevice;
  readonly destination: BlockDevice;
  readonly modes: CloneModes;
  readonly sizeBytes: number;
  readonly regionBytes: number;
  /** Open and not suspended: background copies may run. */
  active(): boolean;
  userBusy(): boolean;
  userIdle(): Promise<void>;
  /** Every region is hydrated (called once). */
  complete(): void;
  /** Background hydration stopped after too many failures in a row. */
  stopped(error: unknown): void;
  /** A copy hydrated this many bytes (the clone may commit early, see commits.ts). */
  hydrated(bytes: number): void;
}

export interface HydrationSettings {
  enabled: boolean;
  /** Both undefined: chosen as hydration goes (RegionPace). One undefined: the kernel's default. */
  threshold: number | undefined;
  batchSize: number | undefined;
  maxConsecutiveFailures: number;
  /** How background hydration yields the event loop (region-walker.ts); default 'slice'. */
  turns?: WalkTurns;
}

/** A region a user write or discard replaces whole, held until that I/O is done. */
export interface ClaimedRegion {
  region: number;
  op: RegionOp;
}

export class CloneHydration {
  readonly regionOps = new RegionOps();
  private readonly rate = new RateMeter();
  private readonly copier: RangeCopier;
  private readonly walker: RegionWalker;
  enabled: boolean;
  private fixedThreshold: number;
  private fixedBatchSize: number;
  /** Chooses threshold and batch size while the clone has none of its own; null once it has. */
  private pace: RegionPace | null;
  /** The error of the last copy that failed (background or on demand), for error messages. */
  private lastCopyError: unknown = null;
  private completeAnnounced = false;

  constructor(private readonly host: HydrationHost, settings: HydrationSettings) {
    this.enabled = settings.enabled;
    this.pace = settings.threshold === undefined && settings.batchSize === undefined ? new RegionPace(host.regionBytes) : null;
    this.fixedThreshold = settings.threshold ?? DEFAULT_HYDRATION_THRESHOLD;
    this.fixedBatchSize = settings.batchSize ?? DEFAULT_HYDRATION_BATCH_SIZE;
    const metadata = host.metadata;
    this.copier = new RangeCopier(host.source, host.destination);
    this.walker = new RegionWalker(
      {
        regionCount: metadata.regionCount,
        regionOps: this.regionOps,
        bitmap: () => metadata.bitmap,
        canRun: () => this.enabled && this.threshold > 0 && host.modes.isRw && host.active(),
        threshold: () => this.threshold,
        batchSize: () => this.batchSize,
        holdBackMs: () => this.pace?.holdBackMs() ?? 0,
        userIdle: () => host.userIdle(),
        userBusy: () => host.userBusy(),
        copy: (start, end) => this.backgroundCopy(start, end),
        complete: () => this.afterMark(),
        stopped: (error) => host.stopped(error),
      },
      settings.maxConsecutiveFailures,
      false,
      settings.turns,
    );
  }

  /** Regions copied at once at most (in force now). */
  get threshold(): number {
    return this.pace === null ? this.fixedThreshold : this.pace.threshold;
  }

  /** Regions one copy moves at most (in force now). */
  get batchSize(): number {
    return this.pace === null ? this.fixedBatchSize : this.pace.batchSize;
  }

  /** Threshold and batch size are chosen as hydration goes. */
  get adaptive(): boolean {
    return this.pace !== null;
  }

  /** A message set the threshold: from now on both are fixed (the batch size as in force now). */
  setThreshold(regions: number): void {
    this.fix();
    this.fixedThreshold = regions;
    this.kick();
  }

  /** A message set the batch size: from now on both are fixed (the threshold as in force now). */
  setBatchSize(regions: number): void {
    this.fix();
    this.fixedBatchSize = regions;
  }

  /** A user request arrived (the pace gives way to it). */
  userArrived(): void {
    this.pace?.userArrived();
  }

  /** Why background hydration stopped by itself, or null while it has not. */
  get stopError(): string | null {
    if (!this.walker.failed) return null;
    const error = this.walker.lastError;
    return String((error as Error)?.message ?? error);
  }

  get bytesPerSecond(): number {
    return this.rate.bytesPerSecond();
  }

  /** Starts background hydration if it may run. */
  kick(): void {
    this.walker.kick();
  }

  /** Clears a stop after failures and restarts. */
  restart(): void {
    this.walker.resume();
  }

  /** A user read found these regions unhydrated: hydrate them soon. */
  prioritize(start: number, end: number): void {
    for (let region = start; region < end; region++) this.walker.prioritize(region);
  }

  /** Resolves when background hydration and its copies have stopped. */
  idle(): Promise<void> {
    return this.walker.idle();
  }

  /** Waits until `region` is hydrated, starting its copy now if nobody is copying it. */
  async ensureHydrated(region: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    const { metadata, modes } = this.host;
    while (!metadata.isHydrated(region)) {
      if (!modes.isRw) throw modes.ioError(`region ${region} is not hydrated in ${modes.mode} mode`, offsetBytes, lengthBytes);
      const op = this.regionOps.get(region);
      const ok = op ? await op.done : (await this.copy(region, region + 1)) === 'done';
      if (!ok && !metadata.isHydrated(region)) {
        throw modes.ioError(`hydration of region ${region} failed: ${(this.lastCopyError as Error)?.message ?? 'copy error'}`, offsetBytes, lengthBytes);
      }
    }
  }

  /** Waits for operations on `regions` to settle, then claims those still unhydrated. */
  async claim(regions: number[]): Promise<ClaimedRegion[]> {
    for (;;) {
      const busy = regions.filter((r) => this.regionOps.has(r));
      if (busy.length === 0) break;
      await Promise.all(busy.map((r) => this.regionOps.get(r)!.done));
    }
    const metadata = this.host.metadata;
    return regions.filter((r) => !metadata.isHydrated(r)).map((region) => ({ region, op: this.regionOps.begin(region, region + 1) }));
  }

  /** The claimed regions were written whole: mark them hydrated. */
  markClaimed(claimed: ClaimedRegion[]): void {
    for (const { region, op } of claimed) {
      this.host.metadata.markHydrated(region, region + 1);
      op.settle(true);
    }
    if (claimed.length) this.afterMark();
  }

  /**
   * A discard covers regions [start, end) whole: waits until no operation (copy, whole-region
   * write) holds any of them, then marks them hydrated in core, without a copy, in the same turn
   * as the last look. Returns how many regions it marked (none if the clone left rw meanwhile).
   * Why in the same turn: a write to a hydrated region goes straight to the destination, past
   * RegionOps. Had a copy begun on one of these regions between the look and the mark (a partial
   * write or cache() finds it unhydrated and idle), the mark would let a later write in under
   * that copy, whose source bytes could then reach the destination after the write's; the next
   * commit flushes the destination and makes the bit durable over those source bytes, and the
   * user's write is gone although a flush acknowledged it. What a discarded region holds needs no
   * flush before its bit is: a discard leaves its contents unspecified.
   */
  async markDiscarded(start: number, end: number): Promise<number> {
    const { metadata, modes } = this.host;
    for (let busy = this.regionOps.firstBusy(start, end); busy >= 0; busy = this.regionOps.firstBusy(start, end)) {
      await this.regionOps.get(busy)!.done;
    }
    // No await since firstBusy found none: nothing can have begun on these regions.
    if (!modes.isRw) return 0;
    const marked = metadata.markHydrated(start, end);
    if (marked > 0) this.afterMark();
    return marked;
  }

  /** Regions were marked hydrated: announce completion once the last one is. */
  afterMark(): void {
    const metadata = this.host.metadata;
    if (this.completeAnnounced || metadata.hydratedCount !== metadata.regionCount) return;
    this.completeAnnounced = true;
    this.copier.drop(); // no more copies: let the memory go
    this.host.complete();
  }

  private fix(): void {
    if (this.pace === null) return;
    this.fixedThreshold = this.pace.threshold;
    this.fixedBatchSize = this.pace.batchSize;
    this.pace = null;
  }

  /** A copy the walker started: it also paces the walk. */
  private async backgroundCopy(start: number, end: number): Promise<CopyResult> {
    const pace = this.pace;
    if (pace === null) return this.copy(start, end);
    const token = pace.copyStarted();
    const result = await this.copy(start, end);
    pace.copyEnded(token);
    return result;
  }

  /** Copies regions [start, end) from the source to the destination and marks them. */
  private async copy(start: number, end: number): Promise<CopyResult> {
    const { metadata, modes, regionBytes, sizeBytes } = this.host;
    const op = this.regionOps.begin(start, end);
    const startBytes = start * regionBytes;
    const endBytes = Math.min(sizeBytes, end * regionBytes);
    try {
      await this.copier.copy(startBytes, endBytes - startBytes);
      if (!modes.isRw) {
        // The clone went ro while this copy ran: its bits may no longer be set, so the copy is
        // dropped (the region stays unhydrated), which is no failure of the copy.
        op.settle(false);
        return 'dropped';
      }
      metadata.markHydrated(start, end);
      this.rate.add(endBytes - startBytes);
      op.settle(true);
      this.afterMark();
      this.host.hydrated(endBytes - startBytes);
      return 'done';
    } catch (error) {
      this.lastCopyError = error;
      op.settle(false);
      return { error };
    }
  }
}
