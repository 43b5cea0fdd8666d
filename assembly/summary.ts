/**
 * The summary of a bitmap: what lets a search skip words it need not read. The bitmap's words
 * are cut into blocks of BLOCK_WORDS words (BLOCK_BITS bits); per block the summary keeps
 *   count    u16, how many of its bits are set (0..BLOCK_BITS), exact at all times;
 *   any      one bit per block, set when count > 0 (the block holds a set bit);
 *   notFull  one bit per block, set when count < BLOCK_BITS (the block holds a clear bit).
 * nextSet reads the rest of its word's block, then finds the next block in `any` and reads that
 * block only; nextZero does the same with `notFull`; countSet adds counts for whole blocks. Every
 * kernel that writes words goes through `noteCount` (or `fillBlocks`, `recountBlocks`), which
 * updates count and flips a level bit only when the count crosses 0 or BLOCK_BITS, so a set or a
 * clear costs one u16 read-modify-write more than a flat bitmap.
 *
 * Layout of one bitmap at `bm` (64-byte aligned), sized by `layoutBytes`:
 *   [bm, +64)       header: u32 blockCount, then the absolute pointers of counts, any, notFull
 *   words           blockCount * BLOCK_WORDS little-endian u64 (the last block padded with
 *                   zero words that no kernel ever sets: searches check results against lastBit)
 *   counts          blockCount u16, rounded up to 64 bytes
 *   any, notFull    ceil(blockCount / 64) u64 words each, rounded up to 64 bytes; bits past
 *                   blockCount stay zero, so a level is itself a flat bitmap padded with zeros.
 * A padded last block never counts BLOCK_BITS, so it stays notFull: a zero search reads it and
 * finds the zero past lastBit, which the caller rejects.
 *
 * Block size: 256 words = 2 KiB, chosen by measurement (bench/bitmap.ts, and the trials noted in
 * runtime/bitmap.ts). The summary then costs 2 bytes and 2 bits per 2 KiB (0.1%): 144 KiB for a
 * 128 MiB bitmap (2^30 bits), 576 KiB at 2^32 bits, where each level is 32 KiB (4096 words).
 */
import { WORD_SHIFT, wordAt, firstNonZeroWord, popcountWords, sumLanes } from './words';

// @ts-ignore: decorator
@inline export const BLOCK_WORDS_SHIFT: u32 = 8;
// @ts-ignore: decorator
@inline export const BLOCK_WORDS: u32 = 1 << BLOCK_WORDS_SHIFT;
// @ts-ignore: decorator
@inline export const BLOCK_BITS_SHIFT: u32 = BLOCK_WORDS_SHIFT + WORD_SHIFT;
// @ts-ignore: decorator
@inline export const BLOCK_BITS: u32 = 1 << BLOCK_BITS_SHIFT;
// @ts-ignore: decorator
@inline const HEADER_BYTES: usize = 64;
// @ts-ignore: decorator
@inline const ALIGN_BYTES: usize = 64;
// @ts-ignore: decorator
@inline const ALL_ONES: u64 = u64.MAX_VALUE;
// @ts-ignore: decorator
@inline const BIT_INDEX_MASK: u32 = 63;

// Compile-time checks: a false one compiles its ERROR branch and fails the build.
if (!(BLOCK_BITS > 1 && BLOCK_BITS <= 0xffff)) ERROR('a block count fits a u16 and a block is not one bit');
if (!(HEADER_BYTES % ALIGN_BYTES == 0 && (<usize>BLOCK_WORDS << 3) % ALIGN_BYTES == 0)) ERROR('words stay 64-byte aligned');

/** Bits at and above `bit`'s index within its word. */
// @ts-ignore: decorator
@inline export function maskFrom(bit: u32): u64 {
  return ALL_ONES << <u64>(bit & BIT_INDEX_MASK);
}

/** Bits at and below `bit`'s index within its word. */
// @ts-ignore: decorator
@inline export function maskThrough(bit: u32): u64 {
  return ALL_ONES >> <u64>(BIT_INDEX_MASK - (bit & BIT_INDEX_MASK));
}

// @ts-ignore: decorator
@inline function alignUp(bytes: usize): usize {
  return (bytes + ALIGN_BYTES - 1) & ~(ALIGN_BYTES - 1);
}

