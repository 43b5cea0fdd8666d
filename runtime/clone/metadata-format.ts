/**
 * On-disk format of a clone's metadata device, version 1. Frozen: test/fixtures/clone-metadata-v1
 * must always open. All integers little-endian. Blocks are METADATA_BLOCK_BYTES (4 KiB).
 *
 *   block 0, 1            superblock slots (written alternately: generation G goes to slot G % 2)
 *   block 2 + 2i + s      bitmap block i, slot s in {0, 1}
 *
 * Superblock:
 *   0   u32 checksum     crc32c over bytes [4, 4096), xor SUPERBLOCK_CSUM_XOR
 *   4   u32 flags        0 (reserved)
 *   8   u64 magic        SUPERBLOCK_MAGIC ("BLKCLONE")
 *   16  u32 version      1
 *   20  u32 blockBytes   4096
 *   24  u64 blockNumber  self-location: 0 or 1
 *   32  u64 generation   commit counter; the valid slot with the highest generation is current
 *   40  u64 regionSectors, 48 u64 targetSectors, 56 u64 regionCount, 64 u64 bitmapBlockCount
 *   72  u64 hydratedCount  regions set at this commit (cross-checked against the bitmap at open)
 *   80  u8[16] uuid      identifies this clone; every bitmap block carries it too
 *   96  ...              zero
 * Bitmap blocks: the layout of runtime/regions/bitmap-blocks.ts (header, index, generation, uuid,
 * 504 words of bits; 1 = hydrated), with magic BITMAP_MAGIC ("BCBM") and checksum xor
 * BITMAP_CSUM_XOR. Why two slots per bitmap block and how a commit goes: runtime/regions/slotted-bitmap.ts.
 */
import { assert } from '../assert.ts';
import {
  allZero, BITMAP_HEADER_BYTES, BITMAP_PAYLOAD_BYTES, bitmapBlockCountFor, bitmapBlockGeneration as slotGeneration, bitmapSlotBlock,
  BITS_PER_BITMAP_BLOCK, BLOCK_BYTES, blockChecksum, COMMIT_SLOTS, sealBitmapBlock as sealSlot, slottedBlocksFor, u64, UUID_BYTES,
  WORDS_PER_BITMAP_BLOCK, type BitmapBlockHeader, type BitmapBlockKind, type Crc32c,
} from '../regions/bitmap-blocks.ts';

export {
  BITMAP_HEADER_BYTES, BITMAP_PAYLOAD_BYTES, bitmapBlockCountFor, bitmapSlotBlock, BITS_PER_BITMAP_BLOCK, UUID_BYTES, WORDS_PER_BITMAP_BLOCK,
  type BitmapBlockHeader, type Crc32c,
};

export const METADATA_BLOCK_BYTES = BLOCK_BYTES;
export const SUPERBLOCK_SLOTS = COMMIT_SLOTS;
export const SUPERBLOCK_MAGIC = 0x424c4b434c4f4e45n; // "BLKCLONE"
export const BITMAP_MAGIC = 0x4d424342; // "BCBM" little-endian
export const FORMAT_VERSION = 1;
export const SUPERBLOCK_CSUM_XOR = 0x5bc1_0e00;
export const BITMAP_CSUM_XOR = 0x0b17_3a9d;
export const SUPERBLOCK_FIXED_BYTES = 96;
/** The clone's bitmap blocks (runtime/regions/bitmap-blocks.ts) carry these. */
export const CLONE_BITMAP_KIND: BitmapBlockKind = { magic: BITMAP_MAGIC, checksumXor: BITMAP_CSUM_XOR };

assert(METADATA_BLOCK_BYTES === 4096 && SUPERBLOCK_SLOTS === 2, 'format v1: 4 KiB blocks, two superblock slots');
assert(WORDS_PER_BITMAP_BLOCK === 504 && BITMAP_HEADER_BYTES === 64, 'format v1: 64-byte bitmap header, 504 words');

export interface Superblock {
  blockNumber: number;
  generation: number;
  regionSectors: number;
  targetSectors: number;
  regionCount: number;
  bitmapBlockCount: number;
  hydratedCount: number;
  uuid: Uint8Array;
}

/** Blocks a metadata device needs: both superblock slots and both slots of every bitmap block. */
export function metadataBlocksFor(regionCount: number): number {
  return slottedBlocksFor(regionCount);
}

