/**
 * The plain TypeScript model the bitmap kernels are fuzzed against: one byte per bit, searched
 * and counted by the obvious loops, with the kernels' conventions (inclusive [first, last],
 * -1 for none). Slow on purpose: nothing clever to get wrong.
 */

/** Bits per summary block of the bitmap kernels (assembly/summary.ts): tests aim edge cases at it. */
export const BLOCK_BITS = 16384;
export class BitModel {
  readonly bits: Uint8Array;

  constructor(readonly bitCount: number) {
    this.bits = new Uint8Array(bitCount);
  }

  get(bit: number): boolean {
    return this.bits[bit] === 1;
  }

  set(bit: number, value = true): void {
    this.bits[bit] = value ? 1 : 0;
  }

  /** Fills [first, last] with value; returns how many bits changed. */
  fill(first: number, last: number, value: boolean): number {
    let changed = 0;
    for (let i = first; i <= last; i++) {
      if (this.get(i) !== value) changed++;
      this.set(i, value);
    }
    return changed;
  }

  next(from: number, last: number, value: boolean): number {
    for (let i = from; i <= last; i++) if (this.get(i) === value) return i;
    return -1;
  }

  nextWrapping(from: number, last: number, value: boolean): number {
    const found = this.next(from, last, value);
    return found >= 0 || from === 0 ? found : this.next(0, from - 1, value);
  }

  count(first: number, last: number): number {
    let n = 0;
    for (let i = first; i <= last; i++) n += this.bits[i]!;
    return n;
  }

  nextRun(from: number, last: number, value: boolean, maxLength: number): { start: number; length: number } | null {
    const start = this.next(from, last, value);
    if (start < 0) return null;
    let length = 0;
    while (start + length <= last && length < maxLength && this.get(start + length) === value) length++;
    return { start, length };
  }

  /** Little-endian 64-bit words, ceil(bitCount / 64) * 8 bytes. */
  toBytes(): Uint8Array {
    const bytes = new Uint8Array(Math.ceil(this.bitCount / 64) * 8);
    for (let i = 0; i < this.bitCount; i++) if (this.bits[i]) bytes[i >>> 3]! |= 1 << (i & 7);
    return bytes;
  }

  /** Random contents: each bit set with probability `density`. */
  randomize(next: () => number, density: number): void {
    for (let i = 0; i < this.bitCount; i++) this.bits[i] = next() < density ? 1 : 0;
  }
}

/** The bitwise CRC32C model (support/digests.ts), under the name older tests use. */
export { crc32cBitwise as crc32cReference } from './digests.ts';

/** A model for large sparse bitmaps: the sorted set positions (or clear ones, `inverted`). */
export class SparseModel {
  readonly positions: number[];

  constructor(
    readonly bitCount: number,
    positions: Iterable<number>,
    readonly inverted = false,
  ) {
    this.positions = [...new Set(positions)].sort((a, b) => a - b);
  }

  /** Index of the first listed position >= bit. */
  private lowerBound(bit: number): number {
    let lo = 0;
    let hi = this.positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.positions[mid]! < bit) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First listed position in [from, last], or -1. */
  nextListed(from: number, last: number): number {
    const at = this.positions[this.lowerBound(from)];
    return at !== undefined && at <= last ? at : -1;
  }

  /** First unlisted position in [from, last], or -1. */
  nextUnlisted(from: number, last: number): number {
    let bit = from;
    for (let i = this.lowerBound(from); bit <= last && this.positions[i] === bit; i++) bit++;
    return bit <= last ? bit : -1;
  }

  listedIn(first: number, last: number): number {
    return this.lowerBound(last + 1) - this.lowerBound(first);
  }

  next(from: number, last: number, value: boolean): number {
    return value !== this.inverted ? this.nextListed(from, last) : this.nextUnlisted(from, last);
  }

  count(first: number, last: number): number {
    const listed = this.listedIn(first, last);
    return this.inverted ? last - first + 1 - listed : listed;
  }

  nextRun(from: number, last: number, value: boolean, maxLength: number): { start: number; length: number } | null {
    const start = this.next(from, last, value);
    if (start < 0) return null;
    const limit = Math.min(last, start + maxLength - 1);
    const end = this.next(start, limit, !value);
    return { start, length: (end < 0 ? limit + 1 : end) - start };
  }

  toBytes(): Uint8Array {
    const bytes = new Uint8Array(Math.ceil(this.bitCount / 64) * 8);
    if (this.inverted) {
      bytes.fill(0xff);
      for (let bit = this.bitCount; bit < bytes.length * 8; bit++) bytes[bit >>> 3]! &= ~(1 << (bit & 7));
    }
    for (const bit of this.positions) bytes[bit >>> 3]! ^= 1 << (bit & 7);
    return bytes;
  }
}
