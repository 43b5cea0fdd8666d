/**
 * Bitmap kernels over a summarized bitmap (layout and summary: summary.ts). Every kernel takes
 * `bm`, the bitmap's header pointer. Bit i lives in word i >> 6, bit i & 63 of that
 * little-endian u64, so a bitmap's words are the same on disk and in memory.
 *
 * Bitmaps hold up to 2^32 bits, so every range is inclusive [firstBit, lastBit] (2^32 bits fit
 * in u32 ends) and the host guarantees firstBit <= lastBit < the bitmap's bit count (never into
 * the padding): nothing here checks bounds (the TypeScript facade does, runtime/wasm/kernels.ts).
 * Arguments are i32 on the wire and read as u32, so JS numbers up to 2^32 - 1 pass unchanged.
 * A result that is a bit position or a count up to 2^32 is an f64; -1 means "none".
 *
 * Searches read the word they start in, the rest of its block when its count says the block can
 * hold a hit, then the next block that the summary level names, and nothing in between. They
 * trust the summary: a level bit for a block without a hit is a bug, and traps (unreachable).
 *
 * Runs (`bitmap_next_run`) serve hydration batching and resync: the next stretch of equal bits
 * from a position, capped at a maximum length. The start is returned, the length is read back
 * from `bitmap_run_length()` (one f64 return keeps the call free of BigInt and multi-value).
 */
import { WORD_SHIFT, wordAt, firstNonZeroWord, firstNonOnesWord, popcountWords, orWords, andNotWords } from './words';
import {
  BLOCK_WORDS, BLOCK_WORDS_SHIFT, BLOCK_BITS, BLOCK_BITS_SHIFT, maskFrom, maskThrough, layoutBytes, initLayout,
  wordsOf, levelOf, countOf, bumpCount, blockHas, noteCount, firstSetBit, sumCounts, fillBlocks, recountBlocks,
} from './summary';

// @ts-ignore: decorator
@inline const ALL_ONES: u64 = u64.MAX_VALUE;
// @ts-ignore: decorator
@inline const MAX_RUN_BITS: u64 = 1 << 32; // maxLength 0 on the wire means this

let runLengthBits: f64 = 0;

// @ts-ignore: decorator
@inline function minU32(a: u32, b: u32): u32 {
  return a < b ? a : b;
}

/** First word in [w, endWord) that is not 0 (ones) / not ~0 (!ones), sequentially; endWord if none. */
// @ts-ignore: decorator
@inline function scanWords(words: usize, w: u32, endWord: u32, ones: bool): u32 {
  return ones ? firstNonZeroWord(words, w, endWord) : firstNonOnesWord(words, w, endWord);
}

/** First word in [w, endWord) holding a set bit (ones) / a clear bit (!ones), read through the summary; endWord if none. */
function nextWordWith(bm: usize, w: u32, endWord: u32, ones: bool): u32 {
  if (w >= endWord) return endWord;
  const words = wordsOf(bm);
  const block = w >>> BLOCK_WORDS_SHIFT;
  const blockEnd = (block + 1) << BLOCK_WORDS_SHIFT;
  if (blockHas(bm, block, ones)) {
    const end = minU32(blockEnd, endWord);
    const found = scanWords(words, w, end, ones);
    if (found < end) return found;
  }
  if (blockEnd >= endWord) return endWord;
  const next = firstSetBit(levelOf(bm, ones), block + 1, (endWord - 1) >>> BLOCK_WORDS_SHIFT);
  if (next < 0) return endWord;
  const start = <u32>next << BLOCK_WORDS_SHIFT;
  const end = minU32(start + BLOCK_WORDS, endWord);
  const found = scanWords(words, start, end, ones);
  if (found == end && end == start + BLOCK_WORDS) unreachable(); // the level named a block without a hit
  return found;
}

/** First bit in [fromBit, lastBit] that is set (ones) or clear (!ones), or -1. */
// @ts-ignore: decorator
@inline function find(bm: usize, fromBit: u32, lastBit: u32, ones: bool): f64 {
  const words = wordsOf(bm);
  const flip: u64 = ones ? 0 : ALL_ONES;
  let w = fromBit >>> WORD_SHIFT;
  const lastWord = lastBit >>> WORD_SHIFT;
  let x = (load<u64>(wordAt(words, w)) ^ flip) & maskFrom(fromBit);
  if (x == 0) {
    w = nextWordWith(bm, w + 1, lastWord + 1, ones);
    if (w > lastWord) return -1;
    x = load<u64>(wordAt(words, w)) ^ flip;
  }
  const bit = (w << WORD_SHIFT) + <u32>ctz<u64>(x);
  return bit <= lastBit ? <f64>bit : -1;
}

export function bitmap_layout_bytes(wordCount: u32): f64 {
  return <f64>layoutBytes(wordCount);
}

/** Lays out a bitmap of `wordCount` words, all bits clear, in zeroed memory at bm. */
export function bitmap_init(bm: usize, wordCount: u32): void {
  initLayout(bm, wordCount);
}

/** Where the words of the bitmap at bm start. */
export function bitmap_words(bm: usize): usize {
  return wordsOf(bm);
}

