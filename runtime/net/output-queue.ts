/**
 * OutputQueue: frames waiting to go out on one stream socket (a server's replies, a client's
 * requests). Protocol-neutral, shared by servers and clients (runtime/net/). Frames queued while
 * the event loop works through one batch of input (the socket read, the requests it carried, the
 * device completions that settled meanwhile) leave together in a check-phase callback (setImmediate): small frames are copied into
 * one buffer and written at once, instead of one socket write per reply, which is what makes small
 * random reads at queue depth cheap. Large frames (read data) are written as they are; a batch
 * that grows past FLUSH_NOW_BYTES goes at once, so large reads stream.
 *
 * File frames (file-frame.ts: a read reply whose data is still in a file) go out with zero copy
 * where the runtime can (SocketSend: Node, Bun): the header with send(MSG_MORE), the data with
 * sendfile, straight from the page cache to the socket, with no pread into our memory and no copy
 * out of it (bench serve: about 3x less CPU per GiB than pread + write). Those calls bypass the
 * runtime's own write queue, so a file frame waits at the head of the queue until every earlier
 * socket.write has completed (its callback ran), and they run only on a socket that is not
 * destroyed and still has the fd we started with (a destroyed socket's fd number may already be
 * another connection's). Whatever the socket does not take at once (it is full: EAGAIN) is read
 * from the span (span.read: in this turn when small, through the thread pool when large) and
 * written the ordinary way; nothing else goes out meanwhile. If that read fails before any byte of
 * the reply went out, the frame's error reply goes instead; after, the stream cannot be mended and
 * `onBroken` is told (the connection hangs up). Where zero copy is not available a file frame is
 * read and written the ordinary way from the start. A write that fails, or a socket found
 * destroyed, closes the queue: what is queued is released, not read.
 *
 * We hand the socket at most about SOCKET_QUEUE_BYTES beyond what the kernel has taken, and keep
 * the rest here until 'drain'. Node would queue any amount at no cost, but Bun copies and shifts
 * its unsent remainder on every partial send, which made a Unix-socket copy 5x slower; holding the
 * queue here costs Node nothing measurable. Frames over pooled memory (read replies) go back to the
 * pool once the socket has taken them, or once copied; spans are released once sent or dropped.
 */
import type { Socket } from 'node:net';
import { setImmediate } from 'node:timers';
import { socketHandleFd, type SocketSend } from '../adapter/types.ts';
import type { BufferPool } from './buffer-pool.ts';
import { FileFrame, releaseFrame, type Frame } from './file-frame.ts';

/** A batch this large is written without waiting for the end of the turn. */
const FLUSH_NOW_BYTES = 1 << 20;
/** Consecutive frames smaller than this are coalesced into one buffer (a copy) and written once. */
const COALESCE_BYTES = 64 * 1024;
/** Bytes the socket may hold unsent before we stop handing it more (see above). */
const SOCKET_QUEUE_BYTES = 256 * 1024;

export interface OutputQueueOptions {
  /** Zero-copy sends, when the runtime has them. */
  socketSend?: SocketSend | null;
  /** Ask the kernel for this send buffer (SO_SNDBUF) when zero copy is on; 0 leaves it alone. */
  sendBufferBytes?: number;
}

