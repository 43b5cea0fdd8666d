/**
 * Byte-range kernels: copy (memory.copy, overlap-safe like memmove) and the all-zero test used to
 * skip writing or sending empty blocks. The zero test reads 64 bytes a step (four v128 in the
 * SIMD build, four u64 twice in the scalar build) and stops at the first non-zero block.
 * Pointers need no alignment. The host checks that ranges lie inside linear memory.
 */

// @ts-ignore: decorator
@inline const STEP_BYTES: usize = 64;
// @ts-ignore: decorator
@inline const WORD_BYTES: usize = 8;
// Compile-time check: a false one compiles its ERROR branch and fails the build.
if (!(STEP_BYTES % WORD_BYTES == 0)) ERROR('STEP_BYTES % WORD_BYTES == 0');

export function copy_bytes(dstPtr: usize, srcPtr: usize, lengthBytes: usize): void {
  memory.copy(dstPtr, srcPtr, lengthBytes);
}

/** 1 when [ptr, ptr + lengthBytes) holds only zero bytes, else 0. */
export function is_zero(ptr: usize, lengthBytes: usize): i32 {
  const end = ptr + lengthBytes;
  let p = ptr;
  if (ASC_FEATURE_SIMD) {
    while (end - p >= STEP_BYTES) {
      const v = v128.or(
        v128.or(v128.load(p), v128.load(p, 16)),
        v128.or(v128.load(p, 32), v128.load(p, 48)),
      );
      if (v128.any_true(v)) return 0;
      p += STEP_BYTES;
    }
  } else {
    while (end - p >= STEP_BYTES) {
      const a = load<u64>(p) | load<u64>(p, 8) | load<u64>(p, 16) | load<u64>(p, 24);
      const b = load<u64>(p, 32) | load<u64>(p, 40) | load<u64>(p, 48) | load<u64>(p, 56);
      if ((a | b) != 0) return 0;
      p += STEP_BYTES;
    }
  }
  while (end - p >= WORD_BYTES) {
    if (load<u64>(p) != 0) return 0;
    p += WORD_BYTES;
  }
  while (p < end) {
    if (load<u8>(p) != 0) return 0;
    p++;
  }
  return 1;
}
