/**
 * RegionBitmap: one bit per region of a device (dirty, present, hydrated...), for up to 2^32
 * regions (16 TiB at 4 KiB regions). Bit i lives in 64-bit word i >> 6 at bit i & 63, little
 * endian, so `toBytes`/`loadBytes` move the on-disk form without conversion.
 *
 * Summary. Beside the words the kernels keep, per block of 256 words (16384 bits, 2 KiB), the
 * block's set count and two bits: "holds a set bit" and "holds a clear bit" (assembly/summary.ts).
 * Every write (set, clear, ranges, loadBytes, orFrom, andNotFrom) keeps them exact in the same
 * kernel call, so nextSet / nextZero / nextRun read only the blocks that can hold what they look
 * for, and countSet adds counts for whole blocks: walking the set bits of a sparse 128 MiB bitmap
 * reads a few KiB instead of 128 MiB. A set or clear pays one u16 update more than a flat bitmap
 * (and a level bit when a block turns empty, non-empty, full or not full).
 *
 * Block size, measured with the kernels called straight from a loop, 128 MiB bitmaps, summary
 * against the flat scan (2026-12, on a loaded shared machine, so roughly): every size from 32 to
 * 512 words walks a bitmap with a set bit per MiB in microseconds instead of ~10 ms; with a set
 * bit every 16 KiB the walk takes 0.12-0.2x the flat scan's time at 32-64 words, 0.2-0.3x at 256,
 * 0.3-0.4x at 512; with one every 1 KiB (a hit in every other block) 32 words took 1.7x the flat
 * scan's time, 64 words 1.1-1.3x, 256 words 1.0-1.05x; random set/clear cost the same at every
 * size. 256 words keeps dense bitmaps at the flat scan's speed and the summary small.
 *
 * Memory: ceil(bitCount / 64) * 8 bytes of wasm linear memory for the words (rounded up to whole
 * 2 KiB blocks), plus the summary, 2 bytes and 2 bits per block (0.1%), in an instance of the
 * kernels owned by this bitmap alone, plus the module's first 64 KiB page: 128 MiB + 144 KiB for
 * 4 TiB of 4 KiB regions (2^30 bits), 512 MiB + 576 KiB for 2^32 regions. orFrom/andNotFrom stage
 * the other bitmap's words (another instance's memory) through the kernels' 64 KiB scratch area.
 * WebAssembly memory never shrinks, so the only way to give it back is to drop the instance:
 * `release()` does, summary included, and the bitmap is unusable after.
 *
 * API: bit positions are numbers in [0, bitCount); ranges are half-open [start, end) with end up
 * to bitCount (so 2^32 fits), converted here to the kernels' inclusive [first, last]. Empty
 * ranges are no-ops. Searches accept `from` up to bitCount (nothing left: -1). Positions outside
 * the bitmap are BlockError ERANGE naming the position; malformed ones (negative, fractional)
 * EINVAL. `setCount` is exact at all times: every kernel that writes reports how many bits it
 * changed (or the population after), so it never needs a full recount.
 *
 * Invariant: bits past bitCount stay zero; the facade checks every position against bitCount and
 * refuses loadBytes that would set one, so whole-word kernels need no tail masking.
 */
import { assert } from './assert.ts';
import { BlockError, isByteCount } from './errors.ts';
import { Kernels, MAX_BITS, WORD_BITS, type BitRun, type KernelFlavor, type WasmBitmap } from './wasm/kernels.ts';

export type { BitRun } from './wasm/kernels.ts';

export const MAX_BITMAP_BITS = MAX_BITS;
assert(MAX_BITMAP_BITS === 2 ** 32 && WORD_BITS === 64, 'bitmaps hold up to 2^32 bits in 64-bit words');

export interface RegionBitmapOptions {
  flavor?: KernelFlavor;
}

export class RegionBitmap {
  readonly wordCount: number;
  #kernels: Kernels | null;
  #bitmap: WasmBitmap | null;
  #setCount = 0;

