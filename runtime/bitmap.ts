/**
 * RegionBitmap: one bit per region of a device (dirty, present, hydrated...), for up to 2^32
 * regions (16 TiB at 4 KiB regions). Bit i lives in 64-bit word i >> 6 at bit i & 63, little
 * endian, so `toBytes`/`loadBytes` move the on-disk form without conversion.
 *
 * Memory: ceil(bitCount / 64) * 8 bytes of wasm linear memory, in an instance of the kernels
 * owned by this bitmap alone, plus the module's first 64 KiB page: 32 MiB for 4 TiB of 4 KiB
 * regions (2^30 bits), 512 MiB for 2^32 regions; orFrom/andNotFrom add a 256 KiB staging area
 * (the other bitmap lives in another instance's memory, so its words are staged in chunks).
 * WebAssembly memory never shrinks, so the only way to give it back is to drop the instance:
 * `release()` does, and the bitmap is unusable after.
 *
 * API: bit positions are numbers in [0, bitCount); ranges are half-open [start, end) with end up
 * to bitCount (so 2^32 fits), converted here to the kernels' inclusive [first, last]. Empty
 * ranges are no-ops. Searches accept `from` up to bitCount (nothing left: -1). Positions outside
 * the bitmap are BlockError ERANGE naming the position; malformed ones (negative, fractional)
 * EINVAL. `setCount` is exact at all times: every kernel that writes reports how many bits it
 * changed (or the population after), so it never needs a full recount.
 *
 * Invariant: bits past bitCount in the last word stay zero (checked after every bulk write), so
 * whole-word kernels (count, or, and-not, export) need no tail masking.
 */
import { assert } from './assert.ts';
import { BlockError, isByteCount } from './errors.ts';
import { Kernels, MAX_BITS, WORD_BITS, WORD_BYTES, type BitRun, type KernelFlavor, type WasmBuffer } from './wasm/kernels.ts';

export type { BitRun } from './wasm/kernels.ts';

export const MAX_BITMAP_BITS = MAX_BITS;
/** Words staged per step when combining with a bitmap in another instance's memory. */
const COMBINE_CHUNK_WORDS = 32 * 1024;
assert(MAX_BITMAP_BITS === 2 ** 32 && WORD_BITS === 64, 'bitmaps hold up to 2^32 bits in 64-bit words');

export interface RegionBitmapOptions {
  flavor?: KernelFlavor;
}

export class RegionBitmap {
  readonly wordCount: number;
  #kernels: Kernels | null;
  #words: WasmBuffer | null;
  #setCount = 0;

