/**
 * A host's one change at a time (the service's and the edge host's): every change to what the host
 * holds runs alone, in call order. A change that alters who holds a device gives that device a new
 * ETag (data-plane/write-generation.ts); the data plane takes its request holds in the same chain
 * without counting as a change (`serialized`), so no request slips between an engine's check of
 * the holds and its own hold. Once `stop()` is called only work marked evenWhenStopping runs;
 * anything else is refused with EAGAIN (the service is stopping).
 */
import type { WriteGenerations } from './data-plane/write-generation.ts';
import type { Hold } from './device-holders.ts';
import { ServiceError } from './errors.ts';

export class ChangeChain {
  private tail: Promise<unknown> = Promise.resolve();
  private stopped = false;

  /** `holds`: what engines and exports hold now (not the data plane's requests). */
  constructor(private readonly generations: WriteGenerations, private readonly holds: () => Hold[]) {}

  get stopping(): boolean {
    return this.stopped;
  }

  /** From now on only work marked evenWhenStopping runs. */
  stop(): void {
    this.stopped = true;
  }

  /** One change; a device whose holders it changed, done or failed, gets a new ETag. */
  exclusive<T>(work: () => Promise<T>, evenWhenStopping = false): Promise<T> {
    return this.serialized(async () => {
      const before = this.holds();
      try {
        return await work();
      } finally {
        this.generations.holdsChanged(before, this.holds());
      }
    }, evenWhenStopping);
  }

  /** Runs `work` in the chain without counting as a change (the data plane's holds). */
  serialized<T>(work: () => T | Promise<T>, evenWhenStopping = false): Promise<T> {
    const run = this.tail.then(() => {
      if (this.stopped && !evenWhenStopping) throw new ServiceError('EAGAIN', 'the service is stopping');
      return work();
    });
    this.tail = run.catch(() => {});
    return run;
  }
}
