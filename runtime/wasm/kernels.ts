/**
 * The facade over one instance of the kernel module (assembly/): with frame.ts beside it (the
 * frame kernels' facade, which reaches the raw exports through rawExportsOf/pointerOf), the only
 * TypeScript that sees raw exports and pointers. Everything else gets typed calls on opaque
 * `WasmBuffer`s: bits, bytes (copy, isZero) and digests (crc32c, xxh64).
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
 * Bits. Bit operations take inclusive [firstBit, lastBit] like the kernels (so 2^32 bits fit in
 * u32 ends) over a buffer of whole 64-bit words; results that may reach 2^32 are plain numbers,
 * -1 for "none". RegionBitmap (runtime/bitmap.ts) builds the half-open, bitmap-sized API on top.
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
  bitmap_get(ptr: number, bit: number): number;
  bitmap_set(ptr: number, bit: number): number;
  bitmap_clear(ptr: number, bit: number): number;
  bitmap_next_set(ptr: number, fromBit: number, lastBit: number): number;
  bitmap_next_zero(ptr: number, fromBit: number, lastBit: number): number;
  bitmap_next_set_wrapping(ptr: number, fromBit: number, lastBit: number): number;
  bitmap_next_zero_wrapping(ptr: number, fromBit: number, lastBit: number): number;
  bitmap_count_set(ptr: number, firstBit: number, lastBit: number): number;
  bitmap_set_range(ptr: number, firstBit: number, lastBit: number): number;
  bitmap_clear_range(ptr: number, firstBit: number, lastBit: number): number;
  bitmap_next_run(ptr: number, fromBit: number, lastBit: number, ones: number, maxLength: number): number;
  bitmap_run_length(): number;
  bitmap_or(dstPtr: number, srcPtr: number, wordCount: number): number;
  bitmap_and_not(dstPtr: number, srcPtr: number, wordCount: number): number;
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

  // ---- bits (inclusive ranges over whole 64-bit words) ----

  bitGet(buffer: WasmBuffer, bit: number): boolean {
    const ptr = this.#bits(buffer, 'bitGet');
    checkBit('bit', bit, buffer.byteLength * 8);
    return this.#exports!.bitmap_get(ptr, bit) === 1;
  }

  /** Sets one bit; returns its previous value. */
  bitSet(buffer: WasmBuffer, bit: number): boolean {
    const ptr = this.#bits(buffer, 'bitSet');
    checkBit('bit', bit, buffer.byteLength * 8);
    return this.#exports!.bitmap_set(ptr, bit) === 1;
  }

  /** Clears one bit; returns its previous value. */
  bitClear(buffer: WasmBuffer, bit: number): boolean {
    const ptr = this.#bits(buffer, 'bitClear');
    checkBit('bit', bit, buffer.byteLength * 8);
    return this.#exports!.bitmap_clear(ptr, bit) === 1;
  }

  /** First set bit in [fromBit, lastBit], or -1. */
  bitNextSet(buffer: WasmBuffer, fromBit: number, lastBit: number): number {
    const ptr = this.#bitRange(buffer, 'bitNextSet', fromBit, lastBit);
    return this.#exports!.bitmap_next_set(ptr, fromBit, lastBit);
  }

  /** First clear bit in [fromBit, lastBit], or -1. */
  bitNextZero(buffer: WasmBuffer, fromBit: number, lastBit: number): number {
    const ptr = this.#bitRange(buffer, 'bitNextZero', fromBit, lastBit);
    return this.#exports!.bitmap_next_zero(ptr, fromBit, lastBit);
  }

  /** First set bit in [fromBit, lastBit], else in [0, fromBit), else -1. */
  bitNextSetWrapping(buffer: WasmBuffer, fromBit: number, lastBit: number): number {
    const ptr = this.#bitRange(buffer, 'bitNextSetWrapping', fromBit, lastBit);
    return this.#exports!.bitmap_next_set_wrapping(ptr, fromBit, lastBit);
  }

  /** First clear bit in [fromBit, lastBit], else in [0, fromBit), else -1. */
  bitNextZeroWrapping(buffer: WasmBuffer, fromBit: number, lastBit: number): number {
    const ptr = this.#bitRange(buffer, 'bitNextZeroWrapping', fromBit, lastBit);
    return this.#exports!.bitmap_next_zero_wrapping(ptr, fromBit, lastBit);
  }

  bitCountSet(buffer: WasmBuffer, firstBit: number, lastBit: number): number {
    const ptr = this.#bitRange(buffer, 'bitCountSet', firstBit, lastBit);
    return this.#exports!.bitmap_count_set(ptr, firstBit, lastBit);
  }

  /** Sets [firstBit, lastBit]; returns how many of those bits were clear. */
  bitSetRange(buffer: WasmBuffer, firstBit: number, lastBit: number): number {
    const ptr = this.#bitRange(buffer, 'bitSetRange', firstBit, lastBit);
    return this.#exports!.bitmap_set_range(ptr, firstBit, lastBit);
  }

  /** Clears [firstBit, lastBit]; returns how many of those bits were set. */
  bitClearRange(buffer: WasmBuffer, firstBit: number, lastBit: number): number {
    const ptr = this.#bitRange(buffer, 'bitClearRange', firstBit, lastBit);
    return this.#exports!.bitmap_clear_range(ptr, firstBit, lastBit);
  }

  /**
   * The next run of bits equal to `value` starting in [fromBit, lastBit], at most
   * `maxLengthBits` (1..2^32) long and never past lastBit; null when there is none.
   */
  bitNextRun(buffer: WasmBuffer, fromBit: number, lastBit: number, value: boolean, maxLengthBits: number): BitRun | null {
    const ptr = this.#bitRange(buffer, 'bitNextRun', fromBit, lastBit);
    if (!Number.isInteger(maxLengthBits) || maxLengthBits < 1 || maxLengthBits > MAX_BITS) {
      throw new BlockError('EINVAL', `maxLength must be an integer in [1, 2^32], got ${maxLengthBits}`);
    }
    const ex = this.#exports!;
    const start = ex.bitmap_next_run(ptr, fromBit, lastBit, value ? 1 : 0, maxLengthBits === MAX_BITS ? 0 : maxLengthBits);
    return start < 0 ? null : { start, length: ex.bitmap_run_length() };
  }

  /** dst words [dstStartWord, +wordCount) |= src words [srcStartWord, +wordCount); returns dst's set bits in that range after. */
  bitOr(dst: WasmBuffer, dstStartWord: number, src: WasmBuffer, srcStartWord: number, wordCount: number): number {
    const [dstPtr, srcPtr] = this.#wordRanges('bitOr', dst, dstStartWord, src, srcStartWord, wordCount);
    return wordCount === 0 ? 0 : this.#exports!.bitmap_or(dstPtr, srcPtr, wordCount);
  }

  /** dst words &= ~src words, like bitOr; returns dst's set bits in that range after. */
  bitAndNot(dst: WasmBuffer, dstStartWord: number, src: WasmBuffer, srcStartWord: number, wordCount: number): number {
    const [dstPtr, srcPtr] = this.#wordRanges('bitAndNot', dst, dstStartWord, src, srcStartWord, wordCount);
    return wordCount === 0 ? 0 : this.#exports!.bitmap_and_not(dstPtr, srcPtr, wordCount);
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

  /** Pointer of a buffer usable as a bitmap: whole 64-bit words. */
  #bits(buffer: WasmBuffer, what: string): number {
    const slot = this.#slot(buffer, what);
    if (buffer.byteLength % WORD_BYTES !== 0) {
      throw new BlockError('EINVAL', `${what}: a bitmap buffer holds whole 8-byte words, this one has ${buffer.byteLength} bytes`);
    }
    return slot.ptr;
  }

  #bitRange(buffer: WasmBuffer, what: string, firstBit: number, lastBit: number): number {
    const ptr = this.#bits(buffer, what);
    const capacityBits = buffer.byteLength * 8;
    checkBit(`${what} first bit`, firstBit, capacityBits);
    checkBit(`${what} last bit`, lastBit, capacityBits);
    if (firstBit > lastBit) throw new BlockError('EINVAL', `${what}: first bit ${firstBit} is after last bit ${lastBit}`);
    return ptr;
  }

  #wordRanges(what: string, dst: WasmBuffer, dstStartWord: number, src: WasmBuffer, srcStartWord: number, wordCount: number): [number, number] {
    const dstPtr = this.#bits(dst, `${what} dst`);
    const srcPtr = this.#bits(src, `${what} src`);
    if (!isByteCount(wordCount)) throw new BlockError('EINVAL', `${what}: wordCount must be a non-negative integer, got ${wordCount}`);
    checkByteRange(`${what} dst`, dstStartWord * WORD_BYTES, wordCount * WORD_BYTES, dst.byteLength);
    checkByteRange(`${what} src`, srcStartWord * WORD_BYTES, wordCount * WORD_BYTES, src.byteLength);
    const dstStartPtr = dstPtr + dstStartWord * WORD_BYTES;
    const srcStartPtr = srcPtr + srcStartWord * WORD_BYTES;
    const overlapBytes = Math.min(dstStartPtr, srcStartPtr) + wordCount * WORD_BYTES - Math.max(dstStartPtr, srcStartPtr);
    if (dstStartPtr !== srcStartPtr && overlapBytes > 0) {
      throw new BlockError('EINVAL', `${what}: source and destination words partly overlap`);
    }
    return [dstStartPtr, srcStartPtr];
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
