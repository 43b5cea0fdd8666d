/**
 * The state every dirty log keeps in memory (dm-log.c's log_c): per region a clean bit (1: no
 * write may be in flight there, the legs agree unless it is out of sync) and a sync bit (1: the
 * legs hold the same bytes), the regions being recovered now, the count of in-sync regions and
 * where the resync search goes on from. Clean and sync bits are RegionBitmaps (WASM scans: the
 * next region to resync is a nextZero, not a loop over bits).
 *
 *   mark(r)            clean[r] = 0           (before a write to r; durable at the next flush)
 *   clear(r)           clean[r] = 1           (after the writes to r completed and were flushed)
 *   resyncWork()       a region still recovering (asked again), else the first region from the
 *                      search point not in sync and not recovering, now recovering; null when none is left (the search point only moves on,
 *                      and resume restarts it)
 *   setSync(r, ok)     r no longer recovering; in sync or not (a region in sync going out of
 *                      sync behind the search point: the search goes back to it)
 *
 * `touchedDirtied` / `touchedCleaned` say whether a flush has anything to write (a disk log).
 *
 * `cleanOnlyInSync` (a disk log, whose clean bits become the sync bits at its next resume): a
 * region out of sync is never clean (dm-region-hash keeps NOSYNC regions off its clean list; here
 * the log keeps the rule itself, whatever a client sends). clear(r) of a region out of sync does
 * nothing, and setSync(r, false) marks r, so that after a crash the region resyncs. Durable at
 * the next flush, as any mark. A core log's bits are gone at a crash: its clear stays dm-log.c's.
 */
import { RegionBitmap } from '../bitmap.ts';
import { BlockError } from '../errors.ts';

export class LogBits {
  touchedDirtied = false;
  touchedCleaned = false;
  /** A clean bit is read back as the sync bit (a disk log): only a region in sync may be cleared. */
  cleanOnlyInSync = false;
  private readonly recovering = new Set<number>();
  private searchFrom = 0;

  private constructor(
    readonly regionCount: number,
    readonly clean: RegionBitmap,
    readonly sync: RegionBitmap,
  ) {}

  /** Every region clean; in sync when `inSync` (nosync), else every region to resync. */
  static async create(regionCount: number, inSync: boolean): Promise<LogBits> {
    const clean = await RegionBitmap.create(regionCount);
    const sync = await RegionBitmap.create(regionCount);
    clean.setRange(0, regionCount);
    if (inSync) sync.setRange(0, regionCount);
    return new LogBits(regionCount, clean, sync);
  }

  get syncCount(): number {
    return this.sync.setCount;
  }

  get recoveringCount(): number {
    return this.recovering.size;
  }

  isClean(region: number): boolean {
    return this.clean.get(this.check(region));
  }

  inSync(region: number): boolean {
    return this.sync.get(this.check(region));
  }

  isRecovering(region: number): boolean {
    return this.recovering.has(this.check(region));
  }

  mark(region: number): void {
    this.clean.clear(this.check(region));
    this.touchedDirtied = true;
  }

  clear(region: number): void {
    // Out of sync: stays dirty until the resync sets it in sync (and its clear comes after that).
    if (this.cleanOnlyInSync && !this.sync.get(this.check(region))) return;
    this.clean.set(this.check(region));
    this.touchedCleaned = true;
  }

  /**
   * The next region to resync (now recovering), or null. A region handed out and not yet settled
   * by setSync is handed out again first: a client asks for new work only after settling the last
   * (one recovery at a time, as dm-raid1 runs them), so a second ask is its resend of the first
   * (no reply in 15 s), and answering it with another region would leave the first recovering
   * until the next resume.
   */
  resyncWork(): number | null {
    for (const region of this.recovering) return region;
    while (this.searchFrom < this.regionCount) {
      const region = this.sync.nextZero(this.searchFrom);
      if (region < 0) {
        this.searchFrom = this.regionCount;
        return null;
      }
      this.searchFrom = region + 1;
      if (this.recovering.has(region)) continue;
      this.recovering.add(region);
      return region;
    }
    return null;
  }

  /** Takes `region` for resync now (a region someone waits to write: cmirrord's recovery requests). */
  takeForResync(region: number): boolean {
    if (this.inSync(region) || this.recovering.has(region)) return false;
    this.recovering.add(region);
    return true;
  }

  setSync(region: number, inSync: boolean): void {
    this.recovering.delete(this.check(region));
    if (inSync) this.sync.set(region);
    else {
      if (this.cleanOnlyInSync && this.clean.get(region)) this.mark(region);
      // A region in sync going out of sync behind the search point (a leg's write failed there):
      // the search comes back for it now, not at the next resume as dm-log.c's would. One that
      // was out of sync already (its resync failed) waits for the next resume: handing it out
      // again at once would retry a failing copy forever.
      if (this.sync.clear(region) && region < this.searchFrom) this.searchFrom = region;
    }
  }

  /** The resync search starts over (a resume; regions put out of sync behind the search point). */
  restartSearch(): void {
    this.searchFrom = 0;
  }

  release(): void {
    this.clean.release();
    this.sync.release();
  }

  private check(region: number): number {
    if (Number.isSafeInteger(region) && region >= 0 && region < this.regionCount) return region;
    throw new BlockError('ERANGE', `region ${region} is outside the log's ${this.regionCount} regions`);
  }
}
