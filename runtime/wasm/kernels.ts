/**
 * The facade over one instance of the kernel module (assembly/): with frame.ts beside it (the
 * frame kernels' facade, which reaches the raw exports through rawExportsOf/pointerOf), the only
 * TypeScript that sees raw exports and pointers. Everything else gets typed calls on opaque
 * `WasmBuffer`s (bytes: copy, isZero; digests: crc32c, xxh64) and `WasmBitmap`s (bits).
 *
 * Memory. Each `Kernels` owns one instance and its linear memory. Kernels never allocate: this
 * class runs a first-fit, coalescing free list (free-list.ts) over [heap_base, memory end),
 * 64-byte aligned, and grows memory by whole pages when nothing fits (wasm32 stops at 4 GiB).
 * Growing replaces `memory.buffer`, so `WasmBuffer.view()` makes a fresh Uint8Array each call;
 * never keep a view across a call that may allocate. Buffers come back zeroed: bytes above the
 * high-water mark were never handed out and are still the zeros memory.grow gave, so only reused
 * bytes are cleared (a fresh 512 MiB bitmap costs no memset).
 *
 * Safety. Every argument is checked here, once, before the call: bad input is a `BlockError`
 * (EINVAL malformed, ERANGE out of bounds, EBADF freed buffer or released kernels), never a wasm
 * trap or a silent clamp. Pointers live only in a module-private WeakMap keyed by the buffer.
 *
 * Bits. A `WasmBitmap` is a bitmap with its summary (assembly/summary.ts), allocated here and
 * laid out by the kernels; its words are written only by kernels that keep the summary exact
 * (bitLoad recounts what it wrote), so no view over them is handed out. Bit operations take
 * inclusive [firstBit, lastBit] like the kernels (so 2^32 bits fit in u32 ends), checked against
 * the bitmap's bitCount; results that may reach 2^32 are plain numbers, -1 for "none".
 * RegionBitmap (runtime/bitmap.ts) builds the half-open API on top.
 */
import { assert } from '../assert.ts';
import { BlockError, isByteCount } from '../errors.ts';
import { FreeList } from './free-list.ts';
import { loadKernelModule, type KernelFlavor } from './load.ts';

export type { KernelFlavor } from './load.ts';

export const PAGE_BYTES = 65536;
export const MAX_MEMORY_PAGES = 65536;
export const MAX_MEMORY_BYTES = PAGE_BYTES * MAX_MEMORY_PAGES;
export const ALIGN_BYTES = 64;
export const WORD_BYTES = 8;
export const WORD_BITS = 64;
export const MAX_BITS = 2 ** 32;
/** Staging area for JS bytes fed to crc32c/isZero, allocated on first use. */
const SCRATCH_BYTES = 64 * 1024;
const U64_MAX = (1n << 64n) - 1n;
const U64_CELL = new DataView(new ArrayBuffer(8));
/** Least growth, so many small allocations do not grow memory one page at a time. */
const MIN_GROW_PAGES = 16;

assert(MAX_MEMORY_BYTES === 2 ** 32, 'wasm32 memory is 4 GiB');
assert(WORD_BITS === WORD_BYTES * 8, 'a word is 8 bytes of 8 bits');
assert(MAX_BITS / WORD_BITS * WORD_BYTES <= MAX_MEMORY_BYTES, 'a 2^32-bit bitmap fits in wasm32 memory');
assert(PAGE_BYTES % ALIGN_BYTES === 0 && SCRATCH_BYTES % ALIGN_BYTES === 0, 'pages and scratch are aligned');

