/**
 * Protocol frames in raw memory: each layout defined once here (sizes, magic, field offsets,
 * codes; the TypeScript side reads the exported constants instead of keeping its own copy), batch
 * validation and decoding, and encoding. Payload digests for frames are the CRC32C and XXH64
 * kernels (crc32c.ts, xxh64.ts).
 *
 * Batch decoding. A receive buffer goes in; a table of records comes out, RECORD_WORDS u32 per
 * header in host order: word 0 is the header's verdict (0 = valid, else the code of the first
 * check it fails), the other words its fields. The walk follows the stream as the protocol
 * defines it (a header, then its payload if it has one) and stops at the first header that ends
 * the stream (bad magic, a disconnect), at a payload not all in the buffer, when the buffer holds
 * no whole header, or when the table is full. It returns the record count; `frame_batch_end()`
 * says where the walk stopped (bytes from the buffer start, possibly past its end when the last
 * payload is incomplete). Further layouts (RTRS/RNBD, dm-ulog) add their constants, a verdict
 * list and a `<layout>_batch` beside NBD's, with the same record shape and the same stopping rules.
 *
 * NBD transmission (proto.md; big-endian on the wire):
 *   request           magic 0x25609513 u32, flags u16, type u16, cookie u64, offset u64, length u32  (28 B)
 *                     [+ length bytes of data for WRITE]
 *   simple reply      magic 0x67446698 u32, error u32, cookie u64  (16 B)
 *   structured chunk  magic 0x668e33ef u32, flags u16, type u16, cookie u64, length u32  (20 B)
 * Request record: verdict, flags, type, cookie high, cookie low, offset high, offset low, length.
 * Verdicts are the checks of server/nbd/request-check.ts in its order (first failure wins), with
 * the negotiated parameters as arguments: magic; unknown command; unknown flag bits; FUA without
 * SEND_FUA; NO_HOLE off WRITE_ZEROES; DF off READ or unadvertised; REQ_ONE off BLOCK_STATUS;
 * FAST_ZERO off WRITE_ZEROES or unadvertised; a write to a read-only export; FLUSH, TRIM,
 * WRITE_ZEROES not advertised; BLOCK_STATUS without base:allocation; FLUSH with offset or length;
 * offset + length past the export (an offset of 2^53 or more always is); offset or length not a
 * multiple of the minimum block; READ or WRITE longer than the maximum block; BLOCK_STATUS of
 * length 0. DISC with a good magic is valid whatever its other fields (the server disconnects).
 * A READ or WRITE without flags, in range and aligned to a power-of-two block passes all of them
 * at once (one combined test; the full list runs for everything else): that fast path halved the
 * batch's cost.
 *
 * Where it pays (`npm run bench -- frame`): decoding and checking 32 headers into the table is
 * 2.4-3.5x a TypeScript DataView loop on Node, Bun and Deno, but the NBD server, which needs an
 * object per request, is faster decoding one header at a time in TypeScript, so it does (numbers
 * and the per-runtime choice: server/nbd/request-codec.ts and the adapters' nbdRequestDecoder).
 */

// ---- records ----
export const RECORD_WORDS: u32 = 8;
// @ts-ignore: decorator
@inline const RECORD_BYTES: usize = <usize>RECORD_WORDS * 4;

// ---- NBD layouts ----
export const NBD_REQUEST_BYTES: u32 = 28;
export const NBD_SIMPLE_REPLY_BYTES: u32 = 16;
export const NBD_STRUCTURED_REPLY_BYTES: u32 = 20;
export const NBD_REQUEST_MAGIC: u32 = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC: u32 = 0x668e33ef;
// @ts-ignore: decorator
@inline const AT_MAGIC: usize = 0;
// @ts-ignore: decorator
@inline const AT_FLAGS: usize = 4;
// @ts-ignore: decorator
@inline const AT_TYPE: usize = 6;
// @ts-ignore: decorator
@inline const AT_COOKIE: usize = 8;
// @ts-ignore: decorator
@inline const AT_OFFSET: usize = 16;
// @ts-ignore: decorator
@inline const AT_LENGTH: usize = 24;
// @ts-ignore: decorator
@inline const AT_REPLY_ERROR: usize = 4;
// @ts-ignore: decorator
@inline const AT_REPLY_LENGTH: usize = 16;

