/**
 * An array without a bitmap records writes as md does: the array is marked dirty in every leg's
 * superblock (resync_offset 0 on disk) before the first write after it was clean, and marked clean
 * again (resync_offset back to where the array is in sync) once no write has run for
 * `daemonSleepMs` (md's safemode delay) and every leg was flushed. A crash while dirty leaves
 * resync_offset 0: the next assembly resyncs the whole array.
 *
 * Durable: a write's data goes only after the dirty mark is on every leg (flushed); the clean mark
 * only after a flush of every leg that followed the last write's end. Transitions run one at a time;
 * a write arriving while the array is being marked clean waits and marks it dirty again.
 */
import { LocalMutex } from '../locks/local-mutex.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import type { IntentLog } from './intent-log.ts';

export interface DirtyFlagOptions {
  chunkCount: number;
  capacityChunks: number;
  /** Writes every leg's superblock marked dirty or clean (flushed); the array's metadata write. */
  setDirty(dirty: boolean): Promise<void>;
  legs(): BlockDevice[];
  legFailed(leg: BlockDevice, error: unknown): void;
  daemonSleepMs: number;
  nowMs?: () => number;
}

export class DirtyFlag implements IntentLog {
  readonly bits: Uint8Array;
  private count: number;
  private dirty = false;
  private cleaning = false;
  private writers = 0;
  private lastEndMs = 0;
  private readonly transitions = new LocalMutex();
  commits = 0;

  constructor(private readonly options: DirtyFlagOptions) {
    this.bits = new Uint8Array(Math.ceil(options.capacityChunks / 8));
    this.count = options.chunkCount;
  }

  get chunkCount(): number {
    return this.count;
  }

  get dirtyCount(): number {
    return this.dirty ? this.count : 0;
  }

  async startWrite(): Promise<void> {
    this.writers += 1;
    if (this.dirty && !this.cleaning) return;
    await this.transitions.run(async () => {
      if (this.dirty) return;
      await this.options.setDirty(true);
      this.dirty = true;
      this.commits += 1;
    });
  }

  endWrite(): void {
    this.writers -= 1;
    this.lastEndMs = this.now();
  }

  async markDirtyBits(): Promise<void> {
    // No other slot exists without a bitmap.
  }

  synced(): void {
    // The resync's own progress is resync_offset, written when it completes.
  }

  async sweep(idleForMs = this.options.daemonSleepMs): Promise<number> {
    if (!this.dirty || this.writers > 0 || this.now() - this.lastEndMs < idleForMs) return 0;
    this.cleaning = true; // in the same turn as the check: a write from now on waits for the transition
    try {
      return await this.transitions.run(async () => {
        if (!this.dirty || this.writers > 0) return 0;
        await Promise.all(this.options.legs().map((leg) => leg.flush().catch((error: unknown) => this.options.legFailed(leg, error))));
        if (this.writers > 0) return 0;
        await this.options.setDirty(false);
        this.dirty = false;
        this.commits += 1;
        return 1;
      });
    } finally {
      this.cleaning = false;
    }
  }

  async writeAll(): Promise<void> {
    await this.settle();
  }

  async settle(): Promise<void> {
    await this.transitions.run(async () => {});
  }

  resize(chunkCount: number): void {
    this.count = chunkCount;
  }

  private now(): number {
    return this.options.nowMs?.() ?? Date.now();
  }
}
