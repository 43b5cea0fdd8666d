/**
 * OutputQueue: frames waiting to go out on one stream socket (a server's replies, a client's
 * requests). Protocol-neutral, shared by servers and clients (runtime/net/). Frames queued while
 * the event loop works through one batch of input (the socket read, the requests it carried, the
 * device completions that settled meanwhile) leave together in a check-phase callback
 * (setImmediate): small frames are copied into one buffer and written at once, instead of one
 * socket write per reply, which is what makes small random reads at queue depth cheap. Large frames (read data) are written as they are; a batch
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
 * the reply went out, the frame's error reply goes instead; after, the stream cannot be mended: the
 * queue closes and `onBroken` is told (the connection hangs up). A frame's trailer (bytes after its data: RTRS's IO response) is written
 * the ordinary way once header and data went out by fd (so the next file frame waits for that
 * write's callback), or goes behind the data in the bytes read and written; the error reply stands
 * in for all of it; when the stream breaks after part went out, the frame's `cut` is told. Where zero copy is not available
 * a file frame is read and written the ordinary way from the start. A write that fails, or a socket found
 * destroyed, closes the queue: what is queued is released, not read.
 *
 * We hand the socket at most about SOCKET_QUEUE_BYTES beyond what the kernel has taken, and keep
 * the rest here until 'drain'. Node would queue any amount at no cost, but Bun copies and shifts
 * its unsent remainder on every partial send, which made a Unix-socket copy 5x slower; holding the
 * queue here costs Node nothing measurable. Frames over pooled memory (read replies) go back to the
 * pool once the socket has taken them, or once copied; spans are released once sent or dropped.
 *
 * Faults (fault-domain.ts): what runs from the event loop here ('drain', write callbacks, the
 * scheduled flush, a span read settling) runs guarded; an exception there (a span whose release
 * throws, a bug of ours) closes the queue and tells `onBroken`, so the owner closes its connection
 * and the process goes on. The public methods throw to their caller, who guards its own calls.
 *
 * States (`state`; every change goes through `enter`, which asserts the edge is in EDGES):
 *
 *     idle ──push──► scheduled ──setImmediate──► flush          flush ends in one of
 *       idle             everything handed to the socket (onEmpty runs)
 *       blocked          the socket holds SOCKET_QUEUE_BYTES unsent: flush again on 'drain'
 *       awaiting-writes  a file frame at the head waits for earlier socket.write callbacks: flush
 *                        again when the last one runs
 *       reading          the rest of a file frame is being read; nothing else goes out: flush again
 *                        once it is written
 *     finish(done): every later flush ignores SOCKET_QUEUE_BYTES and writes behind pending writes;
 *       finishing        finish() came while reading (or a read began after it): flush once written
 *       finished         nothing left after finish(): done ran (final)
 *     closed            close(), a failed write or a destroyed socket: queued frames released (final)
 *
 * A push in idle schedules one flush; in idle or scheduled it flushes at once once FLUSH_NOW_BYTES
 * are queued; in any other open state it only queues, because the state's own event flushes. `scheduled` holds exactly one
 * pending setImmediate; leaving it any other way cancels it. After finished or closed, pushes are
 * released, not sent.
 */
import type { Socket } from 'node:net';
import { clearImmediate, setImmediate } from 'node:timers';
import { socketHandleFd, type SocketSend } from '../adapter/types.ts';
import { assert } from '../assert.ts';
import type { BufferPool } from './buffer-pool.ts';
import { describeError, guarded } from './fault-domain.ts';
import { FileFrame, releaseFrame, type Frame } from './file-frame.ts';

/** A batch this large is written without waiting for the end of the turn. */
const FLUSH_NOW_BYTES = 1 << 20;
/** Consecutive frames smaller than this are coalesced into one buffer (a copy) and written once. */
const COALESCE_BYTES = 64 * 1024;
/** Bytes the socket may hold unsent before we stop handing it more (see above). */
const SOCKET_QUEUE_BYTES = 256 * 1024;

export type OutputState = 'idle' | 'scheduled' | 'blocked' | 'awaiting-writes' | 'reading' | 'finishing' | 'finished' | 'closed';

