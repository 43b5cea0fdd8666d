/**
 * Plain JavaScript digests the WASM kernels are checked and benchmarked against. Kept here, not
 * in runtime/: the library computes digests only through the kernels (runtime/wasm/kernels.ts).
 *   crc32cBitwise   one bit at a time, straight from the definition (reflected 0x82F63B78): the
 *                   model for the fuzz tests, too slow for anything else;
 *   crc32cSliceBy8  the fastest JavaScript CRC32C we know (eight 256-entry tables, 8 bytes a
 *                   step, words assembled from bytes): the peer in `bench frame`;
 *   xxh64Reference  XXH64 in BigInt arithmetic, one operation per line of the specification.
 */
const CASTAGNOLI = 0x82f63b78;

export function crc32cBitwise(bytes: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ CASTAGNOLI : crc >>> 1;
  }
  return ~crc >>> 0;
}

/** Eight tables of 256 entries, table t at [256 t, 256 t + 256): table t advances a byte by t more. */
const SLICE_TABLES = (() => {
  const tables = new Int32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CASTAGNOLI : c >>> 1;
    tables[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    for (let t = 1; t < 8; t++) {
      const prev = tables[(t - 1) * 256 + i]!;
      tables[t * 256 + i] = tables[prev & 0xff]! ^ (prev >>> 8);
    }
  }
  return tables;
})();

export function crc32cSliceBy8(bytes: Uint8Array, seed = 0): number {
  const t = SLICE_TABLES;
  let c = ~seed;
  let i = 0;
  const length = bytes.length;
  const end8 = length - 7;
  while (i < end8) {
    const a = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    const b = bytes[i + 4]! | (bytes[i + 5]! << 8) | (bytes[i + 6]! << 16) | (bytes[i + 7]! << 24);
    c = t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^ t[1280 + ((a >>> 16) & 0xff)]! ^ t[1024 + (a >>> 24)]! ^
      t[768 + (b & 0xff)]! ^ t[512 + ((b >>> 8) & 0xff)]! ^ t[256 + ((b >>> 16) & 0xff)]! ^ t[b >>> 24]!;
    i += 8;
  }
  for (; i < length; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const MASK64 = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK64;
}

function readLe(bytes: Uint8Array, at: number, count: number): bigint {
  let value = 0n;
  for (let k = count - 1; k >= 0; k--) value = (value << 8n) | BigInt(bytes[at + k]!);
  return value;
}

function round64(acc: bigint, lane: bigint): bigint {
  return (rotl64((acc + lane * P2) & MASK64, 31n) * P1) & MASK64;
}

function merge64(acc: bigint, lane: bigint): bigint {
  return (((acc ^ round64(0n, lane)) * P1) + P4) & MASK64;
}

export function xxh64Reference(bytes: Uint8Array, seed = 0n): bigint {
  const length = bytes.length;
  let at = 0;
  let h: bigint;
  if (length >= 32) {
    let v1 = (seed + P1 + P2) & MASK64;
    let v2 = (seed + P2) & MASK64;
    let v3 = seed & MASK64;
    let v4 = (seed - P1) & MASK64;
    for (; at + 32 <= length; at += 32) {
      v1 = round64(v1, readLe(bytes, at, 8));
      v2 = round64(v2, readLe(bytes, at + 8, 8));
      v3 = round64(v3, readLe(bytes, at + 16, 8));
      v4 = round64(v4, readLe(bytes, at + 24, 8));
    }
    h = (rotl64(v1, 1n) + rotl64(v2, 7n) + rotl64(v3, 12n) + rotl64(v4, 18n)) & MASK64;
    for (const v of [v1, v2, v3, v4]) h = merge64(h, v);
  } else {
    h = (seed + P5) & MASK64;
  }
  h = (h + BigInt(length)) & MASK64;
  for (; at + 8 <= length; at += 8) h = (rotl64(h ^ round64(0n, readLe(bytes, at, 8)), 27n) * P1 + P4) & MASK64;
  if (at + 4 <= length) {
    h = (rotl64(h ^ ((readLe(bytes, at, 4) * P1) & MASK64), 23n) * P2 + P3) & MASK64;
    at += 4;
  }
  for (; at < length; at++) h = (rotl64(h ^ ((BigInt(bytes[at]!) * P5) & MASK64), 11n) * P1) & MASK64;
  h ^= h >> 33n;
  h = (h * P2) & MASK64;
  h ^= h >> 29n;
  h = (h * P3) & MASK64;
  h ^= h >> 32n;
  return h;
}
