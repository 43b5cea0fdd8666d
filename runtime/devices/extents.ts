/**
 * Building block-status answers (BlockDevice.blockStatus): `statusOf` asks any device (all data
 * when it cannot tell), an ExtentList appends runs and merges
 * neighbours with the same flags, and `alignExtents` makes every boundary a multiple of the
 * device's logical block. A block that straddles a boundary takes the flags both sides share (AND):
 * it is a hole only if all of it is, reads as zeros only if all of it does, so an answer never
 * claims more than is true.
 */
import { assert } from '../assert.ts';
import type { BlockDevice, BlockExtent } from './block-device.ts';

/** `device.blockStatus` when it has one, else the whole range as data. */
export function statusOf(device: BlockDevice, offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
  if (device.blockStatus !== undefined) return device.blockStatus(offsetBytes, lengthBytes);
  return Promise.resolve(lengthBytes === 0 ? [] : [{ lengthBytes, hole: false, zero: false }]);
}

export class ExtentList {
  readonly extents: BlockExtent[] = [];
  totalBytes = 0;

  /** Appends a run; merges it into the last one when the flags match. Empty runs are skipped. */
  push(lengthBytes: number, hole: boolean, zero: boolean): void {
    assert(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0, `extent length ${lengthBytes} is not a byte count`);
    if (lengthBytes === 0) return;
    this.totalBytes += lengthBytes;
    const last = this.extents[this.extents.length - 1];
    if (last !== undefined && last.hole === hole && last.zero === zero) last.lengthBytes += lengthBytes;
    else this.extents.push({ lengthBytes, hole, zero });
  }

  pushAll(extents: readonly BlockExtent[]): void {
    for (const extent of extents) this.push(extent.lengthBytes, extent.hole, extent.zero);
  }
}

/**
 * Re-cuts `extents` (covering a range that starts at `offsetBytes`, whose both ends are multiples of
 * `blockBytes`) so that every boundary is a multiple of `blockBytes`.
 */
export function alignExtents(extents: readonly BlockExtent[], offsetBytes: number, blockBytes: number): BlockExtent[] {
  const out = new ExtentList();
  let atBytes = offsetBytes; // end of what `out` covers
  let pendingEnd = offsetBytes; // a straddling block being merged: [atBytes, pendingEnd)
  let pendingHole = true;
  let pendingZero = true;
  let inputEnd = offsetBytes;
  for (const extent of extents) {
    const start = inputEnd;
    inputEnd += extent.lengthBytes;
    if (pendingEnd > atBytes) {
      // Still inside a straddling block: fold this extent's flags into it.
      pendingHole &&= extent.hole;
      pendingZero &&= extent.zero;
      if (inputEnd < pendingEnd) continue;
      out.push(pendingEnd - atBytes, pendingHole, pendingZero);
      atBytes = pendingEnd;
    }
    assert(atBytes >= start, 'align: extents went backwards');
    const alignedEnd = inputEnd - (inputEnd % blockBytes);
    if (alignedEnd > atBytes) {
      out.push(alignedEnd - atBytes, extent.hole, extent.zero);
      atBytes = alignedEnd;
    }
    if (inputEnd > atBytes) {
      // The extent ends inside a block: that block starts pending with this extent's flags.
      pendingEnd = atBytes + blockBytes;
      pendingHole = extent.hole;
      pendingZero = extent.zero;
    }
  }
  assert(pendingEnd <= atBytes, `align: extents end at ${inputEnd}, not on a ${blockBytes}-byte boundary`);
  return out.extents;
}