if (!(AT_LENGTH + 4 == <usize>NBD_REQUEST_BYTES)) ERROR('the request fields fill 28 bytes');
if (!(AT_COOKIE + 8 == <usize>NBD_SIMPLE_REPLY_BYTES && AT_REPLY_LENGTH + 4 == <usize>NBD_STRUCTURED_REPLY_BYTES)) ERROR('reply fields fill their headers');

export const NBD_CMD_READ: u32 = 0;
export const NBD_CMD_WRITE: u32 = 1;
export const NBD_CMD_DISC: u32 = 2;
export const NBD_CMD_FLUSH: u32 = 3;
export const NBD_CMD_TRIM: u32 = 4;
export const NBD_CMD_CACHE: u32 = 5;
export const NBD_CMD_WRITE_ZEROES: u32 = 6;
export const NBD_CMD_BLOCK_STATUS: u32 = 7;
export const NBD_COMMAND_COUNT: u32 = 8;

export const NBD_CMD_FLAG_FUA: u32 = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE: u32 = 1 << 1;
export const NBD_CMD_FLAG_DF: u32 = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE: u32 = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO: u32 = 1 << 4;
// @ts-ignore: decorator
@inline const KNOWN_CMD_FLAGS: u32 = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF | NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO;

export const NBD_FLAG_READ_ONLY: u32 = 1 << 1;
export const NBD_FLAG_SEND_FLUSH: u32 = 1 << 2;
export const NBD_FLAG_SEND_FUA: u32 = 1 << 3;
export const NBD_FLAG_SEND_TRIM: u32 = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES: u32 = 1 << 6;
export const NBD_FLAG_SEND_DF: u32 = 1 << 7;
export const NBD_FLAG_SEND_FAST_ZERO: u32 = 1 << 11;

/** `negotiated` bits of nbd_request_batch. */
export const NBD_NEGOTIATED_STRUCTURED: u32 = 1 << 0;
export const NBD_NEGOTIATED_BASE_ALLOCATION: u32 = 1 << 1;

/** Offsets from 2^53 up are out of range for every export (the host's numbers stop there). */
// @ts-ignore: decorator
@inline const OFFSET_LIMIT: u64 = 1 << 53;

// ---- NBD request verdicts, in check order ----
export const NBD_OK: u32 = 0;
export const NBD_BAD_MAGIC: u32 = 1;
export const NBD_UNKNOWN_COMMAND: u32 = 2;
export const NBD_UNKNOWN_FLAGS: u32 = 3;
export const NBD_FUA_NOT_ADVERTISED: u32 = 4;
export const NBD_NO_HOLE_MISPLACED: u32 = 5;
export const NBD_DF_MISPLACED: u32 = 6;
export const NBD_REQ_ONE_MISPLACED: u32 = 7;
export const NBD_FAST_ZERO_MISPLACED: u32 = 8;
export const NBD_READ_ONLY: u32 = 9;
export const NBD_FLUSH_NOT_ADVERTISED: u32 = 10;
export const NBD_TRIM_NOT_ADVERTISED: u32 = 11;
export const NBD_WRITE_ZEROES_NOT_ADVERTISED: u32 = 12;
export const NBD_BLOCK_STATUS_NOT_NEGOTIATED: u32 = 13;
export const NBD_FLUSH_NOT_EMPTY: u32 = 14;
export const NBD_OUT_OF_RANGE: u32 = 15;
export const NBD_OFFSET_MISALIGNED: u32 = 16;
export const NBD_LENGTH_MISALIGNED: u32 = 17;
export const NBD_TOO_LONG: u32 = 18;
export const NBD_BLOCK_STATUS_EMPTY: u32 = 19;
export const NBD_VERDICT_COUNT: u32 = 20;

let batchEndBytes: f64 = 0;

// @ts-ignore: decorator
@inline function loadBe16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}

// @ts-ignore: decorator
@inline function loadBe32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}

// @ts-ignore: decorator
@inline function storeBe16(p: usize, value: u32): void {
  store<u16>(p, bswap<u16>(<u16>value));
}

// @ts-ignore: decorator
@inline function storeBe32(p: usize, value: u32): void {
  store<u32>(p, bswap<u32>(value));
}

