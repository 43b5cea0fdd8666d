/**
 * A device whose backing device can be replaced under its open users, as device-mapper swaps a
 * table under an open device: a finalized clone becomes its destination while an NBD export of
 * it stays connected.
 *
 * States: `serving` (calls go to the current device) and `switching` (from replace() until its
 * producer settles: new calls wait, calls already inside the old device finish there; the
 * producer may drain and close the old device). After a successful switch the waiting calls run
 * on the new device; after a failed one on the old device (whatever state it is in).
 *
 * What users see does not change across a switch: size, block size and capabilities are fixed at
 * construction from the first device, and a replacement must offer at least as much (assert: it is
 * the caller's bug otherwise). `discardZeroes` stays the first device's (a clone's false is still
 * true of a file). Optional members are always present and fall back when the current device
 * lacks them: blockStatus reports data, fileSpan null, cache does nothing.
 *
 * Durability: a flush goes to the device current when it runs. A switch must not lose a flush's
 * promise: the producer makes everything written to the old device durable before it returns
 * (a clone's finalize commits and flushes its destination), so a flush after the switch covers
 * writes made before it.
 *
 * Closing the switch does not close the device beneath: its owner does.
 */
import { assert } from '../assert.ts';
import { BlockError } from '../errors.ts';
import type { BlockDevice, BlockExtent, DeviceBitmap, DiscardOutcome, FileSpan, WriteOptions } from './block-device.ts';
import { validateOpen } from './validate.ts';

export class SwitchDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes: boolean;
  private current: BlockDevice;
  /** Settles when the switch in progress does; null while serving. */
  private switching: Promise<void> | null = null;
  private closed = false;

  constructor(first: BlockDevice) {
    this.current = first;
    this.name = first.name;
    this.sizeBytes = first.sizeBytes;
    this.logicalBlockBytes = first.logicalBlockBytes;
    this.canWrite = first.canWrite;
    this.canDiscard = first.canDiscard;
    this.discardZeroes = first.discardZeroes;
  }

  /** The device calls go to now. */
  get device(): BlockDevice {
    return this.current;
  }

  /**
   * Runs `produce` with new calls held, then serves the device it returns. Rejects (keeping the
   * old device) when `produce` does.
   */
  async replace(produce: () => Promise<BlockDevice>): Promise<BlockDevice> {
    assert(this.switching === null, 'one switch at a time');
    let settled!: () => void;
    this.switching = new Promise((resolve) => (settled = resolve));
    try {
      const next = await produce();
      assert(next.sizeBytes >= this.sizeBytes, `replacement ${next.name} is smaller than ${this.name}`);
      assert(this.logicalBlockBytes % next.logicalBlockBytes === 0, `replacement ${next.name} needs larger blocks`);
      assert(next.canWrite || !this.canWrite, `replacement ${next.name} cannot write`);
      assert(next.canDiscard || !this.canDiscard, `replacement ${next.name} cannot discard`);
      this.current = next;
      return next;
    } finally {
      this.switching = null;
      settled();
    }
  }

  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    return this.run((device) => device.read(offsetBytes, target));
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    return this.run((device) => device.write(offsetBytes, data, options));
  }

  flush(): Promise<void> {
    return this.run((device) => device.flush());
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    return this.run((device) => device.discard(offsetBytes, lengthBytes));
  }

  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    return this.run((device) =>
      device.blockStatus ? device.blockStatus(offsetBytes, lengthBytes) : Promise.resolve(lengthBytes === 0 ? [] : [{ lengthBytes, hole: false, zero: false }]),
    );
  }

  cache(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.run((device) => (device.cache ? device.cache(offsetBytes, lengthBytes) : Promise.resolve()));
  }

  /** Null while switching (the caller reads instead, and that read waits). */
  fileSpan(offsetBytes: number, lengthBytes: number): FileSpan | null {
    validateOpen(this, !this.closed, 'fileSpan');
    if (this.switching) return null;
    return this.current.fileSpan?.(offsetBytes, lengthBytes) ?? null;
  }

  /** The current device's; none while switching (a finalized clone's destination has none). */
  bitmaps(): readonly DeviceBitmap[] {
    if (this.closed || this.switching) return [];
    return this.current.bitmaps?.() ?? [];
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Calls `work` on the current device, after the switch in progress if there is one. */
  private run<T>(work: (device: BlockDevice) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new BlockError('EBADF', 'device is closed', { device: this.name }));
    if (this.switching === null) return work(this.current);
    return this.switching.then(() => this.run(work));
  }
}
