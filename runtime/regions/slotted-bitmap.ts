/**
 * SlottedBitmap: a region bitmap kept in core (RegionBitmap) and committed to a device in the
 * layout of bitmap-blocks.ts, by the two-slot checksummed commit. Engine-neutral: the engine gives
 * the commit point (its superblock: `CommitPoint.encode`) and decides what a bit means (a clone:
 * hydrated; a mirror: dirty).
 *
 * Why two slots per bitmap block: a commit never overwrites the copy that the current superblock
 * points at. It writes each changed bitmap block to its other slot with the new generation, makes
 * those durable, then writes the superblock: that one 4 KiB write is the atomic commit point. At
 * load, for each bitmap block the valid slot (checksum, magic, index, uuid) with the highest
 * generation not above the superblock's is current; a slot written by a commit that never reached
 * its superblock has a higher generation and is ignored. So a torn or stale block is never taken
 * for valid, and a commit costs (changed blocks + 1) writes and 2 flushes, whatever the bitmap size.
 *
 * Durability, exactly:
 * - `setRange` only changes memory and marks the covering bitmap blocks dirty. The engine sets a
 *   bit only after the data the bit describes has been written (not yet flushed).
 * - `commit(flushData)` snapshots the dirty blocks and the set count (synchronously, so the
 *   snapshot is one instant), then calls `flushData` (the engine's data flush: every bit in the
 *   snapshot now describes durable data), writes the snapshot's blocks to their spare slots,
 *   flushes the device, writes the superblock (the commit point) and flushes again. When `commit`
 *   resolves, the snapshot is durable; bits set after the snapshot wait for the next commit.
 *   Commits run one at a time; a commit requested while one runs joins the next.
 * - A commit that fails leaves the last committed state on disk untouched (no slot it points at
 *   was written); the engine decides what to do (a clone goes read-only) and may `reload()` the
 *   committed state.
 * - Generations never repeat: the next one is above every generation seen on disk, so a slot left
 *   by an aborted commit can never pass for committed. Blocks with such a slot are rewritten by
 *   the next commit.
 * - The commit point never overwrites the current superblock: generation G goes to superblock slot
 *   G % 2, so a commit whose next generation has the current slot's parity (after an aborted
 *   commit used one up) skips a generation. A torn superblock write then falls back to the
 *   current commit, whose bitmap slots this commit did not touch. Were the current superblock
 *   overwritten, the fallback would be the commit before it, whose slots this commit may have
 *   overwritten: no valid copy of those blocks, and the device would not load.
 */
import { assert } from '../assert.ts';
import { RegionBitmap } from '../bitmap.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';
import {
  allZero, BITMAP_HEADER_BYTES, bitmapBlockCountFor, bitmapBlockGeneration, bitmapSlotBlock, BITS_PER_BITMAP_BLOCK, BLOCK_BYTES,
  COMMIT_SLOTS, sealBitmapBlock, WORD_BYTES, WORDS_PER_BITMAP_BLOCK, type BitmapBlockKind, type Crc32c,
} from './bitmap-blocks.ts';

/** Bitmap block pairs read or formatted per device call. */
const PAIRS_PER_IO = 128;
/** Bitmap block writes in flight during a commit. */
const COMMIT_WRITES_IN_FLIGHT = 16;

/** The engine's superblock, written last by every commit (and by format, at generation 0). */
export interface CommitPoint {
  /** The superblock of the commit at `generation`, saying `setCount` bits are set; it goes to slot `generation % 2`. */
  encode(generation: number, setCount: number): Uint8Array;
}

export interface SlottedBitmapParams {
  device: BlockDevice;
  crc32c: Crc32c;
  kind: BitmapBlockKind;
  uuid: Uint8Array;
  bitCount: number;
  commitPoint: CommitPoint;
}

/** What the engine's current superblock says. */
export interface Committed {
  generation: number;
  /** The superblock slot it was read from (a commit point must not overwrite it). */
  slot: number;
  setCount: number;
}

