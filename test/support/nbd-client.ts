/**
 * A small raw NBD client for tests: it speaks the protocol through our own codecs (so a frame
 * format bug shows up as a mismatch against the hex vectors, not as two wrongs agreeing), can send
 * arbitrary bytes, and reads replies with a deadline so a test never hangs on a silent server.
 */
import net from 'node:net';
import tls from 'node:tls';
import {
  BASE_ALLOCATION, NBD_CMD_READ, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE, OPTION_REPLY_HEADER_BYTES,
  EXTENDED_REPLY_HEADER_BYTES, NBD_CMD_FLAG_PAYLOAD_LEN, NBD_CMD_WRITE, NBD_OPT_EXTENDED_HEADERS, NBD_OPT_STARTTLS, NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
} from '../../server/nbd/constants.ts';
import { decodeExtendedReplyHeader, encodeExtendedRequest } from '../../server/nbd/extended-codec.ts';
import { encodeClientFlags, encodeGoRequest, encodeMetaContextRequest, encodeOptionHeader } from '../../server/nbd/option-codec.ts';
import { decodeReplyHeader, encodeRequest } from '../../server/nbd/request-codec.ts';
import { readU16, readU32, readU64 } from '../../server/nbd/wire.ts';

export type Address = { host: string; port: number } | { path: string };

export interface OptionReply {
  option: number;
  type: number;
  data: Uint8Array;
}

export interface Reply {
  handle: number;
  error: number;
  /** READ: the data (reassembled from chunks). */
  data?: Uint8Array;
  /** READ: the OFFSET_HOLE chunks, in the order they came. */
  holes?: Array<{ offsetBytes: number; lengthBytes: number }>;
  /** BLOCK_STATUS: descriptors (of the last chunk). */
  extents?: Array<{ lengthBytes: number; flags: number }>;
  /** BLOCK_STATUS: each chunk's context id and descriptors, in the order they came. */
  contexts?: Array<{ contextId: number; extents: Array<{ lengthBytes: number; flags: number }> }>;
  message?: string;
}

const DEADLINE_MS = 5000;

export class RawNbd {
  private buffered = new Uint8Array(0);
  private waiter: (() => void) | null = null;
  private ended = false;
  private nextHandle = 1;
  private readonly pending = new Map<number, { type: number; offsetBytes: number; lengthBytes: number }>();
  structured = false;
  /** EXTENDED_HEADERS agreed: 32-byte requests and reply chunks (server/nbd/extended-codec.ts). */
  extended = false;
  private greeted = false;

