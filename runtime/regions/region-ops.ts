/**
 * RegionOps: per-region operation exclusion, shared by the engines that move regions behind the
 * user's I/O (a clone hydrating from its source, a mirror or md-style resync copying between
 * legs). At most one operation per region at a time: a background copy by the region walker, an
 * on-demand copy for a user request, or a user write that replaces the region whole. Anyone who
 * needs a busy region waits for its operation, which settles true (the region is done: copied,
 * in sync) or false (it failed or was dropped, and the region stays to do).
 *
 * State: a map from region index to the operation holding it; an operation covers a run
 * [start, end) and holds every region of it from `begin` until `settle`. Nothing here is durable:
 * what "done" means on disk is the engine's (its bitmap and commit).
 */
import { assert } from '../assert.ts';

export interface RegionOp {
  /** Resolves true when the region ended done, false when it stays to do. */
  readonly done: Promise<boolean>;
  settle(done: boolean): void;
}

export class RegionOps {
  private readonly ops = new Map<number, RegionOp>();
  private wakeups: Array<() => void> = [];

  /** Regions held by an operation right now. */
  get size(): number {
    return this.ops.size;
  }

  get(region: number): RegionOp | undefined {
    return this.ops.get(region);
  }

  has(region: number): boolean {
    return this.ops.has(region);
  }

  /** First region in [start, end) with an operation, or -1. */
  firstBusy(start: number, end: number): number {
    if (this.ops.size === 0) return -1;
    if (end - start > this.ops.size) {
      let first = -1;
      for (const region of this.ops.keys()) if (region >= start && region < end && (first < 0 || region < first)) first = region;
      return first;
    }
    for (let region = start; region < end; region++) if (this.ops.has(region)) return region;
    return -1;
  }

  /** Registers one operation for regions [start, end), which must all be free. */
  begin(start: number, end: number): RegionOp {
    let settle!: (done: boolean) => void;
    const done = new Promise<boolean>((resolve) => (settle = resolve));
    const op: RegionOp = {
      done,
      settle: (ok) => {
        for (let region = start; region < end; region++) {
          assert(this.ops.get(region) === op, `region ${region} op settled twice`);
          this.ops.delete(region);
        }
        settle(ok);
        const wakeups = this.wakeups;
        this.wakeups = [];
        for (const wake of wakeups) wake();
      },
    };
    for (let region = start; region < end; region++) {
      assert(!this.ops.has(region), `region ${region} already has an operation`);
      this.ops.set(region, op);
    }
    return op;
  }

  /** Resolves when any operation settles. */
  anySettled(): Promise<void> {
    return new Promise((resolve) => this.wakeups.push(resolve));
  }
}