interface LoadedBitmap {
  bitmap: RegionBitmap;
  currentSlot: Uint8Array;
  highestGeneration: number;
  /** Blocks whose spare slot carries a generation above the superblock's (an aborted commit). */
  stale: number[];
}

export class SlottedBitmap {
  readonly device: BlockDevice;
  /** Which slot (0/1) of each bitmap block holds the committed copy. */
  private readonly currentSlot: Uint8Array;
  private dirty = new Set<number>();
  private generation: number;
  /** The superblock slot holding the committed generation (a commit point must not overwrite it). */
  private superblockSlot: number;
  private nextGeneration: number;
  private committing: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** Bits set at the last commit. */
  committedCount: number;
  commitCount = 0;

  private constructor(
    private readonly params: SlottedBitmapParams,
    private bits: RegionBitmap | null,
    loaded: Omit<LoadedBitmap, 'bitmap' | 'stale'>,
    committed: Committed,
  ) {
    this.device = params.device;
    this.currentSlot = loaded.currentSlot;
    this.generation = committed.generation;
    this.superblockSlot = committed.slot;
    this.nextGeneration = loaded.highestGeneration + 1;
    this.committedCount = committed.setCount;
  }

  /**
   * Formats the device: every bitmap block gets a valid, empty slot 0 at generation 0 (so that
   * later a block with no valid slot can only mean corruption), slot 1 and superblock slot 1 are
   * zeroed, all that is flushed, then the superblock of generation 0 is written and flushed.
   */
  static async format(params: SlottedBitmapParams): Promise<SlottedBitmap> {
    const { device, crc32c, kind, uuid, bitCount } = params;
    const blockCount = bitmapBlockCountFor(bitCount);
    const chunk = new Uint8Array(PAIRS_PER_IO * 2 * BLOCK_BYTES);
    for (let first = 0; first < blockCount; first += PAIRS_PER_IO) {
      const pairs = Math.min(PAIRS_PER_IO, blockCount - first);
      chunk.fill(0);
      for (let p = 0; p < pairs; p++) {
        const block = chunk.subarray(2 * p * BLOCK_BYTES, (2 * p + 1) * BLOCK_BYTES);
        sealBitmapBlock(block, { index: first + p, generation: 0, uuid }, kind, crc32c);
      }
      await device.write(bitmapSlotBlock(first, 0) * BLOCK_BYTES, chunk.subarray(0, 2 * pairs * BLOCK_BYTES));
    }
    await device.write(BLOCK_BYTES, new Uint8Array(BLOCK_BYTES));
    await device.flush();
    await device.write(0, params.commitPoint.encode(0, 0));
    await device.flush();
    const bits = await RegionBitmap.create(bitCount);
    return new SlottedBitmap(params, bits, { currentSlot: new Uint8Array(blockCount), highestGeneration: 0 }, { generation: 0, slot: 0, setCount: 0 });
  }

  /** Loads the committed bitmap that the current superblock (`committed`) points at. */
  static async load(params: SlottedBitmapParams, committed: Committed): Promise<SlottedBitmap> {
    const loaded = await readBitmap(params, committed);
    const slotted = new SlottedBitmap(params, loaded.bitmap, loaded, committed);
    for (const block of loaded.stale) slotted.dirty.add(block);
    return slotted;
  }

  /** The in-core bitmap; null once released (every bit set and committed). */
  get bitmap(): RegionBitmap | null {
    return this.bits;
  }

  get bitCount(): number {
    return this.params.bitCount;
  }

  get setCount(): number {
    return this.bits === null ? this.params.bitCount : this.bits.setCount;
  }

  get changed(): boolean {
    return this.dirty.size > 0;
  }

  /** A commit is running (its snapshot may hold bits that are not durable yet). */
  get isCommitting(): boolean {
    return this.committing !== null;
  }