/** The module's raw exports (assembly/index.ts); frame layouts' constants are exported globals. */
export interface KernelExports {
  readonly memory: WebAssembly.Memory;
  heap_base(): number;
  simd_enabled(): number;
  bitmap_layout_bytes(wordCount: number): number;
  bitmap_init(bm: number, wordCount: number): void;
  bitmap_words(bm: number): number;
  bitmap_recount(bm: number, firstWord: number, endWord: number): number;
  bitmap_get(bm: number, bit: number): number;
  bitmap_set(bm: number, bit: number): number;
  bitmap_clear(bm: number, bit: number): number;
  bitmap_next_set(bm: number, fromBit: number, lastBit: number): number;
  bitmap_next_zero(bm: number, fromBit: number, lastBit: number): number;
  bitmap_next_set_wrapping(bm: number, fromBit: number, lastBit: number): number;
  bitmap_next_zero_wrapping(bm: number, fromBit: number, lastBit: number): number;
  bitmap_count_set(bm: number, firstBit: number, lastBit: number): number;
  bitmap_set_range(bm: number, firstBit: number, lastBit: number): number;
  bitmap_clear_range(bm: number, firstBit: number, lastBit: number): number;
  bitmap_next_run(bm: number, fromBit: number, lastBit: number, ones: number, maxLength: number): number;
  bitmap_run_length(): number;
  bitmap_or(bm: number, firstWord: number, srcPtr: number, wordCount: number): number;
  bitmap_and_not(bm: number, firstWord: number, srcPtr: number, wordCount: number): number;
  copy_bytes(dstPtr: number, srcPtr: number, lengthBytes: number): void;
  is_zero(ptr: number, lengthBytes: number): number;
  crc32c(crc: number, ptr: number, lengthBytes: number): number;
  xxh64(ptr: number, lengthBytes: number, seedLow: number, seedHigh: number): number;
  xxh64_high(): number;
  nbd_request_batch(
    inPtr: number, inBytes: number, outPtr: number, maxRecords: number,
    sizeBytes: number, blockBytes: number, exportFlags: number, negotiated: number, maxBlockBytes: number,
  ): number;
  frame_batch_end(): number;
  nbd_request_encode(outPtr: number, flags: number, type: number, cookieHigh: number, cookieLow: number, offsetHigh: number, offsetLow: number, lengthBytes: number): void;
  nbd_simple_reply_encode(outPtr: number, error: number, cookieHigh: number, cookieLow: number): void;
  nbd_structured_reply_encode(outPtr: number, flags: number, type: number, cookieHigh: number, cookieLow: number, lengthBytes: number): void;
}

interface Slot {
  readonly owner: Kernels;
  readonly ptr: number;
  readonly blockBytes: number;
  live: boolean;
}

const slots = new WeakMap<WasmBuffer, Slot>();
const bitmapSlots = new WeakMap<WasmBitmap, Slot>();
/** Raw exports of live Kernels, for the other facades in runtime/wasm/ (see rawKernel). */
const rawExports = new WeakMap<Kernels, KernelExports>();
/** Instances handed out by defaultKernels(): shared, so nobody may release them. */
const sharedKernels = new WeakSet<Kernels>();

/** A run of equal bits: `start` bit and `length` in bits. */
export interface BitRun {
  start: number;
  length: number;
}

export interface KernelsOptions {
  /** Force the SIMD or scalar build (tests, benchmarks); default: SIMD when supported. */
  flavor?: KernelFlavor;
}

/** An allocation in one Kernels' linear memory. Opaque: no pointer, only bytes through view(). */
export class WasmBuffer {
  constructor(
    readonly kernels: Kernels,
    readonly byteLength: number,
  ) {}

  /** A fresh view over the current memory; invalid after any call that may grow memory. */
  view(): Uint8Array {
    return this.kernels.view(this);
  }

  free(): void {
    this.kernels.free(this);
  }

  /** True once freed, or once its Kernels were released. */
  get freed(): boolean {
    const slot = slots.get(this);
    return slot === undefined || !slot.live || slot.owner.released;
  }
}

/**
 * A bitmap of `bitCount` bits with its summary (layout: assembly/summary.ts) in one Kernels'
 * memory, `byteLength` bytes in all. Opaque: words go in and out only through Kernels methods
 * that keep the summary exact (bitLoad, bitWords), never through a view.
 */
export class WasmBitmap {
  readonly wordCount: number;

  constructor(
    readonly kernels: Kernels,
    readonly bitCount: number,
    readonly byteLength: number,
  ) {
    this.wordCount = Math.ceil(bitCount / WORD_BITS);
  }

  free(): void {
    this.kernels.freeBitmap(this);
  }

  /** True once freed, or once its Kernels were released. */
  get freed(): boolean {
    const slot = bitmapSlots.get(this);
    return slot === undefined || !slot.live || slot.owner.released;
  }
}

export class Kernels {
  readonly #freeList = new FreeList();
  #exports: KernelExports | null;
  #highWaterBytes: number;
  #scratch: Slot | null = null;

