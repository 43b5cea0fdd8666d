/**
 * One client session on the RTRS server: its chunks (queue depth x chunk size), their keys, its
 * paths, and the IO path (rtrs-srv.c process_io_req, process_read, process_write, rtrs_srv_resp_rdma).
 *
 * Chunks. The session owns `queueDepth` chunks of `chunkBytes`; INFO_RSP gives each as a descriptor
 * (address, key, length). Addresses are the session's own: a random 64-bit base, chunk i at base +
 * i x chunkBytes, so a request naming another session's chunk names an address that is not ours.
 * Over TCP a chunk needs no memory of its own: the frame that "writes into" it is checked against
 * the chunk (address, key, bounds) and its bytes are what the handler sees, received into memory of
 * the server's pool (large requests: rtrs-server.ts sinkFor) or handed on by the link (small
 * ones). A read's answer comes from the pool, or straight from a file the handler lends
 * (RtrsRequest.span: sendfile, the IO response as the frame's trailer). What a chunk does hold is
 * its state:
 *
 *   idle --IO_REQ--> running --handler settles--> done --(a new seq)--> running ...
 *
 * Keys. Each chunk has a key. A new request must name the chunk's current key; with
 * alwaysInvalidate the key is replaced by a fresh random one when the IO completes, and the new key
 * goes back in RKEY_RSP together with the IO_RSP immediate (SEND_IMM), so a client can touch a chunk
 * only once per key it was given. A stale or wrong key is refused with EKEYREJECTED, an address
 * that is not this chunk's with EFAULT, each with one log line; the path goes on.
 *
 * At most once. The frame's `seq` numbers each request the client puts in a chunk (an issue
 * number in its low 24 bits) and each time it sends it (an attempt, the high 8). A failed-over
 * request comes back with the same buffer id and issue number, a higher attempt, on another path,
 * with the key it was first issued with (the chunk may have rotated since): while it still runs,
 * only where to answer changes; once done, a write is answered with its recorded errno and not
 * applied again, a read whose file failed while being sent likewise (EIO), and any other read
 * (idempotent) runs again; the key rotates once per request, however
 * often it runs. Copies that arrive late from a failed path (a lower attempt, or an issue number
 * the chunk is past) are dropped unanswered, so they can neither steer the answer to a dead link
 * nor apply an old write over a newer one. A session keeps this state for `lingerMs` after its last
 * path closed, so a client that reconnects a lost single path finds it; after that the session is
 * closed and its user told.
 */
import { randomBytes } from 'node:crypto';
import { randomKey } from './rtrs-keys.ts';
import type { BufferPool } from '../net/buffer-pool.ts';
import { describeError } from '../net/fault-domain.ts';
import { ERRNO, errnoOf, type RtrsRequest, type RtrsServerHandler, type RtrsServerSession } from './rtrs-api.ts';
import { FRAME_OP, SEQ_ISSUE_BITS, type FrameHeader } from './rtrs-frame.ts';
import type { FrameLink, SendFields } from './rtrs-link.ts';
import {
  decodeRdmaRead, decodeRdmaWrite, type Desc, encodeRkeyRsp, ioMessageType, ioReqOf, ioRspImm, MSG_TYPE, READ_NEED_INVAL,
  RDMA_WRITE_BYTES,
} from './rtrs-messages.ts';

/** A frame's `seq` on an IO request: issue number below SEQ_BITS, attempt above (rtrs-frame.ts). */
const SEQ_BITS = SEQ_ISSUE_BITS;
const SEQ_MASK = (1 << SEQ_BITS) - 1;

/**
 * Reads at least this long may be answered straight from a file (RtrsRequest.spanWelcome); shorter
 * ones are copied and coalesced with their neighbours into one socket write, which costs less than
 * a sendfile each (as the NBD server measured: server/nbd/export-session.ts).
 */
const SPAN_MIN_BYTES = 64 * 1024;

/** True when issue number `a` comes before `b` (24-bit serial numbers: half the space back). */
function isOlder(a: number, b: number): boolean {
  const back = (b - a) & SEQ_MASK;
  return back !== 0 && back < 1 << (SEQ_BITS - 1);
}

export interface ServerSessionConfig {
  queueDepth: number;
  chunkBytes: number;
  maxHeaderBytes: number;
  alwaysInvalidate: boolean;
  memBits: number;
  lingerMs: number;
}