  /**
   * Resolves once no commit runs or waits (whatever their outcome: a failure is the committer's to
   * report). Starts none, so it adds no I/O: for a reader that must not answer from a state a
   * running commit is about to change (a status that reports the commit count).
   */
  async settled(): Promise<void> {
    while (this.committing !== null || this.queued !== null) await (this.queued ?? this.committing)!.catch(() => {});
  }

  get(bit: number): boolean {
    return this.bits === null || this.bits.get(bit);
  }

  /** Sets bits [start, end) in core; durable after the next commit. Returns how many changed. */
  setRange(start: number, end: number): number {
    if (this.bits === null || start >= end) return 0;
    const changed = this.bits.setRange(start, end);
    if (changed > 0) {
      const lastBlock = Math.floor((end - 1) / BITS_PER_BITMAP_BLOCK);
      for (let block = Math.floor(start / BITS_PER_BITMAP_BLOCK); block <= lastBlock; block++) this.dirty.add(block);
    }
    return changed;
  }

  /** Replaces the in-core bitmap by the committed state on disk (after a failed commit). */
  async reload(): Promise<void> {
    const { bitmap, currentSlot, highestGeneration, stale } = await readBitmap(this.params, { generation: this.generation, slot: this.superblockSlot, setCount: this.committedCount });
    this.bits?.release();
    this.bits = bitmap;
    this.currentSlot.set(currentSlot);
    this.nextGeneration = Math.max(this.nextGeneration, highestGeneration + 1);
    this.dirty = new Set(stale);
  }

  /**
   * Commits the dirty bitmap blocks; resolves when they are durable. `flushData` must make the
   * data the bits describe durable. Concurrent calls share commits: a caller arriving while a
   * commit runs gets the next one (its bits may postdate the running commit's snapshot).
   */
  commit(flushData: () => Promise<void>): Promise<void> {
    if (this.committing === null) {
      this.committing = this.runCommit(flushData).finally(() => (this.committing = null));
      return this.committing;
    }
    this.queued ??= this.committing.then(
      () => this.startQueued(flushData),
      () => this.startQueued(flushData),
    );
    return this.queued;
  }

  private startQueued(flushData: () => Promise<void>): Promise<void> {
    this.queued = null;
    return this.commit(flushData);
  }

  private async runCommit(flushData: () => Promise<void>): Promise<void> {
    const { device, crc32c, kind, uuid } = this.params;
    // Snapshot, synchronously: the dirty blocks' words and the count belong to one instant.
    const blocks = [...this.dirty].sort((a, b) => a - b);
    const setCount = this.setCount;
    const images: Uint8Array[] = [];
    let generation = this.nextGeneration;
    if (generation % COMMIT_SLOTS === this.superblockSlot) generation++;
    if (this.bits !== null) {
      for (const index of blocks) {
        const image = new Uint8Array(BLOCK_BYTES);
        const startWord = index * WORDS_PER_BITMAP_BLOCK;
        const wordCount = Math.min(WORDS_PER_BITMAP_BLOCK, this.bits.wordCount - startWord);
        image.set(this.bits.toBytes(startWord, wordCount), BITMAP_HEADER_BYTES);
        images.push(sealBitmapBlock(image, { index, generation, uuid }, kind, crc32c));
      }
    } else {
      assert(blocks.length === 0, 'no dirty blocks once the bitmap is released');
    }
    this.dirty = new Set();
    this.nextGeneration = generation + 1;
    try {
      await flushData();
      for (let next = 0; next < blocks.length; next += COMMIT_WRITES_IN_FLIGHT) {
        const writes: Promise<void>[] = [];
        for (let i = next; i < Math.min(blocks.length, next + COMMIT_WRITES_IN_FLIGHT); i++) {
          const index = blocks[i]!;
          const spare = 1 - this.currentSlot[index]!;
          writes.push(device.write(bitmapSlotBlock(index, spare) * BLOCK_BYTES, images[i]!));
        }
        await Promise.all(writes);
      }
      await device.flush();
      await device.write((generation % COMMIT_SLOTS) * BLOCK_BYTES, this.params.commitPoint.encode(generation, setCount));
      await device.flush();
    } catch (error) {
      for (const index of blocks) this.dirty.add(index);
      throw error;
    }
    for (const index of blocks) this.currentSlot[index] = 1 - this.currentSlot[index]!;
    this.generation = generation;
    this.superblockSlot = generation % COMMIT_SLOTS;
    this.committedCount = setCount;
    this.commitCount++;
  }

