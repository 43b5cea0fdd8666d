/**
 * One client connection: the NBD state machine over a socket.
 *
 *   client-flags ──► options ──► transmission ──► disconnecting ──► closed
 *        │              │  ▲ (option after option)    │ (DISC: answer what is in flight, then end)
 *        └──────────────┴──┴──────────────────────────┴──► closed (protocol error, hang-up, shutdown)
 *
 * On accept we send the fixed-newstyle greeting. The client flags must include FIXED_NEWSTYLE and
 * nothing we did not offer, else we hang up: we never speak oldstyle or plain newstyle (an oldstyle
 * client sees IHAVEOPT where it expects its export size and gives up). Options are handled one at
 * a time by Negotiation until GO or EXPORT_NAME picks an export, or the handshake deadline passes.
 *
 * Transmission: each request header is decoded and checked once (request-codec.ts, request-check.ts;
 * 32-byte headers after EXTENDED_HEADERS: extended-codec.ts, one at a time).
 * A refused request is answered at once; a refused WRITE's payload is read and dropped so the stream stays in
 * step, unless it exceeds MAX_SKIPPED_WRITE_BYTES, in which case we send the refusal and hang up
 * (proto.md lets a server disconnect on a payload large enough to be a denial of service). Valid
 * requests run concurrently on the device and are answered in completion order. Flow control: at
 * MAX_REQUESTS_IN_FLIGHT requests, MAX_BYTES_IN_FLIGHT payload bytes, or MAX_UNSENT_BYTES of
 * replies the kernel has not taken, we stop reading the socket (so TCP pushes back on the client)
 * and start again as replies drain. A bad request magic is a protocol error: we hang up on this
 * connection only; nothing else in the server notices. A client that shuts down its side (FIN)
 * is treated like DISC: what is in flight is answered, then we end.
 *
 * The connection is the fault domain (runtime/net/fault-domain.ts): every entry point from the
 * event loop (socket events, timers, a request's completion, the output queue's callbacks) runs
 * guarded, and an exception there (a device that broke its contract, a bug of ours) closes this
 * connection with a 'protocol-error' event whose message starts "internal error:". A request
 * whose run rejects (ExportSession promises it never does) is such a fault too: it has no reply,
 * so the client is hung up on rather than left waiting.
 */
import type { Socket } from 'node:net';
import {
  CLIENT_FLAGS_BYTES, HANDSHAKE_TIMEOUT_MS, KNOWN_CLIENT_FLAGS, MAX_BYTES_IN_FLIGHT, MAX_OPTION_BYTES, MAX_OPTIONS,
  MAX_REQUESTS_IN_FLIGHT, MAX_SKIPPED_WRITE_BYTES, MAX_UNSENT_BYTES, NBD_CMD_DISC, NBD_CMD_READ, NBD_CMD_WRITE,
  NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, OPTION_HEADER_BYTES, REQUEST_HEADER_BYTES, EXTENDED_REQUEST_HEADER_BYTES,
} from './constants.ts';
import { extendedPayloadBytes, extendedRequestDecoder } from './extended-codec.ts';
import type { NbdThreads } from './threads.ts';
import type { NbdTls } from './tls.ts';
import type { SocketSend } from '../../runtime/adapter/types.ts';
import type { BufferPool } from '../../runtime/net/buffer-pool.ts';
import { describeError, guarded } from '../../runtime/net/fault-domain.ts';
import { releaseFrame, type Frame } from '../../runtime/net/file-frame.ts';
import { ExportSession } from './export-session.ts';
import { InputBuffer } from '../../runtime/net/input-buffer.ts';
import { Negotiation, type Agreement, type Catalogue, type Outcome } from './negotiation.ts';
import { decodeClientFlags, decodeOptionHeader, encodeGreeting, type OptionHeader } from './option-codec.ts';
import { OutputQueue } from '../../runtime/net/output-queue.ts';
import type { NbdRequest, RequestDecoder } from './request-codec.ts';
import type { NbdCounters, NbdEvent } from './types.ts';

/** What a connection needs from its server. */
export interface ConnectionHost extends Catalogue {
  readonly counters: NbdCounters;
  readonly pool: BufferPool;
  /** A request decoder for a new connection (the kind the runtime adapter names: request-codec.ts). */
  requestDecoder(): RequestDecoder;
  /** Zero-copy sends for read replies from files; null where the runtime has none. */
  socketSend: SocketSend | null;
  /** STARTTLS, when the server has TLS (tls.ts). */
  readonly tls: NbdTls | null;
  /** Worker threads that take connections once in transmission (threads.ts); null: none. */
  threads: NbdThreads | null;
  emit(event: NbdEvent): void;
  /** Called once, when the socket has closed. */
  closed(connection: NbdConnection): void;
}

