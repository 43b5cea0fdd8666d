/**
 * RtrsLink: one RTRS connection (the document's QP) as a TCP or TLS stream of frames
 * (rtrs-frame.ts), for the client and the server alike. It knows frames, not sessions: the owner
 * (a client path or a server connection) gets each whole frame, header and payload, in order, and
 * sends frames; everything about what a frame means is the owner's.
 *
 * Reading: bytes go into an InputBuffer; a frame is handed on once its header and whole payload
 * are in: copied as it arrives into the destination the owner names (sinkFor), else whole, as a
 * view of the socket chunk it lies in ('data' events) or a copy (a reused read buffer, where the
 * runtime offers SocketReads: connectLink, acceptLink). The header is decoded
 * against `maxPayloadBytes`, which the owner sets for each state (tiny before the handshake, a
 * chunk once connected), so a peer cannot make us buffer more than that. A frame that fails to
 * decode or whose digest is wrong closes this link, with one reason: the rest of the process goes
 * on (one link is the fault domain: runtime/net/fault-domain.ts).
 *
 * Writing: frames go through the shared OutputQueue (coalescing small frames, streaming large
 * ones); a payload given as several pieces (data, user header, message) is sent without joining
 * them. With `digest` on, every frame carries a CRC32C over its header and payload, and every frame
 * received must carry a right one.
 *
 * States: open -> closed (final), by `close` (what is queued is dropped) or `end` (what is queued
 * goes out first: a refusal). `closed` resolves once the socket is gone; `onClose` is told once,
 * with the reason (null for an orderly close by us).
 */
import type { NetConnectOpts, Socket } from 'node:net';
import { connect as netConnect } from 'node:net';
import { loadAdapter } from '../adapter/index.ts';
import { assert } from '../assert.ts';
import { BufferPool } from '../net/buffer-pool.ts';
import { describeError, guarded } from '../net/fault-domain.ts';
import type { FileSpan } from '../devices/block-device.ts';
import { FileFrame } from '../net/file-frame.ts';
import { InputBuffer } from '../net/input-buffer.ts';
import { OutputQueue } from '../net/output-queue.ts';
import {
  type Crc32c, decodeFrameHeader, digestProblem, encodeFrameHeader, FRAME_FLAG_DIGEST, FRAME_HEADER_BYTES, frameDigest, type FrameHeader,
} from './rtrs-frame.ts';
import { smallBytes, smallCopy } from '../net/small-bytes.ts';

export interface LinkHandlers {
  /**
   * Optional: a buffer of exactly `header.lengthBytes` for this frame's payload to be copied into
   * as it arrives, piece by piece from the socket's chunks (a read's data lands in the reader's
   * buffer with one copy, never gathered first); null for the usual whole-frame delivery. If the
   * link fails halfway, the buffer holds part of the payload.
   */
  sinkFor?(header: FrameHeader): Uint8Array | null;
  /** One whole frame. The owner may keep the payload (the link never hands on a view of memory that is read into again). */
  onFrame(header: FrameHeader, payload: Uint8Array): void;
  /** The link closed: `why` is null when we closed it ourselves without an error. */
  onClose(why: string | null): void;
}

/**
 * What a session sends through and closes: an RtrsLink, or a connection another thread serves
 * (rtrs-io-threads.ts ThreadLink). The members mean what RtrsLink's do.
 */
export interface FrameLink {
  readonly isOpen: boolean;
  readonly zeroCopy: boolean;
  send(fields: SendFields, ...pieces: Uint8Array[]): void;
  frameBytes(fields: SendFields, ...pieces: Uint8Array[]): Uint8Array;
  sendSpan(fields: SendFields, span: FileSpan, trailer: Uint8Array, standIn: Uint8Array, onFailed: (afterSomeSent: boolean) => void): void;
  close(why?: string | null): void;
}

export interface SendFields {
  op: number;
  imm?: number;
  addr?: bigint;
  key?: number;
  seq?: number;
}