  private constructor(
    readonly bitCount: number,
    kernels: Kernels,
  ) {
    this.wordCount = Math.ceil(bitCount / WORD_BITS);
    this.#kernels = kernels;
    this.#words = kernels.alloc(this.wordCount * WORD_BYTES);
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

  /** Bytes of wasm memory the bits take: ceil(bitCount / 64) * 8. */
  get byteLength(): number {
    return this.wordCount * WORD_BYTES;
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
    this.#words = null;
  }

  get(bit: number): boolean {
    this.#checkBit(bit);
    return this.#k().bitGet(this.#words!, bit);
  }

  /** Sets one bit; true when it was clear. */
  set(bit: number): boolean {
    this.#checkBit(bit);
    const changed = !this.#k().bitSet(this.#words!, bit);
    if (changed) this.#setCount++;
    return changed;
  }

  /** Clears one bit; true when it was set. */
  clear(bit: number): boolean {
    this.#checkBit(bit);
    const changed = this.#k().bitClear(this.#words!, bit);
    if (changed) this.#setCount--;
    return changed;
  }

  /** Sets [start, end); returns how many bits changed. */
  setRange(start: number, end: number): number {
    if (!this.#checkRange(start, end)) return 0;
    const changed = this.#k().bitSetRange(this.#words!, start, end - 1);
    this.#setCount += changed;
    return changed;
  }

  /** Clears [start, end); returns how many bits changed. */
  clearRange(start: number, end: number): number {
    if (!this.#checkRange(start, end)) return 0;
    const changed = this.#k().bitClearRange(this.#words!, start, end - 1);
    this.#setCount -= changed;
    return changed;
  }

  /** Set bits in [start, end) (default: the whole bitmap). */
  countSet(start = 0, end = this.bitCount): number {
    if (!this.#checkRange(start, end)) return 0;
    return this.#k().bitCountSet(this.#words!, start, end - 1);
  }

  /** First set bit at or after `from`, or -1. */
  nextSet(from: number): number {
    if (!this.#checkFrom(from)) return -1;
    return this.#k().bitNextSet(this.#words!, from, this.bitCount - 1);
  }

  /** First clear bit at or after `from`, or -1. */
  nextZero(from: number): number {
    if (!this.#checkFrom(from)) return -1;
    return this.#k().bitNextZero(this.#words!, from, this.bitCount - 1);
  }

  /** First set bit at or after `from`, else from 0, or -1 when none is set. */
  nextSetWrapping(from: number): number {
    if (!this.#checkFrom(from) && this.bitCount === 0) return -1;
    return this.#k().bitNextSetWrapping(this.#words!, from === this.bitCount ? 0 : from, this.bitCount - 1);
  }

  /** First clear bit at or after `from`, else from 0, or -1 when all are set. */
  nextZeroWrapping(from: number): number {
    if (!this.#checkFrom(from) && this.bitCount === 0) return -1;
    return this.#k().bitNextZeroWrapping(this.#words!, from === this.bitCount ? 0 : from, this.bitCount - 1);
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
    return this.#k().bitNextRun(this.#words!, from, this.bitCount - 1, value, maxLength);
  }

  /** this |= other (same bitCount). */
  orFrom(other: RegionBitmap): void {
    this.#combine(other, 'orFrom', false);
  }

  /** this &= ~other (same bitCount). */
  andNotFrom(other: RegionBitmap): void {
    this.#combine(other, 'andNotFrom', true);
  }

  /** Raw little-endian bytes of words [startWord, startWord + wordCount), a copy. */
  toBytes(startWord = 0, wordCount = this.wordCount - startWord): Uint8Array {
    this.#checkWords('toBytes', startWord, wordCount);
    return this.#words!.view().slice(startWord * WORD_BYTES, (startWord + wordCount) * WORD_BYTES);
  }

  /**
   * Overwrites words from `startWord` with raw little-endian `bytes` (a multiple of 8 bytes), as
   * read from disk. Bytes that set bits past bitCount are malformed (EINVAL), nothing is written.
   */
  loadBytes(startWord: number, bytes: Uint8Array): void {
    if (bytes.byteLength % WORD_BYTES !== 0) {
      throw new BlockError('EINVAL', `loadBytes takes whole 8-byte words, got ${bytes.byteLength} bytes`);
    }
    const wordCount = bytes.byteLength / WORD_BYTES;
    this.#checkWords('loadBytes', startWord, wordCount);
    if (wordCount === 0) return;
    const tailBits = this.bitCount % WORD_BITS;
    if (tailBits !== 0 && startWord + wordCount === this.wordCount) {
      const last = bytes.subarray(bytes.byteLength - WORD_BYTES);
      for (let bit = tailBits; bit < WORD_BITS; bit++) {
        if ((last[bit >>> 3]! >>> (bit & 7)) & 1) {
          throw new BlockError('EINVAL', `loadBytes sets bit ${(this.wordCount - 1) * WORD_BITS + bit}, past the bitmap's ${this.bitCount} bits`);
        }
      }
    }
    const k = this.#k();
    const firstBit = startWord * WORD_BITS;
    const lastBit = (startWord + wordCount) * WORD_BITS - 1;
    const before = k.bitCountSet(this.#words!, firstBit, lastBit);
    this.#words!.view().set(bytes, startWord * WORD_BYTES);
    this.#setCount += k.bitCountSet(this.#words!, firstBit, lastBit) - before;
    this.#assertTailClear();
  }

  #combine(other: RegionBitmap, what: string, andNot: boolean): void {
    const k = this.#k();
    const otherWords = other.#words;
    if (otherWords === null) throw new BlockError('EBADF', `${what}: the other bitmap was released`);
    if (other.bitCount !== this.bitCount) {
      throw new BlockError('EINVAL', `${what}: bitmaps differ in size (${this.bitCount} and ${other.bitCount} bits)`);
    }
    if (other === this) {
      if (andNot) this.clearRange(0, this.bitCount);
      return;
    }
    const stage = k.alloc(Math.min(this.wordCount, COMBINE_CHUNK_WORDS) * WORD_BYTES);
    try {
      let setCount = 0;
      for (let word = 0; word < this.wordCount; word += COMBINE_CHUNK_WORDS) {
        const wordCount = Math.min(COMBINE_CHUNK_WORDS, this.wordCount - word);
        const source = otherWords.view().subarray(word * WORD_BYTES, (word + wordCount) * WORD_BYTES);
        stage.view().set(source);
        setCount += andNot ? k.bitAndNot(this.#words!, word, stage, 0, wordCount) : k.bitOr(this.#words!, word, stage, 0, wordCount);
      }
      this.#setCount = setCount;
    } finally {
      stage.free();
    }
    this.#assertTailClear();
  }

  #assertTailClear(): void {
    if (this.bitCount % WORD_BITS === 0) return;
    const tailSet = this.#k().bitCountSet(this.#words!, this.bitCount, this.wordCount * WORD_BITS - 1);
    assert(tailSet === 0, `${tailSet} bits set past bitCount ${this.bitCount}`);
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

  #checkWords(what: string, startWord: number, wordCount: number): void {
    this.#k();
    if (!isByteCount(startWord) || !isByteCount(wordCount)) {
      throw new BlockError('EINVAL', `${what}: startWord and wordCount must be non-negative integers, got ${startWord} and ${wordCount}`);
    }
    if (startWord + wordCount > this.wordCount) {
      throw new BlockError('ERANGE', `${what}: words [${startWord}, ${startWord + wordCount}) are past the bitmap's ${this.wordCount} words`);
    }
  }
}

/** A range end or search start: an integer in [0, bitCount]. */
function checkEnd(name: string, value: number, bitCount: number): void {
  if (Number.isInteger(value) && value >= 0 && value <= bitCount) return;
  if (!Number.isInteger(value) || value < 0) throw new BlockError('EINVAL', `${name} must be a non-negative integer, got ${value}`);
  throw new BlockError('ERANGE', `${name} ${value} is past the bitmap's ${bitCount} bits`);
}