/** 'moving': its replies so far going out before the socket goes to a thread; 'moved': a thread serves it. */
type Phase = 'client-flags' | 'options' | 'transmission' | 'moving' | 'moved' | 'disconnecting' | 'closed';

/** A connection a thread takes over in transmission (threads.ts): what was agreed, and the bytes read past it. */
export interface Resumed {
  agreement: Agreement;
  unread: Uint8Array;
}

const EMPTY = new Uint8Array(0);
/**
 * SO_SNDBUF asked for on sockets with zero-copy sends (Linux doubles it, and caps it at
 * net.core.wmem_max): a 256 KiB read reply then fits the socket in one go instead of two sends
 * around an EAGAIN (bench serve: Unix ~8%, TCP ~10% faster). It is a cap, not an allocation: the
 * kernel holds only what is unsent, which the MAX_UNSENT_BYTES flow control bounds too.
 */
const SEND_BUFFER_BYTES = 2 * 1024 * 1024;
/** How long a connection we ended may linger (a client that never reads) before we destroy it. */
const END_LINGER_MS = 2000;

export class NbdConnection {
  connectedAtMs = 0;
  exportName = '';
  private phase: Phase = 'client-flags';
  private readonly input = new InputBuffer();
  /** Replaced once, by the TLS socket's queue, when STARTTLS upgrades the stream. */
  private output: OutputQueue;
  /** Between STARTTLS's ACK and the end of the TLS handshake: nothing is read. */
  private upgrading = false;
  private readonly negotiation: Negotiation;
  private readonly decoder: RequestDecoder;
  private session: ExportSession | null = null;
  private optionCount = 0;
  private pendingOption: OptionHeader | null = null;
  /** A checked WRITE waiting for its payload. */
  private pendingWrite: NbdRequest | null = null;
  /** Payload bytes of a refused WRITE still to drop. */
  private skipBytes = 0;
  private inFlight = 0;
  private bytesInFlight = 0;
  private readPaused = false;
  private ending = false;
  private waitingForDrain = false;
  private pumping = false;
  private handshakeTimer: ReturnType<typeof setTimeout> | null = null;
  /** TLS is up: the socket's bytes are encrypted here, so it never moves to a thread. */
  private secured = false;
  /** Once moved: ends when the thread's connection has closed (shutdown waits for it). */
  private movedClosed: Promise<void> | null = null;

