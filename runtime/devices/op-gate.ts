/**
 * Open/closed state and in-flight accounting shared by the devices. Every operation runs inside
 * `gate.track(...)` after validation; `close()` flips the gate at once (later calls see EBADF via
 * `isOpen`), waits until the in-flight count drains to zero, then releases resources exactly once.
 * Devices whose operation completes synchronously inside the call (FileDevice's sync path) need
 * not track it: close() cannot run in the middle of it.
 * A second close() returns the same promise, so close is idempotent and every caller waits for
 * the same release.
 * A gate also serves as a plain in-flight counter that is never closed: `idle()` resolves whenever
 * the count drains to zero (a clone counts its user I/O this way, to pause background copies).
 */
import { assert } from '../assert.ts';

export class OpGate {
  private inFlightCount = 0;
  private drained: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];

  get isOpen(): boolean {
    return this.closing === undefined;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Runs `operation` counted as in flight. The caller has already checked `isOpen`. */
  async track<T>(operation: () => T | Promise<T>): Promise<T> {
    this.inFlightCount++;
    try {
      return await operation();
    } finally {
      this.leave();
    }
  }

  /**
   * Counts one operation in flight until the returned function is called (once; later calls do
   * nothing): for work that outlives the call that started it, like a FileSpan being sent.
   */
  hold(): () => void {
    this.inFlightCount++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.leave();
    };
  }

  /** Resolves when no operation is in flight (at once if none is); the gate stays as it is. */
  idle(): Promise<void> {
    if (this.inFlightCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private leave(): void {
    this.inFlightCount--;
    assert(this.inFlightCount >= 0, 'op-gate: in-flight count went negative');
    if (this.inFlightCount !== 0) return;
    if (this.drained !== undefined) this.drained();
    if (this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** Closes the gate, waits for in-flight operations, then runs `release` once. */
  close(release: () => void | Promise<void>): Promise<void> {
    this.closing ??= (async () => {
      if (this.inFlightCount > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      // One macrotask, so every caller's reaction to an operation that just settled runs before
      // close() resolves: "close waits for in-flight operations" then holds as callers see it.
      await new Promise((resolve) => setTimeout(resolve, 0));
      await release();
    })();
    return this.closing;
  }
}
