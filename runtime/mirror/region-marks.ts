/**
 * Which regions the mirror's writes have marked dirty in the log (dm-region-hash's role for
 * writes). A region is marked in the log before the first write to it is issued and cleared once
 * no write to it is in flight and the legs hold its writes durably:
 *
 *   clean ──write──► marked (mark queued, FLUSH answered before the write goes out)
 *   marked ──last write done──► idle ──(idle long enough) legs flushed, CLEAR queued, FLUSH──► clean
 *   idle ──write──► marked (no new mark: the log still has it dirty)
 *
 * Durable when: a write's data is issued only after the FLUSH that carries its region's mark is
 * answered (a disk log has it on disk then); a clear is sent only after every leg was flushed
 * following the region's last write, so a clean region never hides legs that differ. Commits
 * are shared: marks queued while a FLUSH is out go in the next one, which all their writers wait
 * for (one FLUSH serves many writes).
 *
 * A region out of sync (dirty at the last crash, or a leg added) may be written before the resync
 * reaches it, and go idle: its clear is sent like any other, and the log does not apply it (a
 * disk log's clean bit becomes its sync bit at the next resume, so it clears only regions in
 * sync: LogBits.cleanOnlyInSync; a clustered log likewise). It stays dirty on disk until the
 * resync has set it in sync; its clear after that (clearLater) is the one that lands.
 *
 * The log is whatever `host.log()` is now: when a commit fails, the host may replace the log
 * (a core log after the disk log failed); `begin` then marks its regions in the new one.
 */
import type { UlogClient } from '../ulog/ulog-client.ts';

export interface RegionMarksHost {
  log(): UlogClient;
  flushLegs(): Promise<void>;
  /** A request to `log` failed: true when the log in place now takes the marks (the host replaced it), false to give up. */
  logFailed(error: unknown, log: UlogClient): Promise<boolean>;
}

export class RegionMarks {
  private readonly pending = new Map<number, number>();
  private readonly marked = new Set<number>();
  /** Idle regions and since when (ms): cleared once idle long enough (md's daemon_sleep), so a region written again soon is not marked again. */
  private readonly idle = new Map<number, number>();
  /** Writes begun per region, ever: a region idle before a leg flush and idle after it was written meanwhile if this moved. */
  private readonly begun = new Map<number, number>();
  /** Out of sync (a leg missed a write): kept dirty in the log until resynced. */
  private readonly unsynced = new Set<number>();
  private readonly idleWaiters = new Map<number, Array<() => void>>();
  /** Commits are numbered: a mark queued now goes out with commit `queuedGen`; every commit up to `doneGen` is answered. */
  private queuedGen = 1;
  private doneGen = 0;
  /** Regions whose mark is not known durable yet, with the commit that carries it. */
  private readonly markGen = new Map<number, number>();
  private running: { gen: number; done: Promise<void> } | null = null;
  private next: Promise<void> | null = null;
  commits = 0;

  constructor(private readonly host: RegionMarksHost) {}

  /** Regions marked in the log (dirty there). */
  get markedCount(): number {
    return this.marked.size;
  }

  /** Regions whose writes are done and that wait for their clear. */
  get idleCount(): number {
    return this.idle.size;
  }

  writesIn(region: number): number {
    return this.pending.get(region) ?? 0;
  }

  /**
   * Counts a write to `regions` (at once, in the calling turn) and resolves when their marks are
   * durable in the log. Pair with `end`. `ahead`: regions to mark too, not written (yet).
   */
  begin(regions: readonly number[], ahead: readonly number[] = []): Promise<void> {
    // Regions a sequential writer will reach next, marked in the same commit (idle from the
    // start: cleared like any idle region if no write comes).
    for (const region of ahead) {
      if (this.marked.has(region) || this.pending.has(region)) continue;
      this.idle.set(region, Date.now());
      this.markInLog(region);
    }
    for (const region of regions) {
      this.pending.set(region, (this.pending.get(region) ?? 0) + 1);
      this.begun.set(region, (this.begun.get(region) ?? 0) + 1);
      this.idle.delete(region);
      if (!this.marked.has(region)) this.markInLog(region);
    }
    // A region whose mark (this write's or another's) is not answered yet waits for the commit
    // that carries it, and no longer.
    return this.pendingGen(regions) === 0 ? Promise.resolve() : this.durable(regions);
  }

