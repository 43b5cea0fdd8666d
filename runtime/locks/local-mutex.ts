/**
 * A mutex between async tasks of one process (md-cluster's recv_mutex and send bit): `acquire`
 * resolves in FIFO order with a release function that must be called exactly once.
 */
import { assert } from '../assert.ts';

export class LocalMutex {
  private held = false;
  private readonly waiters: (() => void)[] = [];

  get locked(): boolean {
    return this.held;
  }

  async acquire(): Promise<() => void> {
    if (this.held) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.held = true;
    let released = false;
    return () => {
      assert(!released, 'a mutex is released once per acquire');
      released = true;
      const next = this.waiters.shift();
      if (next) next(); // ownership passes straight to the next waiter
      else this.held = false;
    };
  }

  /** Runs `body` holding the mutex. */
  async run<T>(body: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await body();
    } finally {
      release();
    }
  }
}