  private constructor(
    readonly bitCount: number,
    kernels: Kernels,
  ) {
    this.wordCount = Math.ceil(bitCount / WORD_BITS);
    this.#kernels = kernels;
    this.#bitmap = kernels.allocBitmap(bitCount);
  }

  /** An all-clear bitmap of `bitCount` bits (0..2^32), in a kernels instance of its own. */
  static async create(bitCount: number, options: RegionBitmapOptions = {}): Promise<RegionBitmap> {
    if (!isByteCount(bitCount)) throw new BlockError('EINVAL', `bitCount must be a non-negative integer, got ${bitCount}`);
    if (bitCount > MAX_BITMAP_BITS) throw new BlockError('ERANGE', `bitCount ${bitCount} exceeds 2^32`);
    const kernels = await Kernels.create({ flavor: options.flavor });
    try {
      return new RegionBitmap(bitCount, kernels);
    } catch (err) {
      kernels.release();
      throw err;
    }
  }

  /** Bytes of the bits in their on-disk form: ceil(bitCount / 64) * 8 (the summary not included). */
  get byteLength(): number {
    return this.wordCount * 8;
  }

  get setCount(): number {
    return this.#setCount;
  }

  get released(): boolean {
    return this.#kernels === null;
  }

  isFull(): boolean {
    return this.#setCount === this.bitCount;
  }

  isEmpty(): boolean {
    return this.#setCount === 0;
  }

  /** Drops the kernels instance and its memory; any later call is BlockError EBADF. */
  release(): void {
    this.#kernels?.release();
    this.#kernels = null;
    this.#bitmap = null;
  }

  get(bit: number): boolean {
    this.#checkBit(bit);
    return this.#k().bitGet(this.#bitmap!, bit);
  }

  /** Sets one bit; true when it was clear. */
  set(bit: number): boolean {
    this.#checkBit(bit);
    const changed = !this.#k().bitSet(this.#bitmap!, bit);
    if (changed) this.#setCount++;
    return changed;
  }

  /** Clears one bit; true when it was set. */
  clear(bit: number): boolean {
    this.#checkBit(bit);
    const changed = this.#k().bitClear(this.#bitmap!, bit);
    if (changed) this.#setCount--;
    return changed;
  }

