/**
 * Where the array's bytes live on its legs: raid1 (every active leg holds the whole array) and
 * raid10 with the near layout (md's raid10 with near_copies n, far_copies 1: the array is cut in
 * chunks; array chunk a's copies k = 0 .. n-1 sit at position p = a x n + k of a grid d legs
 * wide, on leg p mod d at device chunk floor(p / d)). Offsets here are from data_offset; roles
 * are array slots (0 .. raidDisks-1), not device numbers.
 */
import { assert } from '../assert.ts';
import { SECTOR_BYTES } from './md-superblock.ts';

export interface Copy {
  role: number;
  legOffsetBytes: number;
}

export interface Segment {
  arrayOffsetBytes: number;
  lengthBytes: number;
  copies: Copy[];
}

export interface RaidLayout {
  readonly level: 'raid1' | 'raid10';
  readonly raidDisks: number;
  /** Copies of every byte. */
  readonly copies: number;
  readonly arraySizeBytes: number;
  /** Cuts [offset, offset + length) of the array at chunk boundaries, with each piece's copies. */
  segments(offsetBytes: number, lengthBytes: number): Segment[];
}

export function raid1Layout(raidDisks: number, sizeSectors: number): RaidLayout {
  const all = Array.from({ length: raidDisks }, (_, role) => role);
  return {
    level: 'raid1', raidDisks, copies: raidDisks, arraySizeBytes: sizeSectors * SECTOR_BYTES,
    segments: (offsetBytes, lengthBytes) => [{ arrayOffsetBytes: offsetBytes, lengthBytes, copies: all.map((role) => ({ role, legOffsetBytes: offsetBytes })) }],
  };
}

/** Array sectors of a raid10 near layout over legs of `sizeSectors` (md's raid10_size). */
export function raid10ArraySectors(raidDisks: number, nearCopies: number, chunkSectors: number, sizeSectors: number): number {
  return Math.floor((Math.floor(sizeSectors / chunkSectors) * raidDisks) / nearCopies) * chunkSectors;
}

export function raid10NearLayout(raidDisks: number, nearCopies: number, chunkSectors: number, sizeSectors: number): RaidLayout {
  assert(nearCopies >= 2 && nearCopies <= raidDisks, 'near copies between 2 and the leg count');
  const chunkBytes = chunkSectors * SECTOR_BYTES;
  return {
    level: 'raid10', raidDisks, copies: nearCopies,
    arraySizeBytes: raid10ArraySectors(raidDisks, nearCopies, chunkSectors, sizeSectors) * SECTOR_BYTES,
    segments(offsetBytes, lengthBytes) {
      const segments: Segment[] = [];
      for (let at = offsetBytes, end = offsetBytes + lengthBytes; at < end; ) {
        const chunk = Math.floor(at / chunkBytes);
        const within = at - chunk * chunkBytes;
        const length = Math.min(end - at, chunkBytes - within);
        const copies: Copy[] = [];
        for (let k = 0; k < nearCopies; k++) {
          const position = chunk * nearCopies + k;
          copies.push({ role: position % raidDisks, legOffsetBytes: Math.floor(position / raidDisks) * chunkBytes + within });
        }
        segments.push({ arrayOffsetBytes: at, lengthBytes: length, copies });
        at += length;
      }
      return segments;
    },
  };
}