  private constructor(
    readonly flavor: KernelFlavor,
    exports: KernelExports,
  ) {
    assert(exports.simd_enabled() === (flavor === 'simd' ? 1 : 0), `${flavor} module reports simd_enabled ${exports.simd_enabled()}`);
    this.#exports = exports;
    rawExports.set(this, exports);
    const heapStartBytes = alignUp(exports.heap_base());
    const endBytes = exports.memory.buffer.byteLength;
    if (endBytes > heapStartBytes) this.#freeList.release(heapStartBytes, endBytes - heapStartBytes);
    this.#highWaterBytes = heapStartBytes;
  }

  static async create(options: KernelsOptions = {}): Promise<Kernels> {
    const { flavor, module } = await loadKernelModule(options.flavor);
    // Synchronous instantiation of the already-compiled module: cheap (no compile happens here),
    // and it avoids a Node 20 hang seen here where `await WebAssembly.instantiate(module)` never
    // settled after many instances had been created and dropped.
    const instance = new WebAssembly.Instance(module, {});
    return new Kernels(flavor, instance.exports as unknown as KernelExports);
  }

  /** Current size of this instance's linear memory. */
  get memoryBytes(): number {
    return this.#live().memory.buffer.byteLength;
  }

  get released(): boolean {
    return this.#exports === null;
  }

  /** Drops the instance and its memory; every buffer of it becomes unusable (EBADF). */
  release(): void {
    if (sharedKernels.has(this)) throw new BlockError('EINVAL', 'the shared default kernels cannot be released');
    this.#exports = null;
    this.#scratch = null;
    rawExports.delete(this);
  }

  // ---- memory ----

  /** A zero-filled buffer of `byteLength` bytes (64-byte aligned inside linear memory). */
  alloc(byteLength: number): WasmBuffer {
    const buffer = new WasmBuffer(this, byteLength);
    slots.set(buffer, this.#allocSlot(byteLength));
    return buffer;
  }

  free(buffer: WasmBuffer): void {
    const slot = this.#slot(buffer, 'free');
    slot.live = false;
    this.#freeList.release(slot.ptr, slot.blockBytes);
  }

  view(buffer: WasmBuffer): Uint8Array {
    const slot = this.#slot(buffer, 'view');
    return new Uint8Array(this.#live().memory.buffer, slot.ptr, buffer.byteLength);
  }

  #allocSlot(byteLength: number): Slot {
    this.#live();
    if (!isByteCount(byteLength)) throw new BlockError('EINVAL', `alloc byteLength must be a non-negative integer, got ${byteLength}`);
    const blockBytes = alignUp(Math.max(byteLength, 1));
    let ptr = this.#freeList.take(blockBytes);
    if (ptr < 0) {
      this.#grow(blockBytes, byteLength);
      ptr = this.#freeList.take(blockBytes);
      assert(ptr >= 0, `grown memory has no block of ${blockBytes} bytes`);
    }
    const memory = this.#live().memory;
    const dirtyEndBytes = Math.min(ptr + byteLength, this.#highWaterBytes);
    if (dirtyEndBytes > ptr) new Uint8Array(memory.buffer, ptr, dirtyEndBytes - ptr).fill(0);
    this.#highWaterBytes = Math.max(this.#highWaterBytes, ptr + blockBytes);
    return { owner: this, ptr, blockBytes, live: true };
  }

  #grow(blockBytes: number, byteLength: number): void {
    const memory = this.#live().memory;
    const endBytes = memory.buffer.byteLength;
    const neededBytes = blockBytes - this.#freeList.freeBytesEndingAt(endBytes);
    const pages = Math.max(Math.ceil(neededBytes / PAGE_BYTES), MIN_GROW_PAGES);
    const currentPages = endBytes / PAGE_BYTES;
    const grantedPages = Math.min(pages, MAX_MEMORY_PAGES - currentPages);
    const tooBig = (cause?: unknown) =>
      new BlockError('ERANGE', `cannot allocate ${byteLength} bytes: wasm memory is ${endBytes} bytes of at most ${MAX_MEMORY_BYTES}`, { lengthBytes: byteLength, cause });
    if (grantedPages * PAGE_BYTES < neededBytes) throw tooBig();
    try {
      memory.grow(grantedPages);
    } catch (cause) {
      throw tooBig(cause); // the engine refused (address space, or a limit below 4 GiB)
    }
    this.#freeList.release(endBytes, grantedPages * PAGE_BYTES);
  }

  // ---- bytes ----

  /** Copies `lengthBytes` from src at srcOffsetBytes to dst at dstOffsetBytes (overlap-safe). */
  copy(dst: WasmBuffer, dstOffsetBytes: number, src: WasmBuffer, srcOffsetBytes: number, lengthBytes: number): void {
    const ex = this.#live();
    const dstSlot = this.#slot(dst, 'copy dst');
    const srcSlot = this.#slot(src, 'copy src');
    checkByteRange('copy dst', dstOffsetBytes, lengthBytes, dst.byteLength);
    checkByteRange('copy src', srcOffsetBytes, lengthBytes, src.byteLength);
    ex.copy_bytes(dstSlot.ptr + dstOffsetBytes, srcSlot.ptr + srcOffsetBytes, lengthBytes);
  }

  /** True when the range holds only zero bytes (a WasmBuffer of this instance, or JS bytes). */
  isZero(data: WasmBuffer | Uint8Array, offsetBytes = 0, lengthBytes = data.byteLength - offsetBytes): boolean {
    const ex = this.#live();
    checkByteRange('isZero', offsetBytes, lengthBytes, data.byteLength);
    const ptr = this.#directPtr(data, 'isZero');
    if (ptr >= 0) return ex.is_zero(ptr + offsetBytes, lengthBytes) === 1;
    const bytes = data as Uint8Array;
    const scratch = this.#scratchSlot();
    for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += SCRATCH_BYTES) {
      const chunkBytes = Math.min(SCRATCH_BYTES, lengthBytes - doneBytes);
      const start = offsetBytes + doneBytes;
      new Uint8Array(ex.memory.buffer, scratch.ptr, chunkBytes).set(bytes.subarray(start, start + chunkBytes));
      if (ex.is_zero(scratch.ptr, chunkBytes) !== 1) return false;
    }
    return true;
  }

