/**
 * IO threads: a path's IO connections (cid >= 1) served by worker threads, on the server and on
 * the client, so the socket work of a session spreads over cores (the document's one connection
 * per core; issue 9 item 9). One event loop moving every byte of every connection is the limit
 * of one thread, as it is the NBD server's.
 *
 * Who does what. The owning thread (the server's, the client session's) keeps every handshake,
 * connection 0 (INFO, heartbeats), and all of a session's state: chunks, keys, at-most-once,
 * permits and re-issues, the RNBD server and its devices. Nothing about a session is shared or
 * split, so failover and key rotation are exactly what they are without threads. An IO thread
 * (rtrs-io-thread.ts) owns the sockets of the connections it was given: it reads and checks
 * frames (a large payload, a write on the server or read data on the client, received straight
 * into memory of its own, which then moves to the owning thread without a copy: a transfer) and
 * writes what the session sends: frames encoded on the owning thread, and (server) read answers
 * straight from the file (sendfile on the worker's socket: descriptors are the process's, so the
 * device's file is open there too). A server has its own IO threads; the client sessions of a
 * process share one set (IoThreads.forClients).
 *
 * Hand-over. On the server once a connection's CON_REQ put it in a path (before its CON_RSP goes
 * out, so the client sends nothing more on it yet), on the client once its CON_RSP came (the
 * server sends nothing on an IO connection before IO starts): RtrsLink.handOff gives its
 * descriptor (the adapter's ThreadSockets: dup, the old socket closed without a FIN) and any bytes
 * read and not parsed; the IO thread (cid - 1) mod N makes its socket over it. A connection that
 * cannot move (TLS, a frame half in, a runtime without ThreadSockets) stays where it is: threads
 * are a speed-up, never a condition.
 *
 * Measured (bench transport, 'ours IO threads', 2 threads each end, on the 2-core VM): 0.34x the
 * one-thread throughput reading, 0.33x writing (server CPU per GiB 0.99 vs 0.37 s reading, 1.96
 * vs 0.42 writing). Two processes with a main thread and two IO threads each share two cores,
 * every frame now also crosses threads (a message each way, the payload moved or copied once
 * more), and the main threads did not get lighter: most of their time is the session's own work
 * and the file's pwrite, not the sockets. Yet a profile of a threaded read run shows every thread
 * of both processes mostly idle, which neither CPU nor latency explains yet (the hops do add
 * latency: one read at queue depth 1 took 120-128 us with no threads, 221-312 us with the
 * server's IO threads and 417-793 us with both ends', 4 KiB and 124 KiB; but 144 requests are in
 * flight in the bench). To look at next: what a thread waits on between messages (a span's
 * trailer waiting for a write callback, the output queue's setImmediate flush in a worker), and
 * a hand-over without messages (Atomics.waitAsync over shared rings); batching the messages (one
 * postMessage per event-loop turn each way) was tried and changed nothing clear. Off by default (`ioThreads` 0, --rtrs-threads). Shared receive
 * slots (SharedArrayBuffer) instead of transfers were tried and measured no better: V8 copies
 * into shared memory byte-wise.
 *
 * Messages (structured clone; byte buffers are fresh and transferred, never views of shared
 * memory). To a thread: attach, send (a whole encoded frame), span (a frame header, the file
 * range, the IO response to follow and its EIO stand-in), close. From a thread: frame (header and
 * payload), closed (why), spanFailed (before or after some of it went out), spanReleased. A
 * connection's messages keep their order in each direction. A thread that dies closes its
 * connections (their paths close; the client fails over and reconnects, and new connections stay
 * on the server's thread).
 */
import type { Worker } from 'node:worker_threads';
import type { FileSpan } from '../devices/block-device.ts';
import type { BufferPool } from '../net/buffer-pool.ts';
import { assert } from '../assert.ts';
import { guarded, describeError } from '../net/fault-domain.ts';
import { loadAdapter } from '../adapter/index.ts';
import type { Crc32c, FrameHeader } from './rtrs-frame.ts';
import { frameBytes, frameHeader, type FrameLink, type RtrsLink, type SendFields } from './rtrs-link.ts';

export type ToThread =
  | { t: 'attach'; id: number; fd: number; unread: Uint8Array; digest: boolean; maxPayloadBytes: number; sinkOp: number }
  | { t: 'send'; id: number; bytes: Uint8Array }
  | { t: 'span'; id: number; spanId: number; header: Uint8Array; fd: number; fileOffsetBytes: number; lengthBytes: number; trailer: Uint8Array; standIn: Uint8Array }
  | { t: 'close'; id: number; why: string | null };