const EMPTY = new Uint8Array(0);
const { socketReads, socketSend } = await loadAdapter();
/**
 * Where the runtime offers SocketReads, every plain-TCP link of this thread reads through this one
 * buffer: each read is handled whole (frames handed on, the rest copied) before the next one.
 */
const READ_BUFFER_BYTES = 256 * 1024;
let sharedReadBuffer: Uint8Array | null = null;
const readBuffer = (): Uint8Array => (sharedReadBuffer ??= new Uint8Array(READ_BUFFER_BYTES));

type ReadInto = (buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void) => Socket | null;

/**
 * A link over the socket `readInto` makes to read through this thread's shared buffer (every read
 * handed to the link), or null when it makes none; if the link cannot be built, that socket is
 * destroyed. What connectLink, acceptLink and attachLink share.
 */
function readingLink(readInto: ReadInto, crc32c: Crc32c, pool: BufferPool): RtrsLink | null {
  let link: RtrsLink | null = null;
  // No read comes before the link exists (the socket is new, or paused): `?.` only in case.
  const socket = readInto(readBuffer(), (bytes) => link?.receive(bytes));
  if (socket === null) return null;
  try {
    link = new RtrsLink(socket, crc32c, pool, true);
  } catch (error) {
    socket.destroy();
    throw error;
  }
  return link;
}

/**
 * A link over a new TCP connection (net.connect `options`), reading through the shared buffer
 * where the runtime can. TLS connections are made by the caller and given to `new RtrsLink`.
 */
export function connectLink(options: NetConnectOpts, crc32c: Crc32c): RtrsLink {
  if (socketReads === null) return new RtrsLink(netConnect(options), crc32c);
  return readingLink((buffer, onBytes) => socketReads.connect(options, buffer, onBytes), crc32c, new BufferPool())!;
}

/** Whether a listener should be made with `pauseOnConnect` so acceptLink can take its sockets over. */
export const ACCEPT_PAUSED = socketReads !== null;

/**
 * A link over a socket a TCP listener accepted (made with `pauseOnConnect: ACCEPT_PAUSED`), read
 * through the shared buffer where the runtime can; a TLS socket is read as usual.
 */
export function acceptLink(socket: Socket, crc32c: Crc32c, pool: BufferPool, tls: boolean): RtrsLink {
  const adopted = !tls && socketReads !== null ? readingLink((buffer, onBytes) => socketReads.adopt(socket, buffer, onBytes), crc32c, pool) : null;
  if (adopted !== null) return adopted;
  let link: RtrsLink;
  try {
    link = new RtrsLink(socket, crc32c, pool);
  } catch (error) {
    socket.destroy();
    throw error;
  }
  socket.resume();
  return link;
}

/**
 * A link over a connection another thread accepted and handed over (ThreadSockets: `fd`), read
 * through this thread's shared buffer; `unread`, bytes the other thread read and did not parse,
 * come first.
 */
export function attachLink(fd: number, unread: Uint8Array, crc32c: Crc32c, pool: BufferPool, attach: (fd: number, buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void) => Socket): RtrsLink {
  const link = readingLink((buffer, onBytes) => attach(fd, buffer, onBytes), crc32c, pool)!;
  if (unread.length > 0) link.receive(unread);
  return link;
}

const EMPTY_PIECES: readonly Uint8Array[] = [];

/** The 32-byte header of a frame of `lengthBytes` carrying `pieces` (read only for the digest, when `digest`). */
export function frameHeader(fields: SendFields, lengthBytes: number, pieces: readonly Uint8Array[], digest: boolean, crc32c: Crc32c): Uint8Array {
  const header = smallBytes(FRAME_HEADER_BYTES);
  encodeFrameHeader({
    op: fields.op, flags: digest ? FRAME_FLAG_DIGEST : 0, imm: fields.imm ?? 0, addr: fields.addr ?? 0n, key: fields.key ?? 0,
    lengthBytes, seq: fields.seq ?? 0, digest: 0,
  }, header);
  if (digest) {
    let crc = frameDigest(crc32c, header, EMPTY);
    for (const piece of pieces) if (piece.length > 0) crc = crc32c(piece, crc);
    new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES).setUint32(28, crc, true);
  }
  return header;
}

