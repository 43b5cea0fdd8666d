/**
 * The module's exports, all i32/f64 on the wire (see bitmap.ts for the conventions). Kernels
 * never allocate: the host owns linear memory from `heap_base()` up and grows it itself; this
 * module's only static data are the CRC tables below heap_base.
 */
export {
  bitmap_layout_bytes, bitmap_init, bitmap_words, bitmap_recount,
  bitmap_get, bitmap_set, bitmap_clear,
  bitmap_next_set, bitmap_next_zero, bitmap_next_set_wrapping, bitmap_next_zero_wrapping,
  bitmap_count_set, bitmap_set_range, bitmap_clear_range,
  bitmap_next_run, bitmap_run_length, bitmap_or, bitmap_and_not,
} from './bitmap';
export { copy_bytes, is_zero } from './copy';
export { crc32c } from './crc32c';
export { xxh64, xxh64_high } from './xxh64';
export * from './frame';

/** First free byte of linear memory: the host's allocator starts here. */
export function heap_base(): usize {
  return __heap_base;
}

/** 1 in the SIMD build, 0 in the scalar build, so the host can check which it loaded. */
export function simd_enabled(): i32 {
  return ASC_FEATURE_SIMD ? 1 : 0;
}
