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
  private running: Promise<void> | null = null;
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
   * durable in the log. Pair with `end`.
   */
  begin(regions: readonly number[]): Promise<void> {
    let fresh = false;
    for (const region of regions) {
      this.pending.set(region, (this.pending.get(region) ?? 0) + 1);
      this.begun.set(region, (this.begun.get(region) ?? 0) + 1);
      this.idle.delete(region);
      if (!this.marked.has(region)) {
        this.marked.add(region);
        this.host.log().mark(region);
        fresh = true;
      }
    }
    // A region marked by another write whose commit is still out is waited for too: the next
    // commit covers it (marks already sent are in the FLUSH that runs, or in the next).
    return fresh || this.running !== null ? this.durable() : Promise.resolve();
  }

  end(regions: readonly number[]): void {
    for (const region of regions) {
      const left = (this.pending.get(region) ?? 1) - 1;
      if (left > 0) {
        this.pending.set(region, left);
        continue;
      }
      this.pending.delete(region);
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
      log.clear(region);
      queued += 1;
    }
    if (queued > 0) await this.durable();
  }

  /** The log was replaced: every region still marked is marked in the new one. */
  remarkAll(): void {
    for (const region of this.idle.keys()) this.marked.add(region);
    const log = this.host.log();
    for (const region of this.marked) log.mark(region);
  }

  /** Resolves once a FLUSH started after this call is answered; a failed one goes to the host. */
  private async durable(): Promise<void> {
    for (;;) {
      const log = this.host.log();
      try {
        await this.commit();
        return;
      } catch (error) {
        if (!(await this.host.logFailed(error, log))) throw error;
        // a new log is in place with every marked region marked there: commit that
      }
    }
  }

  private commit(): Promise<void> {
    if (this.next !== null) return this.next;
    if (this.running === null) {
      const run = this.host.log().flush().finally(() => {
        if (this.running === run) this.running = null;
      });
      this.running = run;
      this.commits += 1;
      return run;
    }
    const after = this.running.catch(() => {}).then(() => {
      this.next = null;
      return this.commit();
    });
    this.next = after;
    return after;
  }
}
