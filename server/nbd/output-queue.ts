/**
 * Replies waiting to go out on one socket. Frames queued while the event loop works through one
 * batch of input (the socket read, the requests it carried, the device completions that settled
 * meanwhile) leave together in a check-phase callback (setImmediate): small frames are copied into
 * one buffer and written at once, instead of one socket write per reply, which is what makes small
 * random reads at queue depth cheap. Large frames (read data) are written as they are; a batch
 * that grows past FLUSH_NOW_BYTES goes at once, so large reads stream.
 *
 * We hand the socket at most about SOCKET_QUEUE_BYTES beyond what the kernel has taken, and keep
 * the rest here until 'drain'. Node would queue any amount at no cost, but Bun copies and shifts
 * its unsent remainder on every partial send, which made a Unix-socket copy 5x slower; holding the
 * queue here costs Node nothing measurable. Frames over pooled memory (read replies) go back to the
 * pool once the socket has taken them, or once copied.
 */
import type { Socket } from 'node:net';
import { setImmediate } from 'node:timers';
import type { BufferPool } from './buffer-pool.ts';

/** A batch this large is written without waiting for the end of the turn. */
const FLUSH_NOW_BYTES = 1 << 20;
/** Consecutive frames smaller than this are coalesced into one buffer (a copy) and written once. */
const COALESCE_BYTES = 64 * 1024;
/** Bytes the socket may hold unsent before we stop handing it more (see above). */
const SOCKET_QUEUE_BYTES = 256 * 1024;

export class OutputQueue {
  private frames: Uint8Array[] = [];
  private headIndex = 0;
  private queuedBytes = 0;
  private scheduled = false;
  private blocked = false;
  private closed = false;
  /** Called after a flush that left nothing queued here. */
  onEmpty: (() => void) | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly pool: BufferPool,
  ) {
    socket.on('drain', () => {
      this.blocked = false;
      this.flush();
    });
  }

  /** Bytes queued here or in the socket and not yet taken by the kernel. */
  get unsentBytes(): number {
    return this.queuedBytes + this.socket.writableLength;
  }

  push(frame: Uint8Array): void {
    if (this.closed) return;
    this.frames.push(frame);
    this.queuedBytes += frame.length;
    if (this.blocked) return; // 'drain' will flush
    if (this.queuedBytes >= FLUSH_NOW_BYTES) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushLater);
    }
  }

  /** Hands queued frames to the socket until it holds SOCKET_QUEUE_BYTES unsent. */
  flush(): void {
    if (this.closed) return;
    const frames = this.frames;
    while (this.headIndex < frames.length) {
      if (this.socket.writableLength >= SOCKET_QUEUE_BYTES) {
        this.blocked = true; // a 'drain' is sure to come: the socket is over its high-water mark
        break;
      }
      const first = frames[this.headIndex]!;
      let runEnd = this.headIndex + 1;
      let runBytes = first.length;
      while (runEnd < frames.length && runBytes + frames[runEnd]!.length <= COALESCE_BYTES) runBytes += frames[runEnd++]!.length;
      if (runEnd === this.headIndex + 1) this.write(first);
      else this.socket.write(this.coalesce(this.headIndex, runEnd, runBytes));
      for (let i = this.headIndex; i < runEnd; i++) frames[i] = EMPTY; // let the collector have them
      this.headIndex = runEnd;
      this.queuedBytes -= runBytes;
    }
    if (this.headIndex === frames.length) {
      this.frames = [];
      this.headIndex = 0;
      this.onEmpty?.();
    } else if (this.headIndex > 1024) {
      this.frames = frames.slice(this.headIndex);
      this.headIndex = 0;
    }
  }

  /** Drops what is queued; later pushes are ignored. */
  close(): void {
    this.closed = true;
    this.frames = [];
    this.headIndex = 0;
    this.queuedBytes = 0;
  }

  private coalesce(start: number, end: number, totalBytes: number): Uint8Array {
    const joined = Buffer.allocUnsafe(totalBytes);
    let at = 0;
    for (let i = start; i < end; i++) {
      const frame = this.frames[i]!;
      joined.set(frame, at);
      at += frame.length;
      this.pool.release(frame);
    }
    return joined;
  }

  private write(frame: Uint8Array): void {
    if (this.pool.owns(frame)) this.socket.write(frame, () => this.pool.release(frame));
    else this.socket.write(frame);
  }

  private readonly flushLater = (): void => {
    this.scheduled = false;
    if (!this.blocked) this.flush();
  };
}

const EMPTY = new Uint8Array(0);
