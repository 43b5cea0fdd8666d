/**
 * TimeSlice: how background work shares the event loop with the user's I/O. Work that completes
 * at once (a page-cache copy, a read of a memory device, a synchronous file call on Deno) chains
 * in microtasks and would hold the loop for as long as it runs; such work calls `yieldIfSpent()`
 * between steps, which yields a macrotask (so timers, sockets and user requests get their turn)
 * once SLICE_MS has passed since the last yield (the region walker does, between picks). The
 * copier (range-copy.ts) yields between its pieces instead, whatever the time, so that its I/O
 * order does not depend on timing. Either way about 0.1 ms is the longest the loop waits for
 * background work (the rule: no copy holds it above ~100 us).
 */
/** setImmediate where the host has it (Node, Bun, Deno), else a zero timer (an edge host). */
const yieldMacrotask: (run: () => void) => unknown =
  typeof globalThis.setImmediate === 'function' ? (run) => globalThis.setImmediate(run) : (run) => setTimeout(run, 0);

export const SLICE_MS = 0.1;

/** Resolves in a later macrotask (timers, sockets and user requests run first). */
export function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => yieldMacrotask(resolve));
}

export class TimeSlice {
  private startMs = performance.now();

  /** Yields a macrotask when this slice has run SLICE_MS; else resolves at once (no promise made). */
  yieldIfSpent(): Promise<void> | undefined {
    if (performance.now() - this.startMs < SLICE_MS) return undefined;
    return nextMacrotask().then(() => this.restart());
  }

  /** A new slice starts now (after a wait that let the loop run anyway). */
  restart(): void {
    this.startMs = performance.now();
  }
}
