/**
 * This node's write-intent bitmap (its slot of the clustered bitmap): md-bitmap's rules.
 *
 * Design note
 * - One bit per chunk of `chunkBytes` of the array; the bits live in memory (md's on-disk byte
 *   order) and go to every active leg's slot area one 4 KiB page at a time.
 * - Before a write is issued, `startWrite` sets its chunks' bits and waits until the pages
 *   holding them are durable on every active leg (each page written FUA). Pages changed
 *   by many writers go in one commit: every writer waiting when a commit starts is served by it;
 *   those who come later by the next one (one commit at a time, each writing the pages' bytes as
 *   they are in memory then, so the last write of a page always carries its latest bits).
 * - `endWrite` counts the chunk's writes down; a chunk with none in flight for `daemonSleepMs`
 *   is cleared by `sweep`: every leg flushed first (the data the bit protected is durable), then
 *   the bit cleared and its page written (a clear lost to power only costs a resync). Nothing is
 *   cleared while the array is degraded: a returning leg is recovered from the bits.
 * - Durable: a bit is durable on a leg when startWrite resolved; clears are not awaited.
 */
import { assert } from '../assert.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import { BITMAP_SB_BYTES, type BitmapSuperblock } from './bitmap-superblock.ts';
import type { IntentLog } from './intent-log.ts';
import { bitmapAreaOffsetBytes, type LegLayout } from './leg-layout.ts';
import { BITMAP_PAGE_BYTES, bitmapPageBytes, bitmapPageOf } from './leg-metadata.ts';

export interface WriteIntentOptions {
  layout: LegLayout;
  /** 0-based node slot whose area this is. */
  slot: number;
  sb: BitmapSuperblock;
  bits: Uint8Array;
  chunkCount: number;
  /** Chunks the slot area can hold: the most a resize may take the count to (default chunkCount). */
  capacityChunks?: number;
  /** The legs a commit writes to (active, not failed), asked at each commit. */
  legs(): BlockDevice[];
  /** A leg failed a bitmap write or flush; the commit goes on with the others. */
  legFailed(leg: BlockDevice, error: unknown): void;
  degraded(): boolean;
  daemonSleepMs: number;
  nowMs?: () => number;
}

const FUA = { fua: true } as const;

export class WriteIntent implements IntentLog {
  /** One bit per chunk, room for `capacityChunks`; the bits past chunkCount are zero. */
  readonly bits: Uint8Array;
  private count: number;
  private sb: BitmapSuperblock;
  private readonly writers = new Map<number, number>();
  private readonly idleSince = new Map<number, number>();
  /** Per chunk, the sequence number of its last write's end; a sweep's flush covers ends before its own number. */
  private readonly lastEnd = new Map<number, number>();
  private endSequence = 0;
  private readonly pageGeneration = new Map<number, number>();
  private generation = 0;
  private durableGeneration = 0;
  private committing: Promise<void> | null = null;
  /** Bitmap page commits done (each one FUA write per leg and page). */
  commits = 0;
  pageWrites = 0;

  constructor(private readonly options: WriteIntentOptions) {
    const capacity = options.capacityChunks ?? options.chunkCount;
    assert(capacity >= options.chunkCount && options.bits.length >= Math.ceil(options.chunkCount / 8), 'bits cover every chunk');
    this.bits = new Uint8Array(Math.ceil(capacity / 8));
    this.bits.set(options.bits.subarray(0, Math.ceil(options.chunkCount / 8)));
    this.count = options.chunkCount;
    this.sb = options.sb;
  }

  get chunkCount(): number {
    return this.count;
  }

  /**
   * The array was resized to `chunkCount` chunks (online resize, every write stopped and every
   * commit settled): the bits past the new end go. Nothing is written: the node that resized wrote
   * every slot's area already (writeAll makes ours whole again where it could not).
   */
  resize(chunkCount: number, syncSizeSectors: number): void {
    assert(chunkCount <= this.bits.length * 8, 'a resize stays within the slot area');
    // A write past the new end may still be recording a leg failure (its data is done): its
    // count stays for its endWrite; its bit goes with the others.
    for (const map of [this.idleSince, this.lastEnd]) {
      for (const chunk of [...map.keys()]) if (chunk >= chunkCount) map.delete(chunk);
    }
    for (let chunk = chunkCount; chunk < this.count; chunk++) this.bits[chunk >> 3]! &= ~(1 << (chunk & 7));
    this.count = chunkCount;
    this.sb = { ...this.sb, syncSizeSectors };
  }

  isSet(chunk: number): boolean {
    return (this.bits[chunk >> 3]! & (1 << (chunk & 7))) !== 0;
  }

  get dirtyCount(): number {
    let count = 0;
    for (let chunk = 0; chunk < this.chunkCount; chunk++) if (this.isSet(chunk)) count += 1;
    return count;
  }

  /** Chunks with writes in flight. */
  get busyCount(): number {
    return this.writers.size;
  }

  /** Marks chunks [first, end) as being written; resolves once their bits are durable. */
  async startWrite(first: number, end: number): Promise<void> {
    let needed = 0;
    for (let chunk = first; chunk < end; chunk++) {
      this.writers.set(chunk, (this.writers.get(chunk) ?? 0) + 1);
      this.idleSince.delete(chunk);
      if (!this.isSet(chunk)) {
        this.bits[chunk >> 3]! |= 1 << (chunk & 7);
        this.touch(bitmapPageOf(chunk));
      }
      const pending = this.pageGeneration.get(bitmapPageOf(chunk));
      if (pending !== undefined) needed = Math.max(needed, pending);
    }
    if (needed > this.durableGeneration) await this.durable(needed);
  }

