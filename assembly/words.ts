/**
 * Word-level loops shared by the bitmap kernels: find the first word that is not all-zero / not
 * all-ones, count the set bits of a run of words, and OR / AND-NOT two runs of words. These are
 * the loops that touch many words at once, so they are the only code with two bodies: v128 (SIMD
 * build) and u64 (scalar build), picked at compile time by ASC_FEATURE_SIMD.
 *
 * Runs are short: the bitmap kernels read at most one summary block of words at a time (2 KiB,
 * summary.ts), and the longest scan is of a summary level (4096 words at 2^32 bits, cache
 * resident). So every loop reads one sequential stream; the flat kernels before the summary read
 * long runs as four interleaved streams to reach memory bandwidth, which no caller needs now.
 *
 * Words are little-endian u64 at `ptr + (w << 3)`; word indexes are u32 and a range of words is
 * half-open [w, endWord). Bitmaps hold at most 2^32 bits = 2^26 words, so `endWord - w` and
 * `w << 6` never overflow u32, and `w << 3` is a byte offset below 2^29.
 */

// @ts-ignore: decorator
@inline export const WORD_BYTES: u32 = 8;
// @ts-ignore: decorator
@inline export const WORD_BITS: u32 = 64;
// @ts-ignore: decorator
@inline export const WORD_SHIFT: u32 = 6;
// @ts-ignore: decorator
@inline const VECTOR_WORDS: u32 = 2;
/** Sequential step: 8 vectors (SIMD) or 8 words (scalar). */
// @ts-ignore: decorator
@inline const STEP_WORDS: u32 = ASC_FEATURE_SIMD ? 8 * VECTOR_WORDS : 8;
/** Popcount/combine step: 4 vectors = 8 words = 64 bytes. */
// @ts-ignore: decorator
@inline const BLOCK_WORDS: u32 = 4 * VECTOR_WORDS;
// SIMD popcount lanes are u8: a block adds at most 4 vectors * 8 bits = 32 to a lane, so at most
// 7 blocks (224) fit before widening.
// @ts-ignore: decorator
@inline const POPCOUNT_BLOCKS_PER_WIDEN: u32 = 7;

// Compile-time checks: a false one compiles its ERROR branch and fails the build.
if (!(1 << WORD_SHIFT == WORD_BITS && WORD_BITS == WORD_BYTES * 8)) ERROR('word size');
if (!(VECTOR_WORDS * WORD_BYTES == 16)) ERROR('a v128 holds two words');
if (!(POPCOUNT_BLOCKS_PER_WIDEN * 4 * 8 <= 255)) ERROR('popcount lanes overflow');

// @ts-ignore: decorator
@inline export function wordAt(ptr: usize, w: u32): usize {
  return ptr + (<usize>w << 3);
}

/** True when a v128 is not all 0 (ones = false) / not all ~0 (ones = true). */
// @ts-ignore: decorator
@inline function vectorNot(v: v128, ones: bool): bool {
  return v128.any_true(ones ? v128.not(v) : v);
}

/** Combines vectors so that vectorNot(result) == vectorNot(a) || vectorNot(b). */
// @ts-ignore: decorator
@inline function vmerge(a: v128, b: v128, ones: bool): v128 {
  return ones ? v128.and(a, b) : v128.or(a, b);
}

// @ts-ignore: decorator
@inline function wmerge(a: u64, b: u64, ones: bool): u64 {
  return ones ? a & b : a | b;
}

// @ts-ignore: decorator
@inline function fillOf(ones: bool): u64 {
  return ones ? u64.MAX_VALUE : 0;
}

/** Does the STEP_WORDS-word step at p hold a word that is not the fill? */
// @ts-ignore: decorator
@inline function stepNot(p: usize, ones: bool): bool {
  if (ASC_FEATURE_SIMD) {
    const x = vmerge(
      vmerge(vmerge(v128.load(p), v128.load(p, 16), ones), vmerge(v128.load(p, 32), v128.load(p, 48), ones), ones),
      vmerge(vmerge(v128.load(p, 64), v128.load(p, 80), ones), vmerge(v128.load(p, 96), v128.load(p, 112), ones), ones),
      ones,
    );
    return vectorNot(x, ones);
  }
  const x = wmerge(
    wmerge(wmerge(load<u64>(p), load<u64>(p, 8), ones), wmerge(load<u64>(p, 16), load<u64>(p, 24), ones), ones),
    wmerge(wmerge(load<u64>(p, 32), load<u64>(p, 40), ones), wmerge(load<u64>(p, 48), load<u64>(p, 56), ones), ones),
    ones,
  );
  return x != fillOf(ones);
}

/** First word in [w, endWord) that is not 0 (ones = false) / not ~0 (ones = true); endWord if none. */
// @ts-ignore: decorator
@inline function firstWordNot(ptr: usize, w: u32, endWord: u32, ones: bool): u32 {
  while (endWord - w >= STEP_WORDS && !stepNot(wordAt(ptr, w), ones)) w += STEP_WORDS;
  const fill = fillOf(ones);
  while (w < endWord && load<u64>(wordAt(ptr, w)) == fill) w++;
  return w;
}

export function firstNonZeroWord(ptr: usize, w: u32, endWord: u32): u32 {
  return firstWordNot(ptr, w, endWord, false);
}

export function firstNonOnesWord(ptr: usize, w: u32, endWord: u32): u32 {
  return firstWordNot(ptr, w, endWord, true);
}