export function bitmap_get(bm: usize, bit: u32): i32 {
  return (<u32>load<u8>(wordsOf(bm) + (bit >>> 3)) >>> (bit & 7)) & 1;
}

/** Sets one bit; returns its previous value. */
export function bitmap_set(bm: usize, bit: u32): i32 {
  const p = wordsOf(bm) + (bit >>> 3);
  const old: u32 = load<u8>(p);
  const mask: u32 = 1 << (bit & 7);
  if (old & mask) return 1;
  store<u8>(p, <u8>(old | mask));
  const block = bit >>> BLOCK_BITS_SHIFT;
  const count = bumpCount(bm, block, 1);
  // Only a count that became 1 or BLOCK_BITS flips a level bit: one compare on the common path.
  if ((count & (BLOCK_BITS - 1)) <= 1) noteCount(bm, block, count - 1, count);
  return 0;
}

/** Clears one bit; returns its previous value. */
export function bitmap_clear(bm: usize, bit: u32): i32 {
  const p = wordsOf(bm) + (bit >>> 3);
  const old: u32 = load<u8>(p);
  const mask: u32 = 1 << (bit & 7);
  if (!(old & mask)) return 0;
  store<u8>(p, <u8>(old & ~mask));
  const block = bit >>> BLOCK_BITS_SHIFT;
  const count = bumpCount(bm, block, -1);
  // Only a count that became 0 or BLOCK_BITS - 1 flips a level bit.
  if (((count + 1) & (BLOCK_BITS - 1)) <= 1) noteCount(bm, block, count + 1, count);
  return 1;
}

export function bitmap_next_set(bm: usize, fromBit: u32, lastBit: u32): f64 {
  return find(bm, fromBit, lastBit, true);
}

export function bitmap_next_zero(bm: usize, fromBit: u32, lastBit: u32): f64 {
  return find(bm, fromBit, lastBit, false);
}

/** Searches [fromBit, lastBit], then [0, fromBit). */
export function bitmap_next_set_wrapping(bm: usize, fromBit: u32, lastBit: u32): f64 {
  const found = find(bm, fromBit, lastBit, true);
  return found >= 0 || fromBit == 0 ? found : find(bm, 0, fromBit - 1, true);
}

export function bitmap_next_zero_wrapping(bm: usize, fromBit: u32, lastBit: u32): f64 {
  const found = find(bm, fromBit, lastBit, false);
  return found >= 0 || fromBit == 0 ? found : find(bm, 0, fromBit - 1, false);
}

/** Set bits of [firstBit, lastBit], both in one block: from its count when that decides it. */
function countInBlock(bm: usize, firstBit: u32, lastBit: u32): u32 {
  const count = countOf(bm, firstBit >>> BLOCK_BITS_SHIFT);
  if (count == 0) return 0;
  if (count == BLOCK_BITS) return lastBit - firstBit + 1;
  const words = wordsOf(bm);
  const firstWord = firstBit >>> WORD_SHIFT;
  const lastWord = lastBit >>> WORD_SHIFT;
  const head = load<u64>(wordAt(words, firstWord)) & maskFrom(firstBit);
  if (firstWord == lastWord) return <u32>popcnt<u64>(head & maskThrough(lastBit));
  const tail = load<u64>(wordAt(words, lastWord)) & maskThrough(lastBit);
  return <u32>(popcnt<u64>(head) + popcnt<u64>(tail) + popcountWords(words, firstWord + 1, lastWord));
}

export function bitmap_count_set(bm: usize, firstBit: u32, lastBit: u32): f64 {
  const firstBlock = firstBit >>> BLOCK_BITS_SHIFT;
  const lastBlock = lastBit >>> BLOCK_BITS_SHIFT;
  if (firstBlock == lastBlock) return <f64>countInBlock(bm, firstBit, lastBit);
  const head = countInBlock(bm, firstBit, ((firstBlock + 1) << BLOCK_BITS_SHIFT) - 1);
  const tail = countInBlock(bm, lastBlock << BLOCK_BITS_SHIFT, lastBit);
  return <f64>(<u64>head + <u64>tail + sumCounts(bm, firstBlock + 1, lastBlock));
}

/** Applies `mask` to one word (set or clear); returns how many bits changed. */
// @ts-ignore: decorator
@inline function applyWord(words: usize, w: u32, mask: u64, ones: bool): u32 {
  const p = wordAt(words, w);
  const old = load<u64>(p);
  if (ones) {
    store<u64>(p, old | mask);
    return <u32>popcnt<u64>(mask & ~old);
  }
  store<u64>(p, old & ~mask);
  return <u32>popcnt<u64>(mask & old);
}