export class OutputQueue {
  private frames: Frame[] = [];
  private headIndex = 0;
  private queuedBytes = 0;
  private scheduled = false;
  private blocked = false;
  private closed = false;
  /** finish() was called: write everything now, whatever the socket holds. */
  private ending = false;
  /** socket.write calls whose callback has not run yet. */
  private writesPending = 0;
  /** A file frame at the head waits for writesPending to reach 0. */
  private waitingForEmpty = false;
  /** The rest of a file frame is being read; nothing else goes out until it is written. */
  private busy = false;
  /** finish()'s callback, run once everything is written. */
  private finished: (() => void) | null = null;
  private readonly send: SocketSend | null;
  /** The socket's fd for zero-copy sends, or -1. */
  private readonly fd: number;
  /** Called after a flush that left nothing queued here. */
  onEmpty: (() => void) | null = null;
  /** Called when a file frame could not be read after part of it was sent: the stream is broken. */
  onBroken: ((error: unknown) => void) | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly pool: BufferPool,
    options: OutputQueueOptions = {},
  ) {
    this.send = options.socketSend ?? null;
    this.fd = this.send?.fdOf(socket) ?? -1;
    if (this.fd >= 0 && options.sendBufferBytes) this.send!.setSendBufferBytes(this.fd, options.sendBufferBytes);
    socket.on('drain', () => {
      this.blocked = false;
      this.flush();
    });
  }

  /** File frames can go out with zero copy on this socket. */
  get zeroCopy(): boolean {
    return this.fd >= 0;
  }

  /** Bytes queued here or in the socket and not yet taken by the kernel. */
  get unsentBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  push(frame: Frame): void {
    if (this.closed) {
      releaseFrame(frame, this.pool);
      return;
    }
    this.frames.push(frame);
    this.queuedBytes += frame.length;
    if (this.blocked || this.waitingForEmpty || this.busy) return; // 'drain', a write callback or the read will flush
    if (this.queuedBytes >= FLUSH_NOW_BYTES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushLater);
    }
  }

  /** Hands queued frames to the socket until it holds SOCKET_QUEUE_BYTES unsent. */
  flush(): void {
    if (this.closed || this.busy) return;
    if (this.socket.destroyed) {
      this.close();
      return;
    }
    const frames = this.frames;
    while (this.headIndex < frames.length) {
      if (!this.ending && this.socket.writableLength >= SOCKET_QUEUE_BYTES) {
        this.blocked = true; // a 'drain' is sure to come: the socket is over its high-water mark
        break;
      }
      const first = frames[this.headIndex]!;
      if (first instanceof FileFrame) {
        if (this.fd >= 0 && this.writesPending > 0 && !this.ending) {
          this.waitingForEmpty = true;
          break;
        }
        frames[this.headIndex++] = EMPTY;
        this.queuedBytes -= first.length;
        this.sendFileFrame(first);
        if (this.closed || this.busy) return; // the rest of the frame is being read: flush() again after
        continue;
      }
      let runEnd = this.headIndex + 1;
      let runBytes = first.length;
      while (runEnd < frames.length) {
        const next = frames[runEnd]!;
        if (next instanceof FileFrame || runBytes + next.length > COALESCE_BYTES) break;
        runBytes += next.length;
        runEnd++;
      }
      this.write(runEnd === this.headIndex + 1 ? first : this.coalesce(this.headIndex, runEnd, runBytes));
      for (let i = this.headIndex; i < runEnd; i++) frames[i] = EMPTY; // let the collector have them
      this.headIndex = runEnd;
      this.queuedBytes -= runBytes;
    }
    if (this.headIndex === frames.length) {
      this.frames = [];
      this.headIndex = 0;
      this.onEmpty?.();
      const finished = this.finished;
      this.finished = null;
      finished?.();
    } else if (this.headIndex > 1024) {
      this.frames = frames.slice(this.headIndex);
      this.headIndex = 0;
    }
  }

  /**
   * Writes everything queued, past the usual limits, then calls `done` (which ends the socket);
   * `done` is not called if the queue is closed first.
   */
  finish(done: () => void): void {
    this.ending = true;
    this.waitingForEmpty = false;
    this.finished = done;
    if (this.busy) return; // the file frame being read calls flush() when written
    this.flush();
  }

  /** Drops what is queued (releasing spans and pooled memory); later pushes are dropped too. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.finished = null;
    for (let i = this.headIndex; i < this.frames.length; i++) releaseFrame(this.frames[i]!, this.pool);
    this.frames = [];
    this.headIndex = 0;
    this.queuedBytes = 0;
  }

  /**
   * Sends a file frame: zero copy for as much as the socket takes at once (only when nothing we
   * wrote earlier is pending, on the socket's own fd), then the rest read and written (busy until
   * then).
   */
  private sendFileFrame(frame: FileFrame): void {
    const { header, span } = frame;
    let headerSentBytes = 0;
    let dataSentBytes = 0;
    try {
      if (this.fd >= 0 && this.writesPending === 0 && socketHandleFd(this.socket) === this.fd) {
        const send = this.send!;
        headerSentBytes = send.sendMore(this.fd, header);
        if (headerSentBytes === header.length) {
          while (dataSentBytes < span.lengthBytes) {
            const movedBytes = send.sendFile(this.fd, span.fd, span.fileOffsetBytes + dataSentBytes, span.lengthBytes - dataSentBytes);
            if (movedBytes <= 0) break; // the socket is full (or failed: the ordinary write will say so)
            dataSentBytes += movedBytes;
          }
        }
      }
    } catch (error) {
      span.release(); // a binding that throws is a bug; do not leave the device held open
      throw error;
    }
    const sentBytes = headerSentBytes + dataSentBytes;
    if (sentBytes === frame.length) {
      span.release();
      return;
    }
    const rest = this.pool.take(frame.length - sentBytes);
    const headerRestBytes = header.length - headerSentBytes;
    if (headerRestBytes > 0) rest.set(header.subarray(headerSentBytes), 0);
    let reading: Promise<void>;
    try {
      reading = span.read(dataSentBytes, rest.subarray(headerRestBytes));
    } catch (error) {
      reading = Promise.reject(error);
    }
    this.busy = true;
    reading.then(
      () => {
        span.release();
        this.busy = false;
        if (this.closed) this.pool.release(rest);
        else this.write(rest);
        this.flush();
      },
      (error: unknown) => {
        span.release();
        this.pool.release(rest);
        this.busy = false;
        if (this.closed) return;
        if (sentBytes > 0) {
          this.onBroken?.(error);
          return;
        }
        this.write(frame.failed(error));
        this.flush();
      },
    );
  }

  private coalesce(start: number, end: number, totalBytes: number): Uint8Array {
    const joined = Buffer.allocUnsafe(totalBytes);
    let at = 0;
    for (let i = start; i < end; i++) {
      const frame = this.frames[i] as Uint8Array;
      joined.set(frame, at);
      at += frame.length;
      this.pool.release(frame);
    }
    return joined;
  }

  private write(bytes: Uint8Array): void {
    this.writesPending++;
    const pooled = this.pool.owns(bytes);
    this.socket.write(bytes, (error?: Error | null) => {
      if (pooled) this.pool.release(bytes);
      this.writesPending--;
      if (error) {
        this.close(); // the socket failed: send nothing more, not even by fd
        return;
      }
      if (this.writesPending === 0 && this.waitingForEmpty) {
        this.waitingForEmpty = false;
        this.flush();
      }
    });
  }

  private readonly flushLater = (): void => {
    this.scheduled = false;
    if (!this.blocked && !this.waitingForEmpty && !this.busy) this.flush();
  };
}

const EMPTY = new Uint8Array(0);
