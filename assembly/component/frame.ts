/**
 * The `frame` interface: NBD request batches decoded and checked by ../frame.ts, and NBD headers
 * encoded by it.
 *
 * Decoding. The kernel writes RECORD_WORDS u32 per header in host order (verdict, flags, type,
 * cookie high, cookie low, offset high, offset low, length); the canonical ABI's nbd-request
 * record is verdict u8 @0, flags u16 @2, command u16 @4, cookie u64 @8, offset u64 @16, length
 * u32 @24, 32 bytes with 8-byte alignment: also 32 bytes, so each record is rewritten in place
 * (all eight words read before any is written). The table holds at most one record per whole
 * header in the input, so its size follows the input, not `max-requests`.
 *
 * Encoding. Headers are 16 to 28 bytes: written into the static FIXED_OUT buffer and returned as
 * a list pointing there (the host copies it out before the next call), so no post function.
 */
import {
  nbd_request_batch, frame_batch_end, nbd_request_encode, nbd_simple_reply_encode, nbd_structured_reply_encode,
  RECORD_WORDS, NBD_REQUEST_BYTES, NBD_SIMPLE_REPLY_BYTES, NBD_STRUCTURED_REPLY_BYTES,
} from '../frame';
import {
  INVALID_ARGUMENT, OUT_OF_MEMORY, RETURN_AREA, FIXED_OUT, err, ok, storeList, allocateList, releaseList, returnList, releaseReturned,
} from './abi';

// @ts-ignore: decorator
@inline const RECORD_BYTES: u64 = 32;
/** Sizes from 2^53 up are refused (the kernel takes the size as an f64, like a JS number). */
// @ts-ignore: decorator
@inline const SIZE_LIMIT: u64 = 1 << 53;

if (!(<u64>RECORD_WORDS * 4 == RECORD_BYTES)) ERROR('kernel records and nbd-request records are both 32 bytes');

/** Rewrites the kernel's record at p into the canonical ABI's nbd-request layout. */
// @ts-ignore: decorator
@inline function toCanonical(p: usize): void {
  const verdict = load<u32>(p);
  const flags = load<u32>(p, 4);
  const command = load<u32>(p, 8);
  const cookie = (<u64>load<u32>(p, 12) << 32) | <u64>load<u32>(p, 16);
  const offset = (<u64>load<u32>(p, 20) << 32) | <u64>load<u32>(p, 24);
  const lengthBytes = load<u32>(p, 28);
  store<u8>(p, <u8>verdict);
  store<u8>(p, 0, 1);
  store<u16>(p, <u16>flags, 2);
  store<u16>(p, <u16>command, 4);
  store<u16>(p, 0, 6);
  store<u64>(p, cookie, 8);
  store<u64>(p, offset, 16);
  store<u32>(p, lengthBytes, 24);
  store<u32>(p, 0, 28);
}

/** decode-nbd-requests: result<nbd-batch, error-code>: case @0, requests list @8, end-bytes @16. */
export function frame_decode_nbd_requests(
  inPtr: usize, inBytes: u32, sizeBytes: u64, minimumBlockBytes: u32, transmissionFlags: u32,
  structuredReplies: u32, baseAllocation: u32, maxBlockBytes: u32, maxRequests: u32,
): usize {
  const result = decode(inPtr, inBytes, sizeBytes, minimumBlockBytes, transmissionFlags, structuredReplies, baseAllocation, maxBlockBytes, maxRequests);
  releaseList(inPtr, <u64>inBytes);
  return result;
}

function decode(
  inPtr: usize, inBytes: u32, sizeBytes: u64, minimumBlockBytes: u32, transmissionFlags: u32,
  structuredReplies: u32, baseAllocation: u32, maxBlockBytes: u32, maxRequests: u32,
): usize {
  if (sizeBytes >= SIZE_LIMIT || minimumBlockBytes == 0 || maxRequests == 0) return err(INVALID_ARGUMENT, 8);
  const capacity = min<u32>(maxRequests, inBytes / NBD_REQUEST_BYTES);
  const tableBytes = <u64>capacity * RECORD_BYTES;
  const table = allocateList(tableBytes);
  if (table == 0) return err(OUT_OF_MEMORY, 8);
  const negotiated: u32 = (structuredReplies != 0 ? 1 : 0) | (baseAllocation != 0 ? 2 : 0);
  const count = nbd_request_batch(
    inPtr, inBytes, table, capacity, <f64>sizeBytes, minimumBlockBytes, transmissionFlags, negotiated, maxBlockBytes,
  );
  for (let i: u32 = 0; i < count; i++) toCanonical(table + <usize>(<u64>i * RECORD_BYTES));
  returnList(table, tableBytes);
  ok();
  storeList(8, table, count);
  store<u64>(RETURN_AREA, <u64>frame_batch_end(), 16);
  return RETURN_AREA;
}

export function post_frame_decode_nbd_requests(_retptr: usize): void {
  releaseReturned();
}

/** A list over the first `lengthBytes` of FIXED_OUT, in the return area. */
function fixedList(lengthBytes: u32): usize {
  storeList(0, FIXED_OUT, lengthBytes);
  return RETURN_AREA;
}

export function frame_encode_nbd_request(flags: u32, command: u32, cookie: u64, offsetBytes: u64, lengthBytes: u32): usize {
  nbd_request_encode(
    FIXED_OUT, flags & 0xffff, command & 0xffff, <u32>(cookie >> 32), <u32>cookie, <u32>(offsetBytes >> 32), <u32>offsetBytes, lengthBytes,
  );
  return fixedList(NBD_REQUEST_BYTES);
}

export function frame_encode_nbd_simple_reply(error: u32, cookie: u64): usize {
  nbd_simple_reply_encode(FIXED_OUT, error, <u32>(cookie >> 32), <u32>cookie);
  return fixedList(NBD_SIMPLE_REPLY_BYTES);
}

export function frame_encode_nbd_structured_reply(flags: u32, chunkType: u32, cookie: u64, lengthBytes: u32): usize {
  nbd_structured_reply_encode(FIXED_OUT, flags & 0xffff, chunkType & 0xffff, <u32>(cookie >> 32), <u32>cookie, lengthBytes);
  return fixedList(NBD_STRUCTURED_REPLY_BYTES);
}
