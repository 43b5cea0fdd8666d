/**
 * CloneMetadata: the region bitmap of a clone (1 = the destination holds the region's data),
 * kept in core as a RegionBitmap and committed to the metadata device in the format of
 * metadata-format.ts (read its note for the layout and why two slots per bitmap block).
 *
 * Durability, exactly:
 * - `markHydrated` only changes memory and marks the covering bitmap blocks dirty. The caller
 *   sets a bit only after the region's data write to the destination has completed.
 * - `commit(flushData)` snapshots the dirty blocks and the set count (synchronously, so the
 *   snapshot is one instant), then calls `flushData` (the destination's flush: every bit in the
 *   snapshot now describes durable data), writes the snapshot's blocks to their spare slots,
 *   fdatasyncs the metadata device, writes the superblock (the commit point) and fdatasyncs
 *   again. When `commit` resolves, the snapshot is durable; bits set after the snapshot wait for
 *   the next commit. Commits run one at a time; a commit requested while one runs joins the next.
 * - A commit that fails leaves the last committed state on disk untouched (no slot it points at
 *   was written); the caller decides the mode (ro) and may `reload()` the committed state.
 * - Generations never repeat: the next one is above every generation seen on disk, so a slot left
 *   by an aborted commit can never pass for committed. Blocks with such a slot are rewritten by
 *   the next commit.
 * - The commit point never overwrites the current superblock: generation G goes to superblock slot
 *   G % 2, so a commit whose next generation has the current slot's parity (after an aborted
 *   commit used one up) skips a generation. A torn superblock write then falls back to the
 *   current commit, whose bitmap slots this commit did not touch. Were the current superblock
 *   overwritten, the fallback would be the commit before it, whose slots this commit may have
 *   overwritten: no valid copy of those blocks, and the metadata would not open.
 */
import { assert } from '../assert.ts';
import { RegionBitmap } from '../bitmap.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';
import { defaultKernels } from '../wasm/kernels.ts';
import {
  BITMAP_HEADER_BYTES, BITS_PER_BITMAP_BLOCK, METADATA_BLOCK_BYTES, SUPERBLOCK_SLOTS, UUID_BYTES, WORDS_PER_BITMAP_BLOCK,
  bitmapBlockCountFor, bitmapBlockGeneration, bitmapSlotBlock, decodeSuperblock, encodeSuperblock, invalidSuperblock,
  metadataBlocksFor, sealBitmapBlock, type Crc32c, type Superblock,
} from './metadata-format.ts';

const WORD_BYTES = 8;
/** Bitmap block pairs read or formatted per device call. */
const PAIRS_PER_IO = 128;
/** Bitmap block writes in flight during a commit. */
const COMMIT_WRITES_IN_FLIGHT = 16;

export interface CloneGeometry {
  regionSectors: number;
  targetSectors: number;
}

export interface MetadataUsage {
  usedBlocks: number;
  totalBlocks: number;
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

export class CloneMetadata {
  /** Which slot (0/1) of each bitmap block holds the committed copy. */
  private readonly currentSlot: Uint8Array;
  private dirty = new Set<number>();
  private generation: number;
  /** The superblock slot holding the committed generation (a commit point must not overwrite it). */
  private superblockSlot: number;
  private nextGeneration: number;
  private committing: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** Regions set at the last commit; tells a status line what is durable. */
  committedCount: number;
  commitCount = 0;

  private constructor(
    readonly device: BlockDevice,
    private readonly crc32c: Crc32c,
    private readonly superblock: Superblock,
    private bits: RegionBitmap | null,
    currentSlot: Uint8Array,
    highestGeneration: number,
  ) {
    this.currentSlot = currentSlot;
    this.generation = superblock.generation;
    this.superblockSlot = superblock.blockNumber;
    this.nextGeneration = highestGeneration + 1;
    this.committedCount = superblock.hydratedCount;
  }

  get regionCount(): number {
    return this.superblock.regionCount;
  }

  get regionSectors(): number {
    return this.superblock.regionSectors;
  }

  get targetSectors(): number {
    return this.superblock.targetSectors;
  }

  /** The in-core bitmap; null once released after full hydration. */
  get bitmap(): RegionBitmap | null {
    return this.bits;
  }

