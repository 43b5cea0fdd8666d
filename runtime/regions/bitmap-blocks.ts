/**
 * Bitmap blocks: the on-disk layout a region bitmap is committed in, shared by every engine that
 * keeps one (a clone's hydrated regions, a mirror's or md array's dirty regions). The engine owns
 * the commit point (its superblock, in its own format); this file owns where the bitmap blocks lie
 * and how each is sealed. Frozen as part of each engine's format version (the clone's v1 fixture,
 * test/fixtures/clone-metadata-v1, is written in it). All integers little-endian; blocks are
 * BLOCK_BYTES (4 KiB).
 *
 *   block 0, 1            commit-point slots: the engine's superblock (generation G in slot G % 2)
 *   block 2 + 2i + s      bitmap block i, slot s in {0, 1}
 *
 * Bitmap block:
 *   0   u32 checksum     crc32c over bytes [4, 4096), xor the engine's `checksumXor`
 *   4   u32 magic        the engine's `magic`
 *   8   u64 index        logical bitmap block i (self-location)
 *   16  u64 generation   the commit that wrote it
 *   24  u8[16] uuid      the superblock's (which device this block belongs to)
 *   40  ...              zero up to BITMAP_HEADER_BYTES
 *   64  u64[504]         bits: region r is bit (r - i*BITS_PER_BITMAP_BLOCK) of this payload,
 *                        LSB-first within little-endian words (RegionBitmap's own layout)
 * Why two slots per block and the checks, see slotted-bitmap.ts. Each engine picks its own magic
 * and checksum xor, so a block of one engine's device never passes for another's.
 */
import { assert } from '../assert.ts';

export const BLOCK_BYTES = 4096;
export const COMMIT_SLOTS = 2;
export const UUID_BYTES = 16;
export const BITMAP_HEADER_BYTES = 64;
export const BITMAP_PAYLOAD_BYTES = BLOCK_BYTES - BITMAP_HEADER_BYTES;
export const WORD_BYTES = 8;
export const WORDS_PER_BITMAP_BLOCK = BITMAP_PAYLOAD_BYTES / WORD_BYTES;
export const BITS_PER_BITMAP_BLOCK = WORDS_PER_BITMAP_BLOCK * 64;
/** Header bytes that carry fields; the rest of the header is zero. */
const HEADER_FIELDS_BYTES = 40;

assert(WORDS_PER_BITMAP_BLOCK === 504, 'bitmap payload is 504 words');
assert(BITS_PER_BITMAP_BLOCK === 32256, 'a bitmap block holds 32256 regions');
assert(BITMAP_HEADER_BYTES + WORDS_PER_BITMAP_BLOCK * WORD_BYTES === BLOCK_BYTES, 'bitmap block fills a block');

export type Crc32c = (bytes: Uint8Array) => number;

/** What tells one engine's bitmap blocks from another's. */
export interface BitmapBlockKind {
  readonly magic: number;
  readonly checksumXor: number;
}

export interface BitmapBlockHeader {
  index: number;
  generation: number;
  uuid: Uint8Array;
}

export function bitmapBlockCountFor(bitCount: number): number {
  return Math.ceil(bitCount / BITS_PER_BITMAP_BLOCK);
}

/** Blocks a device needs: both commit-point slots and both slots of every bitmap block. */
export function slottedBlocksFor(bitCount: number): number {
  return COMMIT_SLOTS + 2 * bitmapBlockCountFor(bitCount);
}

export function bitmapSlotBlock(index: number, slot: number): number {
  return COMMIT_SLOTS + 2 * index + slot;
}

/** An unsigned 64-bit field as a number; NaN when above 2^53 - 1. */
export function u64(view: DataView, at: number): number {
  const value = view.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) return Number.NaN;
  return Number(value);
}

export function blockChecksum(block: Uint8Array, crc32c: Crc32c, xor: number): number {
  return (crc32c(block.subarray(4)) ^ xor) >>> 0;
}

export function allZero(bytes: Uint8Array, from = 0): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Fills the header of `block` (payload already in place at BITMAP_HEADER_BYTES) and its checksum. */
export function sealBitmapBlock(block: Uint8Array, header: BitmapBlockHeader, kind: BitmapBlockKind, crc32c: Crc32c): Uint8Array {
  assert(block.length === BLOCK_BYTES, 'bitmap buffer is one block');
  assert(header.uuid.length === UUID_BYTES, 'uuid is 16 bytes');
  block.fill(0, 0, BITMAP_HEADER_BYTES);
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  view.setUint32(4, kind.magic, true);
  view.setBigUint64(8, BigInt(header.index), true);
  view.setBigUint64(16, BigInt(header.generation), true);
  block.set(header.uuid, 24);
  view.setUint32(0, blockChecksum(block, crc32c, kind.checksumXor), true);
  return block;
}

/** The generation of a valid bitmap block for (index, uuid), or null when the block is not one. */
export function bitmapBlockGeneration(block: Uint8Array, index: number, uuid: Uint8Array, kind: BitmapBlockKind, crc32c: Crc32c): number | null {
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  if (view.getUint32(4, true) !== kind.magic) return null;
  if (u64(view, 8) !== index) return null;
  for (let i = 0; i < UUID_BYTES; i++) if (block[24 + i] !== uuid[i]) return null;
  if (!allZero(block.subarray(0, BITMAP_HEADER_BYTES), HEADER_FIELDS_BYTES)) return null;
  if (view.getUint32(0, true) !== blockChecksum(block, crc32c, kind.checksumXor)) return null;
  const generation = u64(view, 16);
  return Number.isSafeInteger(generation) ? generation : null;
}
