/**
 * Resync of a clustered array: the chunks still to bring in sync (bits merged from a dead or
 * stopped node's slot, everything from resync_offset on a new array, our own bits after a crash)
 * copied from the source leg to the others by the shared region walker.
 *
 * State machine: idle -> pending (waiting for the cluster's resync lock: another node resyncs;
 * /proc/mdstat's PENDING) -> running (the walker copies; each copy first makes sure the window
 * it is in was announced to the other nodes with RESYNCING, which suspends their writes there
 * and sends their reads to the source leg) -> idle, after RESYNCING 0..0 (and, when everything
 * is done, the superblocks' resync_offset marked in sync). Stopping mid-way leaves the undone
 * chunks' bits set in our slot; leaving with them asks another node to take over. A rate limit
 * (md's sync_speed_max, per node) spaces the copies out; without one they run as fast as the walker
 * goes (it gives way to user I/O).
 */
import { RegionBitmap } from '../bitmap.ts';
import { RegionOps } from '../regions/region-ops.ts';
import { RegionWalker, type CopyResult } from '../regions/region-walker.ts';
import { LocalMutex } from '../locks/local-mutex.ts';
import { ByteRateLimit } from '../regions/rate-limit.ts';
import type { MdCluster } from './md-cluster.ts';
import { SECTOR_BYTES } from './md-superblock.ts';

export type ResyncState = 'idle' | 'pending' | 'running';

/** Chunks announced at a time (the window other nodes keep their writes out of). */
export const RESYNC_WINDOW_CHUNKS = 64;
const MAX_CONSECUTIVE_FAILURES = 3;

export interface ResyncHost {
  /** Chunks the array may have (an online resize moves chunkCount up to here): the todo bitmap's size. */
  readonly chunkCapacity: number;
  readonly chunkBytes: number;
  readonly arraySizeBytes: number;
  readonly cluster: MdCluster;
  readonly regionOps: RegionOps;
  userBusy(): boolean;
  userIdle(): Promise<void>;
  /** Makes chunks [start, end) equal on every active leg (copied from the source leg). */
  copyChunks(start: number, end: number): Promise<void>;
  /** Chunks [start, end) are in sync: their write-intent bits may go. */
  chunksInSync(start: number, end: number): void;
  /** Everything is in sync: the superblocks say so (resync_offset cleared). */
  allInSync(): Promise<void>;
  /** Chunks still to do, taken when the resync lock is granted (resync_offset may have moved meanwhile). */
  collect(todo: RegionBitmap): void;
  canRun(): boolean;
  note(message: string, type?: 'resync-started' | 'resync-done' | 'resync-stopped' | 'note'): void;
}

export class ArrayResync {
  state: ResyncState = 'idle';
  /** Chunks done and in all by the current or last run. */
  doneChunks = 0;
  totalChunks = 0;
  private running: Promise<void> | null = null;
  /** Kicked while running: run once more. */
  private again = false;
  private windowLowSectors = 0;
  private windowHighSectors = 0;
  private readonly announce = new LocalMutex();
  private walkDone: ((complete: boolean) => void) | null = null;
  private readonly walker: RegionWalker;
  private abort = new AbortController();
  /** md's sync_speed_max: bytes per second this node's resync and recovery copy at most (null: no limit). */
  readonly rateLimit = new ByteRateLimit();

  private constructor(private readonly host: ResyncHost, readonly todo: RegionBitmap) {
    this.walker = new RegionWalker({
      regionCount: host.chunkCapacity,
      regionOps: host.regionOps,
      bitmap: () => this.todo,
      canRun: () => this.state === 'running' && host.canRun(),
      threshold: () => 4,
      batchSize: () => 4,
      userIdle: () => host.userIdle(),
      userBusy: () => host.userBusy(),
      copy: (start, end) => this.copy(start, end),
      complete: () => this.walkDone?.(true),
      stopped: (error) => {
        host.note(`resync stopped: ${String(error)}`, 'resync-stopped');
        this.walkDone?.(false);
      },
    }, MAX_CONSECUTIVE_FAILURES, true);
  }

  static async create(host: ResyncHost): Promise<ArrayResync> {
    return new ArrayResync(host, await RegionBitmap.create(host.chunkCapacity));
  }

  /** Chunks [start, end) need a resync. */
  add(start: number, end: number): void {
    this.todo.setRange(start, end);
  }

