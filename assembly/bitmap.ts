/**
 * Bitmap kernels over 64-bit words of linear memory. Bit i lives in word i >> 6, bit i & 63 of
 * that little-endian u64, so a bitmap's bytes are the same on disk and in memory.
 *
 * Bitmaps hold up to 2^32 bits, so every range is inclusive [firstBit, lastBit] (2^32 bits fit
 * in u32 ends) and the host guarantees firstBit <= lastBit and that lastBit's word lies inside
 * the buffer: nothing here checks bounds (the TypeScript facade does, runtime/wasm/kernels.ts).
 * Arguments are i32 on the wire and read as u32, so JS numbers up to 2^32 - 1 pass unchanged.
 * A result that is a bit position or a count up to 2^32 is an f64; -1 means "none".
 *
 * Runs (`bitmap_next_run`) serve hydration batching and resync: the next stretch of equal bits
 * from a position, capped at a maximum length. The start is returned, the length is read back
 * from `bitmap_run_length()` (one f64 return keeps the call free of BigInt and multi-value).
 */
import {
  WORD_SHIFT, wordAt, firstNonZeroWord, firstNonOnesWord, popcountWords, orWords, andNotWords,
} from './words';

// @ts-ignore: decorator
@inline const ALL_ONES: u64 = u64.MAX_VALUE;
// @ts-ignore: decorator
@inline const BIT_INDEX_MASK: u32 = 63;
// @ts-ignore: decorator
@inline const MAX_RUN_BITS: u64 = 1 << 32; // maxLength 0 on the wire means this
// Compile-time check: a false one compiles its ERROR branch and fails the build.
if (!(BIT_INDEX_MASK + 1 == 1 << WORD_SHIFT)) ERROR('BIT_INDEX_MASK + 1 == 1 << WORD_SHIFT');

let runLengthBits: f64 = 0;

/** Bits at and above `bit`'s index within its word. */
// @ts-ignore: decorator
@inline function maskFrom(bit: u32): u64 {
  return ALL_ONES << <u64>(bit & BIT_INDEX_MASK);
}

/** Bits at and below `bit`'s index within its word. */
// @ts-ignore: decorator
@inline function maskThrough(bit: u32): u64 {
  return ALL_ONES >> <u64>(BIT_INDEX_MASK - (bit & BIT_INDEX_MASK));
}

/** First bit in [fromBit, lastBit] that is set (ones) or clear (!ones), or -1. */
// @ts-ignore: decorator
@inline function find(ptr: usize, fromBit: u32, lastBit: u32, ones: bool): f64 {
  const flip: u64 = ones ? 0 : ALL_ONES;
  let w = fromBit >>> WORD_SHIFT;
  const lastWord = lastBit >>> WORD_SHIFT;
  let x = (load<u64>(wordAt(ptr, w)) ^ flip) & maskFrom(fromBit);
  if (x == 0) {
    w = ones ? firstNonZeroWord(ptr, w + 1, lastWord + 1) : firstNonOnesWord(ptr, w + 1, lastWord + 1);
    if (w > lastWord) return -1;
    x = load<u64>(wordAt(ptr, w)) ^ flip;
  }
  const bit = (w << WORD_SHIFT) + <u32>ctz<u64>(x);
  return bit <= lastBit ? <f64>bit : -1;
}

export function bitmap_get(ptr: usize, bit: u32): i32 {
  return (<u32>load<u8>(ptr + (bit >>> 3)) >>> (bit & 7)) & 1;
}

/** Sets one bit; returns its previous value. */
export function bitmap_set(ptr: usize, bit: u32): i32 {
  const p = ptr + (bit >>> 3);
  const old: u32 = load<u8>(p);
  store<u8>(p, <u8>(old | (<u32>1 << (bit & 7))));
  return (old >>> (bit & 7)) & 1;
}

/** Clears one bit; returns its previous value. */
export function bitmap_clear(ptr: usize, bit: u32): i32 {
  const p = ptr + (bit >>> 3);
  const old: u32 = load<u8>(p);
  store<u8>(p, <u8>(old & ~(<u32>1 << (bit & 7))));
  return (old >>> (bit & 7)) & 1;
}

export function bitmap_next_set(ptr: usize, fromBit: u32, lastBit: u32): f64 {
  return find(ptr, fromBit, lastBit, true);
}

export function bitmap_next_zero(ptr: usize, fromBit: u32, lastBit: u32): f64 {
  return find(ptr, fromBit, lastBit, false);
}

/** Searches [fromBit, lastBit], then [0, fromBit). */
export function bitmap_next_set_wrapping(ptr: usize, fromBit: u32, lastBit: u32): f64 {
  const found = find(ptr, fromBit, lastBit, true);
  return found >= 0 || fromBit == 0 ? found : find(ptr, 0, fromBit - 1, true);
}