  /**
   * CRC32C (Castagnoli) of the range, continuing from `seed` (a previous result, 0 to start):
   * crc32c(b, crc32c(a)) === crc32c(a ++ b).
   */
  crc32c(data: WasmBuffer | Uint8Array, seed = 0, offsetBytes = 0, lengthBytes = data.byteLength - offsetBytes): number {
    const ex = this.#live();
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new BlockError('EINVAL', `crc32c seed must be an unsigned 32-bit integer, got ${seed}`);
    }
    checkByteRange('crc32c', offsetBytes, lengthBytes, data.byteLength);
    const ptr = this.#directPtr(data, 'crc32c');
    if (ptr >= 0) return ex.crc32c(seed, ptr + offsetBytes, lengthBytes) >>> 0;
    const bytes = data as Uint8Array;
    const scratch = this.#scratchSlot();
    let crc = seed;
    for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += SCRATCH_BYTES) {
      const chunkBytes = Math.min(SCRATCH_BYTES, lengthBytes - doneBytes);
      const start = offsetBytes + doneBytes;
      new Uint8Array(ex.memory.buffer, scratch.ptr, chunkBytes).set(bytes.subarray(start, start + chunkBytes));
      crc = ex.crc32c(crc, scratch.ptr, chunkBytes);
    }
    return crc >>> 0;
  }

  /**
   * XXH64 of the range with a 64-bit `seed`, as a bigint in [0, 2^64). Not chainable like crc32c:
   * JS bytes outside this memory are copied in whole (a temporary buffer beyond SCRATCH_BYTES).
   * Making the bigint costs about as much as hashing 4 KiB on Node 20: hot paths use xxh64Into.
   */
  xxh64(data: WasmBuffer | Uint8Array, seed = 0n, offsetBytes = 0, lengthBytes = data.byteLength - offsetBytes): bigint {
    if (typeof seed !== 'bigint' || seed < 0n || seed > U64_MAX) {
      throw new BlockError('EINVAL', `xxh64 seed must be an unsigned 64-bit bigint, got ${String(seed)}`);
    }
    U64_CELL.setBigUint64(0, seed, true);
    const low = this.#xxh64(data, U64_CELL.getUint32(4, true), U64_CELL.getUint32(0, true), offsetBytes, lengthBytes);
    U64_CELL.setUint32(0, low, true);
    U64_CELL.setUint32(4, this.#exports!.xxh64_high(), true);
    return U64_CELL.getBigUint64(0, true);
  }

  /**
   * XXH64 without bigints: the digest's high and low 32 bits go to out[0] and out[1]; the seed
   * is (seedHigh << 32) | seedLow.
   */
  xxh64Into(
    out: Uint32Array, data: WasmBuffer | Uint8Array, seedHigh = 0, seedLow = 0,
    offsetBytes = 0, lengthBytes = data.byteLength - offsetBytes,
  ): void {
    if (!(out instanceof Uint32Array) || out.length < 2) throw new BlockError('EINVAL', 'xxh64Into: out must be a Uint32Array of at least 2 words');
    for (const [name, half] of [['seedHigh', seedHigh], ['seedLow', seedLow]] as const) {
      if (half >>> 0 !== half) throw new BlockError('EINVAL', `xxh64 ${name} must be an unsigned 32-bit integer, got ${half}`);
    }
    out[1] = this.#xxh64(data, seedHigh, seedLow, offsetBytes, lengthBytes);
    out[0] = this.#exports!.xxh64_high();
  }

  /** The low half of XXH64 (the high half waits in xxh64_high). */
  #xxh64(data: WasmBuffer | Uint8Array, seedHigh: number, seedLow: number, offsetBytes: number, lengthBytes: number): number {
    const ex = this.#live();
    checkByteRange('xxh64', offsetBytes, lengthBytes, data.byteLength);
    const ptr = this.#directPtr(data, 'xxh64');
    if (ptr >= 0) return ex.xxh64(ptr + offsetBytes, lengthBytes, seedLow, seedHigh) >>> 0;
    const bytes = (data as Uint8Array).subarray(offsetBytes, offsetBytes + lengthBytes);
    if (lengthBytes <= SCRATCH_BYTES) {
      const scratch = this.#scratchSlot();
      new Uint8Array(ex.memory.buffer, scratch.ptr, lengthBytes).set(bytes);
      return ex.xxh64(scratch.ptr, lengthBytes, seedLow, seedHigh) >>> 0;
    }
    const staged = this.alloc(lengthBytes);
    try {
      staged.view().set(bytes);
      return ex.xxh64(this.#slot(staged, 'xxh64').ptr, lengthBytes, seedLow, seedHigh) >>> 0;
    } finally {
      staged.free();
    }
  }

  /** Pointer of a WasmBuffer, or of JS bytes that already view this memory; -1 for other bytes. */
  #directPtr(data: WasmBuffer | Uint8Array, what: string): number {
    if (data instanceof WasmBuffer) return this.#slot(data, what).ptr;
    if (data.buffer === this.#live().memory.buffer) return data.byteOffset;
    return -1;
  }

  #scratchSlot(): Slot {
    this.#scratch ??= this.#allocSlot(SCRATCH_BYTES);
    return this.#scratch;
  }

  // ---- bits (bitmaps with their summary; inclusive ranges inside the bitmap) ----

  /** An all-clear bitmap of `bitCount` bits (0..2^32) and its summary, in this instance's memory. */
  allocBitmap(bitCount: number): WasmBitmap {
    const ex = this.#live();
    if (!isByteCount(bitCount) || bitCount > MAX_BITS) throw new BlockError('EINVAL', `bitCount must be an integer in [0, 2^32], got ${bitCount}`);
    const wordCount = Math.ceil(bitCount / WORD_BITS);
    const byteLength = ex.bitmap_layout_bytes(wordCount);
    const slot = this.#allocSlot(byteLength);
    ex.bitmap_init(slot.ptr, wordCount);
    const bitmap = new WasmBitmap(this, bitCount, byteLength);
    bitmapSlots.set(bitmap, slot);
    return bitmap;
  }

  freeBitmap(bitmap: WasmBitmap): void {
    this.#bitmap(bitmap, 'freeBitmap');
    const slot = bitmapSlots.get(bitmap)!;
    slot.live = false;
    this.#freeList.release(slot.ptr, slot.blockBytes);
  }

  bitGet(bitmap: WasmBitmap, bit: number): boolean {
    const bm = this.#bitmap(bitmap, 'bitGet');
    checkBit('bit', bit, bitmap.bitCount);
    return this.#exports!.bitmap_get(bm, bit) === 1;
  }

  /** Sets one bit; returns its previous value. */
  bitSet(bitmap: WasmBitmap, bit: number): boolean {
    const bm = this.#bitmap(bitmap, 'bitSet');
    checkBit('bit', bit, bitmap.bitCount);
    return this.#exports!.bitmap_set(bm, bit) === 1;
  }

  /** Clears one bit; returns its previous value. */
  bitClear(bitmap: WasmBitmap, bit: number): boolean {
    const bm = this.#bitmap(bitmap, 'bitClear');
    checkBit('bit', bit, bitmap.bitCount);
    return this.#exports!.bitmap_clear(bm, bit) === 1;
  }

  /** First set bit in [fromBit, lastBit], or -1. */
  bitNextSet(bitmap: WasmBitmap, fromBit: number, lastBit: number): number {
    const bm = this.#bitRange(bitmap, 'bitNextSet', fromBit, lastBit);
    return this.#exports!.bitmap_next_set(bm, fromBit, lastBit);
  }

  /** First clear bit in [fromBit, lastBit], or -1. */
  bitNextZero(bitmap: WasmBitmap, fromBit: number, lastBit: number): number {
    const bm = this.#bitRange(bitmap, 'bitNextZero', fromBit, lastBit);
    return this.#exports!.bitmap_next_zero(bm, fromBit, lastBit);
  }

  /** First set bit in [fromBit, lastBit], else in [0, fromBit), else -1. */
  bitNextSetWrapping(bitmap: WasmBitmap, fromBit: number, lastBit: number): number {
    const bm = this.#bitRange(bitmap, 'bitNextSetWrapping', fromBit, lastBit);
    return this.#exports!.bitmap_next_set_wrapping(bm, fromBit, lastBit);
  }

  /** First clear bit in [fromBit, lastBit], else in [0, fromBit), else -1. */
  bitNextZeroWrapping(bitmap: WasmBitmap, fromBit: number, lastBit: number): number {
    const bm = this.#bitRange(bitmap, 'bitNextZeroWrapping', fromBit, lastBit);
    return this.#exports!.bitmap_next_zero_wrapping(bm, fromBit, lastBit);
  }

  bitCountSet(bitmap: WasmBitmap, firstBit: number, lastBit: number): number {
    const bm = this.#bitRange(bitmap, 'bitCountSet', firstBit, lastBit);
    return this.#exports!.bitmap_count_set(bm, firstBit, lastBit);
  }

  /** Sets [firstBit, lastBit]; returns how many of those bits were clear. */
  bitSetRange(bitmap: WasmBitmap, firstBit: number, lastBit: number): number {
    const bm = this.#bitRange(bitmap, 'bitSetRange', firstBit, lastBit);
    return this.#exports!.bitmap_set_range(bm, firstBit, lastBit);
  }

  /** Clears [firstBit, lastBit]; returns how many of those bits were set. */
  bitClearRange(bitmap: WasmBitmap, firstBit: number, lastBit: number): number {
    const bm = this.#bitRange(bitmap, 'bitClearRange', firstBit, lastBit);
    return this.#exports!.bitmap_clear_range(bm, firstBit, lastBit);
  }

  /**
   * The next run of bits equal to `value` starting in [fromBit, lastBit], at most
   * `maxLengthBits` (1..2^32) long and never past lastBit; null when there is none.
   */
  bitNextRun(bitmap: WasmBitmap, fromBit: number, lastBit: number, value: boolean, maxLengthBits: number): BitRun | null {
    const bm = this.#bitRange(bitmap, 'bitNextRun', fromBit, lastBit);
    if (!Number.isInteger(maxLengthBits) || maxLengthBits < 1 || maxLengthBits > MAX_BITS) {
      throw new BlockError('EINVAL', `maxLength must be an integer in [1, 2^32], got ${maxLengthBits}`);
    }
    const ex = this.#exports!;
    const start = ex.bitmap_next_run(bm, fromBit, lastBit, value ? 1 : 0, maxLengthBits === MAX_BITS ? 0 : maxLengthBits);
    return start < 0 ? null : { start, length: ex.bitmap_run_length() };
  }

  /** Little-endian bytes of words [startWord, startWord + wordCount), a copy. */
  bitWords(bitmap: WasmBitmap, startWord: number, wordCount: number): Uint8Array {
    const bm = this.#bitWordRange(bitmap, 'bitWords', startWord, wordCount);
    const wordsPtr = this.#exports!.bitmap_words(bm) + startWord * WORD_BYTES;
    return new Uint8Array(this.#exports!.memory.buffer, wordsPtr, wordCount * WORD_BYTES).slice();
  }

  /**
   * Overwrites words from `startWord` with little-endian `bytes` (whole 8-byte words) and brings
   * the summary of the words' blocks up to date; returns the change in set bits. Bytes that set
   * bits past bitCount are EINVAL, and nothing is written.
   */
  bitLoad(bitmap: WasmBitmap, startWord: number, bytes: Uint8Array): number {
    if (bytes.byteLength % WORD_BYTES !== 0) {
      throw new BlockError('EINVAL', `bitLoad takes whole 8-byte words, got ${bytes.byteLength} bytes`);
    }
    const wordCount = bytes.byteLength / WORD_BYTES;
    const bm = this.#bitWordRange(bitmap, 'bitLoad', startWord, wordCount);
    if (wordCount === 0) return 0;
    const tailBits = bitmap.bitCount % WORD_BITS;
    if (tailBits !== 0 && startWord + wordCount === bitmap.wordCount) {
      const last = bytes.subarray(bytes.byteLength - WORD_BYTES);
      for (let bit = tailBits; bit < WORD_BITS; bit++) {
        if ((last[bit >>> 3]! >>> (bit & 7)) & 1) {
          throw new BlockError('EINVAL', `bitLoad sets bit ${(bitmap.wordCount - 1) * WORD_BITS + bit}, past the bitmap's ${bitmap.bitCount} bits`);
        }
      }
    }
    const ex = this.#exports!;
    new Uint8Array(ex.memory.buffer, ex.bitmap_words(bm) + startWord * WORD_BYTES, bytes.byteLength).set(bytes);
    return ex.bitmap_recount(bm, startWord, startWord + wordCount);
  }

  /** dst |= src (bitmaps of one size, src in any Kernels); returns dst's set bits after. */
  bitOr(dst: WasmBitmap, src: WasmBitmap): number {
    return this.#combine('bitOr', dst, src, false);
  }

  /** dst &= ~src, like bitOr; returns dst's set bits after. */
  bitAndNot(dst: WasmBitmap, src: WasmBitmap): number {
    return this.#combine('bitAndNot', dst, src, true);
  }

  /**
   * Combines word by word; words of a bitmap in another instance's memory are staged in the
   * scratch area, in pieces of whole summary blocks (8192 words: a multiple of any block size).
   */
  #combine(what: string, dst: WasmBitmap, src: WasmBitmap, andNot: boolean): number {
    const dstBm = this.#bitmap(dst, `${what} dst`);
    const srcBm = src.kernels.#bitmap(src, `${what} src`);
    if (src.bitCount !== dst.bitCount) {
      throw new BlockError('EINVAL', `${what}: bitmaps differ in size (${dst.bitCount} and ${src.bitCount} bits)`);
    }
    const ex = this.#exports!;
    const apply = (firstWord: number, srcPtr: number, wordCount: number) =>
      andNot ? ex.bitmap_and_not(dstBm, firstWord, srcPtr, wordCount) : ex.bitmap_or(dstBm, firstWord, srcPtr, wordCount);
    if (dst.wordCount === 0) return 0;
    if (src.kernels === this) return apply(0, ex.bitmap_words(srcBm), dst.wordCount);
    const srcEx = src.kernels.#exports!;
    const srcWordsPtr = srcEx.bitmap_words(srcBm);
    const scratch = this.#scratchSlot();
    const chunkWords = SCRATCH_BYTES / WORD_BYTES;
    let population = 0;
    for (let word = 0; word < dst.wordCount; word += chunkWords) {
      const wordCount = Math.min(chunkWords, dst.wordCount - word);
      const source = new Uint8Array(srcEx.memory.buffer, srcWordsPtr + word * WORD_BYTES, wordCount * WORD_BYTES);
      new Uint8Array(ex.memory.buffer, scratch.ptr, source.byteLength).set(source);
      population += apply(word, scratch.ptr, wordCount);
    }
    return population;
  }

  // ---- checks ----

  #live(): KernelExports {
    if (this.#exports === null) throw new BlockError('EBADF', 'these kernels were released');
    return this.#exports;
  }

  #slot(buffer: WasmBuffer, what: string): Slot {
    this.#live();
    const slot = slots.get(buffer);
    if (slot === undefined || slot.owner !== this) throw new BlockError('EINVAL', `${what}: the buffer does not belong to these kernels`);
    if (!slot.live) throw new BlockError('EBADF', `${what}: the buffer was freed`);
    return slot;
  }

  /** Header pointer of a live bitmap of these kernels. */
  #bitmap(bitmap: WasmBitmap, what: string): number {
    this.#live();
    const slot = bitmapSlots.get(bitmap);
    if (slot === undefined || slot.owner !== this) throw new BlockError('EINVAL', `${what}: the bitmap does not belong to these kernels`);
    if (!slot.live) throw new BlockError('EBADF', `${what}: the bitmap was freed`);
    return slot.ptr;
  }

  #bitRange(bitmap: WasmBitmap, what: string, firstBit: number, lastBit: number): number {
    const bm = this.#bitmap(bitmap, what);
    checkBit(`${what} first bit`, firstBit, bitmap.bitCount);
    checkBit(`${what} last bit`, lastBit, bitmap.bitCount);
    if (firstBit > lastBit) throw new BlockError('EINVAL', `${what}: first bit ${firstBit} is after last bit ${lastBit}`);
    return bm;
  }

  #bitWordRange(bitmap: WasmBitmap, what: string, startWord: number, wordCount: number): number {
    const bm = this.#bitmap(bitmap, what);
    if (!isByteCount(startWord) || !isByteCount(wordCount)) {
      throw new BlockError('EINVAL', `${what}: startWord and wordCount must be non-negative integers, got ${startWord} and ${wordCount}`);
    }
    if (startWord + wordCount > bitmap.wordCount) {
      throw new BlockError('ERANGE', `${what}: words [${startWord}, ${startWord + wordCount}) are past the bitmap's ${bitmap.wordCount} words`);
    }
    return bm;
  }
}