  /** The array shrank to `chunkCount` chunks: the chunks past it are not to do any more. */
  shrinkTo(chunkCount: number): void {
    if (chunkCount < this.todo.bitCount) this.todo.clearRange(chunkCount, this.todo.bitCount);
  }

  /** Resolves when no resync is pending or running. */
  async idle(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  /**
   * Runs a resync unless one runs or waits already; then that one runs again when it ends (chunks
   * added after its last look at the todo, while it marks the array in sync or releases the lock,
   * would otherwise wait for the next kick, which may never come: a dead node's merged bits).
   */
  kick(): void {
    if (this.running !== null) {
      this.again = true;
      return;
    }
    if (!this.host.canRun()) return;
    this.again = false;
    this.running = this.run().catch((error: unknown) => this.host.note(`resync failed: ${String(error)}`)).finally(() => {
      this.running = null;
      this.state = 'idle';
      if (this.again && !this.abort.signal.aborted) this.kick();
    });
  }

  /** Stops a pending or running resync (the node stops); undone chunks keep their bits. */
  async stop(): Promise<void> {
    this.abort.abort();
    this.walkDone?.(false);
    await this.running;
    await this.walker.idle();
  }

  private async run(): Promise<void> {
    this.state = 'pending';
    await this.host.cluster.resyncStart(this.abort.signal);
    this.host.collect(this.todo);
    this.totalChunks = this.todo.setCount;
    this.doneChunks = 0;
    this.state = 'running';
    let complete = true;
    if (!this.todo.isEmpty()) this.host.note(`resync of ${this.totalChunks} chunks started`, 'resync-started');
    // Chunks added while we run (a recovery asked for meanwhile) are walked before the lock goes.
    while (complete && !this.todo.isEmpty() && !this.abort.signal.aborted) {
      this.totalChunks = Math.max(this.totalChunks, this.doneChunks + this.todo.setCount);
      complete = await new Promise<boolean>((resolve) => {
        this.walkDone = resolve;
        this.walker.kick();
        // The walker may not run (stopped, no leg to copy to) or stop without a word: then this
        // run ends too, rather than hold the resync lock and its window forever.
        void this.walker.idle().then(() => resolve(this.todo.isEmpty()));
      });
      this.walkDone = null;
      await this.walker.idle();
    }
    complete = complete && this.todo.isEmpty();
    this.windowLowSectors = this.windowHighSectors = 0;
    try {
      // In sync on disk before the resync lock goes: the next node to take it must see it.
      if (complete) await this.host.allInSync();
    } finally {
      await this.host.cluster.resyncFinish(complete);
    }
    if (this.totalChunks > 0) this.host.note(complete ? 'resync done' : 'resync stopped with chunks left', complete ? 'resync-done' : 'resync-stopped');
  }

  private async copy(start: number, end: number): Promise<CopyResult> {
    // The limit's wait comes before the chunks are held: user writes to them go on meanwhile.
    try {
      await this.rateLimit.take((end - start) * this.host.chunkBytes, this.abort.signal);
    } catch (error) {
      return { error };
    }
    const op = this.host.regionOps.begin(start, end);
    try {
      await this.announced(start, end);
      await this.host.copyChunks(start, end);
      this.todo.clearRange(start, end);
      this.host.chunksInSync(start, end);
      this.doneChunks += end - start;
      op.settle(true);
      return 'done';
    } catch (error) {
      op.settle(false);
      return { error };
    }
  }

  /**
   * Makes sure [start, end) lies in the range announced to the other nodes: from the lowest chunk
   * still to do (or being copied) to the end of the array, as resync_start reports it. The low end
   * moves up in steps of RESYNC_WINDOW_CHUNKS, and never past a chunk not yet in sync, so no other
   * node writes a chunk a copy of ours may still overwrite with what it read before.
   */
  private async announced(start: number, end: number): Promise<void> {
    const sectorsPerChunk = this.host.chunkBytes / SECTOR_BYTES;
    const arraySectors = this.host.arraySizeBytes / SECTOR_BYTES;
    await this.announce.run(async () => {
      const pending = this.todo.nextSet(0);
      const low = Math.min(start, pending < 0 ? start : pending) * sectorsPerChunk;
      const covered = this.windowHighSectors === arraySectors && low >= this.windowLowSectors;
      if (covered && low < this.windowLowSectors + RESYNC_WINDOW_CHUNKS * sectorsPerChunk) return;
      await this.host.cluster.announceResync(low, arraySectors);
      this.windowLowSectors = low;
      this.windowHighSectors = arraySectors;
    });
    void end;
  }
}
