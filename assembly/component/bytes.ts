/**
 * The `bytes` and `digest` interfaces: the byte-range kernels (../copy.ts) and the digests
 * (../crc32c.ts, ../xxh64.ts) over lists the host passes in. Each list arrives in a block from
 * cabi_realloc; the kernel runs on it in place and the block is released before the export
 * returns, except `copy`'s destination, which goes back to the host as the result and is
 * released by the post function.
 */
import { copy_bytes, is_zero } from '../copy';
import { crc32c } from '../crc32c';
import { xxh64, xxh64_high } from '../xxh64';
import { OUT_OF_RANGE, RETURN_AREA, err, ok, storeList, releaseList, returnList, releaseReturned } from './abi';

/** True when [offsetBytes, offsetBytes + lengthBytes) lies inside a list of listBytes. */
// @ts-ignore: decorator
@inline function inside(offsetBytes: u32, lengthBytes: u32, listBytes: u32): bool {
  return <u64>offsetBytes + <u64>lengthBytes <= <u64>listBytes;
}

/** copy: result<list<u8>, error-code>, the destination list with the range replaced. */
export function bytes_copy(
  dstPtr: usize, dstBytes: u32, dstOffsetBytes: u32,
  srcPtr: usize, srcBytes: u32, srcOffsetBytes: u32, lengthBytes: u32,
): usize {
  const fits = inside(dstOffsetBytes, lengthBytes, dstBytes) && inside(srcOffsetBytes, lengthBytes, srcBytes);
  if (fits) copy_bytes(dstPtr + <usize>dstOffsetBytes, srcPtr + <usize>srcOffsetBytes, lengthBytes);
  releaseList(srcPtr, <u64>srcBytes);
  if (!fits) {
    releaseList(dstPtr, <u64>dstBytes);
    return err(OUT_OF_RANGE, 4);
  }
  returnList(dstPtr, <u64>dstBytes);
  ok();
  storeList(4, dstPtr, dstBytes);
  return RETURN_AREA;
}

export function post_bytes_copy(_retptr: usize): void {
  releaseReturned();
}

export function bytes_is_zero(ptr: usize, lengthBytes: u32): u32 {
  const zero = is_zero(ptr, lengthBytes);
  releaseList(ptr, <u64>lengthBytes);
  return zero;
}

export function digest_crc32c(seed: u32, ptr: usize, lengthBytes: u32): u32 {
  const crc = crc32c(seed, ptr, lengthBytes);
  releaseList(ptr, <u64>lengthBytes);
  return crc;
}

export function digest_xxh64(seed: u64, ptr: usize, lengthBytes: u32): u64 {
  const low = xxh64(ptr, lengthBytes, <u32>seed, <u32>(seed >> 32));
  releaseList(ptr, <u64>lengthBytes);
  return (<u64>xxh64_high() << 32) | <u64>low;
}
