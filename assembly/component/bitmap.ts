/**
 * The `bitmap` interface: the bitmap kernels (../bitmap.ts) behind a resource. The resource's
 * representation (rep) is the address of one heap block: a 64-byte descriptor (tag, bit count,
 * word count), then the bitmap's layout (../summary.ts) at rep + 64, 64-byte aligned. Methods get
 * the rep straight from the host (the resource is this component's own, so the canonical ABI
 * lifts `borrow<bitmap>` to its rep), after the host checked the handle; the tag check below is
 * a second line for a host that got that wrong: a rep that is not a live bitmap of ours is
 * `invalid-argument`, never a load out of bounds.
 *
 * Every position is checked against the bit count before a kernel sees it (the kernels check
 * nothing, like the plain module's facade does for them: runtime/wasm/kernels.ts), in the
 * facade's order: positions out of range first, then first > last.
 */
import {
  bitmap_layout_bytes, bitmap_init, bitmap_words, bitmap_recount, bitmap_get, bitmap_set, bitmap_clear,
  bitmap_next_set, bitmap_next_zero, bitmap_next_set_wrapping, bitmap_next_zero_wrapping, bitmap_count_set,
  bitmap_set_range, bitmap_clear_range, bitmap_next_run, bitmap_run_length, bitmap_or, bitmap_and_not,
} from '../bitmap';
import { allocateZeroed, deallocate } from './heap';
import {
  OUT_OF_RANGE, INVALID_ARGUMENT, OUT_OF_MEMORY, RETURN_AREA, err, ok, okBool, okU32, okOptionU32, storeList,
  allocateList, releaseList, returnList, releaseReturned,
} from './abi';

// @ts-ignore: decorator
@external("[export]blockcore:core/bitmap@0.1.0", "[resource-new]bitmap")
declare function resourceNew(rep: u32): u32;

// @ts-ignore: decorator
@inline const DESCRIPTOR_BYTES: usize = 64;
/** "bmap": a live bitmap's descriptor starts with it; cleared when the host drops the bitmap. */
// @ts-ignore: decorator
@inline const LIVE_TAG: u32 = 0x70616d62;
// @ts-ignore: decorator
@inline const AT_TAG: usize = 0;
// @ts-ignore: decorator
@inline const AT_BIT_COUNT: usize = 4;
// @ts-ignore: decorator
@inline const AT_WORD_COUNT: usize = 8;
// @ts-ignore: decorator
@inline const WORD_BYTES: u32 = 8;
// @ts-ignore: decorator
@inline const NONE: i32 = -1;

/** A live bitmap's rep, or 0 (never a valid rep: the heap starts above the static data). */
function liveRep(rep: usize): usize {
  if (rep == 0 || (rep & (DESCRIPTOR_BYTES - 1)) != 0) return 0;
  if (<u64>rep + <u64>DESCRIPTOR_BYTES > <u64>memory.size() << 16) return 0;
  return load<u32>(rep, AT_TAG) == LIVE_TAG ? rep : 0;
}

// @ts-ignore: decorator
@inline function layoutOf(rep: usize): usize {
  return rep + DESCRIPTOR_BYTES;
}

// @ts-ignore: decorator
@inline function bitCountOf(rep: usize): u32 {
  return load<u32>(rep, AT_BIT_COUNT);
}

// @ts-ignore: decorator
@inline function wordCountOf(rep: usize): u32 {
  return load<u32>(rep, AT_WORD_COUNT);
}

function blockBytesOf(wordCount: u32): u64 {
  return <u64>DESCRIPTOR_BYTES + <u64>bitmap_layout_bytes(wordCount);
}

/** The error code for a bad [firstBit, lastBit] of the bitmap at rep (0 = not live), or NONE. */
function rangeError(rep: usize, firstBit: u32, lastBit: u32): i32 {
  if (rep == 0) return INVALID_ARGUMENT;
  const bitCount = bitCountOf(rep);
  if (firstBit >= bitCount || lastBit >= bitCount) return OUT_OF_RANGE;
  return firstBit > lastBit ? INVALID_ARGUMENT : NONE;
}

/** The error code for a bad single bit, or NONE. */
function bitError(rep: usize, bit: u32): i32 {
  if (rep == 0) return INVALID_ARGUMENT;
  return bit >= bitCountOf(rep) ? OUT_OF_RANGE : NONE;
}