/** One frame, header and payload, in one buffer of its own (`new Uint8Array`: never a view of shared memory, so it can be transferred). */
export function frameBytes(fields: SendFields, pieces: readonly Uint8Array[], digest: boolean, crc32c: Crc32c): Uint8Array {
  let lengthBytes = 0;
  for (const piece of pieces) lengthBytes += piece.length;
  const bytes = new Uint8Array(FRAME_HEADER_BYTES + lengthBytes);
  bytes.set(frameHeader(fields, lengthBytes, pieces, digest, crc32c));
  let at = FRAME_HEADER_BYTES;
  for (const piece of pieces) {
    bytes.set(piece, at);
    at += piece.length;
  }
  return bytes;
}

/** How long `end` waits for the peer to take the last frames and hang up before destroying the socket. */
const END_LINGER_MS = 1000;
/** Before the owner says otherwise: enough for any handshake frame. */
const HANDSHAKE_PAYLOAD_BYTES = 4096;

export class RtrsLink implements FrameLink {
  maxPayloadBytes = HANDSHAKE_PAYLOAD_BYTES;
  /** When true, frames go out with a digest and frames without a right one are refused. */
  digest = false;
  private readonly input = new InputBuffer();
  private readonly output: OutputQueue;
  private pending: FrameHeader | null = null;
  private pendingHeaderBytes = new Uint8Array(FRAME_HEADER_BYTES);
  /** The pending frame's payload destination (sinkFor), how much of it is in, and its running digest. */
  private sink: Uint8Array | null = null;
  private sinkFilledBytes = 0;
  private sinkCrc = 0;
  private handlers: LinkHandlers | null = null;
  private closedWhy: string | null | undefined = undefined;
  readonly closed: Promise<void>;
  private resolveClosed: () => void = () => {};
  private readonly fault = (error: unknown): void => this.close(`internal error: ${describeError(error)}`);

  /**
   * `readsGiven`: the socket was made through the adapter's SocketReads and its creator hands every
   * read to `receive` (a view of a buffer used again for the next read); otherwise the link listens
   * for 'data'. Links are made by connectLink and acceptLink, which choose.
   */
  constructor(
    readonly socket: Socket,
    private readonly crc32c: Crc32c,
    pool: BufferPool = new BufferPool(),
    private readonly readsGiven = false,
  ) {
    this.output = new OutputQueue(socket, pool, { socketSend });
    this.output.onBroken = (why) => this.close(why);
    socket.setNoDelay(true);
    this.closed = new Promise<void>((resolve) => {
      this.resolveClosed = resolve;
      socket.once('close', () => resolve());
    });
    if (!readsGiven) socket.on('data', (chunk: Uint8Array) => guarded(() => this.onData(chunk, false), this.fault));
    socket.on('end', () => guarded(() => this.close('the peer closed the connection'), this.fault));
    socket.on('error', (error: Error) => guarded(() => this.close(`socket error: ${error.message}`), this.fault));
    socket.on('close', () => guarded(() => this.close('the connection closed'), this.fault));
  }

  /** Starts handing frames to `handlers` (frames that came before wait for this). */
  start(handlers: LinkHandlers): void {
    assert(this.handlers === null, 'rtrs link: started twice');
    this.handlers = handlers;
    if (this.closedWhy !== undefined) {
      handlers.onClose(this.closedWhy);
      return;
    }
    guarded(() => this.drain(), this.fault);
  }

  get isOpen(): boolean {
    return this.closedWhy === undefined;
  }

  /** Sends one frame whose payload is `pieces` in order (none for an empty frame). */
  send(fields: SendFields, ...pieces: Uint8Array[]): void {
    if (!this.isOpen) return;
    this.output.push(this.header(fields, pieces));
    for (const piece of pieces) if (piece.length > 0) this.output.push(piece);
  }

