/**
 * A device that hands every call of the BlockDevice contract to `inner`: the base of the tests'
 * wrappers that watch, hold or bend a few calls (override those; the rest pass through). The
 * optional methods (fileSpan, blockStatus, cache, copyFromSpan) are not passed on: a wrapper that
 * offers one says so itself.
 */
import type { BlockDevice, DiscardOutcome, WriteOptions } from '../../runtime/devices/block-device.ts';

export class PassThroughDevice implements BlockDevice {
  constructor(readonly inner: BlockDevice) {}
  get name(): string { return this.inner.name; }
  get sizeBytes(): number { return this.inner.sizeBytes; }
  get logicalBlockBytes(): number { return this.inner.logicalBlockBytes; }
  get canWrite(): boolean { return this.inner.canWrite; }
  get canDiscard(): boolean { return this.inner.canDiscard; }
  get discardZeroes(): boolean { return this.inner.discardZeroes; }
  read(offsetBytes: number, target: Uint8Array): Promise<void> { return this.inner.read(offsetBytes, target); }
  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> { return this.inner.write(offsetBytes, data, options); }
  flush(): Promise<void> { return this.inner.flush(); }
  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> { return this.inner.discard(offsetBytes, lengthBytes); }
  close(): Promise<void> { return this.inner.close(); }
}