/** [static]bitmap.create: result<own<bitmap>, error-code>. */
export function bitmap_static_create(bitCount: u32): usize {
  const wordCount = <u32>((<u64>bitCount + 63) >> 6);
  const blockBytes = blockBytesOf(wordCount);
  const rep = allocateZeroed(blockBytes);
  if (rep == 0) return err(OUT_OF_MEMORY, 4);
  store<u32>(rep, LIVE_TAG, AT_TAG);
  store<u32>(rep, bitCount, AT_BIT_COUNT);
  store<u32>(rep, wordCount, AT_WORD_COUNT);
  bitmap_init(layoutOf(rep), wordCount);
  const handle = resourceNew(<u32>rep);
  store<u32>(RETURN_AREA, handle, 4);
  return ok();
}

/** [dtor]bitmap: the host dropped the last handle. */
export function bitmap_dtor(rep: usize): void {
  if (liveRep(rep) == 0) return;
  store<u32>(rep, 0, AT_TAG);
  deallocate(rep, blockBytesOf(wordCountOf(rep)));
}

export function bitmap_method_bit_count(rep: usize): u32 {
  const live = liveRep(rep);
  return live == 0 ? 0 : bitCountOf(live);
}

export function bitmap_method_get(rep: usize, bit: u32): usize {
  const live = liveRep(rep);
  const code = bitError(live, bit);
  if (code != NONE) return err(<u8>code, 1);
  return okBool(bitmap_get(layoutOf(live), bit) != 0);
}

export function bitmap_method_set(rep: usize, bit: u32): usize {
  const live = liveRep(rep);
  const code = bitError(live, bit);
  if (code != NONE) return err(<u8>code, 1);
  return okBool(bitmap_set(layoutOf(live), bit) != 0);
}

export function bitmap_method_clear(rep: usize, bit: u32): usize {
  const live = liveRep(rep);
  const code = bitError(live, bit);
  if (code != NONE) return err(<u8>code, 1);
  return okBool(bitmap_clear(layoutOf(live), bit) != 0);
}

export function bitmap_method_next_set(rep: usize, fromBit: u32, lastBit: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, fromBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  return okOptionU32(bitmap_next_set(layoutOf(live), fromBit, lastBit));
}

export function bitmap_method_next_zero(rep: usize, fromBit: u32, lastBit: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, fromBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  return okOptionU32(bitmap_next_zero(layoutOf(live), fromBit, lastBit));
}

export function bitmap_method_next_set_wrapping(rep: usize, fromBit: u32, lastBit: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, fromBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  return okOptionU32(bitmap_next_set_wrapping(layoutOf(live), fromBit, lastBit));
}

export function bitmap_method_next_zero_wrapping(rep: usize, fromBit: u32, lastBit: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, fromBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  return okOptionU32(bitmap_next_zero_wrapping(layoutOf(live), fromBit, lastBit));
}

export function bitmap_method_count_set(rep: usize, firstBit: u32, lastBit: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, firstBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  return okU32(<u32>bitmap_count_set(layoutOf(live), firstBit, lastBit));
}

export function bitmap_method_set_range(rep: usize, firstBit: u32, lastBit: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, firstBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  return okU32(<u32>bitmap_set_range(layoutOf(live), firstBit, lastBit));
}

export function bitmap_method_clear_range(rep: usize, firstBit: u32, lastBit: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, firstBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  return okU32(<u32>bitmap_clear_range(layoutOf(live), firstBit, lastBit));
}

/** result<option<bit-run>, error-code>: case @0, option case @4, start @8, length @12. */
export function bitmap_method_next_run(rep: usize, fromBit: u32, lastBit: u32, value: u32, maxLengthBits: u32): usize {
  const live = liveRep(rep);
  const code = rangeError(live, fromBit, lastBit);
  if (code != NONE) return err(<u8>code, 4);
  if (maxLengthBits == 0) return err(INVALID_ARGUMENT, 4);
  const start = bitmap_next_run(layoutOf(live), fromBit, lastBit, value != 0 ? 1 : 0, maxLengthBits);
  if (start < 0) return okOptionU32(-1);
  ok();
  store<u8>(RETURN_AREA, 1, 4);
  store<u32>(RETURN_AREA, <u32>start, 8);
  store<u32>(RETURN_AREA, <u32>bitmap_run_length(), 12);
  return RETURN_AREA;
}