  /** The writes to chunks [first, end) ended (applied to the legs, or failed). */
  endWrite(first: number, end: number): void {
    const now = this.now();
    for (let chunk = first; chunk < end; chunk++) {
      const count = this.writers.get(chunk);
      assert(count !== undefined && count > 0, `chunk ${chunk} had a write in flight`);
      this.lastEnd.set(chunk, ++this.endSequence);
      if (count === 1) {
        this.writers.delete(chunk);
        this.idleSince.set(chunk, now);
      } else this.writers.set(chunk, count - 1);
    }
  }

  /** Sets every chunk whose bit is set in `bits` (another slot's bitmap): one commit for all of them. */
  async markDirtyBits(bits: Uint8Array): Promise<void> {
    for (let chunk = 0; chunk < this.chunkCount; chunk++) {
      if ((bits[chunk >> 3]! & (1 << (chunk & 7))) === 0) continue;
      // No longer an idle write's bit: it stays until a resync hands the chunk back (synced).
      this.idleSince.delete(chunk);
      this.lastEnd.delete(chunk);
      if (this.isSet(chunk)) continue;
      this.bits[chunk >> 3]! |= 1 << (chunk & 7);
      this.touch(bitmapPageOf(chunk));
    }
    await this.durable(this.generation);
  }

  /**
   * Chunks a resync just copied to every leg: their bits go like a finished write's, by the next
   * sweep, after the flush that makes the copies durable (the copy itself flushes nothing).
   */
  synced(first: number, end: number): void {
    const now = this.now();
    for (let chunk = first; chunk < end; chunk++) {
      if (!this.isSet(chunk) || this.writers.has(chunk)) continue;
      this.lastEnd.set(chunk, ++this.endSequence);
      this.idleSince.set(chunk, now);
    }
  }

  /** Lazy clear (the bitmap daemon): see the design note. Returns how many bits it cleared. */
  async sweep(idleForMs = this.options.daemonSleepMs): Promise<number> {
    if (this.options.degraded()) return 0;
    const cutoff = this.now() - idleForMs;
    const candidates = [...this.idleSince].filter(([, since]) => since <= cutoff).map(([chunk]) => chunk);
    if (candidates.length === 0) return 0;
    // Only writes that ended before this flush began are made durable by it.
    const flushedBefore = ++this.endSequence;
    await this.flushLegs();
    let cleared = 0;
    for (const chunk of candidates) {
      if (this.writers.has(chunk) || this.options.degraded()) continue;
      const ended = this.lastEnd.get(chunk);
      if (ended === undefined || ended > flushedBefore || this.idleSince.get(chunk) === undefined) continue;
      this.idleSince.delete(chunk);
      this.lastEnd.delete(chunk);
      if (!this.isSet(chunk)) continue;
      this.bits[chunk >> 3]! &= ~(1 << (chunk & 7));
      this.touch(bitmapPageOf(chunk));
      cleared += 1;
    }
    if (cleared > 0) await this.durable(this.generation);
    return cleared;
  }

  /** Writes the whole area (superblock and every bit page) to every active leg and flushes. */
  async writeAll(): Promise<void> {
    const pages = Math.ceil((BITMAP_SB_BYTES + Math.ceil(this.chunkCount / 8)) / BITMAP_PAGE_BYTES);
    for (let page = 0; page < pages; page++) this.touch(page);
    await this.durable(this.generation);
  }

  /** Waits until every change made so far is durable. */
  async settle(): Promise<void> {
    await this.durable(this.generation);
  }

  private touch(page: number): void {
    this.generation += 1;
    this.pageGeneration.set(page, this.generation);
  }

  private async durable(generation: number): Promise<void> {
    while (this.durableGeneration < generation) {
      if (this.committing === null) this.committing = this.commit().finally(() => (this.committing = null));
      await this.committing;
    }
  }

  private async commit(): Promise<void> {
    const upTo = this.generation;
    const pages = [...this.pageGeneration].filter(([, g]) => g <= upTo).map(([page]) => page);
    const legs = this.options.legs();
    if (legs.length === 0) throw new Error('no leg left to hold the bitmap');
    await Promise.all(legs.map(async (leg) => {
      try {
        // FUA: each page durable when its write resolves, without waiting for the leg's other
        // dirty data (a flush would write all of it back first: a sequential writer paid that at
        // every new chunk). The data the bit protects is written only after this.
        await Promise.all(pages.map(async (page) => {
          await leg.write(bitmapAreaOffsetBytes(this.options.layout, this.options.slot) + page * BITMAP_PAGE_BYTES, bitmapPageBytes({ sb: this.sb, bits: this.bits }, page), FUA);
          this.pageWrites += 1;
        }));
      } catch (error) {
        this.options.legFailed(leg, error);
      }
    }));
    if (this.options.legs().length === 0) throw new Error('every leg failed the bitmap write');
    for (const page of pages) if (this.pageGeneration.get(page)! <= upTo) this.pageGeneration.delete(page);
    this.durableGeneration = Math.max(this.durableGeneration, upTo);
    this.commits += 1;
  }

  private async flushLegs(): Promise<void> {
    await Promise.all(this.options.legs().map((leg) => leg.flush().catch((error: unknown) => this.options.legFailed(leg, error))));
  }

  private now(): number {
    return this.options.nowMs?.() ?? Date.now();
  }
}
