/**
 * The plain TypeScript model the bitmap kernels are fuzzed against: one byte per bit, searched
 * and counted by the obvious loops, with the kernels' conventions (inclusive [first, last],
 * -1 for none). Slow on purpose: nothing clever to get wrong.
 */
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

/** Bitwise CRC32C reference (reflected 0x82F63B78), continuing from `seed`. */
export function crc32cReference(bytes: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}
