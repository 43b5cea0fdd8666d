/**
 * One client of the log server over a stream socket (Unix or TCP): frames in (ulog-reader.ts),
 * requests served one at a time in the order they came (as the kernel's client sends them: one
 * outstanding request per log; cmirrord serves them in order too), replies out with the request's
 * header, `error` and `data_size` set.
 *
 *   reading ──► serving ──► reading ...          (a frame at a time)
 *      └──────────┴──► closed                    (hang-up, unframeable stream, fault, shutdown)
 *
 * Bad input: a frame whose contents are wrong (unknown type, uuid without NUL, payload of the
 * wrong shape for its type) is answered -EINVAL and the connection goes on; an unframeable stream
 * (an unknown version, data_size above the maximum) is answered -EINVAL when its header can be
 * echoed and the connection closed. Either is one event (one log line). Nothing reaches the
 * handler unchecked, so nothing is written to a log for a refused frame. Flow control: past
 * MAX_BUFFERED_BYTES of unparsed input the socket is paused until the backlog is served.
 *
 * The connection is the fault domain (runtime/net/fault-domain.ts): an exception from a socket
 * event or a handler that broke its promise closes this connection only.
 */
import type { Socket } from 'node:net';
import { describeError, guarded } from '../../runtime/net/fault-domain.ts';
import { ULOG_ERRNO } from '../../runtime/ulog/ulog-errno.ts';
import { invalidRequestPayload, ulogTypeName } from '../../runtime/ulog/ulog-frame.ts';
import type { UlogHandler } from '../../runtime/ulog/ulog-handler.ts';
import { replyFrame, UlogReader, type UlogFrame } from '../../runtime/ulog/ulog-reader.ts';

/** Unparsed input held before the socket is paused (a few hundred frames). */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** How long a closing connection's last reply may take to leave. */
const ENDING_GRACE_MS = 2000;

export interface UlogConnectionHost {
  handler: UlogHandler;
  maxDataBytes: number;
  /** One line per refusal or close (the server's log). */
  log(line: string): void;
  closed(connection: UlogConnection): void;
}

export class UlogConnection {
  private readonly reader: UlogReader;
  private serving = false;
  private closed = false;
  private paused = false;
  private ending = false;
  requests = 0;

  constructor(
    readonly id: number,
    readonly remote: string,
    private readonly socket: Socket,
    private readonly host: UlogConnectionHost,
  ) {
    this.reader = new UlogReader(host.maxDataBytes);
    socket.on('data', (chunk: Uint8Array) => this.guard(() => this.received(chunk)));
    socket.on('error', () => {}); // 'close' follows
    socket.on('close', () => this.guard(() => this.close(null)));
    // A client that sends its last requests and shuts its side down still gets the replies.
    socket.on('end', () => this.guard(() => {
      this.ending = true;
      this.pump();
    }));
    socket.on('drain', () => this.guard(() => this.pump()));
  }

  /**
   * Closes the connection; `why` (when given) is logged. `ending`: what was written still goes
   * out (the socket ends after it; destroyed anyway after ENDING_GRACE_MS of a client not reading).
   */
  close(why: string | null, ending: Uint8Array | null = null): void {
    if (this.closed) return;
    this.closed = true;
    if (why !== null) this.host.log(`ulog connection ${this.remote}: ${why}; closed`);
    if (ending === null) this.socket.destroy();
    else {
      this.socket.end(ending);
      setTimeout(() => this.socket.destroy(), ENDING_GRACE_MS).unref?.();
    }
    this.host.closed(this);
  }

  private received(chunk: Uint8Array): void {
    this.reader.push(chunk);
    if (this.reader.bufferedBytes > MAX_BUFFERED_BYTES && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.pump();
  }

  private pump(): void {
    // Replies the client has not read hold the next request back (as unread input holds the socket).
    while (!this.serving && !this.closed && this.socket.writableLength <= MAX_BUFFERED_BYTES) {
      const frame = this.reader.next();
      if (frame === null) {
        if (this.ending) this.close(null, new Uint8Array(0));
        break;
      }
      this.take(frame);
    }
    if (this.paused && !this.closed && this.reader.bufferedBytes <= MAX_BUFFERED_BYTES / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private take(frame: UlogFrame): void {
    if (frame.kind === 'unframeable') {
      this.close(`unframeable stream: ${frame.why}`, replyFrame(frame.headerBytes, -ULOG_ERRNO.EINVAL));
      return;
    }
    if (frame.kind === 'refused') {
      this.host.log(`ulog connection ${this.remote}: refused a frame: ${frame.why}`);
      this.socket.write(replyFrame(frame.headerBytes, -ULOG_ERRNO.EINVAL));
      return;
    }
    const why = invalidRequestPayload(frame.header.type, frame.data);
    if (why !== null) {
      this.host.log(`ulog connection ${this.remote}: refused ${ulogTypeName(frame.header.type)} for ${frame.header.uuid}: ${why}`);
      this.socket.write(replyFrame(frame.headerBytes, -ULOG_ERRNO.EINVAL));
      return;
    }
    this.serving = true;
    this.requests += 1;
    this.host.handler.handle({ header: frame.header, data: frame.data }).then(
      (reply) => this.guard(() => {
        this.serving = false;
        if (this.closed) return;
        this.socket.write(replyFrame(frame.headerBytes, reply.error, reply.data));
        this.pump();
      }),
      (error: unknown) => this.guard(() => this.close(`internal error: the handler rejected ${ulogTypeName(frame.header.type)}: ${describeError(error)}`)),
    );
  }

  private guard(work: () => void): void {
    guarded(work, (error) => {
      try {
        this.close(`internal error: ${describeError(error)}`);
      } catch {
        // closing cannot fail the process
      }
    });
  }
}