  /** One frame's bytes, header and payload, as `send` would put them on the wire (for a FileFrame's trailer or its stand-in). */
  frameBytes(fields: SendFields, ...pieces: Uint8Array[]): Uint8Array {
    return frameBytes(fields, pieces, this.digest, this.crc32c);
  }

  /** Frames whose payload is a file span can go out with zero copy here (sendSpan): a plain socket with SocketSend, no digest. */
  get zeroCopy(): boolean {
    return this.output.zeroCopy && !this.digest;
  }

  /**
   * Sends one frame whose payload is `span` (zero copy: the kernel moves the file's bytes to the
   * socket), then `trailer`; when the span cannot be read before any byte went out, `standIn` goes
   * instead of all of it and `onFailed(false)` is told; once part went out, `onFailed(true)` and
   * the link breaks. Only where `zeroCopy`.
   * The span is the queue's from here: released once sent or dropped.
   */
  sendSpan(fields: SendFields, span: FileSpan, trailer: Uint8Array, standIn: Uint8Array, onFailed: (afterSomeSent: boolean) => void): void {
    assert(!this.digest, 'rtrs link: a file span cannot carry a digest');
    if (!this.isOpen) return void span.release();
    const header = frameHeader(fields, span.lengthBytes, EMPTY_PIECES, false, this.crc32c);
    this.output.push(new FileFrame(header, span, () => (onFailed(false), standIn), trailer, () => onFailed(true)));
  }

  /**
   * Sends frames encoded elsewhere (frameHeader, frameBytes: by the thread that owns the session
   * when another serves the connection, rtrs-io-threads.ts), as they are.
   */
  sendEncoded(frame: Uint8Array | FileFrame): void {
    if (!this.isOpen) {
      if (frame instanceof FileFrame) frame.span.release();
      return;
    }
    this.output.push(frame);
  }

  /** The 32-byte header of a frame carrying `pieces` (with its digest when on). */
  private header(fields: SendFields, pieces: readonly Uint8Array[]): Uint8Array {
    let lengthBytes = 0;
    for (const piece of pieces) lengthBytes += piece.length;
    return frameHeader(fields, lengthBytes, pieces, this.digest, this.crc32c);
  }

  /**
   * Closes the link once what is queued has gone out: a refusal (CON_RSP with an errno) must reach
   * the peer before we hang up, and `close` drops what is queued. Like `close`, the owner is told
   * at once and no frame is handed on after this; the socket ends after the last queued byte and
   * is destroyed when the peer hangs up too, or after `lingerMs` at the latest.
   */
  end(why: string | null = null, lingerMs = END_LINGER_MS): void {
    if (this.closedWhy !== undefined) return;
    this.closedWhy = why;
    this.input.clear();
    const timer = setTimeout(() => this.socket.destroy(), lingerMs);
    (timer as { unref?: () => void }).unref?.();
    this.socket.once('close', () => {
      clearTimeout(timer);
      guarded(() => this.output.close(), () => {});
    });
    try {
      this.output.finish(() => this.socket.end());
    } catch (error) {
      this.socket.destroy();
      throw error;
    } finally {
      this.handlers?.onClose(why);
    }
  }

  /** Closes the link (idempotent), dropping what is still queued; `why` null for an orderly close by us. */
  close(why: string | null = null): void {
    if (this.closedWhy !== undefined) return;
    this.closedWhy = why;
    try {
      this.output.close();
    } finally {
      this.input.clear();
      this.socket.destroy();
      this.handlers?.onClose(why);
    }
  }

  /**
   * Gives the connection to another thread (ThreadSockets.detach): returns its descriptor and the
   * bytes read and not yet handed on (the new reader parses them first), and this link is done
   * without telling its owner (the connection lives on elsewhere). Null, and nothing changed, when
   * it cannot move now: a frame half in, bytes still to write, or a socket not read through
   * SocketReads (TLS, a runtime without them).
   */
  handOff(detach: (socket: Socket) => number): { fd: number; unread: Uint8Array } | null {
    if (!this.isOpen || !this.readsGiven || this.pending !== null || this.output.unsentBytes > 0) return null;
    const fd = detach(this.socket);
    if (fd < 0) return null;
    const unread = this.input.length > 0 ? new Uint8Array(this.input.take(this.input.length)) : EMPTY;
    this.closedWhy = null;
    this.input.clear();
    this.output.close();
    this.resolveClosed();
    return { fd, unread };
  }

