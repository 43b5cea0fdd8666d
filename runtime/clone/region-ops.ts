/**
 * The regions of a clone that are being hydrated or overwritten right now. At most one operation
 * per region at a time: a copy from the source (background, on demand for a write, or for a
 * discard-less CACHE) or a whole-region overwrite by the user. Anyone who needs the region waits
 * for its operation, which settles true (the region is hydrated) or false (it failed and the region
 * stays unhydrated).
 */
import { assert } from '../assert.ts';

export interface RegionOp {
  readonly done: Promise<boolean>;
  settle(hydrated: boolean): void;
}

export class RegionOps {
  private readonly ops = new Map<number, RegionOp>();
  private wakeups: Array<() => void> = [];

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
    let settle!: (hydrated: boolean) => void;
    const done = new Promise<boolean>((resolve) => (settle = resolve));
    const op: RegionOp = {
      done,
      settle: (hydrated) => {
        for (let region = start; region < end; region++) {
          assert(this.ops.get(region) === op, `region ${region} op settled twice`);
          this.ops.delete(region);
        }
        settle(hydrated);
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
