/**
 * A BlockDevice in memory, for tests and as the model other devices are checked against.
 *
 * Storage: fixed 64 KiB pages in a Map keyed by page index, allocated on first write. A page that
 * was never written (or was discarded) is absent and reads as zeros, so a 16 TiB memory device
 * costs nothing until written, like a sparse file. Discard deletes the pages the range covers
 * whole and zero-fills the partial pages at its ends, and reports 'punched' (space released, the
 * same meaning as fallocate PUNCH_HOLE, which also zero-fills partial filesystem blocks).
 *
 * Block status: an absent page is a hole that reads as zeros; a present page is data (even if it
 * holds zeros), like a file block that was written.
 *
 * Durability: none, the process is the medium. flush() only checks the device is open; a FUA
 * write is an ordinary write. Every operation completes before its promise settles.
 */
import { BlockError } from '../errors.ts';
import type { BlockDevice, BlockExtent, DiscardOutcome, WriteOptions } from './block-device.ts';
import { alignExtents, ExtentList } from './extents.ts';
import { OpGate } from './op-gate.ts';
import { EMPTY_DISCARD_OUTCOME, validateGeometry, validateOpen, validateRequest } from './validate.ts';

export const MEMORY_PAGE_BYTES = 64 * 1024;

export interface MemoryDeviceOptions {
  sizeBytes: number;
  /** Default 512. */
  logicalBlockBytes?: number;
  readOnly?: boolean;
  /** Contents of the first `initial.length` bytes (the rest reads as zeros); copied. */
  initial?: Uint8Array;
  /** For errors and logs; default `memory`. */
  name?: string;
}

export class MemoryDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes = true;
  /** What discard does on this device. */
  readonly discardMode: DiscardOutcome = 'punched';
  private readonly pages = new Map<number, Uint8Array>();
  private readonly gate = new OpGate();

  constructor(options: MemoryDeviceOptions) {
    this.name = options.name ?? 'memory';
    this.sizeBytes = options.sizeBytes;
    this.logicalBlockBytes = options.logicalBlockBytes ?? 512;
    validateGeometry(this.name, this.sizeBytes, this.logicalBlockBytes);
    this.canWrite = options.readOnly !== true;
    this.canDiscard = this.canWrite;
    const initial = options.initial;
    if (initial !== undefined) {
      if (!(initial instanceof Uint8Array) || initial.length > this.sizeBytes) {
        throw new BlockError('EINVAL', `initial contents must be a Uint8Array of at most sizeBytes ${this.sizeBytes}`, { device: this.name });
      }
      this.copyIn(0, initial, true);
    }
  }

  /** Bytes of page memory held now (64 KiB per written page). */
  get allocatedBytes(): number {
    return this.pages.size * MEMORY_PAGE_BYTES;
  }

  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    return this.run(() => {
      validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
      this.copyOut(offsetBytes, target);
    });
  }

  write(offsetBytes: number, data: Uint8Array, _options?: WriteOptions): Promise<void> {
    return this.run(() => {
      validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
      this.copyIn(offsetBytes, data, false);
    });
  }

  flush(): Promise<void> {
    return this.run(() => validateOpen(this, this.gate.isOpen, 'flush'));
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    return this.run(() => {
      validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
      if (lengthBytes === 0) return EMPTY_DISCARD_OUTCOME;
      this.forEachPage(offsetBytes, lengthBytes, (pageIndex, pageOffsetBytes, _doneBytes, spanBytes) => {
        const page = this.pages.get(pageIndex);
        if (page === undefined) return;
        if (spanBytes === MEMORY_PAGE_BYTES) this.pages.delete(pageIndex);
        else page.fill(0, pageOffsetBytes, pageOffsetBytes + spanBytes);
      });
      return this.discardMode;
    });
  }

  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    return this.run(() => {
      validateRequest(this, this.gate.isOpen, 'status', offsetBytes, lengthBytes);
      const runs = new ExtentList();
      this.forEachPage(offsetBytes, lengthBytes, (pageIndex, _pageOffsetBytes, _doneBytes, spanBytes) => {
        const absent = !this.pages.has(pageIndex);
        runs.push(spanBytes, absent, absent);
      });
      // Pages are 64 KiB, so boundaries are unaligned only for blocks larger than a page.
      return alignExtents(runs.extents, offsetBytes, this.logicalBlockBytes);
    });
  }

  close(): Promise<void> {
    return this.gate.close(() => this.pages.clear());
  }

  /** Runs synchronous work as a settled promise, so a refusal is a rejection, never a throw. */
  private async run<T>(work: () => T): Promise<T> {
    return this.gate.track(work);
  }

  private copyOut(offsetBytes: number, target: Uint8Array): void {
    this.forEachPage(offsetBytes, target.length, (pageIndex, pageOffsetBytes, doneBytes, spanBytes) => {
      const page = this.pages.get(pageIndex);
      if (page === undefined) target.fill(0, doneBytes, doneBytes + spanBytes);
      else target.set(page.subarray(pageOffsetBytes, pageOffsetBytes + spanBytes), doneBytes);
    });
  }

  /** `skipZeroPages`: leave absent pages absent when the data for them is all zeros (initial fill). */
  private copyIn(offsetBytes: number, data: Uint8Array, skipZeroPages: boolean): void {
    this.forEachPage(offsetBytes, data.length, (pageIndex, pageOffsetBytes, doneBytes, spanBytes) => {
      const source = data.subarray(doneBytes, doneBytes + spanBytes);
      let page = this.pages.get(pageIndex);
      if (page === undefined) {
        if (skipZeroPages && isAllZero(source)) return;
        page = new Uint8Array(MEMORY_PAGE_BYTES);
        this.pages.set(pageIndex, page);
      }
      page.set(source, pageOffsetBytes);
    });
  }

  /** Calls `visit` for each page piece of [offsetBytes, offsetBytes + lengthBytes), in order. */
  private forEachPage(
    offsetBytes: number,
    lengthBytes: number,
    visit: (pageIndex: number, pageOffsetBytes: number, doneBytes: number, spanBytes: number) => void,
  ): void {
    let doneBytes = 0;
    while (doneBytes < lengthBytes) {
      const positionBytes = offsetBytes + doneBytes;
      const pageIndex = Math.floor(positionBytes / MEMORY_PAGE_BYTES);
      const pageOffsetBytes = positionBytes - pageIndex * MEMORY_PAGE_BYTES;
      const spanBytes = Math.min(MEMORY_PAGE_BYTES - pageOffsetBytes, lengthBytes - doneBytes);
      visit(pageIndex, pageOffsetBytes, doneBytes, spanBytes);
      doneBytes += spanBytes;
    }
  }
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
