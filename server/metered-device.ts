/**
 * A view of a device that counts its I/O into shared counters (for /metrics): operations, bytes and
 * errors. The service hands the NBD server a fresh view per lookup, so each connection may close
 * its own view; closing a view never closes the device beneath, which the service owns. A
 * read-only view refuses writes and discards with EROFS whatever the device beneath allows. With a
 * WriteGeneration, each write and discard counts in the device's version (the data plane's ETag)
 * from when it begins until it settles.
 */
import type { BlockDevice, BlockExtent, DeviceBitmap, DiscardOutcome, FileSpan, WriteOptions } from '../runtime/devices/block-device.ts';
import { BlockError } from '../runtime/errors.ts';
import type { WriteGeneration } from './data-plane/write-generation.ts';
import type { IoCounts } from './nbd/types.ts';

/** Operations, bytes and errors of an export (an NBD thread's come back as deltas: server/nbd/threads.ts). */
export type IoCounters = IoCounts;

export function newIoCounters(): IoCounters {
  return { reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
}

export class MeteredDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes: boolean;
  readonly blockStatus?: (offsetBytes: number, lengthBytes: number) => Promise<BlockExtent[]>;
  /** Passed through when the inner device has it (a clone: NBD CACHE hydrates those regions now). */
  readonly cache?: (offsetBytes: number, lengthBytes: number) => Promise<void>;
  /** Passed through when the inner device has it; a span handed out counts as one read of its bytes. */
  readonly fileSpan?: (offsetBytes: number, lengthBytes: number) => FileSpan | null;
  /** Passed through when the inner device has them (a clone's hydrated map). */
  readonly bitmaps?: () => readonly DeviceBitmap[];
  private closed = false;
  private readonly generation: (() => WriteGeneration) | null;

  /** `generation`: the version a write counts in, looked up when the write begins. */
  constructor(private readonly inner: BlockDevice, private readonly counters: IoCounters, options: { readOnly?: boolean; generation?: () => WriteGeneration } = {}) {
    this.generation = options.generation ?? null;
    this.name = inner.name;
    this.sizeBytes = inner.sizeBytes;
    this.logicalBlockBytes = inner.logicalBlockBytes;
    this.canWrite = inner.canWrite && options.readOnly !== true;
    this.canDiscard = inner.canDiscard && this.canWrite;
    this.discardZeroes = inner.discardZeroes;
    const blockStatus = inner.blockStatus;
    if (blockStatus) this.blockStatus = (offsetBytes, lengthBytes) => this.count(() => blockStatus.call(inner, offsetBytes, lengthBytes));
    const cache = inner.cache;
    if (cache) this.cache = (offsetBytes, lengthBytes) => this.count(() => cache.call(inner, offsetBytes, lengthBytes));
    const fileSpan = inner.fileSpan;
    if (fileSpan) this.fileSpan = (offsetBytes, lengthBytes) => this.spanOf(() => fileSpan.call(inner, offsetBytes, lengthBytes));
    const bitmaps = inner.bitmaps;
    if (bitmaps) this.bitmaps = () => bitmaps.call(inner);
  }

  private spanOf(take: () => FileSpan | null): FileSpan | null {
    if (this.closed) throw new BlockError('EBADF', 'the export view is closed', { device: this.name });
    let span: FileSpan | null;
    try {
      span = take();
    } catch (error) {
      this.counters.errors++;
      throw error;
    }
    if (span === null) return null;
    this.counters.reads++;
    this.counters.bytesRead += span.lengthBytes;
    return span;
  }

  // No async wrappers on these paths (every NBD request passes here): one reaction to count.
  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.counters.reads++;
    return this.count(() => this.inner.read(offsetBytes, target), () => (this.counters.bytesRead += target.length));
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.counters.writes++;
    if (!this.canWrite) return this.refused(new BlockError('EROFS', 'the export is read-only', { device: this.name, offsetBytes, lengthBytes: data.length }));
    if (this.generation !== null) return this.versioned(() => this.inner.write(offsetBytes, data, options), () => (this.counters.bytesWritten += data.length));
    return this.count(() => this.inner.write(offsetBytes, data, options), () => (this.counters.bytesWritten += data.length));
  }

  flush(): Promise<void> {
    this.counters.flushes++;
    return this.count(() => this.inner.flush());
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    this.counters.discards++;
    if (!this.canDiscard) return this.refused(new BlockError('EROFS', 'the export is read-only', { device: this.name, offsetBytes, lengthBytes }));
    if (this.generation !== null) return this.versioned(() => this.inner.discard(offsetBytes, lengthBytes));
    return this.count(() => this.inner.discard(offsetBytes, lengthBytes));
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** A change to the device's bytes: counted in its version from before it starts until it settles. */
  private versioned<T>(work: () => Promise<T>, succeeded?: () => void): Promise<T> {
    const generation = this.generation!();
    generation.begin();
    const settled = this.count(work, succeeded);
    settled.then(() => generation.end(), () => generation.end());
    return settled;
  }

  /** Runs `work` on the device beneath (EBADF once this view is closed); counts a failure. */
  private count<T>(work: () => Promise<T>, succeeded?: () => void): Promise<T> {
    if (this.closed) return this.refused(new BlockError('EBADF', 'the export view is closed', { device: this.name }));
    let pending: Promise<T>;
    try {
      pending = work();
    } catch (error) {
      return this.refused(error);
    }
    return pending.then(
      (value) => {
        succeeded?.();
        return value;
      },
      this.failed,
    );
  }

  private refused<T>(error: unknown): Promise<T> {
    this.counters.errors++;
    return Promise.reject(error);
  }

  private readonly failed = (error: unknown): never => {
    this.counters.errors++;
    throw error;
  };
}