export type FromThread =
  | { t: 'frame'; id: number; header: FrameHeader; payload: Uint8Array }
  | { t: 'closed'; id: number; why: string | null }
  | { t: 'spanFailed'; spanId: number; afterSomeSent: boolean }
  | { t: 'spanReleased'; spanId: number }
  | { t: 'log'; line: string };

const { threadSockets, socketSend } = await loadAdapter();

/** Whether this runtime can serve connections on other threads at all. */
export const IO_THREADS_SUPPORTED = threadSockets !== null;

interface Handlers {
  onFrame(header: FrameHeader, payload: Uint8Array): void;
  onClose(why: string | null): void;
}

/** A connection an IO thread serves, as the session sees it (what RtrsLink is for a connection of this thread). */
export class ThreadLink implements FrameLink {
  private handlers: Handlers | null = null;
  private open = true;

  constructor(
    private readonly thread: IoThread,
    readonly id: number,
    private readonly digest: boolean,
    private readonly crc32c: Crc32c,
    private readonly pool: BufferPool | null,
  ) {}

  get isOpen(): boolean {
    return this.open;
  }

  /** The thread's socket sends file spans with zero copy (it reads them itself where it cannot). */
  get zeroCopy(): boolean {
    return socketSend !== null && !this.digest;
  }

  start(handlers: Handlers): void {
    this.handlers = handlers;
  }

  send(fields: SendFields, ...pieces: Uint8Array[]): void {
    if (!this.open) return;
    const bytes = frameBytes(fields, pieces, this.digest, this.crc32c);
    // The pieces were copied: pooled memory (a read's answer) goes back now, as a socket write would give it.
    if (this.pool !== null) for (const piece of pieces) this.pool.release(piece);
    this.thread.post({ t: 'send', id: this.id, bytes }, [bytes.buffer as ArrayBuffer]);
  }

  frameBytes(fields: SendFields, ...pieces: Uint8Array[]): Uint8Array {
    return frameBytes(fields, pieces, this.digest, this.crc32c);
  }

  sendSpan(fields: SendFields, span: FileSpan, trailer: Uint8Array, standIn: Uint8Array, onFailed: (afterSomeSent: boolean) => void): void {
    if (!this.open) return void span.release();
    const header = new Uint8Array(frameHeader(fields, span.lengthBytes, [], false, this.crc32c));
    const spanId = this.thread.lend(span, onFailed);
    // Both came from frameBytes (a buffer of their own each): they move to the thread.
    assert(ownsItsBuffer(trailer) && ownsItsBuffer(standIn) && trailer.buffer !== standIn.buffer, 'rtrs io threads: a span\'s trailer that is a view of other memory');
    this.thread.post(
      { t: 'span', id: this.id, spanId, header, fd: span.fd, fileOffsetBytes: span.fileOffsetBytes, lengthBytes: span.lengthBytes, trailer, standIn },
      [header.buffer as ArrayBuffer, trailer.buffer as ArrayBuffer, standIn.buffer as ArrayBuffer],
    );
  }

  close(why: string | null = null): void {
    if (!this.open) return;
    this.thread.post({ t: 'close', id: this.id, why });
    this.closed(why);
  }

  /** From the thread, or on its death. */
  closed(why: string | null): void {
    if (!this.open) return;
    this.open = false;
    this.thread.forget(this.id);
    this.handlers?.onClose(why);
  }

  /** A frame from the thread. */
  frame(header: FrameHeader, payload: Uint8Array): void {
    if (this.open) this.handlers?.onFrame(header, payload);
  }
}

/** True when `bytes` is the whole of a (non-shared) ArrayBuffer: it can be transferred. */
export function ownsItsBuffer(bytes: Uint8Array): boolean {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer);
}

/** One worker thread and the connections it serves. */
class IoThread {
  private readonly links = new Map<number, ThreadLink>();
  private readonly spans = new Map<number, { span: FileSpan; onFailed: (afterSomeSent: boolean) => void }>();
  private nextSpanId = 1;
  dead = false;

  constructor(
    readonly index: number,
    private readonly worker: Worker,
    private readonly log: (line: string) => void,
  ) {
    worker.on('message', (message: FromThread) => guarded(() => this.receive(message), (error) => this.log(`rtrs: IO thread ${index}: ${describeError(error)}`)));
    worker.on('error', (error) => this.die(`failed: ${describeError(error)}`));
    worker.on('exit', (code) => this.die(`exited (${code})`));
    // After the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref();
  }

  add(link: ThreadLink): void {
    this.links.set(link.id, link);
  }

  forget(id: number): void {
    this.links.delete(id);
  }