  /** `resumed`: a thread taking over a connection in transmission (no greeting, no negotiation). */
  constructor(
    readonly id: number,
    readonly remote: string,
    /** The plain socket, then (after STARTTLS) the TLS socket over it. */
    private socket: Socket,
    private readonly host: ConnectionHost,
    resumed?: Resumed,
  ) {
    this.output = this.outputFor(socket, host.socketSend);
    this.negotiation = new Negotiation(host, host.tls?.mode ?? null);
    this.decoder = host.requestDecoder();
    socket.setNoDelay(true);
    this.listen(socket);
    if (resumed !== undefined) {
      this.enterTransmission(resumed.agreement, false);
      if (resumed.unread.length > 0) this.input.push(resumed.unread);
      this.pump();
      return;
    }
    this.handshakeTimer = setTimeout(() => this.guard(() => this.protocolError(`handshake not finished within ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS);
    (this.handshakeTimer as { unref?: () => void }).unref?.();
    this.output.push(encodeGreeting());
    this.output.flush();
  }

  private outputFor(socket: Socket, socketSend: SocketSend | null): OutputQueue {
    const output = new OutputQueue(socket, this.host.pool, { socketSend, sendBufferBytes: SEND_BUFFER_BYTES });
    output.onEmpty = () => this.onOutputEmpty();
    output.onBroken = (why) => this.guard(() => this.protocolError(why));
    return output;
  }

  private listen(socket: Socket): void {
    socket.on('data', (chunk: Uint8Array) => this.guard(() => this.onData(chunk)));
    socket.on('end', () => this.guard(() => this.onPeerEnd()));
    // 'close' follows; a reset is not our error. Drop the queued replies now: the fd may be gone
    // before 'close', and nothing may be sent on it (runtime/net/output-queue.ts).
    socket.on('error', () => this.guard(() => this.output.close()));
    socket.on('close', () => this.guard(() => this.onClose()));
  }

  /**
   * STARTTLS was answered ACK: once that is out (Node's TLS layer writes past the socket's JS
   * queue), stop reading the plain socket, hand it with the bytes read past the option to the
   * server's TLS (tls.ts), and go on with the TLS socket: a new output queue without zero copy
   * (bytes on the fd must be encrypted), the same listeners, negotiation starting over.
   */
  private startTls(): void {
    const tlsHost = this.host.tls!;
    this.upgrading = true;
    const raw = this.socket;
    this.output.flush();
    raw.write(EMPTY, () => this.guard(() => {
      if (this.phase === 'closed' || this.phase === 'disconnecting') return;
      raw.removeAllListeners('data');
      raw.removeAllListeners('end');
      raw.removeAllListeners('drain');
      raw.pause();
      const leftover = this.input.length > 0 ? this.input.take(this.input.length).slice() : EMPTY;
      tlsHost.upgrade(raw, leftover, {
        secure: (secured) => this.guard(() => {
          if (this.phase === 'closed') {
            secured.destroy();
            return;
          }
          this.output.close();
          this.secured = true;
          this.socket = secured;
          this.output = this.outputFor(secured, null);
          this.listen(secured);
          this.negotiation.secured();
          this.upgrading = false;
          this.pump();
        }),
        failed: (why) => this.guard(() => this.protocolError(why)),
      });
    }));
  }

  /** A thread serves it (threads.ts). */
  get onThread(): boolean {
    return this.phase === 'moved';
  }

  /** An export was chosen (GO or EXPORT_NAME) and the socket is still open. */
  get inTransmission(): boolean {
    return this.session !== null && this.phase !== 'closed';
  }

  /**
   * Server shutdown: stop taking requests, let those in flight finish for up to `graceMs`, then
   * hang up. Resolves when the socket has closed.
   */
  shutdown(graceMs: number): Promise<void> {
    if (this.phase === 'closed') return Promise.resolve();
    if (this.phase === 'moved') {
      this.host.threads!.shutdown(this.id, graceMs);
      return this.movedClosed!;
    }
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    if (this.phase !== 'transmission' && this.phase !== 'disconnecting') {
      this.socket.destroy();
      return closed;
    }
    this.beginDisconnect();
    const timer = setTimeout(() => this.socket.destroy(), graceMs);
    (timer as { unref?: () => void }).unref?.();
    return closed.finally(() => clearTimeout(timer));
  }

  // ---- input ----

  private onData(chunk: Uint8Array): void {
    if (this.phase === 'closed' || this.phase === 'disconnecting' || this.phase === 'moved') return; // nothing may follow DISC
    this.input.push(chunk);
    this.pump();
  }

  /** Parses and dispatches as much buffered input as the phase and flow control allow. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.mayRead()) {
        if (this.skipBytes > 0) {
          this.skipBytes -= this.input.skip(this.skipBytes);
          if (this.skipBytes > 0) break;
          continue;
        }
        const progressed =
          this.phase === 'transmission' ? this.readRequest()
          : this.phase === 'options' ? this.readOption()
          : this.phase === 'client-flags' ? this.readClientFlags()
          : false;
        if (!progressed) break;
      }
    } finally {
      this.pumping = false;
    }
    this.updateFlow();
  }

  private mayRead(): boolean {
    if (this.phase === 'closed' || this.phase === 'disconnecting' || this.phase === 'moving' || this.phase === 'moved' || this.upgrading) return false;
    return !this.throttled();
  }

  private throttled(): boolean {
    return this.inFlight >= MAX_REQUESTS_IN_FLIGHT || this.bytesInFlight >= MAX_BYTES_IN_FLIGHT || this.waitingForDrain;
  }

  /** Pauses the socket while throttled, resumes it when not. */
  private updateFlow(): void {
    if (this.phase === 'closed') return;
    const pause = this.throttled();
    if (pause && !this.readPaused) {
      this.readPaused = true;
      this.socket.pause();
    } else if (!pause && this.readPaused) {
      this.readPaused = false;
      this.socket.resume();
    }
  }

  private readClientFlags(): boolean {
    if (this.input.length < CLIENT_FLAGS_BYTES) return false;
    const flags = decodeClientFlags(this.input.contiguous(CLIENT_FLAGS_BYTES), this.input.front);
    this.input.consume(CLIENT_FLAGS_BYTES);
    if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) return this.protocolError(`unknown client flags 0x${(flags >>> 0).toString(16)}`);
    if ((flags & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) return this.protocolError('client does not speak fixed newstyle (oldstyle and plain newstyle are refused)');
    this.negotiation.noZeroes = (flags & NBD_FLAG_C_NO_ZEROES) !== 0;
    this.phase = 'options';
    return true;
  }

  private readOption(): boolean {
    if (this.pendingOption === null) {
      if (this.input.length < OPTION_HEADER_BYTES) return false;
      const header = decodeOptionHeader(this.input.contiguous(OPTION_HEADER_BYTES), this.input.front);
      this.input.consume(OPTION_HEADER_BYTES);
      if (typeof header === 'string') return this.protocolError(header);
      if (++this.optionCount > MAX_OPTIONS) return this.protocolError(`more than ${MAX_OPTIONS} options`);
      if (header.lengthBytes > MAX_OPTION_BYTES) {
        this.skipBytes = header.lengthBytes;
        return this.apply(this.negotiation.tooBig(header.option, header.lengthBytes));
      }
      this.pendingOption = header;
    }
    const header = this.pendingOption;
    if (this.input.length < header.lengthBytes) return false;
    this.pendingOption = null;
    const data = header.lengthBytes === 0 ? EMPTY : this.input.take(header.lengthBytes);
    return this.apply(this.negotiation.handle(header.option, data));
  }

  private apply(outcome: Outcome): boolean {
    for (const reply of outcome.replies) this.output.push(reply);
    switch (outcome.next) {
      case 'options':
        return true;
      case 'transmission':
        this.enterTransmission(outcome.agreement);
        return true;
      case 'abort':
        this.endConnection();
        return false;
      case 'starttls':
        this.startTls();
        return false;
      case 'close':
        return this.protocolError(outcome.reason);
    }
  }

  private enterTransmission(agreement: Agreement, announce = true): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.session = new ExportSession(agreement, this.host.counters, this.host.pool, this.output.zeroCopy);
    this.phase = 'transmission';
    this.exportName = agreement.exported.name;
    this.connectedAtMs = Date.now();
    if (!announce) return;
    this.host.emit({ type: 'connect', connectionId: this.id, exportName: this.exportName, remote: this.remote });
    if (!this.secured && this.host.threads?.takes(agreement) === true) this.moveToThread(agreement);
  }

  /**
   * Hands the socket to a thread (threads.ts): nothing more is read here; once the replies so far
   * (GO's) are out, the descriptor goes with the bytes read past them. A socket that cannot be
   * detached (bytes still in its queue) stays here, served as before.
   */
  private moveToThread(agreement: Agreement): void {
    this.phase = 'moving';
    this.output.finish(() => this.guard(() => {
      if (this.phase !== 'moving') return;
      const unread = this.input.length > 0 ? this.input.take(this.input.length).slice() : EMPTY;
      const moved = this.host.threads!.take(this.id, this.remote, this.socket, agreement, unread, () => this.guard(() => this.onClose()));
      if (moved) {
        this.phase = 'moved';
        this.movedClosed = new Promise<void>((resolve) => (this.onMovedClose = resolve));
        return;
      }
      if (unread.length > 0) this.input.push(unread);
      this.output = this.outputFor(this.socket, this.host.socketSend);
      this.phase = 'transmission';
      this.pump();
      if (this.peerEnded) this.onPeerEnd();
    }));
  }

  private onMovedClose: (() => void) | null = null;
  private peerEnded = false;

  private readRequest(): boolean {
    const pendingWrite = this.pendingWrite;
    if (pendingWrite !== null) {
      if (this.input.length < pendingWrite.lengthBytes) return false;
      this.pendingWrite = null;
      this.dispatch(pendingWrite, this.input.take(pendingWrite.lengthBytes));
      return true;
    }
    const session = this.session!;
    const extended = session.extended;
    const headerBytes = extended ? EXTENDED_REQUEST_HEADER_BYTES : REQUEST_HEADER_BYTES;
    if (this.input.length < headerBytes) return false;
    const decoder = extended ? extendedRequestDecoder : this.decoder;
    const request = decoder.decode(this.input.contiguous(headerBytes), this.input.front, session.session);
    this.input.consume(headerBytes);
    if (typeof request === 'string') return this.protocolError(request);
    this.host.counters.requests++;
    if (request.type === NBD_CMD_DISC) {
      this.beginDisconnect();
      return false;
    }
    const refusal = decoder.check(request, session.session);
    if (refusal !== null) {
      this.output.push(session.errorFrame(request, refusal));
      // The payload that follows a refused header is read and dropped, so the stream stays in step.
      const payloadBytes = extended ? extendedPayloadBytes(request) : request.type === NBD_CMD_WRITE ? request.lengthBytes : 0;
      if (payloadBytes !== 0) {
        if (payloadBytes < 0 || payloadBytes > MAX_SKIPPED_WRITE_BYTES) return this.protocolError(`${payloadBytes < 0 ? 'a 2^53-byte or larger' : `a ${payloadBytes}-byte`} payload refused (${refusal.message}); too large to skip`, true);
        this.skipBytes = payloadBytes;
      }
      return true;
    }
    if (request.type === NBD_CMD_WRITE && request.lengthBytes > 0) {
      this.pendingWrite = request;
      return true;
    }
    this.dispatch(request, EMPTY);
    return true;
  }

  private dispatch(request: NbdRequest, payload: Uint8Array): void {
    const payloadBytes = request.type === NBD_CMD_READ || request.type === NBD_CMD_WRITE ? request.lengthBytes : 0;
    this.inFlight++;
    this.bytesInFlight += payloadBytes;
    this.session!.run(request, payload).then(
      (frame) => this.guard(() => this.answer(frame, payloadBytes)),
      (error: unknown) => this.fault(error),
    );
  }

  private answer(frame: Frame, payloadBytes: number): void {
    this.inFlight--;
    this.bytesInFlight -= payloadBytes;
    if (this.phase === 'closed' || this.ending) {
      releaseFrame(frame, this.host.pool);
      return;
    }
    this.output.push(frame);
    // Replies pile up faster than the client takes them: read no more requests until they are out.
    if (this.output.unsentBytes > MAX_UNSENT_BYTES) this.waitingForDrain = true;
    if (this.phase === 'disconnecting') {
      if (this.inFlight === 0) this.endConnection();
      return;
    }
    if (this.readPaused) this.pump();
  }

  private onOutputEmpty(): void {
    if (!this.waitingForDrain) return;
    this.waitingForDrain = false;
    if (this.phase === 'transmission') this.pump();
  }

  // ---- endings ----

  /** The client shut down its side: like DISC in transmission (answer what is in flight, then end). */
  private onPeerEnd(): void {
    if (this.phase === 'moving') {
      this.peerEnded = true; // the thread reads the end of the stream itself; if the move fails, here
      return;
    }
    if (this.phase === 'transmission') this.beginDisconnect();
    else this.endConnection();
  }

  /** DISC (or shutdown): read nothing more, answer what is in flight, then end. */
  private beginDisconnect(): void {
    if (this.phase === 'disconnecting' || this.phase === 'closed') return;
    this.phase = 'disconnecting';
    this.input.clear();
    this.pendingWrite = null;
    if (this.inFlight === 0) this.endConnection();
  }

  /** Sends what is queued, then closes our side; destroys the socket if the peer lingers. */
  private endConnection(): void {
    if (this.phase === 'closed' || this.ending) return;
    this.ending = true;
    this.output.finish(() => this.socket.end());
    if (this.readPaused) this.socket.resume(); // let the peer's FIN arrive
    const timer = setTimeout(() => this.socket.destroy(), END_LINGER_MS);
    (timer as { unref?: () => void }).unref?.();
    this.socket.once('close', () => clearTimeout(timer));
    this.phase = 'disconnecting';
    this.input.clear();
  }

  /**
   * The client broke the protocol: report it and hang up on this connection. `answerFirst`: send
   * the replies already queued (an error the client should see) before closing. Returns false so
   * the pump stops.
   */
  private protocolError(message: string, answerFirst = false): false {
    if (this.phase === 'closed') return false;
    this.host.counters.errors++;
    this.host.emit({ type: 'protocol-error', connectionId: this.id, remote: this.remote, message });
    this.input.clear();
    if (answerFirst) {
      this.endConnection();
    } else {
      this.output.close();
      this.socket.destroy();
      this.phase = 'disconnecting';
    }
    return false;
  }

  private onClose(): void {
    if (this.phase === 'closed') return;
    const wasConnected = this.session !== null;
    this.phase = 'closed';
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    try {
      this.input.clear();
      this.output.close();
    } finally {
      if (wasConnected) this.host.emit({ type: 'disconnect', connectionId: this.id, exportName: this.exportName, remote: this.remote });
      this.host.closed(this);
      this.onMovedClose?.();
    }
  }

  // ---- faults ----

  /** Runs an event-loop entry point; an exception closes this connection (see the design note). */
  private guard(work: () => void): void {
    guarded(work, this.fault);
  }

  /** Something we run threw: hang up on this connection, saying so; never throws. */
  private readonly fault = (error: unknown): void => {
    try {
      this.protocolError(`internal error: ${describeError(error)}`);
    } catch {
      this.socket.destroy(); // the last resort; 'close' still runs onClose
    }
  };
}
