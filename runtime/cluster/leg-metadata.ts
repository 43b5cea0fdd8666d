/**
 * Reading and writing a leg's metadata (md v1.2 superblock and every node slot's bitmap area)
 * through any BlockDevice. Every structure is checked before it is written (encoders assert)
 * and after it is read (decoders: magic, version, checksum, self-location; then the bitmap must
 * agree with the superblock: same array uuid, clustered, a size it covers). A leg that fails a
 * check is refused with a coded error naming the leg; nothing is written to it.
 */
import { BlockError } from '../errors.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import {
  bitmapAreaBytes, bitmapChunkCount, BITMAP_SB_BYTES, BITMAP_VERSION_CLUSTERED, BITMAP_VERSION_INTERNAL, decodeBitmapSuperblock, encodeBitmapSuperblock, type BitmapSuperblock,
} from './bitmap-superblock.ts';
import { bitmapAreaOffsetBytes, BITMAP_OFFSET_SECTORS, NO_BITMAP_CHUNK_BYTES, superblockOffsetBytes, type BitmapMode, type LegLayout } from './leg-layout.ts';
import { raid10ArraySectors } from './raid-layout.ts';
import {
  decodeMdSuperblock, encodeMdSuperblock, MD_FEATURE, MD_SB_AREA_BYTES, MD_SB_OFFSET_SECTORS, SECTOR_BYTES, type MdSuperblock,
} from './md-superblock.ts';

export const BITMAP_PAGE_BYTES = 4096;

/** A node slot's bitmap: its superblock and one bit per chunk (bit i: byte i >> 3, bit i & 7). */
export interface NodeBitmap {
  sb: BitmapSuperblock;
  bits: Uint8Array;
}

export async function writeMdSuperblock(device: BlockDevice, sb: MdSuperblock): Promise<void> {
  const area = new Uint8Array(MD_SB_AREA_BYTES);
  area.set(encodeMdSuperblock(sb));
  await device.write(superblockOffsetBytes(), area);
}

export async function readMdSuperblock(device: BlockDevice): Promise<MdSuperblock> {
  if (device.sizeBytes < superblockOffsetBytes() + MD_SB_AREA_BYTES) {
    throw new BlockError('EINVAL', 'too small to hold an md superblock', { device: device.name });
  }
  const area = new Uint8Array(MD_SB_AREA_BYTES);
  await device.read(superblockOffsetBytes(), area);
  const sb = decodeMdSuperblock(area, MD_SB_OFFSET_SECTORS);
  if (typeof sb === 'string') throw new BlockError('EINVAL', sb, { device: device.name, offsetBytes: superblockOffsetBytes() });
  if ((sb.featureMap & MD_FEATURE.BITMAP_OFFSET) !== 0 && sb.bitmapOffsetSectors !== BITMAP_OFFSET_SECTORS) {
    throw new BlockError('EINVAL', `the bitmap is ${sb.bitmapOffsetSectors} sectors after the superblock, not ${BITMAP_OFFSET_SECTORS}`, { device: device.name });
  }
  if ((sb.featureMap & MD_FEATURE.CLUSTERED) !== 0 && (sb.featureMap & MD_FEATURE.BITMAP_OFFSET) === 0) {
    throw new BlockError('EINVAL', 'clustered without a bitmap', { device: device.name });
  }
  if (sb.dataOffsetSectors * SECTOR_BYTES > device.sizeBytes || (sb.dataOffsetSectors + sb.sizeSectors) * SECTOR_BYTES > device.sizeBytes) {
    throw new BlockError('EINVAL', `data_offset ${sb.dataOffsetSectors} + size ${sb.sizeSectors} sectors is beyond the leg`, { device: device.name });
  }
  return sb;
}