/**
 * For facades in runtime/wasm/ only (frame.ts): the raw exports of live `kernels`. Code outside
 * runtime/wasm/ uses typed calls.
 */
export function rawExportsOf(kernels: Kernels): KernelExports {
  const exports = rawExports.get(kernels);
  if (exports === undefined) throw new BlockError('EBADF', 'these kernels were released');
  return exports;
}

/** For facades in runtime/wasm/ only: the pointer of a live buffer of `kernels`. */
export function pointerOf(kernels: Kernels, buffer: WasmBuffer, what: string): number {
  rawExportsOf(kernels);
  const slot = slots.get(buffer);
  if (slot === undefined || slot.owner !== kernels) throw new BlockError('EINVAL', `${what}: the buffer does not belong to these kernels`);
  if (!slot.live) throw new BlockError('EBADF', `${what}: the buffer was freed`);
  return slot.ptr;
}

let shared: Promise<Kernels> | undefined;

/** The process-wide instance for crc32c/isZero on JS bytes (never released). */
export function defaultKernels(): Promise<Kernels> {
  if (shared === undefined) {
    const pending = Kernels.create().then((kernels) => {
      sharedKernels.add(kernels);
      return kernels;
    });
    pending.catch(() => {
      if (shared === pending) shared = undefined;
    });
    shared = pending;
  }
  return shared;
}

