/**
 * Little-endian 64-bit fields as safe integers, for the on-disk and wire formats (md superblocks,
 * dm-log-userspace frames): a value that does not fit 2^53 reads as null, and writing one is a bug.
 */
import { assert } from './assert.ts';

export function setU64(v: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 field at ${offset} is a non-negative safe integer`);
  v.setUint32(offset, value % 2 ** 32, true);
  v.setUint32(offset + 4, Math.floor(value / 2 ** 32), true);
}

/** The u64 at `offset`, or null when it does not fit a safe integer. */
export function getU64(v: DataView, offset: number): number | null {
  const high = v.getUint32(offset + 4, true);
  if (high >= 2 ** 21) return null;
  return high * 2 ** 32 + v.getUint32(offset, true);
}