/** Encodes a whole slot area: superblock, bits, zero padding. */
export function encodeBitmapArea(layout: LegLayout, bitmap: NodeBitmap): Uint8Array {
  const area = new Uint8Array(layout.bitmapAreaBytes);
  area.set(encodeBitmapSuperblock(bitmap.sb));
  area.set(bitmap.bits.subarray(0, layout.bitmapAreaBytes - BITMAP_SB_BYTES), BITMAP_SB_BYTES);
  return area;
}

export async function writeBitmapArea(device: BlockDevice, layout: LegLayout, slot: number, bitmap: NodeBitmap): Promise<void> {
  await device.write(bitmapAreaOffsetBytes(layout, slot), encodeBitmapArea(layout, bitmap));
}

/** Reads slot `slot`'s area and checks it against the array's superblock. */
export async function readBitmapArea(device: BlockDevice, layout: LegLayout, slot: number, md: MdSuperblock, syncSizeSectors = bitmapSectorsOf(md)): Promise<NodeBitmap> {
  const offsetBytes = bitmapAreaOffsetBytes(layout, slot);
  const area = new Uint8Array(layout.bitmapAreaBytes);
  await device.read(offsetBytes, area);
  const sb = decodeBitmapSuperblock(area);
  const fail = (why: string) => new BlockError('EINVAL', `bitmap slot ${slot}: ${why}`, { device: device.name, offsetBytes });
  if (typeof sb === 'string') throw fail(sb);
  const version = bitmapVersionOf(layout.bitmap);
  if (sb.version !== version) throw fail(`version ${sb.version}, expected ${version} (${layout.bitmap})`);
  if (!equalBytes(sb.uuid, md.setUuid)) throw fail('its uuid is not the array uuid');
  if (sb.chunkBytes !== layout.bitmapChunkBytes || (layout.bitmap === 'clustered' && sb.nodes !== layout.nodes)) throw fail('chunk size or node count differs from slot 0');
  // A resize commits the superblock's size first and each slot's sync_size after it (array-resize.ts):
  // a slot left with the other size is read as long as its area has the same length (it sits where
  // the layout puts it); its bits are taken for the chunks the array has.
  const sameArea = (sectors: number) => bitmapAreaBytes(sectors, sb.chunkBytes) === layout.bitmapAreaBytes;
  if (sb.syncSizeSectors !== syncSizeSectors && !(sameArea(sb.syncSizeSectors) && sameArea(syncSizeSectors))) {
    throw fail(`sync_size ${sb.syncSizeSectors} sectors, the array has ${syncSizeSectors}`);
  }
  const chunks = bitmapChunkCount(syncSizeSectors, sb.chunkBytes);
  const bits = area.slice(BITMAP_SB_BYTES, BITMAP_SB_BYTES + Math.ceil(chunks / 8));
  if (chunks & 7) bits[bits.length - 1]! &= (1 << (chunks & 7)) - 1;
  return { sb: { ...sb, syncSizeSectors }, bits };
}

/** The sectors a bitmap covers: the array's (raid10: legs x size / near copies, whole chunks). */
export function bitmapSectorsOf(md: MdSuperblock): number {
  if (md.level !== 10) return md.sizeSectors;
  return raid10ArraySectors(md.raidDisks, md.layout & 0xff, md.chunkSectors, md.sizeSectors);
}

/** The bitmap superblock version of each kind (md's BITMAP_MAJOR_HI and BITMAP_MAJOR_CLUSTERED). */
export function bitmapVersionOf(mode: BitmapMode): number {
  return mode === 'clustered' ? BITMAP_VERSION_CLUSTERED : BITMAP_VERSION_INTERNAL;
}