  end(regions: readonly number[]): void {
    for (const region of regions) {
      const left = (this.pending.get(region) ?? 1) - 1;
      if (left > 0) {
        this.pending.set(region, left);
        continue;
      }
      this.pending.delete(region);
      // Idle even if the log has it out of sync (not known here): the log keeps that one dirty.
      if (!this.unsynced.has(region)) this.idle.set(region, Date.now());
      const waiters = this.idleWaiters.get(region);
      if (waiters !== undefined) {
        this.idleWaiters.delete(region);
        for (const wake of waiters) wake();
      }
    }
  }

  /** Resolves when no write to `region` is in flight. */
  whenIdle(region: number): Promise<void> {
    if (this.writesIn(region) === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const waiters = this.idleWaiters.get(region) ?? [];
      waiters.push(resolve);
      this.idleWaiters.set(region, waiters);
    });
  }

  /** A region that needs its clear without a write (resynced: in sync now, and clean once cleared). */
  clearLater(region: number): void {
    this.unsynced.delete(region);
    if (this.writesIn(region) === 0) this.idle.set(region, Date.now());
  }

  /** `region` is out of sync (a leg missed a write to it): it stays dirty in the log until it is resynced. */
  keepDirty(region: number): void {
    this.unsynced.add(region);
    this.idle.delete(region);
  }

  /**
   * Clears the regions idle for at least `idleForMs`: flushes every leg (their writes durable),
   * then queues the clears of the regions idle before that flush began and commits. Regions
   * written again meanwhile stay marked. Every call flushes the legs itself: a flush that began
   * before a write completed does not cover it (sharing one with a caller that came later would
   * lose that caller's writes).
   */
  async clearIdle(idleForMs = 0): Promise<void> {
    const before = Date.now() - idleForMs;
    const regions = [...this.idle].filter(([, since]) => since <= before).map(([region]) => [region, this.begun.get(region) ?? 0] as const);
    if (regions.length === 0 && idleForMs > 0) return;
    await this.host.flushLegs();
    if (regions.length === 0) return;
    const log = this.host.log();
    let queued = 0;
    for (const [region, begun] of regions) {
      // Written again since the snapshot (even if idle again: that write may not be covered by
      // the flush), or cleared by another call: stays.
      if (!this.idle.has(region) || (this.begun.get(region) ?? 0) !== begun) continue;
      this.idle.delete(region);
      this.marked.delete(region);
      this.begun.delete(region);
      this.markGen.delete(region);
      log.clear(region);
      queued += 1;
    }
    if (queued > 0) await this.durable();
  }

  /** The log was replaced: every region still marked is marked in the new one. */
  remarkAll(): void {
    for (const region of this.idle.keys()) this.marked.add(region);
    for (const region of [...this.marked]) this.markInLog(region);
  }

  private markInLog(region: number): void {
    this.marked.add(region);
    this.host.log().mark(region);
    this.markGen.set(region, this.queuedGen);
  }

  /** The highest commit `regions` still wait for (0: none). */
  private pendingGen(regions: readonly number[]): number {
    let need = 0;
    for (const region of regions) {
      const gen = this.markGen.get(region);
      if (gen === undefined) continue;
      if (gen <= this.doneGen) this.markGen.delete(region);
      else if (gen > need) need = gen;
    }
    return need;
  }

  /**
   * Resolves once the marks of `regions` (or, with none given, everything queued now) are
   * answered; a failed commit goes to the host, and after a log replacement the regions' marks
   * are waited for in the new log.
   */
  private async durable(regions?: readonly number[]): Promise<void> {
    let fixed = regions === undefined ? this.queuedGen : 0;
    for (;;) {
      const need = regions === undefined ? fixed : this.pendingGen(regions);
      if (need === 0 || need <= this.doneGen) return;
      const log = this.host.log();
      try {
        await this.commitFor(need);
      } catch (error) {
        if (!(await this.host.logFailed(error, log))) throw error;
        // a new log is in place with every marked region marked there: wait for that
        if (regions === undefined) fixed = this.queuedGen;
      }
    }
  }

  /** Resolves when a commit numbered `gen` or later is answered (starting one if need be). */
  private commitFor(gen: number): Promise<void> {
    if (this.running !== null && this.running.gen >= gen) return this.running.done;
    if (this.running === null) return this.start();
    // The running commit left before this mark was queued: the next one carries it.
    this.next ??= this.running.done.catch(() => {}).then(() => {
      this.next = null;
      return this.commitFor(gen);
    });
    return this.next;
  }

  private start(): Promise<void> {
    const gen = this.queuedGen++;
    const done = this.host.log().flush().then(() => {
      if (gen > this.doneGen) this.doneGen = gen;
    }).finally(() => {
      if (this.running?.gen === gen) this.running = null;
    });
    this.running = { gen, done };
    this.commits += 1;
    return done;
  }
}