// @ts-ignore: decorator
@inline function blockCountFor(wordCount: u32): u32 {
  return (wordCount + BLOCK_WORDS - 1) >>> BLOCK_WORDS_SHIFT;
}

// @ts-ignore: decorator
@inline function levelBytesFor(blockCount: u32): usize {
  return alignUp(<usize>((blockCount + 63) >>> 6) << 3);
}

/** Bytes of a bitmap of `wordCount` words with its header and summary (below 2^30 for 2^26 words). */
export function layoutBytes(wordCount: u32): usize {
  const blockCount = blockCountFor(wordCount);
  return HEADER_BYTES + (<usize>blockCount << (BLOCK_WORDS_SHIFT + 3)) + alignUp(<usize>blockCount << 1) + 2 * levelBytesFor(blockCount);
}

/** Writes the header of zeroed memory at bm and marks every block not full (all bits clear). */
export function initLayout(bm: usize, wordCount: u32): void {
  const blockCount = blockCountFor(wordCount);
  const counts = bm + HEADER_BYTES + (<usize>blockCount << (BLOCK_WORDS_SHIFT + 3));
  const any = counts + alignUp(<usize>blockCount << 1);
  const notFull = any + levelBytesFor(blockCount);
  store<u32>(bm, blockCount);
  store<u32>(bm, <u32>counts, 4);
  store<u32>(bm, <u32>any, 8);
  store<u32>(bm, <u32>notFull, 12);
  if (blockCount != 0) fillBits(notFull, 0, blockCount - 1, true);
}

// @ts-ignore: decorator
@inline export function wordsOf(bm: usize): usize {
  return bm + HEADER_BYTES;
}

// @ts-ignore: decorator
@inline function countsOf(bm: usize): usize {
  return <usize>load<u32>(bm, 4);
}

/** The level a search for set bits (ones) or clear bits (!ones) follows. */
// @ts-ignore: decorator
@inline export function levelOf(bm: usize, ones: bool): usize {
  return <usize>(ones ? load<u32>(bm, 8) : load<u32>(bm, 12));
}

// @ts-ignore: decorator
@inline export function countOf(bm: usize, block: u32): u32 {
  return load<u16>(countsOf(bm) + (<usize>block << 1));
}

/** Might `block` hold a set bit (ones) or a clear bit (!ones)? Exact, from its count. */
// @ts-ignore: decorator
@inline export function blockHas(bm: usize, block: u32, ones: bool): bool {
  const count = countOf(bm, block);
  return ones ? count != 0 : count != BLOCK_BITS;
}

// @ts-ignore: decorator
@inline function writeLevelBit(level: usize, block: u32, value: bool): void {
  const p = wordAt(level, block >>> WORD_SHIFT);
  const mask: u64 = (<u64>1) << <u64>(block & BIT_INDEX_MASK);
  store<u64>(p, value ? load<u64>(p) | mask : load<u64>(p) & ~mask);
}

/** Adds `delta` (1 or -1) to `block`'s count, level bits untouched; returns the new count. */
// @ts-ignore: decorator
@inline export function bumpCount(bm: usize, block: u32, delta: i32): u32 {
  const p = countsOf(bm) + (<usize>block << 1);
  const count = <u32>load<u16>(p) + <u32>delta;
  store<u16>(p, <u16>count);
  return count;
}

/** Records that `block` now counts `newCount` set bits (was `oldCount`); flips level bits that changed. */
// @ts-ignore: decorator
@inline export function noteCount(bm: usize, block: u32, oldCount: u32, newCount: u32): void {
  store<u16>(countsOf(bm) + (<usize>block << 1), <u16>newCount);
  if ((oldCount == 0) != (newCount == 0)) writeLevelBit(levelOf(bm, true), block, newCount != 0);
  if ((oldCount == BLOCK_BITS) != (newCount == BLOCK_BITS)) writeLevelBit(levelOf(bm, false), block, newCount != BLOCK_BITS);
}