export function bitmap_next_zero_wrapping(ptr: usize, fromBit: u32, lastBit: u32): f64 {
  const found = find(ptr, fromBit, lastBit, false);
  return found >= 0 || fromBit == 0 ? found : find(ptr, 0, fromBit - 1, false);
}

export function bitmap_count_set(ptr: usize, firstBit: u32, lastBit: u32): f64 {
  const firstWord = firstBit >>> WORD_SHIFT;
  const lastWord = lastBit >>> WORD_SHIFT;
  const head = load<u64>(wordAt(ptr, firstWord)) & maskFrom(firstBit);
  if (firstWord == lastWord) return <f64>popcnt<u64>(head & maskThrough(lastBit));
  const tail = load<u64>(wordAt(ptr, lastWord)) & maskThrough(lastBit);
  return <f64>(popcnt<u64>(head) + popcnt<u64>(tail) + popcountWords(ptr, firstWord + 1, lastWord));
}

/** Applies `mask` to one word (set or clear); returns how many bits changed. */
// @ts-ignore: decorator
@inline function applyWord(ptr: usize, w: u32, mask: u64, ones: bool): u64 {
  const p = wordAt(ptr, w);
  const old = load<u64>(p);
  if (ones) {
    store<u64>(p, old | mask);
    return popcnt<u64>(mask & ~old);
  }
  store<u64>(p, old & ~mask);
  return popcnt<u64>(mask & old);
}

// @ts-ignore: decorator
@inline function fillRange(ptr: usize, firstBit: u32, lastBit: u32, ones: bool): f64 {
  const firstWord = firstBit >>> WORD_SHIFT;
  const lastWord = lastBit >>> WORD_SHIFT;
  if (firstWord == lastWord) {
    return <f64>applyWord(ptr, firstWord, maskFrom(firstBit) & maskThrough(lastBit), ones);
  }
  let changed = applyWord(ptr, firstWord, maskFrom(firstBit), ones) +
    applyWord(ptr, lastWord, maskThrough(lastBit), ones);
  const middleWords = lastWord - firstWord - 1;
  if (middleWords != 0) {
    const setBefore = popcountWords(ptr, firstWord + 1, lastWord);
    changed += ones ? (<u64>middleWords << WORD_SHIFT) - setBefore : setBefore;
    memory.fill(wordAt(ptr, firstWord + 1), ones ? 0xff : 0, <usize>middleWords << 3);
  }
  return <f64>changed;
}

/** Sets [firstBit, lastBit]; returns how many bits were clear before. */
export function bitmap_set_range(ptr: usize, firstBit: u32, lastBit: u32): f64 {
  return fillRange(ptr, firstBit, lastBit, true);
}

/** Clears [firstBit, lastBit]; returns how many bits were set before. */
export function bitmap_clear_range(ptr: usize, firstBit: u32, lastBit: u32): f64 {
  return fillRange(ptr, firstBit, lastBit, false);
}

/**
 * The next run of bits equal to `ones` that starts in [fromBit, lastBit]: returns its start
 * (or -1) and leaves its length, at most `maxLength` (0 means 2^32) and never past lastBit, in
 * `bitmap_run_length()`.
 */
export function bitmap_next_run(ptr: usize, fromBit: u32, lastBit: u32, ones: i32, maxLength: u32): f64 {
  const start = ones ? find(ptr, fromBit, lastBit, true) : find(ptr, fromBit, lastBit, false);
  if (start < 0) {
    runLengthBits = 0;
    return -1;
  }
  const startBit = <u32>start;
  const maxBits: u64 = maxLength == 0 ? MAX_RUN_BITS : <u64>maxLength;
  const limit64 = <u64>startBit + maxBits - 1;
  const limitBit: u32 = limit64 >= <u64>lastBit ? lastBit : <u32>limit64;
  const end = ones ? find(ptr, startBit, limitBit, false) : find(ptr, startBit, limitBit, true);
  runLengthBits = end < 0 ? <f64>(limitBit - startBit) + 1 : end - start;
  return start;
}

export function bitmap_run_length(): f64 {
  return runLengthBits;
}

/** dst |= src over wordCount words; returns the set bits of dst afterwards. */
export function bitmap_or(dstPtr: usize, srcPtr: usize, wordCount: u32): f64 {
  return <f64>orWords(dstPtr, srcPtr, wordCount);
}

/** dst &= ~src over wordCount words; returns the set bits of dst afterwards. */
export function bitmap_and_not(dstPtr: usize, srcPtr: usize, wordCount: u32): f64 {
  return <f64>andNotWords(dstPtr, srcPtr, wordCount);
}