  private constructor(public socket: net.Socket) {
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (chunk: Uint8Array) => {
      const joined = new Uint8Array(this.buffered.length + chunk.length);
      joined.set(this.buffered);
      joined.set(chunk, this.buffered.length);
      this.buffered = joined;
      this.waiter?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  /**
   * STARTTLS: sends the option, and on ACK runs the TLS handshake on this stream (node:tls as a
   * client, with `options`: ca, servername...); resolves with the option's reply type.
   */
  async startTls(options: tls.ConnectionOptions): Promise<number> {
    const [reply] = await this.option(NBD_OPT_STARTTLS);
    if (reply!.type !== NBD_REP_ACK) return reply!.type;
    const raw = this.socket;
    raw.removeAllListeners('data');
    const secured = tls.connect({ ...options, socket: raw });
    await new Promise<void>((resolve, reject) => {
      secured.once('secureConnect', () => resolve());
      secured.once('error', reject);
    });
    this.socket = secured;
    this.attach(secured);
    return reply!.type;
  }

  static connect(address: Address): Promise<RawNbd> {
    return new Promise((resolve, reject) => {
      const socket = 'path' in address ? net.connect(address.path) : net.connect(address.port, address.host);
      socket.once('connect', () => resolve(new RawNbd(socket)));
      socket.once('error', reject);
    });
  }

  get closed(): boolean {
    return this.ended;
  }

  send(bytes: Uint8Array): void {
    if (!this.ended) this.socket.write(bytes);
  }

  /** Exactly `byteCount` bytes, or throws when the server closes or the deadline passes. */
  async read(byteCount: number, deadlineMs = DEADLINE_MS): Promise<Uint8Array> {
    const until = Date.now() + deadlineMs;
    while (this.buffered.length < byteCount) {
      if (this.ended) throw new Error(`server closed with ${this.buffered.length} of ${byteCount} bytes`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no ${byteCount} bytes within ${deadlineMs} ms (have ${this.buffered.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
    const out = this.buffered.slice(0, byteCount);
    this.buffered = this.buffered.slice(byteCount);
    return out;
  }

  /** Resolves true when the server closes the connection within the deadline. */
  async waitClosed(deadlineMs = DEADLINE_MS): Promise<boolean> {
    const until = Date.now() + deadlineMs;
    while (!this.ended && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
    return this.ended;
  }

  close(): void {
    this.socket.destroy();
  }

  // ---- handshake ----

  /** Reads the greeting and sends client flags. */
  async greet(clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<Uint8Array> {
    this.greeted = true;
    const greeting = await this.read(18);
    this.send(encodeClientFlags(clientFlags));
    return greeting;
  }

  sendOption(option: number, data: Uint8Array = new Uint8Array(0)): void {
    this.send(encodeOptionHeader(option, data));
  }

  async readOptionReply(): Promise<OptionReply> {
    const header = await this.read(OPTION_REPLY_HEADER_BYTES);
    const length = readU32(header, 16);
    return { option: readU32(header, 8), type: readU32(header, 12), data: await this.read(length) };
  }

  /** Sends an option and reads replies up to the final one (ACK or an error). */
  async option(option: number, data?: Uint8Array): Promise<OptionReply[]> {
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type === NBD_REP_ACK || reply.type >= 0x80000000) return replies;
    }
  }

  /** The usual way in: greeting (unless done), STRUCTURED_REPLY and base:allocation when asked, then GO. */
  async go(name: string, options: { structured?: boolean; extended?: boolean; meta?: boolean | string[] } = {}): Promise<{ sizeBytes: number; flags: number; minimumBlockBytes: number }> {
    if (!this.greeted) await this.greet();
    if (options.extended === true) {
      const [reply] = await this.option(NBD_OPT_EXTENDED_HEADERS);
      if (reply!.type !== NBD_REP_ACK) throw new Error('EXTENDED_HEADERS refused');
      this.extended = true;
      this.structured = true;
    } else if (options.structured ?? true) {
      const [reply] = await this.option(NBD_OPT_STRUCTURED_REPLY);
      if (reply!.type !== NBD_REP_ACK) throw new Error('STRUCTURED_REPLY refused');
      this.structured = true;
    }
    const meta = options.meta ?? this.structured;
    if (meta !== false) {
      await this.option(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest({ name, queries: meta === true ? [BASE_ALLOCATION] : meta }));
    }
    const replies = await this.option(NBD_OPT_GO, encodeGoRequest({ name, infoTypes: [NBD_INFO_BLOCK_SIZE] }));
    const last = replies[replies.length - 1]!;
    if (last.type !== NBD_REP_ACK) throw new Error(`GO refused: 0x${last.type.toString(16)} ${new TextDecoder().decode(last.data)}`);
    let sizeBytes = -1;
    let flags = 0;
    let minimumBlockBytes = 1;
    for (const reply of replies) {
      const infoType = reply.data.length >= 2 ? readU16(reply.data, 0) : -1;
      if (infoType === 0) {
        sizeBytes = readU64(reply.data, 2);
        flags = readU16(reply.data, 10);
      }
      if (infoType === NBD_INFO_BLOCK_SIZE) minimumBlockBytes = readU32(reply.data, 2);
    }
    return { sizeBytes, flags, minimumBlockBytes };
  }

  // ---- transmission ----

  /** Sends a request; returns its handle (the low word; the high word is 0). */
  request(type: number, offsetBytes: number, lengthBytes: number, options: { flags?: number; data?: Uint8Array } = {}): number {
    const handle = this.nextHandle++;
    this.pending.set(handle, { type, offsetBytes, lengthBytes });
    if (this.extended) {
      // WRITE's payload is announced with PAYLOAD_LEN (added here; `flags` may add it to others).
      const flags = (options.flags ?? 0) | (type === NBD_CMD_WRITE ? NBD_CMD_FLAG_PAYLOAD_LEN : 0);
      const length = (flags & NBD_CMD_FLAG_PAYLOAD_LEN) !== 0 && options.data !== undefined ? options.data.length : lengthBytes;
      this.send(encodeExtendedRequest({ flags, type, handleHigh: 0, handleLow: handle, offsetBytes, lengthBytes: length }, options.data));
      return handle;
    }
    this.send(encodeRequest({ flags: options.flags ?? 0, type, handleHigh: 0, handleLow: handle, offsetBytes, lengthBytes }, options.data));
    return handle;
  }

  /** Reads one whole reply (all chunks up to DONE for structured replies). */
  async reply(deadlineMs = DEADLINE_MS): Promise<Reply> {
    if (this.extended) return this.extendedReply(deadlineMs);
    const head = await this.read(16, deadlineMs);
    const magic = readU32(head, 0);
    const header = magic === 0x668e33ef ? decodeReplyHeader(concat(head, await this.read(4, deadlineMs)), 0) : decodeReplyHeader(head, 0);
    if (typeof header === 'string') throw new Error(header);
    const handle = header.handleLow;
    const request = this.pending.get(handle);
    if (request === undefined) throw new Error(`reply for unknown handle ${handle}`);
    if (!header.structured) {
      this.pending.delete(handle);
      if (header.error === 0 && request.type === NBD_CMD_READ) return { handle, error: 0, data: await this.read(request.lengthBytes, deadlineMs) };
      return { handle, error: header.error };
    }
    const out: Reply = { handle, error: 0 };
    let chunk = header;
    for (;;) {
      takeChunk(out, request, chunk.type, await this.read(chunk.payloadBytes, deadlineMs), false);
      if ((chunk.flags & NBD_REPLY_FLAG_DONE) !== 0) break;
      const next = decodeReplyHeader(await this.read(20, deadlineMs), 0);
      if (typeof next === 'string' || !next.structured) throw new Error('bad chunk');
      chunk = next;
    }
    this.pending.delete(handle);
    if (request.type === NBD_CMD_READ && out.error === 0) out.data ??= new Uint8Array(0);
    return out;
  }

  /** One whole reply with extended headers: every chunk up to DONE, each echoing the request's offset. */
  private async extendedReply(deadlineMs: number): Promise<Reply> {
    let chunk = decodeExtendedReplyHeader(await this.read(EXTENDED_REPLY_HEADER_BYTES, deadlineMs), 0);
    if (typeof chunk === 'string') throw new Error(chunk);
    const handle = chunk.handleLow;
    const request = this.pending.get(handle);
    if (request === undefined) throw new Error(`reply for unknown handle ${handle}`);
    const out: Reply = { handle, error: 0 };
    for (;;) {
      if (chunk.handleLow !== handle) throw new Error('chunks of two replies interleaved (not expected from one request at a time)');
      if (chunk.offsetBytes !== request.offsetBytes) throw new Error(`chunk offset ${chunk.offsetBytes}, request offset ${request.offsetBytes}`);
      takeChunk(out, request, chunk.type, await this.read(chunk.payloadBytes, deadlineMs), true);
      if ((chunk.flags & NBD_REPLY_FLAG_DONE) !== 0) break;
      chunk = decodeExtendedReplyHeader(await this.read(EXTENDED_REPLY_HEADER_BYTES, deadlineMs), 0);
      if (typeof chunk === 'string') throw new Error(chunk);
    }
    this.pending.delete(handle);
    if (request.type === NBD_CMD_READ && out.error === 0) out.data ??= new Uint8Array(0);
    return out;
  }
}

/** Adds one chunk's payload to `out`; `extended`: BLOCK_STATUS comes as BLOCK_STATUS_EXT, and only so. */
function takeChunk(out: Reply, request: { type: number; offsetBytes: number; lengthBytes: number }, type: number, payload: Uint8Array, extended: boolean): void {
  if (type === NBD_REPLY_TYPE_OFFSET_DATA) {
    out.data ??= new Uint8Array(request.lengthBytes);
    out.data.set(payload.subarray(8), readU64(payload, 0) - request.offsetBytes);
  } else if (type === NBD_REPLY_TYPE_OFFSET_HOLE) {
    out.data ??= new Uint8Array(request.lengthBytes); // zeros where no data chunk lands
    (out.holes ??= []).push({ offsetBytes: readU64(payload, 0), lengthBytes: readU32(payload, 8) });
  } else if (type === (extended ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS)) {
    const wide = extended;
    const first = wide ? 8 : 4;
    const step = wide ? 16 : 8;
    if (wide && payload.length !== 8 + readU32(payload, 4) * 16) throw new Error(`BLOCK_STATUS_EXT of ${payload.length} bytes for ${readU32(payload, 4)} descriptors`);
    out.extents = [];
    for (let at = first; at < payload.length; at += step) {
      out.extents.push(wide ? { lengthBytes: readU64(payload, at), flags: readU64(payload, at + 8) } : { lengthBytes: readU32(payload, at), flags: readU32(payload, at + 4) });
    }
    (out.contexts ??= []).push({ contextId: readU32(payload, 0), extents: out.extents });
  } else if (type === NBD_REPLY_TYPE_ERROR) {
    out.error = readU32(payload, 0);
    out.message = new TextDecoder().decode(payload.subarray(6, 6 + readU16(payload, 4)));
  } else if (type !== NBD_REPLY_TYPE_NONE) {
    throw new Error(`unexpected chunk type ${type}${extended ? ' with extended headers' : ''}`);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