  post(message: ToThread, transfer: ArrayBuffer[] = []): void {
    if (!this.dead) this.worker.postMessage(message, transfer);
  }

  lend(span: FileSpan, onFailed: (afterSomeSent: boolean) => void): number {
    const spanId = this.nextSpanId++;
    this.spans.set(spanId, { span, onFailed });
    return spanId;
  }

  private receive(message: FromThread): void {
    switch (message.t) {
      case 'frame':
        return this.links.get(message.id)?.frame(message.header, message.payload);
      case 'closed':
        return this.links.get(message.id)?.closed(message.why);
      case 'spanFailed':
        return this.spans.get(message.spanId)?.onFailed(message.afterSomeSent);
      case 'spanReleased': {
        const lent = this.spans.get(message.spanId);
        this.spans.delete(message.spanId);
        return lent?.span.release();
      }
      case 'log':
        return this.log(message.line);
    }
  }

  /** The thread is gone (or stopped): its connections close, what it was lent comes back. */
  die(why: string, quiet = false): void {
    if (this.dead) return;
    this.dead = true;
    if (!quiet) this.log(`rtrs: IO thread ${this.index} ${why}: its connections close; new ones stay on the server's thread`);
    for (const link of [...this.links.values()]) link.closed(`its IO thread ${why}`);
    for (const { span } of this.spans.values()) span.release();
    this.spans.clear();
  }

  async stop(quiet = true): Promise<void> {
    this.die('stopped', quiet);
    await this.worker.terminate();
  }
}

/** How a connection is served once moved (takeOver). */
export interface TakeOverOptions {
  /** The largest payload a frame may carry. */
  maxPayloadBytes: number;
  /** Frames of this op with large payloads are received into memory of their own (the server: WRITE_IMM, IO requests; the client: WRITE, read data). */
  sinkOp: number;
  crc32c: Crc32c;
  /** Where pooled memory a sent frame carried goes back (the server's read answers); null: none is. */
  pool: BufferPool | null;
}

/** The processes' clients' IO threads (shared by every session; see IoThreads.forClients). */
let clientThreads: IoThreads | null = null;

/** IO threads: `count` workers, started at once; connections spread by cid. A server has its own; clients share one set. */
export class IoThreads {
  private readonly threads: IoThread[] = [];
  private nextLinkId = 1;

  /**
   * The IO threads every client session of this process shares (a process with many sessions
   * should not start threads for each): made with `count` threads by the first session that asks,
   * reused as they are by the rest; they never stop, and never keep the process alive.
   */
  static forClients(count: number, log: (line: string) => void): IoThreads {
    clientThreads ??= new IoThreads(count, log);
    return clientThreads;
  }

  constructor(
    count: number,
    private readonly log: (line: string) => void,
  ) {
    if (threadSockets === null) return;
    const moduleUrl = new URL(`./rtrs-io-thread.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);
    for (let index = 0; index < count; index++) this.threads.push(new IoThread(index, threadSockets.startThread(moduleUrl), log));
  }

  get count(): number {
    return this.threads.length;
  }

  /**
   * Moves connection `cid` (>= 1) of a path to its IO thread: the link to use from now on, or null
   * when it stays where it is (see the design note).
   */
  takeOver(link: RtrsLink, cid: number, options: TakeOverOptions): ThreadLink | null {
    if (threadSockets === null || cid < 1 || this.threads.length === 0) return null;
    const thread = this.threads[(cid - 1) % this.threads.length]!;
    if (thread.dead) return null;
    const moved = link.handOff((socket) => threadSockets.detach(socket));
    if (moved === null) return null;
    const id = this.nextLinkId++;
    const threadLink = new ThreadLink(thread, id, link.digest, options.crc32c, options.pool);
    thread.add(threadLink);
    const unread = moved.unread;
    thread.post(
      { t: 'attach', id, fd: moved.fd, unread, digest: link.digest, maxPayloadBytes: options.maxPayloadBytes, sinkOp: options.sinkOp },
      unread.length > 0 ? [unread.buffer as ArrayBuffer] : [],
    );
    return threadLink;
  }

  /** Alive threads (a dead one takes no new connection). */
  get aliveCount(): number {
    return this.threads.filter((thread) => !thread.dead).length;
  }

  /**
   * Stops thread `index` as if it had died: its connections close (their paths close and the
   * clients reconnect), and the connections it would have taken stay on the owning thread.
   */
  async stopThread(index: number): Promise<void> {
    await this.threads[index]?.stop(false);
  }

  async stop(): Promise<void> {
    await Promise.all(this.threads.map((thread) => thread.stop()));
  }
}
