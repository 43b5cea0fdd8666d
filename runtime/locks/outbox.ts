/**
 * The order in which a lock manager tells its members things (grants, cancels, blocking and
 * recovery callbacks): one queue, delivered one thunk per microtask turn, so that the code
 * awaiting a grant runs before the next callback and no callback ever runs inside a call into the
 * manager. `hold` parks later thunks until `release`, which first delivers the thunks it is given:
 * the etcd manager holds grants made by a recovery purge until the member's recoverSlot and
 * recoverDone are out, as the DLM grants nothing during recovery.
 */
export class Outbox {
  private readonly pending: (() => void)[] = [];
  private held: (() => void)[] | null = null;
  private draining = false;

  /** Queues `thunk` behind every earlier one. */
  post(thunk: () => void): void {
    if (this.held !== null) {
      this.held.push(thunk);
      return;
    }
    this.pending.push(thunk);
    if (!this.draining) {
      this.draining = true;
      void this.drain();
    }
  }

  hold(): void {
    this.held ??= [];
  }

  /** Ends a hold: `first` goes out, then what was posted during it. */
  release(first: (() => void)[] = []): void {
    const held = this.held ?? [];
    this.held = null;
    for (const thunk of [...first, ...held]) this.post(thunk);
  }

  /** True while nothing waits to be delivered. */
  get idle(): boolean {
    return !this.draining && this.pending.length === 0 && (this.held === null || this.held.length === 0);
  }

  private async drain(): Promise<void> {
    await null;
    try {
      for (let thunk = this.pending.shift(); thunk !== undefined; thunk = this.pending.shift()) {
        try {
          thunk();
        } catch (error) {
          // A callback that throws is a bug in its owner: surface it without stopping delivery.
          queueMicrotask(() => {
            throw error;
          });
        }
        await null;
      }
    } finally {
      this.draining = false;
    }
  }
}