  /** Sets [start, end); returns how many bits changed. */
  setRange(start: number, end: number): number {
    if (!this.#checkRange(start, end)) return 0;
    const changed = this.#k().bitSetRange(this.#bitmap!, start, end - 1);
    this.#setCount += changed;
    return changed;
  }

  /** Clears [start, end); returns how many bits changed. */
  clearRange(start: number, end: number): number {
    if (!this.#checkRange(start, end)) return 0;
    const changed = this.#k().bitClearRange(this.#bitmap!, start, end - 1);
    this.#setCount -= changed;
    return changed;
  }

  /** Set bits in [start, end) (default: the whole bitmap). */
  countSet(start = 0, end = this.bitCount): number {
    if (!this.#checkRange(start, end)) return 0;
    return this.#k().bitCountSet(this.#bitmap!, start, end - 1);
  }

  /** First set bit at or after `from`, or -1. */
  nextSet(from: number): number {
    if (!this.#checkFrom(from)) return -1;
    return this.#k().bitNextSet(this.#bitmap!, from, this.bitCount - 1);
  }

  /** First clear bit at or after `from`, or -1. */
  nextZero(from: number): number {
    if (!this.#checkFrom(from)) return -1;
    return this.#k().bitNextZero(this.#bitmap!, from, this.bitCount - 1);
  }

  /** First set bit at or after `from`, else from 0, or -1 when none is set. */
  nextSetWrapping(from: number): number {
    if (!this.#checkFrom(from) && this.bitCount === 0) return -1;
    return this.#k().bitNextSetWrapping(this.#bitmap!, from === this.bitCount ? 0 : from, this.bitCount - 1);
  }

  /** First clear bit at or after `from`, else from 0, or -1 when all are set. */
  nextZeroWrapping(from: number): number {
    if (!this.#checkFrom(from) && this.bitCount === 0) return -1;
    return this.#k().bitNextZeroWrapping(this.#bitmap!, from === this.bitCount ? 0 : from, this.bitCount - 1);
  }

  /**
   * The next run of bits equal to `value` that starts at or after `from`: its start and length,
   * the length capped at `maxLength` (1..2^32) and by the end of the bitmap; null if none.
   */
  nextRun(from: number, value: boolean, maxLength: number = MAX_BITMAP_BITS): BitRun | null {
    if (!Number.isInteger(maxLength) || maxLength < 1 || maxLength > MAX_BITMAP_BITS) {
      throw new BlockError('EINVAL', `maxLength must be an integer in [1, 2^32], got ${maxLength}`);
    }
    if (!this.#checkFrom(from)) return null;
    return this.#k().bitNextRun(this.#bitmap!, from, this.bitCount - 1, value, maxLength);
  }

  /** this |= other (same bitCount). */
  orFrom(other: RegionBitmap): void {
    this.#setCount = this.#k().bitOr(this.#bitmap!, this.#combinable(other, 'orFrom'));
  }

  /** this &= ~other (same bitCount). */
  andNotFrom(other: RegionBitmap): void {
    this.#setCount = this.#k().bitAndNot(this.#bitmap!, this.#combinable(other, 'andNotFrom'));
  }

  /** Raw little-endian bytes of words [startWord, startWord + wordCount), a copy. */
  toBytes(startWord = 0, wordCount = this.wordCount - startWord): Uint8Array {
    return this.#k().bitWords(this.#bitmap!, startWord, wordCount);
  }

  /**
   * Overwrites words from `startWord` with raw little-endian `bytes` (a multiple of 8 bytes), as
   * read from disk. Bytes that set bits past bitCount are malformed (EINVAL), nothing is written.
   */
  loadBytes(startWord: number, bytes: Uint8Array): void {
    this.#setCount += this.#k().bitLoad(this.#bitmap!, startWord, bytes);
  }

  #combinable(other: RegionBitmap, what: string): WasmBitmap {
    this.#k();
    if (other.#bitmap === null) throw new BlockError('EBADF', `${what}: the other bitmap was released`);
    if (other.bitCount !== this.bitCount) {
      throw new BlockError('EINVAL', `${what}: bitmaps differ in size (${this.bitCount} and ${other.bitCount} bits)`);
    }
    return other.#bitmap;
  }

  #k(): Kernels {
    if (this.#kernels === null) throw new BlockError('EBADF', 'the bitmap was released');
    return this.#kernels;
  }

  #checkBit(bit: number): void {
    if (bit >>> 0 === bit && bit < this.bitCount) return;
    if (!Number.isInteger(bit) || bit < 0) throw new BlockError('EINVAL', `bit must be a non-negative integer, got ${bit}`);
    throw new BlockError('ERANGE', `bit ${bit} is outside the bitmap's ${this.bitCount} bits`);
  }

  /** Checks a search start in [0, bitCount]; false when nothing is left to search. */
  #checkFrom(from: number): boolean {
    this.#k();
    checkEnd('from', from, this.bitCount);
    return from < this.bitCount;
  }

  /** Checks [start, end) inside [0, bitCount]; false when empty. */
  #checkRange(start: number, end: number): boolean {
    this.#k();
    checkEnd('start', start, this.bitCount);
    checkEnd('end', end, this.bitCount);
    if (start > end) throw new BlockError('EINVAL', `start ${start} is after end ${end}`);
    return start < end;
  }
}

/** A range end or search start: an integer in [0, bitCount]. */
function checkEnd(name: string, value: number, bitCount: number): void {
  if (Number.isInteger(value) && value >= 0 && value <= bitCount) return;
  if (!Number.isInteger(value) || value < 0) throw new BlockError('EINVAL', `${name} must be a non-negative integer, got ${value}`);
  throw new BlockError('ERANGE', `${name} ${value} is past the bitmap's ${bitCount} bits`);
}
