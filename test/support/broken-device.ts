/**
 * A device that breaks the BlockDevice contract the way a buggy third-party layer might, for
 * tests of what the NBD server does then (FaultDevice, by contrast, fails within the contract:
 * EIO, torn writes). Everything not broken passes through to the inner device.
 *   status-garbage     blockStatus resolves with something that is not a list of extents;
 *   reject-unprintable read rejects with a value that has no string form (Object.create(null));
 *   throw-unprintable  read throws that value synchronously instead of returning a promise;
 *   span-release-throws fileSpan hands out the inner span, whose release() then throws (after
 *                      giving the inner span back, so the inner device can still close).
 */
import { spanAlsoReleasing, type BlockDevice, type BlockExtent, type DiscardOutcome, type FileSpan, type WriteOptions } from '../../runtime/devices/block-device.ts';

export const BREAKAGES = ['status-garbage', 'reject-unprintable', 'throw-unprintable', 'span-release-throws'] as const;
export type Breakage = (typeof BREAKAGES)[number];

export class BrokenDevice implements BlockDevice {
  /** How many times the breakage was acted out. */
  broke = 0;

  constructor(readonly inner: BlockDevice, readonly breakage: Breakage) {}

  get name() { return `broken(${this.inner.name})`; }
  get sizeBytes() { return this.inner.sizeBytes; }
  get logicalBlockBytes() { return this.inner.logicalBlockBytes; }
  get canWrite() { return this.inner.canWrite; }
  get canDiscard() { return this.inner.canDiscard; }
  get discardZeroes() { return this.inner.discardZeroes; }

  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    if (this.breakage === 'reject-unprintable') {
      this.broke++;
      return Promise.reject(Object.create(null));
    }
    if (this.breakage === 'throw-unprintable') {
      this.broke++;
      throw Object.create(null);
    }
    return this.inner.read(offsetBytes, target);
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.inner.write(offsetBytes, data, options);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    return this.inner.discard(offsetBytes, lengthBytes);
  }

  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    if (this.breakage !== 'status-garbage') return this.inner.blockStatus ? this.inner.blockStatus(offsetBytes, lengthBytes) : [{ lengthBytes, hole: false, zero: false }];
    this.broke++;
    return null as unknown as BlockExtent[];
  }

  fileSpan(offsetBytes: number, lengthBytes: number): FileSpan | null {
    const span = this.inner.fileSpan?.(offsetBytes, lengthBytes) ?? null;
    if (span === null || this.breakage !== 'span-release-throws') return span;
    return spanAlsoReleasing(span, () => {
      this.broke++;
      throw new Error('span release failed (a device bug)');
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