interface Chunk {
  key: number;
  /** The key the chunk's last request was issued with: accepted again only for that request's re-issues. */
  issueKey: number;
  /** The last request's issue number (the low 24 bits of the frame's seq) and its highest attempt seen. */
  seq: number;
  attempt: number;
  /** The key was rotated for the last request already (once per request, however often it runs). */
  rotated: boolean;
  state: 'idle' | 'running' | 'done';
  direction: 'read' | 'write';
  errno: number;
  /** Where the running request's answer goes (the newest link it arrived on). */
  answerTo: FrameLink | null;
  needInvalidate: boolean;
  /** The last request was a read whose file span failed while being sent (its answer is EIO for good). */
  fileFailed: boolean;
}

/** Counters a server path keeps (its sysfs stats). */
export interface ServerPathCounters {
  readCount: number;
  readBytes: number;
  writeCount: number;
  writeBytes: number;
}

export class ServerSession implements RtrsServerSession {
  sessionName = '';
  readonly baseAddr: bigint;
  private readonly chunks: Chunk[] = [];
  private inFlight = 0;
  private lingerTimer: ReturnType<typeof setTimeout> | null = null;
  closed = false;

  constructor(
    readonly sessionUuid: string,
    private readonly config: ServerSessionConfig,
    private readonly handler: RtrsServerHandler,
    private readonly pool: BufferPool,
    private readonly log: (line: string) => void,
    private readonly onGone: (session: ServerSession) => void,
  ) {
    // Bits 63..40 random, chunk offsets below: at most 2^16 chunks of 2^24 bytes fit under 2^40.
    this.baseAddr = (BigInt(randomBytes(3).readUIntLE(0, 3)) << 40n) | 0x10000000000n;
    for (let i = 0; i < config.queueDepth; i++) {
      this.chunks.push({ key: randomKey(), issueKey: 0, seq: 0, attempt: 0, rotated: false, state: 'idle', direction: 'write', errno: 0, answerTo: null, needInvalidate: false, fileFailed: false });
    }
  }

  get alwaysInvalidate(): boolean {
    return this.config.alwaysInvalidate;
  }

  chunkAddr(bufferId: number): bigint {
    return this.baseAddr + BigInt(bufferId) * BigInt(this.config.chunkBytes);
  }

  /** INFO_RSP's descriptors: one per chunk. */
  descriptors(): Desc[] {
    return this.chunks.map((chunk, i) => ({ addr: this.chunkAddr(i), key: chunk.key, lengthBytes: this.config.chunkBytes }));
  }

  /** A path joined: the session stays. */
  pathUp(): void {
    if (this.lingerTimer !== null) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
  }

  /** The session has no path left: close it after the linger time unless a path comes back. */
  lastPathGone(): void {
    if (this.closed || this.lingerTimer !== null) return;
    this.lingerTimer = setTimeout(() => void this.close(), this.config.lingerMs);
    (this.lingerTimer as { unref?: () => void }).unref?.();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.lingerTimer !== null) clearTimeout(this.lingerTimer);
    this.onGone(this);
    try {
      await this.handler.sessionClosed(this);
    } catch (error) {
      this.log(`rtrs: session ${this.sessionName || this.sessionUuid}: closing it failed: ${describeError(error)}`);
    }
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  /**
   * One WRITE_IMM frame with an IO_REQ immediate, from `link`. Returns a reason when the frame
   * breaks the protocol (the caller closes the path); refusals the client can act on are answered.
   * A payload from the session's BufferPool (the chunk the link received it into) goes back to the
   * pool once its request settled, or at once when none runs.
   */
  io(link: FrameLink, header: FrameHeader, payload: Uint8Array, counters: ServerPathCounters): string | null {
    this.handedOver = false;
    const problem = this.accept(link, header, payload, counters);
    if (!this.handedOver) this.pool.release(payload);
    return problem;
  }

  /** Set when accept() handed the payload to a request (which then releases it). */
  private handedOver = false;