/** What a flush may end in, from a state that may flush. */
const FLUSH_ENDS: readonly OutputState[] = ['idle', 'blocked', 'awaiting-writes', 'reading', 'finishing', 'finished', 'closed'];
/** The legal edges of the state machine (see the design note). */
const EDGES: Readonly<Record<OutputState, readonly OutputState[]>> = {
  idle: ['scheduled', ...FLUSH_ENDS],
  scheduled: FLUSH_ENDS,
  blocked: FLUSH_ENDS,
  'awaiting-writes': FLUSH_ENDS,
  // The read settles and the flush after it ends anywhere but finished (no finish() came), or
  // finish() turns it into finishing.
  reading: ['idle', 'blocked', 'awaiting-writes', 'reading', 'finishing', 'closed'],
  finishing: ['finishing', 'finished', 'closed'],
  finished: ['closed'],
  closed: [],
};
/** States in which flush() hands frames to the socket (in the others an event of theirs will). */
const FLUSHABLE: ReadonlySet<OutputState> = new Set(['idle', 'scheduled', 'blocked', 'awaiting-writes']);

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
  private current: OutputState = 'idle';
  /** The pending setImmediate while scheduled. */
  private timer: ReturnType<typeof setImmediate> | null = null;
  /** socket.write calls whose callback has not run yet. */
  private writesPending = 0;
  /** finish()'s callback, from finish() until it runs (finished) or the queue closes. */
  private onFinished: (() => void) | null = null;
  private readonly send: SocketSend | null;
  /** The socket's fd for zero-copy sends, or -1. */
  private readonly fd: number;
  /** Called after a flush that left nothing queued here. */
  onEmpty: (() => void) | null = null;
  /**
   * Called once the queue has closed because the stream is broken: a file frame could not be read
   * after part of it was sent, or something run from the event loop here threw. `why` is one line.
   */
  onBroken: ((why: string) => void) | null = null;
  /** The guard for event-loop entry points (see the design note). */
  private readonly fault = (error: unknown): void => this.broken(`internal error: ${describeError(error)}`);

  constructor(
    private readonly socket: Socket,
    private readonly pool: BufferPool,
    options: OutputQueueOptions = {},
  ) {
    this.send = options.socketSend ?? null;
    this.fd = this.send?.fdOf(socket) ?? -1;
    if (this.fd >= 0 && options.sendBufferBytes) this.send!.setSendBufferBytes(this.fd, options.sendBufferBytes);
    socket.on('drain', () => {
      if (this.current === 'blocked') guarded(() => this.pump(), this.fault);
    });
  }

  get state(): OutputState {
    return this.current;
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
    const state = this.current;
    if (state === 'closed' || state === 'finished') {
      releaseFrame(frame, this.pool);
      return;
    }
    this.frames.push(frame);
    this.queuedBytes += frame.length;
    if (state !== 'idle' && state !== 'scheduled') return; // 'drain', a write callback or the read will flush
    if (this.queuedBytes >= FLUSH_NOW_BYTES) this.pump();
    else if (state === 'idle') {
      this.enter('scheduled');
      this.timer = setImmediate(this.flushLater);
    }
  }

  /** Hands queued frames to the socket now, if this state lets a flush run (see the design note). */
  flush(): void {
    if (FLUSHABLE.has(this.current)) this.pump();
  }

  /**
   * Writes everything queued, past the usual limits, then calls `done` (which ends the socket);
   * `done` is not called if the queue is closed first.
   */
  finish(done: () => void): void {
    if (this.current === 'closed') return;
    assert(this.onFinished === null && this.current !== 'finished', `output queue: finish() twice (${this.current})`);
    this.onFinished = done;
    if (this.current === 'reading') this.enter('finishing'); // the read's completion flushes
    else this.pump();
  }

  /**
   * Drops what is queued (releasing spans and pooled memory); later pushes are dropped too. Every
   * frame is released even if releasing one throws; the first such error is thrown after.
   */
  close(): void {
    if (this.current === 'closed') return;
    this.enter('closed');
    this.onFinished = null;
    const { frames, headIndex } = this;
    this.frames = [];
    this.headIndex = 0;
    this.queuedBytes = 0;
    let failure: { error: unknown } | null = null;
    for (let i = headIndex; i < frames.length; i++) {
      try {
        releaseFrame(frames[i]!, this.pool);
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure !== null) throw failure.error;
  }

  /** The stream cannot go on: close (whatever a release throws is part of the same fault) and say why. */
  private broken(why: string): void {
    if (this.current === 'closed') return;
    try {
      this.close();
    } catch {
      // the queue is closed all the same; `why` is the fault to report
    }
    this.onBroken?.(why);
  }

  private enter(next: OutputState): void {
    const from = this.current;
    assert(EDGES[from].includes(next), `output queue: ${from} -> ${next}`);
    if (from === 'scheduled' && this.timer !== null) {
      clearImmediate(this.timer);
      this.timer = null;
    }
    this.current = next;
  }

  /**
   * The flush itself: hands queued frames to the socket until it holds SOCKET_QUEUE_BYTES unsent
   * (unless finishing), and enters the state that says what comes next.
   */
  private pump(): void {
    const from = this.current;
    assert(FLUSHABLE.has(from) || from === 'reading' || from === 'finishing', `output queue: flush in ${from}`);
    if (this.socket.destroyed) {
      this.close();
      return;
    }
    const ending = this.onFinished !== null;
    const frames = this.frames;
    while (this.headIndex < frames.length) {
      if (!ending && this.socket.writableLength >= SOCKET_QUEUE_BYTES) {
        this.enter('blocked'); // a 'drain' is sure to come: the socket is over its high-water mark
        return;
      }
      const first = frames[this.headIndex]!;
      if (first instanceof FileFrame) {
        if (this.fd >= 0 && this.writesPending > 0 && !ending) {
          this.enter('awaiting-writes');
          return;
        }
        frames[this.headIndex++] = EMPTY;
        this.queuedBytes -= first.length;
        if (!this.sendFileFrame(first, ending)) return; // reading the rest: its completion flushes
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
    this.frames = [];
    this.headIndex = 0;
    const finished = this.onFinished;
    this.onFinished = null;
    this.enter(finished === null ? 'idle' : 'finished');
    this.onEmpty?.();
    finished?.();
  }

  /**
   * Sends a file frame: zero copy for as much as the socket takes at once (only when nothing we
   * wrote earlier is pending, on the socket's own fd). Returns true when it all went; otherwise
   * the rest is being read (state reading or finishing) and is written, then flushed after, once
   * read.
   */
  private sendFileFrame(frame: FileFrame, ending: boolean): boolean {
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
    const { trailer } = frame;
    if (sentBytes === header.length + span.lengthBytes) {
      span.release();
      if (trailer.length > 0) this.write(trailer); // the socket's own queue is empty: it follows in order
      return true;
    }
    const rest = this.pool.take(frame.length - sentBytes);
    const headerRestBytes = header.length - headerSentBytes;
    if (headerRestBytes > 0) rest.set(header.subarray(headerSentBytes), 0);
    if (trailer.length > 0) rest.set(trailer, rest.length - trailer.length);
    let reading: Promise<void>;
    try {
      reading = span.read(dataSentBytes, rest.subarray(headerRestBytes, rest.length - trailer.length));
    } catch (error) {
      reading = Promise.reject(error);
    }
    this.enter(ending ? 'finishing' : 'reading');
    const readDone = (): void => {
      if (this.current === 'closed') {
        this.pool.release(rest);
        span.release();
        return;
      }
      this.write(rest);
      span.release();
      this.pump();
    };
    const readFailed = (error: unknown): void => {
      this.pool.release(rest);
      if (this.current === 'closed') {
        span.release();
        return;
      }
      if (sentBytes > 0) {
        span.release();
        frame.cut?.(error);
        this.broken(`a read reply was cut short: ${describeError(error)}`); // part of it went out: the stream cannot be mended
        return;
      }
      this.write(frame.failed(error));
      span.release();
      this.pump();
    };
    reading.then(
      () => guarded(readDone, this.fault),
      (error: unknown) => guarded(() => readFailed(error), this.fault),
    );
    return false;
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
      guarded(() => {
        if (error) this.close(); // the socket failed: send nothing more, not even by fd
        else if (this.writesPending === 0 && this.current === 'awaiting-writes') this.pump();
      }, this.fault);
    });
  }

  private readonly flushLater = (): void => {
    this.timer = null;
    if (this.current === 'scheduled') guarded(() => this.pump(), this.fault);
  };
}

const EMPTY = new Uint8Array(0);
