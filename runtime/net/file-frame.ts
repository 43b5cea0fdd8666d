/**
 * A read reply whose data stays in a file until the socket takes it: the reply header in memory,
 * then a FileSpan of the device. The output queue sends it with sendfile when it can (zero copy:
 * the kernel moves page-cache pages to the socket), else reads the span into a buffer. Whoever
 * drops a frame without sending it releases its span (`releaseFrame`), so the device can close.
 */
import type { FileSpan } from '../devices/block-device.ts';
import type { BufferPool } from './buffer-pool.ts';

export class FileFrame {
  constructor(
    readonly header: Uint8Array,
    readonly span: FileSpan,
    /** The error reply to send instead, when the span cannot be read before any of it went out. */
    readonly failed: (error: unknown) => Uint8Array,
  ) {}

  get length(): number {
    return this.header.length + this.span.lengthBytes;
  }
}

/** One reply as the connection queues it: bytes, or a header and file data. */
export type Frame = Uint8Array | FileFrame;

/** Gives back what an unsent frame holds: its span, or its pooled memory. */
export function releaseFrame(frame: Frame, pool: BufferPool): void {
  if (frame instanceof FileFrame) frame.span.release();
  else pool.release(frame);
}