/** The first check of request-check.ts the request fails, or NBD_OK (magic checked by the caller). */
function nbdVerdict(
  flags: u32, type: u32, offset: u64, length: u32,
  sizeBytes: u64, blockBytes: u32, exportFlags: u32, negotiated: u32, maxBlockBytes: u32,
): u32 {
  if (type >= NBD_COMMAND_COUNT) return NBD_UNKNOWN_COMMAND;
  if (type == NBD_CMD_DISC) return NBD_OK;
  if ((flags & ~KNOWN_CMD_FLAGS) != 0) return NBD_UNKNOWN_FLAGS;
  if ((flags & NBD_CMD_FLAG_FUA) != 0 && (exportFlags & NBD_FLAG_SEND_FUA) == 0) return NBD_FUA_NOT_ADVERTISED;
  if ((flags & NBD_CMD_FLAG_NO_HOLE) != 0 && type != NBD_CMD_WRITE_ZEROES) return NBD_NO_HOLE_MISPLACED;
  if ((flags & NBD_CMD_FLAG_DF) != 0 && (type != NBD_CMD_READ || (exportFlags & NBD_FLAG_SEND_DF) == 0)) return NBD_DF_MISPLACED;
  if ((flags & NBD_CMD_FLAG_REQ_ONE) != 0 && type != NBD_CMD_BLOCK_STATUS) return NBD_REQ_ONE_MISPLACED;
  if ((flags & NBD_CMD_FLAG_FAST_ZERO) != 0 && (type != NBD_CMD_WRITE_ZEROES || (exportFlags & NBD_FLAG_SEND_FAST_ZERO) == 0)) {
    return NBD_FAST_ZERO_MISPLACED;
  }
  const writes = type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES || type == NBD_CMD_TRIM;
  if (writes && (exportFlags & NBD_FLAG_READ_ONLY) != 0) return NBD_READ_ONLY;
  if (type == NBD_CMD_FLUSH && (exportFlags & NBD_FLAG_SEND_FLUSH) == 0) return NBD_FLUSH_NOT_ADVERTISED;
  if (type == NBD_CMD_TRIM && (exportFlags & NBD_FLAG_SEND_TRIM) == 0) return NBD_TRIM_NOT_ADVERTISED;
  if (type == NBD_CMD_WRITE_ZEROES && (exportFlags & NBD_FLAG_SEND_WRITE_ZEROES) == 0) return NBD_WRITE_ZEROES_NOT_ADVERTISED;
  const baseAllocation = NBD_NEGOTIATED_STRUCTURED | NBD_NEGOTIATED_BASE_ALLOCATION;
  if (type == NBD_CMD_BLOCK_STATUS && (negotiated & baseAllocation) != baseAllocation) return NBD_BLOCK_STATUS_NOT_NEGOTIATED;
  if (type == NBD_CMD_FLUSH) return offset != 0 || length != 0 ? NBD_FLUSH_NOT_EMPTY : NBD_OK;
  if (offset >= OFFSET_LIMIT || offset > sizeBytes || <u64>length > sizeBytes - offset) return NBD_OUT_OF_RANGE;
  // Minimum blocks are powers of two in practice (proto.md requires it): a mask then, not a
  // division (a 64-bit division costs more than all the other checks together).
  const blockMask = blockBytes - 1;
  const power = (blockBytes & blockMask) == 0;
  if (power ? (<u32>offset & blockMask) != 0 : offset % <u64>blockBytes != 0) return NBD_OFFSET_MISALIGNED;
  if (power ? (length & blockMask) != 0 : length % blockBytes != 0) return NBD_LENGTH_MISALIGNED;
  if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && length > maxBlockBytes) return NBD_TOO_LONG;
  if (type == NBD_CMD_BLOCK_STATUS && length == 0) return NBD_BLOCK_STATUS_EMPTY;
  return NBD_OK;
}

/**
 * Decodes and checks the NBD request headers in [inPtr, inPtr + inBytes) into up to maxRecords
 * records at outPtr, against an export of sizeBytes (an integer below 2^53) with the minimum
 * block blockBytes (>= 1), the transmission flags, the `negotiated` bits and the largest READ or
 * WRITE maxBlockBytes. Returns the record count; see frame_batch_end.
 */
