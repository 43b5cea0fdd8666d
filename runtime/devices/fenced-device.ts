/**
 * A device that stops writing once its holder is fenced: every write, discard, flush and span copy
 * first asks `writesAllowed` (read at the moment of the call, never cached) and fails with EIO
 * when it says no, so nothing issued after the fence reaches `inner`. Reads pass through. A
 * clustered array wraps its shared legs in it with its lockspace member's `writesAllowed`: a node
 * that could not renew its etcd lease stops writing before the other nodes can start recovering it.
 * Closing it closes `inner`.
 */
import { BlockError } from '../errors.ts';
import type { BlockDevice, BlockExtent, DeviceBitmap, DiscardOutcome, FileSpan, WriteOptions } from './block-device.ts';

export class FencedDevice implements BlockDevice {
  readonly name: string;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes: boolean;

  constructor(readonly inner: BlockDevice, private readonly writesAllowed: () => boolean, private readonly why = 'this node is fenced') {
    this.name = inner.name;
    this.logicalBlockBytes = inner.logicalBlockBytes;
    this.canWrite = inner.canWrite;
    this.canDiscard = inner.canDiscard;
    this.discardZeroes = inner.discardZeroes;
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    return this.inner.read(offsetBytes, target);
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.check(offsetBytes, data.length);
    return this.inner.write(offsetBytes, data, options);
  }

  flush(): Promise<void> {
    this.check();
    return this.inner.flush();
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    this.check(offsetBytes, lengthBytes);
    return this.inner.discard(offsetBytes, lengthBytes);
  }

  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    if (this.inner.blockStatus === undefined) return Promise.resolve(lengthBytes === 0 ? [] : [{ lengthBytes, hole: false, zero: false }]);
    return this.inner.blockStatus(offsetBytes, lengthBytes);
  }

  fileSpan(offsetBytes: number, lengthBytes: number): FileSpan | null {
    return this.inner.fileSpan?.(offsetBytes, lengthBytes) ?? null;
  }

  bitmaps(): readonly DeviceBitmap[] {
    return this.inner.bitmaps?.() ?? [];
  }

  async copyFromSpan(offsetBytes: number, span: FileSpan): Promise<boolean> {
    this.check(offsetBytes, span.lengthBytes);
    if (this.inner.copyFromSpan === undefined) return false;
    return this.inner.copyFromSpan(offsetBytes, span);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private check(offsetBytes?: number, lengthBytes?: number): void {
    if (this.writesAllowed()) return;
    throw new BlockError('EIO', `fenced: ${this.why}; no more writes from this node`, {
      device: this.name, ...(offsetBytes === undefined ? {} : { offsetBytes }), ...(lengthBytes === undefined ? {} : { lengthBytes }),
    });
  }
}