  get hydratedCount(): number {
    return this.bits === null ? this.regionCount : this.bits.setCount;
  }

  get changed(): boolean {
    return this.dirty.size > 0;
  }

  /** A commit is running (its snapshot may hold bits that are not durable yet). */
  get isCommitting(): boolean {
    return this.committing !== null;
  }

  get usage(): MetadataUsage {
    return { usedBlocks: metadataBlocksFor(this.regionCount), totalBlocks: Math.floor(this.device.sizeBytes / METADATA_BLOCK_BYTES) };
  }

  isHydrated(region: number): boolean {
    return this.bits === null || this.bits.get(region);
  }

  /** Marks regions [start, end) hydrated in core; durable after the next commit. */
  markHydrated(start: number, end: number): number {
    if (this.bits === null || start >= end) return 0;
    const changed = this.bits.setRange(start, end);
    if (changed > 0) {
      const lastBlock = Math.floor((end - 1) / BITS_PER_BITMAP_BLOCK);
      for (let block = Math.floor(start / BITS_PER_BITMAP_BLOCK); block <= lastBlock; block++) this.dirty.add(block);
    }
    return changed;
  }

  /**
   * Opens the metadata on `device` for a clone of this geometry, formatting an unformatted
   * (all-zero superblocks) device. Refuses a device that is too small, of another format, corrupt,
   * or formatted for another region size or target size — before writing anything.
   */
  static async open(device: BlockDevice, geometry: CloneGeometry): Promise<CloneMetadata> {
    const kernels = await defaultKernels();
    const crc32c: Crc32c = (bytes) => kernels.crc32c(bytes);
    const regionCount = Math.ceil(geometry.targetSectors / geometry.regionSectors);
    const neededBlocks = metadataBlocksFor(regionCount);
    const totalBlocks = Math.floor(device.sizeBytes / METADATA_BLOCK_BYTES);
    if (totalBlocks < neededBlocks) {
      throw new BlockError('EINVAL', `metadata device too small: ${regionCount} regions need ${neededBlocks * METADATA_BLOCK_BYTES} bytes, it has ${device.sizeBytes}`, { device: device.name });
    }
    const slots = new Uint8Array(SUPERBLOCK_SLOTS * METADATA_BLOCK_BYTES);
    await device.read(0, slots);
    const candidates: Superblock[] = [];
    const reasons: string[] = [];
    for (let slot = 0; slot < SUPERBLOCK_SLOTS; slot++) {
      const block = slots.subarray(slot * METADATA_BLOCK_BYTES, (slot + 1) * METADATA_BLOCK_BYTES);
      const reason = invalidSuperblock(block, slot, crc32c);
      if (reason === null) candidates.push(decodeSuperblock(block));
      else reasons.push(`slot ${slot}: ${reason}`);
    }
    if (candidates.length === 0) {
      if (!isAllZero(slots)) {
        throw new BlockError('EINVAL', `not clone metadata or corrupt superblock (${reasons.join('; ')})`, { device: device.name });
      }
      return CloneMetadata.format(device, crc32c, geometry, regionCount);
    }
    const superblock = candidates.reduce((a, b) => (b.generation > a.generation ? b : a));
    if (superblock.regionSectors !== geometry.regionSectors) {
      throw new BlockError('EINVAL', `metadata was formatted with region size ${superblock.regionSectors} sectors, not ${geometry.regionSectors}`, { device: device.name });
    }
    if (superblock.targetSectors !== geometry.targetSectors) {
      throw new BlockError('EINVAL', `metadata was formatted for a target of ${superblock.targetSectors} sectors, not ${geometry.targetSectors}`, { device: device.name });
    }
    return CloneMetadata.load(device, crc32c, superblock);
  }