function alignUp(bytes: number): number {
  return Math.ceil(bytes / ALIGN_BYTES) * ALIGN_BYTES;
}

/** Bit position check: integers in [0, capacityBits); EINVAL for malformed, ERANGE for outside. */
function checkBit(what: string, bit: number, capacityBits: number): void {
  if (bit >>> 0 === bit && bit < capacityBits) return;
  if (!Number.isInteger(bit) || bit < 0) throw new BlockError('EINVAL', `${what} must be a non-negative integer, got ${bit}`);
  throw new BlockError('ERANGE', `${what} ${bit} is outside bits [0, ${capacityBits})`);
}

function checkByteRange(what: string, offsetBytes: number, lengthBytes: number, byteLength: number): void {
  if (!isByteCount(offsetBytes)) throw new BlockError('EINVAL', `${what}: offsetBytes must be a non-negative integer, got ${offsetBytes}`);
  if (offsetBytes > byteLength) throw new BlockError('ERANGE', `${what}: offset is past the ${byteLength}-byte buffer`, { offsetBytes });
  if (!isByteCount(lengthBytes)) throw new BlockError('EINVAL', `${what}: lengthBytes must be a non-negative integer, got ${lengthBytes}`);
  if (offsetBytes + lengthBytes > byteLength) {
    throw new BlockError('ERANGE', `${what}: range ends past the ${byteLength}-byte buffer`, { offsetBytes, lengthBytes });
  }
}