  /** Drops the in-core bitmap once every bit is set and that state is committed. */
  releaseIfFull(): boolean {
    if (this.bits === null) return true;
    const bitCount = this.params.bitCount;
    if (this.bits.setCount !== bitCount || this.dirty.size > 0 || this.committedCount !== bitCount) return false;
    this.bits.release();
    this.bits = null;
    return true;
  }

  close(): void {
    this.bits?.release();
    this.bits = null;
  }
}

async function readBitmap(params: SlottedBitmapParams, committed: Committed): Promise<LoadedBitmap> {
  const { device, crc32c, kind, uuid, bitCount } = params;
  const bitmap = await RegionBitmap.create(bitCount);
  try {
    const blockCount = bitmapBlockCountFor(bitCount);
    const currentSlot = new Uint8Array(blockCount);
    const stale: number[] = [];
    let highestGeneration = committed.generation;
    const chunk = new Uint8Array(PAIRS_PER_IO * 2 * BLOCK_BYTES);
    for (let first = 0; first < blockCount; first += PAIRS_PER_IO) {
      const pairs = Math.min(PAIRS_PER_IO, blockCount - first);
      const bytes = chunk.subarray(0, 2 * pairs * BLOCK_BYTES);
      await device.read(bitmapSlotBlock(first, 0) * BLOCK_BYTES, bytes);
      for (let p = 0; p < pairs; p++) {
        const index = first + p;
        let best = -1;
        let bestGeneration = -1;
        for (let slot = 0; slot < 2; slot++) {
          const block = bytes.subarray((2 * p + slot) * BLOCK_BYTES, (2 * p + slot + 1) * BLOCK_BYTES);
          const generation = bitmapBlockGeneration(block, index, uuid, kind, crc32c);
          if (generation === null) continue;
          highestGeneration = Math.max(highestGeneration, generation);
          if (generation > committed.generation) stale.push(index);
          else if (generation > bestGeneration) {
            best = slot;
            bestGeneration = generation;
          }
        }
        if (best < 0) {
          throw new BlockError('EIO', `metadata corrupt: bitmap block ${index} has no valid committed copy`, { device: device.name, offsetBytes: bitmapSlotBlock(index, 0) * BLOCK_BYTES });
        }
        currentSlot[index] = best;
        const startWord = index * WORDS_PER_BITMAP_BLOCK;
        const wordCount = Math.min(WORDS_PER_BITMAP_BLOCK, bitmap.wordCount - startWord);
        const payloadAt = (2 * p + best) * BLOCK_BYTES + BITMAP_HEADER_BYTES;
        const payload = bytes.subarray(payloadAt, payloadAt + wordCount * WORD_BYTES);
        bitmap.loadBytes(startWord, payload);
        // Words past the last bit's word must be zero on disk.
        if (!allZero(bytes.subarray(payloadAt + wordCount * WORD_BYTES, (2 * p + best + 1) * BLOCK_BYTES))) {
          throw new BlockError('EIO', `metadata corrupt: bitmap block ${index} has bits past the last region`, { device: device.name });
        }
      }
    }
    if (bitmap.setCount !== committed.setCount) {
      throw new BlockError('EIO', `metadata corrupt: the superblock counts ${committed.setCount} regions set, the bitmap holds ${bitmap.setCount}`, { device: device.name });
    }
    return { bitmap, currentSlot, highestGeneration, stale };
  } catch (error) {
    bitmap.release();
    throw error;
  }
}