  private static async format(device: BlockDevice, crc32c: Crc32c, geometry: CloneGeometry, regionCount: number): Promise<CloneMetadata> {
    const uuid = new Uint8Array(UUID_BYTES);
    crypto.getRandomValues(uuid);
    const blockCount = bitmapBlockCountFor(regionCount);
    // Every bitmap block gets a valid, empty slot 0 at generation 0, so that later a block with no
    // valid slot can only mean corruption. Slot 1 and superblock slot 1 are zeroed.
    const chunk = new Uint8Array(PAIRS_PER_IO * 2 * METADATA_BLOCK_BYTES);
    for (let first = 0; first < blockCount; first += PAIRS_PER_IO) {
      const pairs = Math.min(PAIRS_PER_IO, blockCount - first);
      chunk.fill(0);
      for (let p = 0; p < pairs; p++) {
        const block = chunk.subarray(2 * p * METADATA_BLOCK_BYTES, (2 * p + 1) * METADATA_BLOCK_BYTES);
        sealBitmapBlock(block, { index: first + p, generation: 0, uuid }, crc32c);
      }
      await device.write(bitmapSlotBlock(first, 0) * METADATA_BLOCK_BYTES, chunk.subarray(0, 2 * pairs * METADATA_BLOCK_BYTES));
    }
    await device.write(METADATA_BLOCK_BYTES, new Uint8Array(METADATA_BLOCK_BYTES));
    await device.flush();
    const superblock: Superblock = {
      blockNumber: 0, generation: 0, regionSectors: geometry.regionSectors, targetSectors: geometry.targetSectors,
      regionCount, bitmapBlockCount: blockCount, hydratedCount: 0, uuid,
    };
    await device.write(0, encodeSuperblock(superblock, crc32c));
    await device.flush();
    const bits = await RegionBitmap.create(regionCount);
    return new CloneMetadata(device, crc32c, superblock, bits, new Uint8Array(blockCount), 0);
  }

  private static async load(device: BlockDevice, crc32c: Crc32c, superblock: Superblock): Promise<CloneMetadata> {
    const { bitmap, currentSlot, highestGeneration, stale } = await readBitmap(device, crc32c, superblock);
    const metadata = new CloneMetadata(device, crc32c, superblock, bitmap, currentSlot, highestGeneration);
    for (const block of stale) metadata.dirty.add(block);
    return metadata;
  }

  /** Replaces the in-core bitmap by the committed state on disk (after a failed commit). */
  async reload(): Promise<void> {
    const { bitmap, currentSlot, highestGeneration, stale } = await readBitmap(this.device, this.crc32c, { ...this.superblock, generation: this.generation, hydratedCount: this.committedCount });
    this.bits?.release();
    this.bits = bitmap;
    this.currentSlot.set(currentSlot);
    this.nextGeneration = Math.max(this.nextGeneration, highestGeneration + 1);
    this.dirty = new Set(stale);
  }

  /**
   * Commits the dirty bitmap blocks; resolves when they are durable. `flushData` must make the
   * destination durable. Concurrent calls share commits: a caller arriving while a commit runs
   * gets the next one (its bits may postdate the running commit's snapshot).
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
    // Snapshot, synchronously: the dirty blocks' words and the count belong to one instant.
    const blocks = [...this.dirty].sort((a, b) => a - b);
    const hydratedCount = this.hydratedCount;
    const images: Uint8Array[] = [];
    let generation = this.nextGeneration;
    if (generation % SUPERBLOCK_SLOTS === this.superblockSlot) generation++;
    if (this.bits !== null) {
      for (const index of blocks) {
        const image = new Uint8Array(METADATA_BLOCK_BYTES);
        const startWord = index * WORDS_PER_BITMAP_BLOCK;
        const wordCount = Math.min(WORDS_PER_BITMAP_BLOCK, this.bits.wordCount - startWord);
        image.set(this.bits.toBytes(startWord, wordCount), BITMAP_HEADER_BYTES);
        images.push(sealBitmapBlock(image, { index, generation, uuid: this.superblock.uuid }, this.crc32c));
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
          writes.push(this.device.write(bitmapSlotBlock(index, spare) * METADATA_BLOCK_BYTES, images[i]!));
        }
        await Promise.all(writes);
      }
      await this.device.flush();
      const superblock: Superblock = { ...this.superblock, blockNumber: generation % SUPERBLOCK_SLOTS, generation, hydratedCount };
      await this.device.write(superblock.blockNumber * METADATA_BLOCK_BYTES, encodeSuperblock(superblock, this.crc32c));
      await this.device.flush();
    } catch (error) {
      for (const index of blocks) this.dirty.add(index);
      throw error;
    }
    for (const index of blocks) this.currentSlot[index] = 1 - this.currentSlot[index]!;
    this.generation = generation;
    this.superblockSlot = generation % SUPERBLOCK_SLOTS;
    this.committedCount = hydratedCount;
    this.commitCount++;
  }

  /** Drops the in-core bitmap once every region is hydrated and that state is committed. */
  releaseIfComplete(): boolean {
    if (this.bits === null) return true;
    if (this.bits.setCount !== this.regionCount || this.dirty.size > 0 || this.committedCount !== this.regionCount) return false;
    this.bits.release();
    this.bits = null;
    return true;
  }