  /** One read of a socket made through SocketReads: `bytes` is valid only until this returns. */
  receive(bytes: Uint8Array): void {
    guarded(() => this.onData(bytes, true), this.fault);
  }

  /** `reused`: the chunk's memory is read into again once this returns, so what is kept is copied. */
  private onData(chunk: Uint8Array, reused: boolean): void {
    if (!this.isOpen) return;
    this.input.push(chunk);
    try {
      if (this.handlers !== null) this.drain(reused ? chunk.buffer : null);
    } finally {
      if (reused) this.input.keepUnread(chunk);
    }
  }

  /** `reusedMemory`: the memory of the chunk just pushed when the runtime reads into it again (payload views into it are copied). */
  private drain(reusedMemory: ArrayBufferLike | null = null): void {
    while (this.isOpen && this.handlers !== null) {
      if (this.pending === null) {
        if (this.input.length < FRAME_HEADER_BYTES) return;
        const chunk = this.input.contiguous(FRAME_HEADER_BYTES);
        const at = this.input.front;
        const decoded = decodeFrameHeader(chunk, at, this.maxPayloadBytes);
        if (typeof decoded === 'string') return this.close(decoded);
        this.pendingHeaderBytes = chunk.slice(at, at + FRAME_HEADER_BYTES);
        this.input.consume(FRAME_HEADER_BYTES);
        if (this.digest && (decoded.flags & FRAME_FLAG_DIGEST) === 0) return this.close('a frame without a digest on a link that requires one');
        this.pending = decoded;
        const sink = decoded.lengthBytes > 0 ? (this.handlers.sinkFor?.(decoded) ?? null) : null;
        assert(sink === null || sink.length === decoded.lengthBytes, 'rtrs link: a sink of the wrong size');
        this.sink = sink;
        this.sinkFilledBytes = 0;
        if (sink !== null && (decoded.flags & FRAME_FLAG_DIGEST) !== 0) this.sinkCrc = frameDigest(this.crc32c, this.pendingHeaderBytes, EMPTY);
      }
      const header = this.pending;
      if (this.sink !== null) {
        // Straight into the destination, as the bytes come.
        while (this.sinkFilledBytes < header.lengthBytes && this.input.length > 0) {
          const piece = this.input.takeSome(header.lengthBytes - this.sinkFilledBytes);
          this.sink.set(piece, this.sinkFilledBytes);
          this.sinkFilledBytes += piece.length;
          if ((header.flags & FRAME_FLAG_DIGEST) !== 0) this.sinkCrc = this.crc32c(piece, this.sinkCrc);
        }
        if (this.sinkFilledBytes < header.lengthBytes) return;
        const payload = this.sink;
        this.sink = null;
        this.pending = null;
        if ((header.flags & FRAME_FLAG_DIGEST) !== 0 && this.sinkCrc !== header.digest) {
          return this.close(`frame digest 0x${header.digest.toString(16)} does not match the bytes (0x${this.sinkCrc.toString(16)})`);
        }
        this.handlers.onFrame(header, payload);
        continue;
      }
      if (this.input.length < header.lengthBytes) return;
      let payload = header.lengthBytes === 0 ? EMPTY : this.input.take(header.lengthBytes);
      // Owners may keep a payload (LinkHandlers.onFrame): never a view of a reused read buffer.
      if (payload.buffer === reusedMemory) payload = smallCopy(payload); // (a copy even if the reads are Buffers)
      this.pending = null;
      const bad = digestProblem(this.crc32c, header, this.pendingHeaderBytes, payload);
      if (bad !== null) return this.close(bad);
      this.handlers.onFrame(header, payload);
    }
  }
}
