/**
 * CloneMetadata: the region bitmap of a clone (1 = the destination holds the region's data),
 * kept in core and committed to the metadata device in the format of metadata-format.ts. The
 * commit itself is the engine-neutral two-slot checksummed commit of
 * runtime/regions/slotted-bitmap.ts (read its note for the durability rules and why two slots);
 * this file adds what is the clone's: the superblock (format v1), geometry checks at open, and
 * formatting a blank device.
 *
 * Durability, in the clone's words:
 * - `markHydrated` only changes memory. The caller sets a bit only after the region's data write
 *   to the destination has completed.
 * - `commit(flushData)`: `flushData` is the destination's flush, so no committed bit ever says
 *   "hydrated" for data that is not durable. When it resolves, the snapshot taken at its start
 *   is durable.
 * - A commit that fails leaves the last committed state on disk untouched; the clone goes
 *   read-only and may `reload()` it.
 */
import type { RegionBitmap } from '../bitmap.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';
import { allZero } from '../regions/bitmap-blocks.ts';
import { SlottedBitmap, type SlottedBitmapParams } from '../regions/slotted-bitmap.ts';
import { defaultKernels } from '../wasm/kernels.ts';
import {
  bitmapBlockCountFor, CLONE_BITMAP_KIND, decodeSuperblock, encodeSuperblock, invalidSuperblock, METADATA_BLOCK_BYTES, metadataBlocksFor,
  SUPERBLOCK_SLOTS, UUID_BYTES, type Crc32c, type Superblock,
} from './metadata-format.ts';

export interface CloneGeometry {
  regionSectors: number;
  targetSectors: number;
}

export interface MetadataUsage {
  usedBlocks: number;
  totalBlocks: number;
}

export class CloneMetadata {
  private constructor(
    private readonly superblock: Superblock,
    private readonly slotted: SlottedBitmap,
  ) {}

  get device(): BlockDevice {
    return this.slotted.device;
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
    return this.slotted.bitmap;
  }

  get hydratedCount(): number {
    return this.slotted.setCount;
  }

  /** Regions set at the last commit; tells a status line what is durable. */
  get committedCount(): number {
    return this.slotted.committedCount;
  }

  get commitCount(): number {
    return this.slotted.commitCount;
  }

  get changed(): boolean {
    return this.slotted.changed;
  }

  /** A commit is running (its snapshot may hold bits that are not durable yet). */
  get isCommitting(): boolean {
    return this.slotted.isCommitting;
  }

  /** Resolves once no commit runs or waits; starts none (SlottedBitmap.settled). */
  settled(): Promise<void> {
    return this.slotted.settled();
  }

  get usage(): MetadataUsage {
    return { usedBlocks: metadataBlocksFor(this.regionCount), totalBlocks: Math.floor(this.device.sizeBytes / METADATA_BLOCK_BYTES) };
  }

  isHydrated(region: number): boolean {
    return this.slotted.get(region);
  }

  /** Marks regions [start, end) hydrated in core; durable after the next commit. */
  markHydrated(start: number, end: number): number {
    return this.slotted.setRange(start, end);
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
      if (!allZero(slots)) {
        throw new BlockError('EINVAL', `not clone metadata or corrupt superblock (${reasons.join('; ')})`, { device: device.name });
      }
      const uuid = new Uint8Array(UUID_BYTES);
      crypto.getRandomValues(uuid);
      const superblock: Superblock = {
        blockNumber: 0, generation: 0, regionSectors: geometry.regionSectors, targetSectors: geometry.targetSectors,
        regionCount, bitmapBlockCount: bitmapBlockCountFor(regionCount), hydratedCount: 0, uuid,
      };
      return new CloneMetadata(superblock, await SlottedBitmap.format(slottedParams(device, crc32c, superblock)));
    }
    const superblock = candidates.reduce((a, b) => (b.generation > a.generation ? b : a));
    if (superblock.regionSectors !== geometry.regionSectors) {
      throw new BlockError('EINVAL', `metadata was formatted with region size ${superblock.regionSectors} sectors, not ${geometry.regionSectors}`, { device: device.name });
    }
    if (superblock.targetSectors !== geometry.targetSectors) {
      throw new BlockError('EINVAL', `metadata was formatted for a target of ${superblock.targetSectors} sectors, not ${geometry.targetSectors}`, { device: device.name });
    }
    const slotted = await SlottedBitmap.load(slottedParams(device, crc32c, superblock), { generation: superblock.generation, slot: superblock.blockNumber, setCount: superblock.hydratedCount });
    return new CloneMetadata(superblock, slotted);
  }

  /** Replaces the in-core bitmap by the committed state on disk (after a failed commit). */
  reload(): Promise<void> {
    return this.slotted.reload();
  }

  /**
   * Commits the changed bitmap blocks; resolves when they are durable. `flushData` must make the
   * destination durable. Concurrent calls share commits (see SlottedBitmap.commit).
   */
  commit(flushData: () => Promise<void>): Promise<void> {
    return this.slotted.commit(flushData);
  }

  /** Drops the in-core bitmap once every region is hydrated and that state is committed. */
  releaseIfComplete(): boolean {
    return this.slotted.releaseIfFull();
  }

  close(): void {
    this.slotted.close();
  }
}

/** The slotted bitmap of a clone whose superblock (any generation) is `superblock`. */
function slottedParams(device: BlockDevice, crc32c: Crc32c, superblock: Superblock): SlottedBitmapParams {
  return {
    device, crc32c, kind: CLONE_BITMAP_KIND, uuid: superblock.uuid, bitCount: superblock.regionCount,
    commitPoint: {
      encode: (generation, hydratedCount) =>
        encodeSuperblock({ ...superblock, blockNumber: generation % SUPERBLOCK_SLOTS, generation, hydratedCount }, crc32c),
    },
  };
}