/** The error code for words [startWord, startWord + wordCount) of the bitmap at rep, or NONE. */
function wordRangeError(rep: usize, startWord: u32, wordCount: u32): i32 {
  if (rep == 0) return INVALID_ARGUMENT;
  return <u64>startWord + <u64>wordCount > <u64>wordCountOf(rep) ? OUT_OF_RANGE : NONE;
}

/** result<list<u8>, error-code>: a copy of the words, released by the post function. */
export function bitmap_method_words(rep: usize, startWord: u32, wordCount: u32): usize {
  const live = liveRep(rep);
  const code = wordRangeError(live, startWord, wordCount);
  if (code != NONE) return err(<u8>code, 4);
  const lengthBytes = <u64>wordCount * WORD_BYTES;
  const out = allocateList(lengthBytes);
  if (out == 0) return err(OUT_OF_MEMORY, 4);
  memory.copy(out, bitmap_words(layoutOf(live)) + (<usize>startWord << 3), <usize>lengthBytes);
  returnList(out, lengthBytes);
  ok();
  storeList(4, out, <u32>lengthBytes);
  return RETURN_AREA;
}

export function post_bitmap_method_words(_retptr: usize): void {
  releaseReturned();
}

/** True when the last of `wordCount` words at `src`, loaded at startWord, sets a bit past bitCount. */
function setsPastEnd(rep: usize, startWord: u32, src: usize, wordCount: u32): bool {
  const tailBits = bitCountOf(rep) & 63;
  if (tailBits == 0 || wordCount == 0 || startWord + wordCount != wordCountOf(rep)) return false;
  const last = load<u64>(src + (<usize>(wordCount - 1) << 3));
  return (last >> <u64>tailBits) != 0;
}

/** result<s64, error-code>: the change in set bits, payload at 8. The bytes list is ours to release. */
export function bitmap_method_load_words(rep: usize, startWord: u32, bytesPtr: usize, bytesLength: u32): usize {
  const result = loadWords(liveRep(rep), startWord, bytesPtr, bytesLength);
  releaseList(bytesPtr, <u64>bytesLength);
  return result;
}

function loadWords(rep: usize, startWord: u32, src: usize, lengthBytes: u32): usize {
  if (rep == 0) return err(INVALID_ARGUMENT, 8);
  if ((lengthBytes & (WORD_BYTES - 1)) != 0) return err(INVALID_ARGUMENT, 8);
  const wordCount = lengthBytes / WORD_BYTES;
  const code = wordRangeError(rep, startWord, wordCount);
  if (code != NONE) return err(<u8>code, 8);
  if (setsPastEnd(rep, startWord, src, wordCount)) return err(INVALID_ARGUMENT, 8);
  ok();
  if (wordCount == 0) {
    store<i64>(RETURN_AREA, 0, 8);
    return RETURN_AREA;
  }
  const bm = layoutOf(rep);
  memory.copy(bitmap_words(bm) + (<usize>startWord << 3), src, lengthBytes);
  store<i64>(RETURN_AREA, <i64>bitmap_recount(bm, startWord, startWord + wordCount), 8);
  return RETURN_AREA;
}

/** or / and-not: this bitmap's words combined with other's (the same size), whole. */
function combine(rep: usize, otherRep: usize, andNot: bool): usize {
  const live = liveRep(rep);
  const other = liveRep(otherRep);
  if (live == 0 || other == 0) return err(INVALID_ARGUMENT, 4);
  if (bitCountOf(live) != bitCountOf(other)) return err(INVALID_ARGUMENT, 4);
  const wordCount = wordCountOf(live);
  if (wordCount == 0) return okU32(0);
  const bm = layoutOf(live);
  const src = bitmap_words(layoutOf(other));
  const population = andNot ? bitmap_and_not(bm, 0, src, wordCount) : bitmap_or(bm, 0, src, wordCount);
  return okU32(<u32>population);
}

export function bitmap_method_or(rep: usize, otherRep: usize): usize {
  return combine(rep, otherRep, false);
}

export function bitmap_method_and_not(rep: usize, otherRep: usize): usize {
  return combine(rep, otherRep, true);
}
