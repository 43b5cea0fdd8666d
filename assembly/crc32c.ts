/**
 * CRC32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and final xor ~0, so
 * crc32c(0, "123456789") = 0xE3069283. `crc32c(crc, ptr, len)` continues from a previous
 * result, so crc32c(crc32c(0, a), b) == crc32c(0, a ++ b) and the host can feed chunks.
 *
 * WebAssembly has no carry-less multiply and no crc32 instruction, so two table-free and
 * table-driven methods share the work:
 *
 * Folding by a zero polynomial (the idea of Chorba, arXiv 2412.16398; our polynomial and code).
 * Z(x) = x^266 + x^143 + x^121 + x^88 + x^71 + 1 is a multiple of the CRC32C polynomial G (found
 * by a meet-in-the-middle search over weight-6 multiples; weight 4 first appears past 5000 bits,
 * weight 5 never does because G has the factor x+1). So is Z(x^8) = Z(x)^8, whose exponents are
 * whole bytes: x^(8*266) == x^(8*143) + x^(8*121) + x^(8*88) + x^(8*71) + 1 (mod G). A message
 * byte at stream index i whose degree is at least 8*266 can therefore be replaced, without
 * changing the remainder, by the same byte xored into the five later bytes at i + DISTANCES[k]
 * (266, 195, 178, 145, 123). Done front to back, that is a linear recurrence on the folded bytes
 * v: v[i] = m[i] ^ v[i-266] ^ v[i-195] ^ v[i-178] ^ v[i-145] ^ v[i-123], 16 bytes a step (v128 in
 * the SIMD build, two u64 in the scalar build; every distance is >= 16 so a step only reads bytes
 * already done). No table, no multiply: five loads, five xors and a store per 16 bytes. The last
 * 266..281 bytes are not folded; they get their share of the folded ones and go through the
 * table method, from a zero register (the seed was xored into the first four bytes, which is
 * what a reflected CRC's initial value means). The folded bytes live in a static scratch area
 * (the input is never written): SCRATCH_BLOCK_BYTES of results after the ZERO_SPAN_BYTES they
 * read back, moved to the front after each block.
 *
 * Slice-by-16 for short inputs (below FOLD_MIN_BYTES) and the tail: sixteen 256-entry u32 tables
 * (16 KiB of static memory, built by the start function) fold 16 input bytes per step with 16
 * independent table loads.
 *
 * Measured (`npm run bench -- frame`, 256 KiB in WASM memory, shared 2-core VM): 12.9 / 12.4 /
 * 8.8 GB/s on Node / Bun / Deno in the SIMD build, 7.1 / 7.8 / 5.0 in the scalar build, against
 * 1.1 / 1.7 / 1.5 GB/s for the fastest JavaScript (slice-by-8); 6.6-8.4 GB/s at 4 KiB. The
 * slice-by-16 this file had alone ran 1.33 / 0.93 / 1.40 GB/s when issue 8 was filed (about 2.5
 * here at 512 bytes, measured beside the fold).
 *
 * The start function checks that Z really is zero modulo G and traps (the module fails to
 * instantiate) if not, so a wrong constant cannot compute wrong checksums.
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

/** Degree of Z in bytes, and Z's other exponents (bytes); DISTANCE_k = ZERO_SPAN_BYTES - exponent. */
// @ts-ignore: decorator
@inline const ZERO_SPAN_BYTES: usize = 266;
// @ts-ignore: decorator
@inline const D1: usize = 266; // exponent 0
// @ts-ignore: decorator
@inline const D2: usize = 195; // exponent 71
// @ts-ignore: decorator
@inline const D3: usize = 178; // exponent 88
// @ts-ignore: decorator
@inline const D4: usize = 145; // exponent 121
// @ts-ignore: decorator
@inline const D5: usize = 123; // exponent 143
/** Folded bytes computed per block before the last ZERO_SPAN_BYTES move to the front. */
// @ts-ignore: decorator
@inline const SCRATCH_BLOCK_BYTES: usize = 8192;
/**
 * Below this many bytes the table method alone is as fast or faster: measured on Node, Bun and
 * Deno, both methods run ~2.5 GB/s at 512 bytes; from 640 bytes the fold leads (1.2x there, 3x at 8 KiB).
 */
// @ts-ignore: decorator
@inline const FOLD_MIN_BYTES: usize = 512;
// @ts-ignore: decorator
@inline const FOLD_STEP_BYTES: usize = 16;

// Compile-time checks: a false one compiles its ERROR branch and fails the build.
if (!(TABLE_COUNT == STEP_BYTES)) ERROR('TABLE_COUNT == STEP_BYTES');
if (!(D1 == ZERO_SPAN_BYTES && D1 > D2 && D2 > D3 && D3 > D4 && D4 > D5 && D5 >= FOLD_STEP_BYTES)) ERROR('distances descend from the span and a step reads only finished bytes');
if (!(SCRATCH_BLOCK_BYTES % FOLD_STEP_BYTES == 0 && SCRATCH_BLOCK_BYTES >= ZERO_SPAN_BYTES)) ERROR('scratch blocks are whole steps and hold a span');
if (!(FOLD_MIN_BYTES >= ZERO_SPAN_BYTES + 2 * FOLD_STEP_BYTES)) ERROR('a folded input has at least one step before its tail');

