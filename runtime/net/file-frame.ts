/**
 * Frames as an output queue (output-queue.ts) sends them: plain bytes, or a FileFrame, whose data
 * stays in a file until the socket takes it: a header in memory, then a FileSpan of the device.
 * Protocol-neutral: the protocol builds the header, and says (`failed`) what to send instead when
 * the span cannot be read before any byte of the frame went out (NBD: an error reply for that
 * handle). The queue sends a FileFrame with sendfile when it can (zero copy: the kernel moves
 * page-cache pages to the socket), else reads the span into a buffer. Ownership: whoever drops a
 * frame without sending it releases what it holds (`releaseFrame`: the span, so the device can
 * close; pooled memory, back to its BufferPool).
 */
import type { FileSpan } from '../devices/block-device.ts';
import type { BufferPool } from './buffer-pool.ts';

export class FileFrame {
  constructor(
    readonly header: Uint8Array,
    readonly span: FileSpan,
    /** The error reply to send instead (of the whole frame, trailer too), when the span cannot be read before any of it went out. */
    readonly failed: (error: unknown) => Uint8Array,
    /** Bytes that follow the data (RTRS: the IO response after the data), sent only if the data is. */
    readonly trailer: Uint8Array = EMPTY_TRAILER,
    /** Told when the span failed after part of the frame went out (the stream then breaks: no stand-in can follow). */
    readonly cut: ((error: unknown) => void) | null = null,
  ) {}

  get length(): number {
    return this.header.length + this.span.lengthBytes + this.trailer.length;
  }
}

const EMPTY_TRAILER = new Uint8Array(0);

/** One reply as the connection queues it: bytes, or a header and file data. */
export type Frame = Uint8Array | FileFrame;

/** Gives back what an unsent frame holds: its span, or its pooled memory. */
export function releaseFrame(frame: Frame, pool: BufferPool): void {
  if (frame instanceof FileFrame) frame.span.release();
  else pool.release(frame);
}
