/**
 * First-fit free list over a byte range of linear memory, for the kernel facade's allocator.
 * Free blocks are kept sorted by offset and coalesced on every release, so a freed block merges
 * with free neighbours and the list stays as short as the fragmentation. Blocks are
 * [offsetBytes, offsetBytes + lengthBytes); sizes and offsets are whatever the caller aligned them
 * to (the facade uses 64-byte multiples). The list knows nothing about WebAssembly: the facade
 * grows memory and hands the new tail over with `release` like any other block.
 */
import { assert } from '../assert.ts';

interface Block {
  offsetBytes: number;
  lengthBytes: number;
}

export class FreeList {
  private readonly blocks: Block[] = [];

  /** Total free bytes (not necessarily contiguous). */
  get freeBytes(): number {
    let total = 0;
    for (const block of this.blocks) total += block.lengthBytes;
    return total;
  }

  get blockCount(): number {
    return this.blocks.length;
  }

  /** Length of the free block that ends exactly at `endBytes`, else 0. */
  freeBytesEndingAt(endBytes: number): number {
    const last = this.blocks[this.blocks.length - 1];
    return last !== undefined && last.offsetBytes + last.lengthBytes === endBytes ? last.lengthBytes : 0;
  }

  /** Carves `lengthBytes` from the first block large enough; returns its offset or -1. */
  take(lengthBytes: number): number {
    assert(lengthBytes > 0, `take of ${lengthBytes} bytes`);
    for (let i = 0; i < this.blocks.length; i++) {
      const block = this.blocks[i]!;
      if (block.lengthBytes < lengthBytes) continue;
      const offsetBytes = block.offsetBytes;
      if (block.lengthBytes === lengthBytes) {
        this.blocks.splice(i, 1);
      } else {
        block.offsetBytes += lengthBytes;
        block.lengthBytes -= lengthBytes;
      }
      return offsetBytes;
    }
    return -1;
  }

  /** Returns [offsetBytes, offsetBytes + lengthBytes) to the list, merging with free neighbours. */
  release(offsetBytes: number, lengthBytes: number): void {
    assert(lengthBytes > 0, `release of ${lengthBytes} bytes`);
    const i = this.indexAfter(offsetBytes);
    const before = this.blocks[i - 1];
    const after = this.blocks[i];
    const endBytes = offsetBytes + lengthBytes;
    assert(before === undefined || before.offsetBytes + before.lengthBytes <= offsetBytes, `double free at ${offsetBytes}`);
    assert(after === undefined || endBytes <= after.offsetBytes, `double free at ${offsetBytes}`);
    const joinsBefore = before !== undefined && before.offsetBytes + before.lengthBytes === offsetBytes;
    const joinsAfter = after !== undefined && after.offsetBytes === endBytes;
    if (joinsBefore && joinsAfter) {
      before.lengthBytes += lengthBytes + after.lengthBytes;
      this.blocks.splice(i, 1);
    } else if (joinsBefore) {
      before.lengthBytes += lengthBytes;
    } else if (joinsAfter) {
      after.offsetBytes = offsetBytes;
      after.lengthBytes += lengthBytes;
    } else {
      this.blocks.splice(i, 0, { offsetBytes, lengthBytes });
    }
  }

  /** Index of the first block whose offset is greater than `offsetBytes` (binary search). */
  private indexAfter(offsetBytes: number): number {
    let lo = 0;
    let hi = this.blocks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.blocks[mid]!.offsetBytes <= offsetBytes) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