export function encodeSuperblock(sb: Superblock, crc32c: Crc32c, block = new Uint8Array(METADATA_BLOCK_BYTES)): Uint8Array {
  assert(block.length === METADATA_BLOCK_BYTES, 'superblock buffer is one block');
  assert(sb.uuid.length === UUID_BYTES, 'uuid is 16 bytes');
  block.fill(0);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  view.setBigUint64(8, SUPERBLOCK_MAGIC, true);
  view.setUint32(16, FORMAT_VERSION, true);
  view.setUint32(20, METADATA_BLOCK_BYTES, true);
  view.setBigUint64(24, BigInt(sb.blockNumber), true);
  view.setBigUint64(32, BigInt(sb.generation), true);
  view.setBigUint64(40, BigInt(sb.regionSectors), true);
  view.setBigUint64(48, BigInt(sb.targetSectors), true);
  view.setBigUint64(56, BigInt(sb.regionCount), true);
  view.setBigUint64(64, BigInt(sb.bitmapBlockCount), true);
  view.setBigUint64(72, BigInt(sb.hydratedCount), true);
  block.set(sb.uuid, 80);
  view.setUint32(0, blockChecksum(block, crc32c, SUPERBLOCK_CSUM_XOR), true);
  assert(invalidSuperblock(block, sb.blockNumber, crc32c) === null, 'encoded superblock checks');
  return block;
}

/** Why `block` read from `blockNumber` is not a valid superblock, or null when it is. */
export function invalidSuperblock(block: Uint8Array, blockNumber: number, crc32c: Crc32c): string | null {
  if (block.length !== METADATA_BLOCK_BYTES) return 'wrong size';
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (view.getBigUint64(8, true) !== SUPERBLOCK_MAGIC) return 'bad magic';
  if (view.getUint32(0, true) !== blockChecksum(block, crc32c, SUPERBLOCK_CSUM_XOR)) return 'bad checksum';
  if (view.getUint32(16, true) !== FORMAT_VERSION) return `unsupported version ${view.getUint32(16, true)}`;
  if (view.getUint32(20, true) !== METADATA_BLOCK_BYTES) return 'bad block size';
  if (u64(view, 24) !== blockNumber) return `self-location ${u64(view, 24)} read from block ${blockNumber}`;
  if (view.getUint32(4, true) !== 0 || !allZero(block, SUPERBLOCK_FIXED_BYTES)) return 'reserved bytes not zero';
  const sb = readSuperblockFields(view, block);
  if (![sb.generation, sb.regionSectors, sb.targetSectors, sb.regionCount, sb.bitmapBlockCount, sb.hydratedCount].every(Number.isSafeInteger)) {
    return 'field out of range';
  }
  if (sb.regionCount !== Math.ceil(sb.targetSectors / sb.regionSectors)) return 'region count does not match sizes';
  if (sb.bitmapBlockCount !== bitmapBlockCountFor(sb.regionCount)) return 'bitmap block count does not match';
  if (sb.hydratedCount > sb.regionCount) return 'hydrated count above region count';
  return null;
}

function readSuperblockFields(view: DataView, block: Uint8Array): Superblock {
  return {
    blockNumber: u64(view, 24),
    generation: u64(view, 32),
    regionSectors: u64(view, 40),
    targetSectors: u64(view, 48),
    regionCount: u64(view, 56),
    bitmapBlockCount: u64(view, 64),
    hydratedCount: u64(view, 72),
    uuid: block.slice(80, 80 + UUID_BYTES),
  };
}

/** Decodes a superblock that `invalidSuperblock` accepted. */
export function decodeSuperblock(block: Uint8Array): Superblock {
  return readSuperblockFields(new DataView(block.buffer, block.byteOffset, block.byteLength), block);
}

/** Fills the header of `block` (payload already in place at BITMAP_HEADER_BYTES) and its checksum. */
export function sealBitmapBlock(block: Uint8Array, header: BitmapBlockHeader, crc32c: Crc32c): Uint8Array {
  return sealSlot(block, header, CLONE_BITMAP_KIND, crc32c);
}

/** The generation of a valid bitmap block for (index, uuid), or null when the block is not one. */
export function bitmapBlockGeneration(block: Uint8Array, index: number, uuid: Uint8Array, crc32c: Crc32c): number | null {
  return slotGeneration(block, index, uuid, CLONE_BITMAP_KIND, crc32c);
}