  close(): void {
    this.bits?.release();
    this.bits = null;
  }
}

interface LoadedBitmap {
  bitmap: RegionBitmap;
  currentSlot: Uint8Array;
  highestGeneration: number;
  /** Blocks whose spare slot carries a generation above the superblock's (an aborted commit). */
  stale: number[];
}

async function readBitmap(device: BlockDevice, crc32c: Crc32c, superblock: Superblock): Promise<LoadedBitmap> {
  const bitmap = await RegionBitmap.create(superblock.regionCount);
  try {
    const blockCount = superblock.bitmapBlockCount;
    const currentSlot = new Uint8Array(blockCount);
    const stale: number[] = [];
    let highestGeneration = superblock.generation;
    const chunk = new Uint8Array(PAIRS_PER_IO * 2 * METADATA_BLOCK_BYTES);
    for (let first = 0; first < blockCount; first += PAIRS_PER_IO) {
      const pairs = Math.min(PAIRS_PER_IO, blockCount - first);
      const bytes = chunk.subarray(0, 2 * pairs * METADATA_BLOCK_BYTES);
      await device.read(bitmapSlotBlock(first, 0) * METADATA_BLOCK_BYTES, bytes);
      for (let p = 0; p < pairs; p++) {
        const index = first + p;
        let best = -1;
        let bestGeneration = -1;
        for (let slot = 0; slot < 2; slot++) {
          const block = bytes.subarray((2 * p + slot) * METADATA_BLOCK_BYTES, (2 * p + slot + 1) * METADATA_BLOCK_BYTES);
          const generation = bitmapBlockGeneration(block, index, superblock.uuid, crc32c);
          if (generation === null) continue;
          highestGeneration = Math.max(highestGeneration, generation);
          if (generation > superblock.generation) stale.push(index);
          else if (generation > bestGeneration) {
            best = slot;
            bestGeneration = generation;
          }
        }
        if (best < 0) {
          throw new BlockError('EIO', `metadata corrupt: bitmap block ${index} has no valid committed copy`, { device: device.name, offsetBytes: bitmapSlotBlock(index, 0) * METADATA_BLOCK_BYTES });
        }
        currentSlot[index] = best;
        const startWord = index * WORDS_PER_BITMAP_BLOCK;
        const wordCount = Math.min(WORDS_PER_BITMAP_BLOCK, bitmap.wordCount - startWord);
        const payloadAt = (2 * p + best) * METADATA_BLOCK_BYTES + BITMAP_HEADER_BYTES;
        const payload = bytes.subarray(payloadAt, payloadAt + wordCount * WORD_BYTES);
        bitmap.loadBytes(startWord, payload);
        // Words past the last region's word must be zero on disk.
        if (!isAllZero(bytes.subarray(payloadAt + wordCount * WORD_BYTES, (2 * p + best + 1) * METADATA_BLOCK_BYTES))) {
          throw new BlockError('EIO', `metadata corrupt: bitmap block ${index} has bits past the last region`, { device: device.name });
        }
      }
    }
    if (bitmap.setCount !== superblock.hydratedCount) {
      throw new BlockError('EIO', `metadata corrupt: superblock says ${superblock.hydratedCount} regions hydrated, the bitmap holds ${bitmap.setCount}`, { device: device.name });
    }
    return { bitmap, currentSlot, highestGeneration, stale };
  } catch (error) {
    bitmap.release();
    throw error;
  }
}