/** The layout a leg's metadata describes, read from its superblock and slot 0's bitmap superblock. */
export async function readLegLayout(device: BlockDevice, md: MdSuperblock): Promise<LegLayout> {
  if ((md.featureMap & MD_FEATURE.BITMAP_OFFSET) === 0) {
    return { bitmap: 'none', nodes: 1, bitmapChunkBytes: NO_BITMAP_CHUNK_BYTES, sizeSectors: md.sizeSectors, dataOffsetSectors: md.dataOffsetSectors, bitmapAreaBytes: 0 };
  }
  const clustered = (md.featureMap & MD_FEATURE.CLUSTERED) !== 0;
  const offsetBytes = (MD_SB_OFFSET_SECTORS + BITMAP_OFFSET_SECTORS) * SECTOR_BYTES;
  const head = new Uint8Array(BITMAP_PAGE_BYTES);
  await device.read(offsetBytes, head);
  const sb = decodeBitmapSuperblock(head);
  if (typeof sb === 'string') throw new BlockError('EINVAL', `bitmap slot 0: ${sb}`, { device: device.name, offsetBytes });
  if (sb.version !== bitmapVersionOf(clustered ? 'clustered' : 'internal')) {
    throw new BlockError('EINVAL', `bitmap version ${sb.version} on a${clustered ? ' clustered' : 'n unclustered'} array`, { device: device.name, offsetBytes });
  }
  if (clustered && sb.nodes < 1) throw new BlockError('EINVAL', 'bitmap slot 0 is not clustered (nodes 0)', { device: device.name, offsetBytes });
  // Where the slots sit follows from the array's size (as mdadm computes it); slot 0 must agree.
  const areaBytes = bitmapAreaBytes(bitmapSectorsOf(md), sb.chunkBytes);
  if (bitmapAreaBytes(sb.syncSizeSectors, sb.chunkBytes) !== areaBytes) {
    throw new BlockError('EINVAL', `bitmap slot 0 covers ${sb.syncSizeSectors} sectors in areas of another length than the array's ${bitmapSectorsOf(md)} need`, { device: device.name, offsetBytes });
  }
  const layout: LegLayout = {
    bitmap: clustered ? 'clustered' : 'internal',
    nodes: clustered ? sb.nodes : 1, bitmapChunkBytes: sb.chunkBytes, sizeSectors: md.sizeSectors, dataOffsetSectors: md.dataOffsetSectors, bitmapAreaBytes: areaBytes,
  };
  if (bitmapAreaOffsetBytes(layout, layout.nodes) > md.dataOffsetSectors * SECTOR_BYTES) {
    throw new BlockError('EINVAL', `${layout.nodes} bitmap slots reach past data_offset`, { device: device.name });
  }
  return layout;
}

/** Which 4 KiB page of a slot area holds the bit of `chunk` (the superblock shares page 0). */
export function bitmapPageOf(chunk: number): number {
  return Math.floor((BITMAP_SB_BYTES + (chunk >> 3)) / BITMAP_PAGE_BYTES);
}

/** Page `page` of a slot area, built from the superblock and the bits as they are now. */
export function bitmapPageBytes(bitmap: NodeBitmap, page: number): Uint8Array {
  const bytes = new Uint8Array(BITMAP_PAGE_BYTES);
  if (page === 0) {
    bytes.set(encodeBitmapSuperblock(bitmap.sb));
    bytes.set(bitmap.bits.subarray(0, BITMAP_PAGE_BYTES - BITMAP_SB_BYTES), BITMAP_SB_BYTES);
  } else {
    const first = page * BITMAP_PAGE_BYTES - BITMAP_SB_BYTES;
    bytes.set(bitmap.bits.subarray(first, first + BITMAP_PAGE_BYTES));
  }
  return bytes;
}

/** The page of slot `slot`'s area holding `chunk`'s bit: where it goes and its bytes. */
export function bitmapPage(layout: LegLayout, slot: number, bitmap: NodeBitmap, chunk: number): { offsetBytes: number; bytes: Uint8Array } {
  const page = bitmapPageOf(chunk);
  return { offsetBytes: bitmapAreaOffsetBytes(layout, slot) + page * BITMAP_PAGE_BYTES, bytes: bitmapPageBytes(bitmap, page) };
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
