/**
 * Seeded pseudo-random numbers (SplitMix32 state step + Mulberry32-style mix) for fuzz tests,
 * fault injection and benchmarks: the same seed always gives the same sequence on every runtime,
 * so a failing seed printed by a test reproduces anywhere.
 */
export class Prng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform float in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, bound) for bound up to 2^53. */
  below(bound: number): number {
    if (bound <= 4294967296) return Math.floor(this.next() * bound);
    return Math.floor((this.nextU32() * 4294967296 + this.nextU32()) / 18446744073709551616 * bound);
  }

  /** Uniform integer in [min, max] inclusive. */
  range(min: number, max: number): number {
    return min + this.below(max - min + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  fill(bytes: Uint8Array): Uint8Array {
    let i = 0;
    for (; i + 4 <= bytes.length; i += 4) {
      const v = this.nextU32();
      bytes[i] = v;
      bytes[i + 1] = v >>> 8;
      bytes[i + 2] = v >>> 16;
      bytes[i + 3] = v >>> 24;
    }
    for (; i < bytes.length; i++) bytes[i] = this.nextU32();
    return bytes;
  }
}

/** Seed from BLOCKCORE_SEED when set (to replay a failure), else from the clock; always printable. */
export function seedFromEnv(fallback = Date.now()): number {
  const fromEnv = typeof process !== 'undefined' ? process.env.BLOCKCORE_SEED : undefined;
  return fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) >>> 0 : fallback >>> 0;
}