/** Sets or clears [firstBit, lastBit], both in one block; returns how many bits changed. */
function fillInBlock(bm: usize, firstBit: u32, lastBit: u32, ones: bool): u32 {
  const words = wordsOf(bm);
  const firstWord = firstBit >>> WORD_SHIFT;
  const lastWord = lastBit >>> WORD_SHIFT;
  let changed: u32;
  if (firstWord == lastWord) {
    changed = applyWord(words, firstWord, maskFrom(firstBit) & maskThrough(lastBit), ones);
  } else {
    changed = applyWord(words, firstWord, maskFrom(firstBit), ones) + applyWord(words, lastWord, maskThrough(lastBit), ones);
    const middleWords = lastWord - firstWord - 1;
    if (middleWords != 0) {
      const setBefore = <u32>popcountWords(words, firstWord + 1, lastWord);
      changed += ones ? (middleWords << WORD_SHIFT) - setBefore : setBefore;
      memory.fill(wordAt(words, firstWord + 1), ones ? 0xff : 0, <usize>middleWords << 3);
    }
  }
  if (changed != 0) {
    const block = firstBit >>> BLOCK_BITS_SHIFT;
    const count = countOf(bm, block);
    noteCount(bm, block, count, ones ? count + changed : count - changed);
  }
  return changed;
}

// @ts-ignore: decorator
@inline function fillRange(bm: usize, firstBit: u32, lastBit: u32, ones: bool): f64 {
  const firstBlock = firstBit >>> BLOCK_BITS_SHIFT;
  const lastBlock = lastBit >>> BLOCK_BITS_SHIFT;
  if (firstBlock == lastBlock) return <f64>fillInBlock(bm, firstBit, lastBit, ones);
  let changed = <u64>fillInBlock(bm, firstBit, ((firstBlock + 1) << BLOCK_BITS_SHIFT) - 1, ones) +
    <u64>fillInBlock(bm, lastBlock << BLOCK_BITS_SHIFT, lastBit, ones);
  if (lastBlock - firstBlock > 1) changed += fillBlocks(bm, firstBlock + 1, lastBlock, ones);
  return <f64>changed;
}

/** Sets [firstBit, lastBit]; returns how many bits were clear before. */
export function bitmap_set_range(bm: usize, firstBit: u32, lastBit: u32): f64 {
  return fillRange(bm, firstBit, lastBit, true);
}

/** Clears [firstBit, lastBit]; returns how many bits were set before. */
export function bitmap_clear_range(bm: usize, firstBit: u32, lastBit: u32): f64 {
  return fillRange(bm, firstBit, lastBit, false);
}

/**
 * The next run of bits equal to `ones` that starts in [fromBit, lastBit]: returns its start
 * (or -1) and leaves its length, at most `maxLength` (0 means 2^32) and never past lastBit, in
 * `bitmap_run_length()`.
 */
export function bitmap_next_run(bm: usize, fromBit: u32, lastBit: u32, ones: i32, maxLength: u32): f64 {
  const start = ones ? find(bm, fromBit, lastBit, true) : find(bm, fromBit, lastBit, false);
  if (start < 0) {
    runLengthBits = 0;
    return -1;
  }
  const startBit = <u32>start;
  const maxBits: u64 = maxLength == 0 ? MAX_RUN_BITS : <u64>maxLength;
  const limit64 = <u64>startBit + maxBits - 1;
  const limitBit: u32 = limit64 >= <u64>lastBit ? lastBit : <u32>limit64;
  const end = ones ? find(bm, startBit, limitBit, false) : find(bm, startBit, limitBit, true);
  runLengthBits = end < 0 ? <f64>(limitBit - startBit) + 1 : end - start;
  return start;
}

export function bitmap_run_length(): f64 {
  return runLengthBits;
}

/**
 * Words [firstWord, +wordCount) of the bitmap |= (or &= ~) the words at src, block by block,
 * each block's count taken from the pass itself; returns the set bits of those words after. The
 * host passes whole blocks: firstWord is a multiple of BLOCK_WORDS, and the words end at a block
 * boundary or at the bitmap's last word (past which the block is zero padding).
 */
// @ts-ignore: decorator
@inline function combine(bm: usize, firstWord: u32, src: usize, wordCount: u32, andNot: bool): f64 {
  if (firstWord & (BLOCK_WORDS - 1)) unreachable();
  const words = wordsOf(bm);
  const endWord = firstWord + wordCount;
  let total: u64 = 0;
  for (let w = firstWord; w < endWord; w += BLOCK_WORDS) {
    const n = minU32(BLOCK_WORDS, endWord - w);
    const s = src + (<usize>(w - firstWord) << 3);
    const population = andNot ? andNotWords(wordAt(words, w), s, n) : orWords(wordAt(words, w), s, n);
    const block = w >>> BLOCK_WORDS_SHIFT;
    noteCount(bm, block, countOf(bm, block), <u32>population);
    total += population;
  }
  return <f64>total;
}

export function bitmap_or(bm: usize, firstWord: u32, src: usize, wordCount: u32): f64 {
  return combine(bm, firstWord, src, wordCount, false);
}

export function bitmap_and_not(bm: usize, firstWord: u32, src: usize, wordCount: u32): f64 {
  return combine(bm, firstWord, src, wordCount, true);
}

/** After the host wrote words [firstWord, endWord) directly: recounts their blocks; returns the change in set bits. */
export function bitmap_recount(bm: usize, firstWord: u32, endWord: u32): f64 {
  return <f64>recountBlocks(bm, firstWord, endWord);
}
