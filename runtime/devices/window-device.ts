/**
 * A window onto another device: bytes [offsetBytes, offsetBytes + sizeBytes) of `inner` as a
 * device of its own (dm-linear's one segment). A mirror's legs are windows (the table's
 * `<dev> <offset>`), so copies and I/O address every leg from 0.
 *
 * Requests are checked against the window and passed on shifted; fileSpan and copyFromSpan pass
 * through (the span names the file offset, so the shift is the inner device's), blockStatus too.
 * Closing the window does not close `inner` unless `ownsInner`.
 */
import { BlockError } from '../errors.ts';
import type { BlockDevice, BlockExtent, DiscardOutcome, FileSpan, WriteOptions } from './block-device.ts';
import { OpGate } from './op-gate.ts';
import { validateOpen, validateRequest } from './validate.ts';

export class WindowDevice implements BlockDevice {
  readonly name: string;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes: boolean;
  private readonly gate = new OpGate();

  constructor(
    readonly inner: BlockDevice,
    readonly offsetBytes: number,
    readonly sizeBytes: number,
    private readonly ownsInner = false,
  ) {
    this.name = offsetBytes === 0 ? inner.name : `${inner.name}+${offsetBytes}`;
    this.logicalBlockBytes = inner.logicalBlockBytes;
    this.canWrite = inner.canWrite;
    this.canDiscard = inner.canDiscard;
    this.discardZeroes = inner.discardZeroes;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes % inner.logicalBlockBytes !== 0) {
      throw new BlockError('EINVAL', `window offset ${offsetBytes} is not a multiple of ${inner.logicalBlockBytes}`, { device: inner.name });
    }
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes % inner.logicalBlockBytes !== 0 || offsetBytes + sizeBytes > inner.sizeBytes) {
      throw new BlockError('ERANGE', `window [${offsetBytes}, ${offsetBytes + sizeBytes}) is not inside ${inner.name} (${inner.sizeBytes} bytes)`, { device: inner.name });
    }
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
    await this.gate.track(() => this.inner.read(this.offsetBytes + offsetBytes, target));
  }

  async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
    await this.gate.track(() => this.inner.write(this.offsetBytes + offsetBytes, data, options));
  }

  async flush(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'flush');
    await this.gate.track(() => this.inner.flush());
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
    return this.gate.track(() => this.inner.discard(this.offsetBytes + offsetBytes, lengthBytes));
  }

  async blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    validateRequest(this, this.gate.isOpen, 'status', offsetBytes, lengthBytes);
    if (this.inner.blockStatus === undefined) return lengthBytes === 0 ? [] : [{ lengthBytes, hole: false, zero: false }];
    return this.gate.track(() => this.inner.blockStatus!(this.offsetBytes + offsetBytes, lengthBytes));
  }

  fileSpan(offsetBytes: number, lengthBytes: number): FileSpan | null {
    validateRequest(this, this.gate.isOpen, 'span', offsetBytes, lengthBytes);
    return this.inner.fileSpan?.(this.offsetBytes + offsetBytes, lengthBytes) ?? null;
  }

  async copyFromSpan(offsetBytes: number, span: FileSpan): Promise<boolean> {
    validateRequest(this, this.gate.isOpen, 'copy', offsetBytes, span.lengthBytes);
    if (this.inner.copyFromSpan === undefined) return false;
    return this.gate.track(() => this.inner.copyFromSpan!(this.offsetBytes + offsetBytes, span));
  }

  close(): Promise<void> {
    return this.gate.close(async () => {
      if (this.ownsInner) await this.inner.close();
    });
  }
}
