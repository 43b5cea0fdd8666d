/**
 * CRC32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and final xor ~0, so
 * crc32c(0, "123456789") = 0xE3069283. `crc32c(crc, ptr, len)` continues from a previous
 * result, so crc32c(crc32c(0, a), b) == crc32c(0, a ++ b) and the host can feed chunks.
 *
 * Slice-by-16: sixteen 256-entry u32 tables (16 KiB of static memory, built once by the module's
 * start function) fold 16 input bytes per step with 16 independent table loads. WebAssembly has
 * no carry-less multiply and no crc32 instruction, so this table method is the fast path in
 * both builds.
 */

// @ts-ignore: decorator
@inline const POLY: u32 = 0x82f63b78;
// @ts-ignore: decorator
@inline const TABLE_ENTRIES: u32 = 256;
// @ts-ignore: decorator
@inline const TABLE_COUNT: u32 = 16;
// @ts-ignore: decorator
@inline const TABLE_BYTES: u32 = TABLE_ENTRIES * 4;
// @ts-ignore: decorator
@inline const STEP_BYTES: u32 = 16;
// Compile-time check: a false one compiles its ERROR branch and fails the build.
if (!(TABLE_COUNT == STEP_BYTES)) ERROR('TABLE_COUNT == STEP_BYTES');

const TABLES: usize = memory.data(TABLE_BYTES * TABLE_COUNT, 64);

// @ts-ignore: decorator
@inline function entry(table: u32, index: u32): u32 {
  return load<u32>(TABLES + <usize>(table * TABLE_BYTES) + (<usize>index << 2));
}

function buildTables(): void {
  for (let i: u32 = 0; i < TABLE_ENTRIES; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    store<u32>(TABLES + (<usize>i << 2), c);
  }
  for (let t: u32 = 1; t < TABLE_COUNT; t++) {
    for (let i: u32 = 0; i < TABLE_ENTRIES; i++) {
      const prev = entry(t - 1, i);
      store<u32>(TABLES + <usize>(t * TABLE_BYTES) + (<usize>i << 2), entry(0, prev & 0xff) ^ (prev >>> 8));
    }
  }
}
buildTables();

// @ts-ignore: decorator
@inline function fold4(t: u32, x: u32): u32 {
  // Bytes of x, lowest first, go to tables t+3, t+2, t+1, t (the lowest byte is oldest).
  return entry(t + 3, x & 0xff) ^ entry(t + 2, (x >>> 8) & 0xff) ^
    entry(t + 1, (x >>> 16) & 0xff) ^ entry(t, x >>> 24);
}

export function crc32c(crc: u32, ptr: usize, lengthBytes: usize): u32 {
  let c = ~crc;
  let p = ptr;
  const end = ptr + lengthBytes;
  while (end - p >= <usize>STEP_BYTES) {
    const a = load<u32>(p) ^ c;
    c = fold4(12, a) ^ fold4(8, load<u32>(p, 4)) ^ fold4(4, load<u32>(p, 8)) ^ fold4(0, load<u32>(p, 12));
    p += STEP_BYTES;
  }
  while (p < end) {
    c = entry(0, (c ^ load<u8>(p)) & 0xff) ^ (c >>> 8);
    p++;
  }
  return ~c;
}
