/**
 * Where things sit on a leg of a clustered array (md v1.2 with a clustered bitmap), as
 * md-cluster.rst draws it and mdadm computes it:
 *
 *   0        4 KiB idle
 *   4 KiB    md superblock (MD_SB_OFFSET_SECTORS), its 4 KiB area
 *   8 KiB    bitmap area of node slot 0 (bitmap_offset = 8 sectors from the superblock), then
 *            slot 1, ... each `bitmapAreaBytes` long (superblock + bits rounded up to 4 KiB)
 *   data     data_offset: past every slot's area, rounded up to 1 MiB (at least 1 MiB, as mdadm)
 *
 * A leg's usable size (`size`, the same on every leg) is what the smallest leg has after
 * data_offset, rounded down to 4 KiB (raid1) or to the raid10 chunk. The bitmap covers the
 * array's sectors (md's resync_max_sectors): a leg's for raid1, legs x near copies' share for raid10.
 *
 * The bitmap, as md has it (`bitmap`): clustered (version 5, one area per node slot), internal
 * (version 4, one area: one node), or none (no area referenced: md marks the array dirty in its
 * superblock while writing, and a crash resyncs all of it). data_offset keeps room for the
 * clustered bitmap of `nodes` slots whatever the bitmap is now, so a switch back fits.
 */
import { bitmapAreaBytes, BITMAP_CHUNK_BYTES_MIN, BITMAP_SB_BYTES } from './bitmap-superblock.ts';
import { MD_SB_AREA_BYTES, MD_SB_OFFSET_SECTORS, SECTOR_BYTES } from './md-superblock.ts';

export const BITMAP_OFFSET_SECTORS = MD_SB_AREA_BYTES / SECTOR_BYTES;
export const DATA_ALIGN_SECTORS = 2048;
export const RAID1_SIZE_ALIGN_SECTORS = 8;
/** The kernel's MD_CLUSTER slots are few; a bound that keeps data_offset sane. */
export const NODES_MAX = 32;

export type BitmapMode = 'clustered' | 'internal' | 'none';

/** Without a bitmap, the chunk the resync walks (and the unit of a resync's progress). */
export const NO_BITMAP_CHUNK_BYTES = 1024 * 1024;

export interface LegLayout {
  bitmap: BitmapMode;
  /** Node slots of the bitmap (1 for internal and none). */
  nodes: number;
  bitmapChunkBytes: number;
  /** Sectors of each leg the array uses (md's `size`), from data_offset. */
  sizeSectors: number;
  dataOffsetSectors: number;
  /** One node slot's area: bitmap superblock and bits, 4 KiB aligned. */
  bitmapAreaBytes: number;
}

/** Byte offset of node slot `slot` (0-based)'s bitmap superblock. */
export function bitmapAreaOffsetBytes(layout: LegLayout, slot: number): number {
  return (MD_SB_OFFSET_SECTORS + BITMAP_OFFSET_SECTORS) * SECTOR_BYTES + slot * layout.bitmapAreaBytes;
}

/** Chunks a slot area of this layout can hold without growing (a resize that needs more would move every slot). */
export function slotChunkCapacity(layout: LegLayout): number {
  return (layout.bitmapAreaBytes - BITMAP_SB_BYTES) * 8;
}

export function superblockOffsetBytes(): number {
  return MD_SB_OFFSET_SECTORS * SECTOR_BYTES;
}

/**
 * Plans the layout for legs of which the smallest has `legBytes`; `sizeAlignSectors` is 8 for
 * raid1 or the raid10 chunk. A string says why it cannot be done.
 */
export function planLegLayout(
  legBytes: number,
  nodes: number,
  bitmapChunkBytes: number,
  sizeAlignSectors: number,
  bitmapSectorsOf: (sizeSectors: number) => number = (sizeSectors) => sizeSectors,
): LegLayout | string {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > NODES_MAX) return `nodes must be 1 to ${NODES_MAX}`;
  if (bitmapChunkBytes < BITMAP_CHUNK_BYTES_MIN || (bitmapChunkBytes & (bitmapChunkBytes - 1)) !== 0 || bitmapChunkBytes > 2 ** 30) {
    return `the bitmap chunk must be a power of two from ${BITMAP_CHUNK_BYTES_MIN} bytes to 1 GiB`;
  }
  const legSectors = Math.floor(legBytes / SECTOR_BYTES);
  // Reserve as if the whole leg were data: the real size is smaller, so its area fits.
  const reservedAreaBytes = bitmapAreaBytes(bitmapSectorsOf(legSectors), bitmapChunkBytes);
  const metadataSectors = MD_SB_OFFSET_SECTORS + BITMAP_OFFSET_SECTORS + (nodes * reservedAreaBytes) / SECTOR_BYTES;
  const dataOffsetSectors = Math.max(DATA_ALIGN_SECTORS, Math.ceil(metadataSectors / DATA_ALIGN_SECTORS) * DATA_ALIGN_SECTORS);
  const sizeSectors = Math.floor((legSectors - dataOffsetSectors) / sizeAlignSectors) * sizeAlignSectors;
  if (sizeSectors <= 0) return `a leg of ${legBytes} bytes has no room for data after ${dataOffsetSectors * SECTOR_BYTES} bytes of metadata`;
  return { bitmap: 'clustered', nodes, bitmapChunkBytes, sizeSectors, dataOffsetSectors, bitmapAreaBytes: bitmapAreaBytes(bitmapSectorsOf(sizeSectors), bitmapChunkBytes) };
}