const TABLES: usize = memory.data(TABLE_BYTES * TABLE_COUNT, 64);
/** [0, ZERO_SPAN_BYTES): the folded bytes before the block (zeros before the input); then the block. */
const SCRATCH: usize = memory.data(<i32>(ZERO_SPAN_BYTES + SCRATCH_BLOCK_BYTES), 64);
/** The unfolded tail: at most ZERO_SPAN_BYTES + FOLD_STEP_BYTES - 1 bytes. */
const TAIL: usize = memory.data(<i32>(ZERO_SPAN_BYTES + FOLD_STEP_BYTES), 64);

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

/** x^(8 * bytes) mod G in the reflected representation (x^0 is bit 31). */
function powerOfX(bytes: u32): u32 {
  let r: u32 = 0x80000000;
  for (let bit: u32 = 0; bit < bytes * 8; bit++) r = r & 1 ? (r >>> 1) ^ POLY : r >>> 1;
  return r;
}

function checkZeroPolynomial(): void {
  const span = <u32>ZERO_SPAN_BYTES;
  const sum = powerOfX(span) ^ powerOfX(span - <u32>D1) ^ powerOfX(span - <u32>D2) ^
    powerOfX(span - <u32>D3) ^ powerOfX(span - <u32>D4) ^ powerOfX(span - <u32>D5);
  if (sum != 0) unreachable();
}

buildTables();
checkZeroPolynomial();

// @ts-ignore: decorator
@inline function fold4(t: u32, x: u32): u32 {
  // Bytes of x, lowest first, go to tables t+3, t+2, t+1, t (the lowest byte is oldest).
  return entry(t + 3, x & 0xff) ^ entry(t + 2, (x >>> 8) & 0xff) ^
    entry(t + 1, (x >>> 16) & 0xff) ^ entry(t, x >>> 24);
}

/** The table method on the raw register (no inversions). */
function tableUpdate(register: u32, ptr: usize, lengthBytes: usize): u32 {
  let c = register;
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
  return c;
}

/** One folding step: the 16 folded bytes at `out` from the message bytes at `m` and earlier results. */
// @ts-ignore: decorator
@inline function foldStep(out: usize, m: usize): void {
  if (ASC_FEATURE_SIMD) {
    const a = v128.xor(v128.load(m), v128.load(out - D1));
    const b = v128.xor(v128.load(out - D2), v128.load(out - D3));
    const c = v128.xor(v128.load(out - D4), v128.load(out - D5));
    v128.store(out, v128.xor(a, v128.xor(b, c)));
  } else {
    store<u64>(out, load<u64>(m) ^ load<u64>(out - D1) ^ load<u64>(out - D2) ^ load<u64>(out - D3) ^ load<u64>(out - D4) ^ load<u64>(out - D5));
    store<u64>(out, load<u64>(m, 8) ^ load<u64>(out - D1, 8) ^ load<u64>(out - D2, 8) ^ load<u64>(out - D3, 8) ^ load<u64>(out - D4, 8) ^ load<u64>(out - D5, 8), 8);
  }
}

/** dst[0, n) ^= src[0, n). */
function xorInto(dst: usize, src: usize, n: usize): void {
  let i: usize = 0;
  for (; i + 8 <= n; i += 8) store<u64>(dst + i, load<u64>(dst + i) ^ load<u64>(src + i));
  for (; i < n; i++) store<u8>(dst + i, load<u8>(dst + i) ^ load<u8>(src + i));
}

/** CRC32C of lengthBytes >= FOLD_MIN_BYTES, continuing from `crc`. */
function folded(crc: u32, ptr: usize, lengthBytes: usize): u32 {
  const foldBytes = (lengthBytes - ZERO_SPAN_BYTES) & ~(FOLD_STEP_BYTES - 1);
  memory.fill(SCRATCH, 0, ZERO_SPAN_BYTES);
  const results = SCRATCH + ZERO_SPAN_BYTES;
  // The initial register xors into the first four message bytes: fold that step by hand.
  foldStep(results, ptr);
  store<u32>(results, load<u32>(results) ^ ~crc);
  let doneBytes: usize = FOLD_STEP_BYTES;
  let blockAt: usize = FOLD_STEP_BYTES; // bytes of the current block already in scratch
  while (doneBytes < foldBytes) {
    const stepsEnd = min(foldBytes - doneBytes, SCRATCH_BLOCK_BYTES - blockAt);
    const m = ptr + doneBytes - blockAt;
    for (let at = blockAt; at < blockAt + stepsEnd; at += FOLD_STEP_BYTES) foldStep(results + at, m + at);
    blockAt += stepsEnd;
    doneBytes += stepsEnd;
    if (blockAt == SCRATCH_BLOCK_BYTES && doneBytes < foldBytes) {
      memory.copy(SCRATCH, SCRATCH + SCRATCH_BLOCK_BYTES, ZERO_SPAN_BYTES);
      blockAt = 0;
    }
  }
  // Tail: the unfolded bytes plus the share every folded byte sends past the fold line. The
  // ZERO_SPAN_BYTES folded bytes before the line end at `line` (zeros before the input).
  const tailBytes = lengthBytes - foldBytes;
  memory.copy(TAIL, ptr + foldBytes, tailBytes);
  const line = results + blockAt;
  xorInto(TAIL, line - D1, D1);
  xorInto(TAIL, line - D2, D2);
  xorInto(TAIL, line - D3, D3);
  xorInto(TAIL, line - D4, D4);
  xorInto(TAIL, line - D5, D5);
  return ~tableUpdate(0, TAIL, tailBytes);
}

export function crc32c(crc: u32, ptr: usize, lengthBytes: usize): u32 {
  if (lengthBytes >= FOLD_MIN_BYTES) return folded(crc, ptr, lengthBytes);
  return ~tableUpdate(~crc, ptr, lengthBytes);
}