export function nbd_request_batch(
  inPtr: usize, inBytes: usize, outPtr: usize, maxRecords: u32,
  sizeBytes: f64, blockBytes: u32, exportFlags: u32, negotiated: u32, maxBlockBytes: u32,
): u32 {
  const size = <u64>sizeBytes;
  // The common case first: a READ or WRITE without flags, in range, aligned to a power-of-two
  // block, not too long (the same checks as nbdVerdict, in one test). Everything else: nbdVerdict.
  const fastMask: u64 = (blockBytes & (blockBytes - 1)) == 0 ? <u64>(blockBytes - 1) : <u64>-1;
  const fastMaxBytes: u64 = min<u64>(<u64>maxBlockBytes, size);
  const writable = (exportFlags & NBD_FLAG_READ_ONLY) == 0;
  let at: u64 = 0;
  let count: u32 = 0;
  let out = outPtr;
  while (count < maxRecords && <u64>inBytes - at >= <u64>NBD_REQUEST_BYTES) {
    const p = inPtr + <usize>at;
    const flags = loadBe16(p + AT_FLAGS);
    const type = loadBe16(p + AT_TYPE);
    const offsetHigh = loadBe32(p + AT_OFFSET);
    const offsetLow = loadBe32(p + AT_OFFSET + 4);
    const length = loadBe32(p + AT_LENGTH);
    const magicOk = loadBe32(p + AT_MAGIC) == NBD_REQUEST_MAGIC;
    const offset = (<u64>offsetHigh << 32) | <u64>offsetLow;
    const end = offset + <u64>length; // no wrap: offsets this large fail the first test below
    let verdict = NBD_BAD_MAGIC;
    if (magicOk) {
      const plain = flags == 0 && (type == NBD_CMD_READ || (type == NBD_CMD_WRITE && writable));
      verdict = plain && offset < OFFSET_LIMIT && end <= size && ((offset | end) & fastMask) == 0 && <u64>length <= fastMaxBytes
        ? NBD_OK
        : nbdVerdict(flags, type, offset, length, size, blockBytes, exportFlags, negotiated, maxBlockBytes);
    }
    store<u32>(out, verdict);
    store<u32>(out, flags, 4);
    store<u32>(out, type, 8);
    store<u32>(out, loadBe32(p + AT_COOKIE), 12);
    store<u32>(out, loadBe32(p + AT_COOKIE + 4), 16);
    store<u32>(out, offsetHigh, 20);
    store<u32>(out, offsetLow, 24);
    store<u32>(out, length, 28);
    out += RECORD_BYTES;
    count++;
    at += <u64>NBD_REQUEST_BYTES;
    if (!magicOk || type == NBD_CMD_DISC) break;
    if (type == NBD_CMD_WRITE) {
      at += <u64>length; // a WRITE's payload follows its header, refused or not
      if (at > <u64>inBytes) break;
    }
  }
  batchEndBytes = <f64>at;
  return count;
}

/** Where the last batch's walk stopped: bytes from its buffer's start. */
export function frame_batch_end(): f64 {
  return batchEndBytes;
}

/** Writes an NBD request header at outPtr (the client side; tests and our own clients). */
export function nbd_request_encode(
  outPtr: usize, flags: u32, type: u32, cookieHigh: u32, cookieLow: u32, offsetHigh: u32, offsetLow: u32, lengthBytes: u32,
): void {
  storeBe32(outPtr + AT_MAGIC, NBD_REQUEST_MAGIC);
  storeBe16(outPtr + AT_FLAGS, flags);
  storeBe16(outPtr + AT_TYPE, type);
  storeBe32(outPtr + AT_COOKIE, cookieHigh);
  storeBe32(outPtr + AT_COOKIE + 4, cookieLow);
  storeBe32(outPtr + AT_OFFSET, offsetHigh);
  storeBe32(outPtr + AT_OFFSET + 4, offsetLow);
  storeBe32(outPtr + AT_LENGTH, lengthBytes);
}

/** Writes an NBD simple reply header at outPtr. */
export function nbd_simple_reply_encode(outPtr: usize, error: u32, cookieHigh: u32, cookieLow: u32): void {
  storeBe32(outPtr + AT_MAGIC, NBD_SIMPLE_REPLY_MAGIC);
  storeBe32(outPtr + AT_REPLY_ERROR, error);
  storeBe32(outPtr + AT_COOKIE, cookieHigh);
  storeBe32(outPtr + AT_COOKIE + 4, cookieLow);
}

/** Writes an NBD structured reply chunk header at outPtr. */
export function nbd_structured_reply_encode(outPtr: usize, flags: u32, type: u32, cookieHigh: u32, cookieLow: u32, lengthBytes: u32): void {
  storeBe32(outPtr + AT_MAGIC, NBD_STRUCTURED_REPLY_MAGIC);
  storeBe16(outPtr + AT_FLAGS, flags);
  storeBe16(outPtr + AT_TYPE, type);
  storeBe32(outPtr + AT_COOKIE, cookieHigh);
  storeBe32(outPtr + AT_COOKIE + 4, cookieLow);
  storeBe32(outPtr + AT_REPLY_LENGTH, lengthBytes);
}