/** Widens the u8 popcount lanes of a v128 to u32 lanes. */
// @ts-ignore: decorator
@inline function widen(bytes: v128): v128 {
  return i32x4.extadd_pairwise_i16x8_u(i16x8.extadd_pairwise_i8x16_u(bytes));
}

// @ts-ignore: decorator
@inline export function sumLanes(v: v128): u64 {
  return (<u64><u32>i32x4.extract_lane(v, 0)) + (<u64><u32>i32x4.extract_lane(v, 1)) +
    (<u64><u32>i32x4.extract_lane(v, 2)) + (<u64><u32>i32x4.extract_lane(v, 3));
}

/**
 * Number of set bits in words [w, endWord), one stream; all-zero blocks are skipped. The bitmap
 * kernels count at most one summary block at a time (whole blocks are counted from the summary),
 * so there is no interleaved-stream variant.
 */
export function popcountWords(ptr: usize, w: u32, endWord: u32): u64 {
  let total: u64 = 0;
  if (ASC_FEATURE_SIMD) {
    let wide = i32x4.splat(0);
    while (endWord - w >= BLOCK_WORDS) {
      let lanes = i8x16.splat(0);
      let blocks = (endWord - w) / BLOCK_WORDS;
      if (blocks > POPCOUNT_BLOCKS_PER_WIDEN) blocks = POPCOUNT_BLOCKS_PER_WIDEN;
      for (let i: u32 = 0; i < blocks; i++) {
        const p = wordAt(ptr, w);
        w += BLOCK_WORDS;
        const a = v128.load(p);
        const b = v128.load(p, 16);
        const c = v128.load(p, 32);
        const d = v128.load(p, 48);
        if (!v128.any_true(v128.or(v128.or(a, b), v128.or(c, d)))) continue;
        const ab = i8x16.add(i8x16.popcnt(a), i8x16.popcnt(b));
        const cd = i8x16.add(i8x16.popcnt(c), i8x16.popcnt(d));
        lanes = i8x16.add(lanes, i8x16.add(ab, cd));
      }
      wide = i32x4.add(wide, widen(lanes));
    }
    total = sumLanes(wide);
  } else {
    while (endWord - w >= 4) {
      const p = wordAt(ptr, w);
      w += 4;
      const a = load<u64>(p);
      const b = load<u64>(p, 8);
      const c = load<u64>(p, 16);
      const d = load<u64>(p, 24);
      if ((a | b | c | d) == 0) continue;
      total += popcnt<u64>(a) + popcnt<u64>(b) + popcnt<u64>(c) + popcnt<u64>(d);
    }
  }
  for (; w < endWord; w++) total += popcnt<u64>(load<u64>(wordAt(ptr, w)));
  return total;
}

/**
 * dst[i] = dst[i] | src[i] (andNot = false) or dst[i] & ~src[i] (andNot = true) for i in
 * [0, wordCount); returns the number of set bits in dst afterwards (one pass, so a bitmap's
 * population stays exact without a second scan).
 */
// @ts-ignore: decorator
@inline function combineWords(dst: usize, src: usize, wordCount: u32, andNot: bool): u64 {
  let total: u64 = 0;
  let w: u32 = 0;
  if (ASC_FEATURE_SIMD) {
    let wide = i32x4.splat(0);
    while (wordCount - w >= BLOCK_WORDS) {
      let lanes = i8x16.splat(0);
      let blocks = (wordCount - w) / BLOCK_WORDS;
      if (blocks > POPCOUNT_BLOCKS_PER_WIDEN) blocks = POPCOUNT_BLOCKS_PER_WIDEN;
      for (let i: u32 = 0; i < blocks; i++) {
        const d = wordAt(dst, w);
        const s = wordAt(src, w);
        let r0: v128, r1: v128, r2: v128, r3: v128;
        if (andNot) {
          r0 = v128.andnot(v128.load(d), v128.load(s));
          r1 = v128.andnot(v128.load(d, 16), v128.load(s, 16));
          r2 = v128.andnot(v128.load(d, 32), v128.load(s, 32));
          r3 = v128.andnot(v128.load(d, 48), v128.load(s, 48));
        } else {
          r0 = v128.or(v128.load(d), v128.load(s));
          r1 = v128.or(v128.load(d, 16), v128.load(s, 16));
          r2 = v128.or(v128.load(d, 32), v128.load(s, 32));
          r3 = v128.or(v128.load(d, 48), v128.load(s, 48));
        }
        v128.store(d, r0);
        v128.store(d, r1, 16);
        v128.store(d, r2, 32);
        v128.store(d, r3, 48);
        const ab = i8x16.add(i8x16.popcnt(r0), i8x16.popcnt(r1));
        const cd = i8x16.add(i8x16.popcnt(r2), i8x16.popcnt(r3));
        lanes = i8x16.add(lanes, i8x16.add(ab, cd));
        w += BLOCK_WORDS;
      }
      wide = i32x4.add(wide, widen(lanes));
    }
    total = sumLanes(wide);
  }
  for (; w < wordCount; w++) {
    const d = wordAt(dst, w);
    const s = load<u64>(wordAt(src, w));
    const r = andNot ? load<u64>(d) & ~s : load<u64>(d) | s;
    store<u64>(d, r);
    total += popcnt<u64>(r);
  }
  return total;
}

export function orWords(dst: usize, src: usize, wordCount: u32): u64 {
  return combineWords(dst, src, wordCount, false);
}

export function andNotWords(dst: usize, src: usize, wordCount: u32): u64 {
  return combineWords(dst, src, wordCount, true);
}