  private accept(link: FrameLink, header: FrameHeader, payload: Uint8Array, counters: ServerPathCounters): string | null {
    const { bufferId, offsetBytes } = ioReqOf(header.imm & 0x0fffffff, this.config.memBits);
    if (bufferId >= this.config.queueDepth) return `IO request for buffer ${bufferId}, the session has ${this.config.queueDepth}`;
    if (payload.length > this.config.chunkBytes) return `IO request of ${payload.length} bytes into a chunk of ${this.config.chunkBytes}`;
    if (offsetBytes >= payload.length) return `IO message offset ${offsetBytes} outside the ${payload.length} bytes written`;
    const chunk = this.chunks[bufferId]!;
    if (header.addr !== this.chunkAddr(bufferId)) return this.refuse(link, bufferId, ERRNO.EFAULT, `address 0x${header.addr.toString(16)} is not this session's chunk ${bufferId}`);
    const seq = header.seq & SEQ_MASK;
    const attempt = header.seq >>> SEQ_BITS;
    if (chunk.state !== 'idle' && isOlder(seq, chunk.seq)) return null; // a late copy of a request done with: dropped
    const reissue = seq === chunk.seq && chunk.state !== 'idle';
    if (reissue && attempt < chunk.attempt) return null; // a late copy of an earlier attempt: dropped
    const keyGood = reissue ? header.key === chunk.issueKey : header.key === chunk.key;
    if (!keyGood) return this.refuse(link, bufferId, ERRNO.EKEYREJECTED, `stale or wrong key for chunk ${bufferId}`);
    if (reissue) {
      // The client sent it again (its path failed): answer on the link of the newest attempt.
      chunk.attempt = attempt;
      chunk.answerTo = link;
      if (chunk.state === 'running') return null;
      if (chunk.direction === 'write' || chunk.fileFailed) {
        // A write was applied once already: its result, not a second write. A read whose file
        // could not be sent keeps its EIO (running it again would break the next path the same way).
        this.answer(bufferId, chunk.errno);
        return null;
      }
      // A read that succeeded runs again (it changes nothing; its data went with the path); the
      // key is not rotated twice.
    }
    if (!reissue && chunk.state === 'running') return this.refuse(link, bufferId, ERRNO.EBUSY, `chunk ${bufferId} still has a request running`);

    const message = payload.subarray(offsetBytes);
    const type = ioMessageType(message);
    if (typeof type === 'string') return type;
    let request: RtrsRequest;
    let readDesc: Desc | null = null;
    let needInvalidate = false;
    if (type === MSG_TYPE.WRITE) {
      const write = decodeRdmaWrite(message);
      if (typeof write === 'string') return write;
      if (message.length !== RDMA_WRITE_BYTES) return `rdma_write message of ${message.length} bytes`;
      if (write.userHeaderBytes > offsetBytes || write.userHeaderBytes > this.config.maxHeaderBytes) return `user header of ${write.userHeaderBytes} bytes`;
      const dataBytes = offsetBytes - write.userHeaderBytes;
      request = { direction: 'write', header: payload.subarray(dataBytes, offsetBytes), data: payload.subarray(0, dataBytes) };
      counters.writeCount += 1;
      counters.writeBytes += dataBytes;
    } else {
      const read = decodeRdmaRead(message);
      if (typeof read === 'string') return read;
      if (read.userHeaderBytes > offsetBytes || read.userHeaderBytes > this.config.maxHeaderBytes) return `user header of ${read.userHeaderBytes} bytes`;
      readDesc = read.descs[0] ?? null;
      const lengthBytes = readDesc?.lengthBytes ?? 0;
      if (readDesc !== null && lengthBytes === 0) return 'rdma_read of a zero-length buffer';
      if (lengthBytes > this.config.chunkBytes - this.config.maxHeaderBytes) {
        return this.refuse(link, bufferId, ERRNO.EINVAL, `read of ${lengthBytes} bytes, over the session's max io size`);
      }
      needInvalidate = (read.flags & READ_NEED_INVAL) !== 0 && readDesc !== null;
      const target = lengthBytes === 0 ? new Uint8Array(0) : this.pool.take(lengthBytes);
      const spanWelcome = link.zeroCopy && lengthBytes >= SPAN_MIN_BYTES;
      request = { direction: 'read', header: payload.subarray(offsetBytes - read.userHeaderBytes, offsetBytes), data: target, spanWelcome };
      counters.readCount += 1;
      counters.readBytes += lengthBytes;
    }
    if (!reissue) {
      chunk.seq = seq;
      chunk.attempt = attempt;
      chunk.issueKey = header.key;
      chunk.rotated = false;
      chunk.fileFailed = false;
    }
    chunk.state = 'running';
    chunk.direction = request.direction;
    chunk.answerTo = link;
    chunk.needInvalidate = needInvalidate;
    this.handedOver = true;
    this.run(bufferId, request, readDesc, payload);
    return null;
  }

