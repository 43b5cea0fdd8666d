/**
 * Big-endian field access for NBD frames over plain Uint8Arrays (no DataView per frame: frames are
 * built and parsed on the hot path). u64 values are JavaScript numbers, exact up to 2^53; `readU64`
 * says -1 for anything larger, which every caller treats as out of range.
 */
const TWO_32 = 2 ** 32;
const SAFE_HIGH_LIMIT = 2 ** 21; // high word of 2^53

export function writeU16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 8;
  bytes[at + 1] = value;
}

export function writeU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value >>> 24;
  bytes[at + 1] = value >>> 16;
  bytes[at + 2] = value >>> 8;
  bytes[at + 3] = value;
}

/** Writes a non-negative safe integer as u64. */
export function writeU64(bytes: Uint8Array, at: number, value: number): void {
  writeU32(bytes, at, Math.floor(value / TWO_32));
  writeU32(bytes, at + 4, value >>> 0);
}

export function readU16(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 8) | bytes[at + 1]!;
}

export function readU32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

/** A u64 as a number, or -1 when it is 2^53 or more (no export is that large). */
export function readU64(bytes: Uint8Array, at: number): number {
  const high = readU32(bytes, at);
  if (high >= SAFE_HIGH_LIMIT) return -1;
  return high * TWO_32 + readU32(bytes, at + 4);
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** proto.md strings: valid UTF-8 without NUL, at most `maxBytes`. Returns null when not. */
export function decodeString(bytes: Uint8Array, maxBytes: number): string | null {
  if (bytes.length > maxBytes || bytes.includes(0)) return null;
  try {
    return strictDecoder.decode(bytes);
  } catch {
    return null;
  }
}

/** `text` as UTF-8, cut to at most `maxBytes` without splitting a character. */
export function utf8Truncated(text: string, maxBytes: number): Uint8Array {
  const bytes = encoder.encode(text);
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // back off continuation bytes
  return bytes.subarray(0, end);
}
