/**
 * Sizes of a clustered array: what users ask for (the array's bytes, as the device shows them) and
 * what md records (`size`: sectors used on every leg, from data_offset). raid1: the same number,
 * in 4 KiB steps. raid10 near: whole chunks per leg, the array `legs x size / near copies` rounded
 * down to whole chunks (raid-layout.ts), so not every byte count is a raid10 size: a request that
 * is not one is refused naming the two nearest.
 */
import { bitmapAreaBytes, bitmapChunkCount } from './bitmap-superblock.ts';
import { RAID1_SIZE_ALIGN_SECTORS } from './leg-layout.ts';
import { raid10ArraySectors } from './raid-layout.ts';
import { SECTOR_BYTES } from './md-superblock.ts';
import { assert } from '../assert.ts';

export interface SizeShape {
  level: 'raid1' | 'raid10';
  raidDisks: number;
  /** raid10 near copies (ignored for raid1). */
  nearCopies: number;
  /** raid10 chunk (ignored for raid1). */
  chunkSectors: number;
}

/** The step a leg's size moves in. */
export function legAlignSectors(shape: SizeShape): number {
  return shape.level === 'raid10' ? shape.chunkSectors : RAID1_SIZE_ALIGN_SECTORS;
}

/** Array sectors (what the bitmap covers) of legs using `legSectors`. */
export function arraySectorsOf(shape: SizeShape, legSectors: number): number {
  return shape.level === 'raid10' ? raid10ArraySectors(shape.raidDisks, shape.nearCopies, shape.chunkSectors, legSectors) : legSectors;
}

/** The leg size giving exactly `arrayBytes`, or why there is none. */
export function legSectorsFor(shape: SizeShape, arrayBytes: number): number | string {
  const align = legAlignSectors(shape);
  if (shape.level === 'raid1') {
    if (arrayBytes % (align * SECTOR_BYTES) !== 0) return `sizeBytes must be a multiple of ${align * SECTOR_BYTES}, got ${arrayBytes}`;
    return arrayBytes / SECTOR_BYTES;
  }
  const arraySectors = arrayBytes / SECTOR_BYTES;
  // The smallest leg size reaching the request, and the one below it.
  const legChunks = Math.ceil((Math.ceil(arraySectors / shape.chunkSectors) * shape.nearCopies) / shape.raidDisks);
  if (Number.isInteger(arraySectors) && arraySectorsOf(shape, legChunks * align) === arraySectors) return legChunks * align;
  const below = arraySectorsOf(shape, (legChunks - 1) * align) * SECTOR_BYTES;
  const above = arraySectorsOf(shape, legChunks * align) * SECTOR_BYTES;
  return `sizeBytes ${arrayBytes} is not a size of this raid10 layout; the nearest are ${below} and ${above}`;
}

/**
 * The largest leg size at most `legMaxSectors` whose bitmap fits `chunkCapacity` chunks of
 * `bitmapChunkBytes` (md's size is monotone in it, so a binary search over the steps).
 */
export function largestLegSectors(shape: SizeShape, legMaxSectors: number, bitmapChunkBytes: number, chunkCapacity: number): number {
  assert(Number.isSafeInteger(legMaxSectors) && legMaxSectors >= 0, `leg size bound ${legMaxSectors} is not a sector count`);
  const align = legAlignSectors(shape);
  const fits = (steps: number) => bitmapChunkCount(arraySectorsOf(shape, steps * align), bitmapChunkBytes) <= chunkCapacity;
  let low = 0;
  let high = Math.floor(legMaxSectors / align);
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (fits(mid)) low = mid;
    else high = mid - 1;
  }
  return low * align;
}

/** The smallest leg size whose bitmap still needs slot areas of `areaBytes` (a smaller one would move the slots). */
export function smallestLegSectors(shape: SizeShape, legMaxSectors: number, bitmapChunkBytes: number, areaBytes: number): number {
  assert(Number.isSafeInteger(legMaxSectors) && legMaxSectors >= 0, `leg size bound ${legMaxSectors} is not a sector count`);
  const align = legAlignSectors(shape);
  const fits = (steps: number) => bitmapAreaBytes(arraySectorsOf(shape, steps * align), bitmapChunkBytes) >= areaBytes;
  let low = 1;
  let high = Math.floor(legMaxSectors / align);
  while (low < high) {
    const mid = Math.floor((low + high) / 2);
    if (fits(mid)) high = mid;
    else low = mid + 1;
  }
  return low * align;
}