/** Sets (ones) or clears [first, last] of a flat bit array, without counting. */
function fillBits(ptr: usize, first: u32, last: u32, ones: bool): void {
  const firstWord = first >>> WORD_SHIFT;
  const lastWord = last >>> WORD_SHIFT;
  if (firstWord == lastWord) {
    const mask = maskFrom(first) & maskThrough(last);
    const p = wordAt(ptr, firstWord);
    store<u64>(p, ones ? load<u64>(p) | mask : load<u64>(p) & ~mask);
    return;
  }
  const head = wordAt(ptr, firstWord);
  const tail = wordAt(ptr, lastWord);
  store<u64>(head, ones ? load<u64>(head) | maskFrom(first) : load<u64>(head) & ~maskFrom(first));
  store<u64>(tail, ones ? load<u64>(tail) | maskThrough(last) : load<u64>(tail) & ~maskThrough(last));
  memory.fill(head + 8, ones ? 0xff : 0, <usize>(lastWord - firstWord - 1) << 3);
}

/** First set bit in [first, last] of a flat bit array, or -1. */
export function firstSetBit(ptr: usize, first: u32, last: u32): i64 {
  let w = first >>> WORD_SHIFT;
  const lastWord = last >>> WORD_SHIFT;
  let x = load<u64>(wordAt(ptr, w)) & maskFrom(first);
  if (x == 0) {
    w = firstNonZeroWord(ptr, w + 1, lastWord + 1);
    if (w > lastWord) return -1;
    x = load<u64>(wordAt(ptr, w));
  }
  const bit = (<i64>w << WORD_SHIFT) + <i64>ctz<u64>(x);
  return bit <= <i64>last ? bit : -1;
}

/** Sum of the counts of blocks [block, endBlock) (at most 2^32). */
export function sumCounts(bm: usize, block: u32, endBlock: u32): u64 {
  let p = countsOf(bm) + (<usize>block << 1);
  const end = countsOf(bm) + (<usize>endBlock << 1);
  let total: u64 = 0;
  if (ASC_FEATURE_SIMD) {
    // Each u32 lane adds 2 of every 8 counts: at most 2^32 / 4 over a whole bitmap.
    let wide = i32x4.splat(0);
    for (; end - p >= 16; p += 16) wide = i32x4.add(wide, i32x4.extadd_pairwise_i16x8_u(v128.load(p)));
    total = sumLanes(wide);
  }
  for (; p < end; p += 2) total += <u64>load<u16>(p);
  return total;
}

/**
 * Sets (ones) or clears every bit of whole blocks [block, endBlock) with their summary; returns
 * how many bits changed, from the counts alone (the words are written, never read).
 */
export function fillBlocks(bm: usize, block: u32, endBlock: u32, ones: bool): u64 {
  const blocks = endBlock - block;
  const before = sumCounts(bm, block, endBlock);
  const changed = ones ? (<u64>blocks << BLOCK_BITS_SHIFT) - before : before;
  memory.fill(wordAt(wordsOf(bm), block << BLOCK_WORDS_SHIFT), ones ? 0xff : 0, <usize>blocks << (BLOCK_WORDS_SHIFT + 3));
  const counts = countsOf(bm) + (<usize>block << 1);
  if (ones) {
    for (let i: usize = 0; i < <usize>blocks; i++) store<u16>(counts + (i << 1), <u16>BLOCK_BITS);
  } else {
    memory.fill(counts, 0, <usize>blocks << 1);
  }
  fillBits(levelOf(bm, true), block, endBlock - 1, ones);
  fillBits(levelOf(bm, false), block, endBlock - 1, !ones);
  return changed;
}

/** Recounts every block that holds a word of [firstWord, endWord) after a bulk write; returns the change in set bits. */
export function recountBlocks(bm: usize, firstWord: u32, endWord: u32): i64 {
  const words = wordsOf(bm);
  let delta: i64 = 0;
  const endBlock = blockCountFor(endWord);
  for (let block = firstWord >>> BLOCK_WORDS_SHIFT; block < endBlock; block++) {
    const first = block << BLOCK_WORDS_SHIFT;
    const oldCount = countOf(bm, block);
    const newCount = <u32>popcountWords(words, first, first + BLOCK_WORDS);
    noteCount(bm, block, oldCount, newCount);
    delta += <i64>newCount - <i64>oldCount;
  }
  return delta;
}