  private run(bufferId: number, request: RtrsRequest, readDesc: Desc | null, payload: Uint8Array): void {
    this.inFlight += 1;
    let settled: Promise<void>;
    try {
      settled = this.handler.handle(this, request);
    } catch (error) {
      settled = Promise.reject(error);
    }
    settled.then(
      () => this.finish(bufferId, 0, request, readDesc, payload),
      (error: unknown) => this.finish(bufferId, errnoOf(error), request, readDesc, payload),
    );
  }

  private finish(bufferId: number, errno: number, request: RtrsRequest, readDesc: Desc | null, payload: Uint8Array): void {
    const chunk = this.chunks[bufferId]!;
    const span = request.span ?? null;
    request.span = null;
    this.inFlight -= 1;
    this.pool.release(payload);
    chunk.state = 'done';
    chunk.errno = errno;
    if (this.config.alwaysInvalidate && !chunk.rotated) {
      chunk.key = randomKey();
      chunk.rotated = true;
    }
    const link = chunk.answerTo;
    if (request.direction === 'read' && (span !== null || errno !== 0 || readDesc === null || link === null || !link.isOpen)) this.pool.release(request.data);
    if (errno === 0 && readDesc !== null && link !== null && link.isOpen) {
      // The document's RDMA write of the data into the client's buffer, then the response.
      const write = { op: FRAME_OP.WRITE, addr: readDesc.addr, key: readDesc.key };
      if (span !== null) {
        // From the file (zero copy), the response right behind it; if the file cannot be read
        // before any byte went out, an EIO response instead (the key rotated all the same).
        // If it fails after part went out, the link breaks and the client re-issues the read: it
        // is answered EIO then, not run again (which could break the next path the same way).
        // (A span lent on one link is sent on any of the session's: all or none carry digests,
        // and where zero copy is off the queue reads the span itself.)
        const { seq, attempt } = chunk;
        const failed = (): void => {
          // Only for this run of this request: a later attempt that ran the read again keeps its own result.
          if (chunk.seq === seq && chunk.attempt === attempt && chunk.state === 'done') {
            chunk.errno = ERRNO.EIO;
            chunk.fileFailed = true;
          }
        };
        link.sendSpan(write, span, this.answerBytes(link, bufferId, 0), this.answerBytes(link, bufferId, ERRNO.EIO), failed);
        return;
      }
      link.send(write, request.data);
    }
    span?.release();
    this.answer(bufferId, errno);
  }

  /** IO_RSP for the chunk's request on the link it last came on (with the new key when rotating). */
  private answer(bufferId: number, errno: number): void {
    const link = this.chunks[bufferId]!.answerTo;
    if (link === null || !link.isOpen) return; // the client re-issues on another path and is answered then
    link.send(...this.answerFrame(bufferId, errno));
  }

  /** The IO_RSP as bytes, to follow a file span on `link`. */
  private answerBytes(link: FrameLink, bufferId: number, errno: number): Uint8Array {
    return link.frameBytes(...this.answerFrame(bufferId, errno));
  }

  private answerFrame(bufferId: number, errno: number): [SendFields, ...Uint8Array[]] {
    const chunk = this.chunks[bufferId]!;
    const imm = ioRspImm(bufferId, errno, chunk.needInvalidate);
    if (this.config.alwaysInvalidate) return [{ op: FRAME_OP.SEND_IMM, imm }, encodeRkeyRsp(bufferId, chunk.key)];
    return [{ op: FRAME_OP.WRITE_IMM, imm }];
  }

  /** Answers a request the session will not run, with `errno`; logs one line; the path goes on. */
  private refuse(link: FrameLink, bufferId: number, errno: number, why: string): null {
    this.log(`rtrs: session ${this.sessionName || this.sessionUuid}: refused an IO request: ${why}`);
    link.send({ op: FRAME_OP.WRITE_IMM, imm: ioRspImm(bufferId, errno) });
    return null;
  }
}
