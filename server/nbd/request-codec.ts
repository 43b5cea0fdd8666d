/**
 * Transmission frames (proto.md "Transmission"). Requests are decoded straight from the receive
 * buffer into a small record; replies are written into buffers sized for header and payload, so a
 * read's data lands after its header and the pair goes out as one write.
 *
 *   request           C: magic 0x25609513 u32, flags u16, type u16, handle u64, offset u64, length u32  (28 B)
 *                         [+ length bytes of data for WRITE]
 *   simple reply      S: magic 0x67446698 u32, error u32, handle u64  (16 B) [+ data for a good READ]
 *   structured chunk  S: magic 0x668e33ef u32, flags u16, type u16, handle u64, length u32  (20 B) + payload
 *     OFFSET_DATA   offset u64, data
 *     BLOCK_STATUS  context id u32, n x (length u32, status flags u32)
 *     ERROR         error u32, message length u16, message
 *
 * The handle is opaque: kept as two u32 words and echoed back unchanged.
 *
 * Request headers reach a connection through a RequestDecoder, one per connection, of the kind
 * the runtime adapter names (`nbdRequestDecoder`, from `npm run bench -- frame`):
 *   'ts'    decodeRequest below, then checkRequest (request-check.ts), one header at a time;
 *   'wasm'  the frame kernel (assembly/frame.ts through runtime/wasm/frame.ts): one call decodes
 *           and checks every header in the next window of the receive chunk (up to 32, following
 *           WRITE payloads), the connection then takes them one by one from the decoder's queue;
 *           checkRequest runs only for a header the kernel refused, to word the refusal.
 * Both give the same request, the same refusal and the same protocol error for every input (the
 * kernel's checks are request-check.ts's, in its order: test/frame-nbd.test.ts fuzzes the pair).
 *
 * Which is faster (`npm run bench -- frame`, 32 headers of a qd32 4 KiB read load in one chunk,
 * CPU time, medians of 15 interleaved rounds, on a shared 2-core VM): the kernel alone
 * decodes and checks them into its table 2.4x (Node), 3.5x (Bun), 2.4x (Deno) faster than a
 * DataView loop doing the same (frame-decode); but a connection needs a request object per
 * header, and building those from the table plus taking them one by one costs more than the
 * kernel saves, so as the connection reads them the 'wasm' kind runs 0.92-0.95x (Node),
 * 0.87-1.06x (Bun), 0.95-1.01x (Deno) of 'ts' over four runs (frame-decode-nbd; 0.84-0.87x
 * before the kernel's fast path for plain READ and WRITE): at best even. So every adapter names
 * 'ts' today; the 'wasm' kind stays selectable (NbdServerOptions.requestDecoder) and measured,
 * for the runtime or the frame where the table itself is what the caller wants.
 */
import {
  BLOCK_DESCRIPTOR_BYTES, MAX_BLOCK_BYTES, NBD_CMD_WRITE, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_BLOCK_STATUS_EXT, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REPLY_TYPE_OFFSET_DATA, NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC, NBD_STRUCTURED_REPLY_MAGIC, OFFSET_DATA_HEADER_BYTES,
  REQUEST_HEADER_BYTES, SIMPLE_REPLY_HEADER_BYTES, STRUCTURED_HEADER_BYTES,
} from './constants.ts';
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from './wire.ts';
import { assert } from '../../runtime/assert.ts';
import { NBD_RECORD, NbdLimits, NbdRequestBatch, RECORD_WORDS } from '../../runtime/wasm/frame.ts';
import { checkRequest, type Refusal, type Session } from './request-check.ts';

export interface NbdRequest {
  flags: number;
  type: number;
  handleHigh: number;
  handleLow: number;
  /** -1 when the u64 on the wire is 2^53 or more (out of range for any export). */
  offsetBytes: number;
  lengthBytes: number;
}

/** The request header at `at` (REQUEST_HEADER_BYTES available), or why it is not one. */
export function decodeRequest(bytes: Uint8Array, at: number): NbdRequest | string {
  const magic = readU32(bytes, at);
  if (magic !== NBD_REQUEST_MAGIC) return `request magic is 0x${magic.toString(16).padStart(8, '0')}, not 0x25609513`;
  return {
    flags: readU16(bytes, at + 4),
    type: readU16(bytes, at + 6),
    handleHigh: readU32(bytes, at + 8),
    handleLow: readU32(bytes, at + 12),
    offsetBytes: readU64(bytes, at + 16),
    lengthBytes: readU32(bytes, at + 24),
  };
}

export type RequestDecoderKind = 'wasm' | 'ts';

/** Turns the header bytes of one connection into checked requests (see the note on top). */
export interface RequestDecoder {
  readonly kind: RequestDecoderKind;
  /**
   * The request header at `at` of `bytes` (REQUEST_HEADER_BYTES there; whatever follows in
   * `bytes` is the rest of the stream), or why it is not one.
   */
  decode(bytes: Uint8Array, at: number, session: Session): NbdRequest | string;
  /** checkRequest's answer for a request this decoder returned. */
  check(request: NbdRequest, session: Session): Refusal | null;
}

const tsDecoder: RequestDecoder = { kind: 'ts', decode: decodeRequest, check: checkRequest };

/** Headers decoded by one kernel call, at most (the window is this many headers' bytes). */
const BATCH_RECORDS = 32;
const TWO_32 = 2 ** 32;
const SAFE_HIGH_LIMIT = 2 ** 21;
let sharedBatch: Promise<NbdRequestBatch> | undefined;

/** A factory of per-connection decoders of `kind`; the 'wasm' kind shares one kernel batch per process. */
export async function loadRequestDecoders(kind: RequestDecoderKind): Promise<() => RequestDecoder> {
  if (kind === 'ts') return () => tsDecoder;
  sharedBatch ??= NbdRequestBatch.create({ capacityRecords: BATCH_RECORDS });
  const batch = await sharedBatch;
  return () => new WasmRequestDecoder(batch);
}

/** Record words (runtime/wasm/frame.ts NBD_RECORD), as plain constants for the hot loop. */
const VERDICT = NBD_RECORD.verdict;
const FLAGS = NBD_RECORD.flags;
const TYPE = NBD_RECORD.type;
const COOKIE_HIGH = NBD_RECORD.cookieHigh;
const COOKIE_LOW = NBD_RECORD.cookieLow;
const OFFSET_HIGH = NBD_RECORD.offsetHigh;
const OFFSET_LOW = NBD_RECORD.offsetLow;
const LENGTH = NBD_RECORD.lengthBytes;
const VERDICT_OK = 0;
const VERDICT_BAD_MAGIC = 1;

/**
 * The 'wasm' kind: a queue of the requests the last kernel call decoded from one chunk. A decode
 * at the chunk and position where the next queued header starts takes it from the queue; any
 * other (a new chunk, a merged one, another session) decodes a new batch there.
 */
class WasmRequestDecoder implements RequestDecoder {
  readonly kind = 'wasm';
  #chunk: Uint8Array | null = null;
  #session: Session | null = null;
  #limits: NbdLimits | null = null;
  readonly #requests: NbdRequest[] = [];
  readonly #verdicts = new Uint8Array(BATCH_RECORDS);
  #count = 0;
  #next = 0;
  /** Where in #chunk the header #next starts. */
  #nextAt = -1;
  #last: NbdRequest | null = null;
  #lastVerdict = VERDICT_OK;

  constructor(private readonly batch: NbdRequestBatch) {}

  decode(bytes: Uint8Array, at: number, session: Session): NbdRequest | string {
    if (at !== this.#nextAt || bytes !== this.#chunk || this.#next >= this.#count || session !== this.#session) this.#refill(bytes, at, session);
    const index = this.#next++;
    const verdict = this.#verdicts[index]!;
    if (verdict === VERDICT_BAD_MAGIC) return decodeRequest(bytes, at); // the same message as the 'ts' kind
    const request = this.#requests[index]!;
    this.#nextAt = at + REQUEST_HEADER_BYTES + (request.type === NBD_CMD_WRITE ? request.lengthBytes : 0);
    this.#last = request;
    this.#lastVerdict = verdict;
    return request;
  }

  check(request: NbdRequest, session: Session): Refusal | null {
    if (request === this.#last && this.#lastVerdict === VERDICT_OK && session === this.#session) return null;
    const refusal = checkRequest(request, session);
    assert(refusal !== null || request !== this.#last, `frame kernel refused a request checkRequest accepts (verdict ${this.#lastVerdict})`);
    return refusal;
  }

  #refill(bytes: Uint8Array, at: number, session: Session): void {
    if (session !== this.#session) {
      this.#limits = new NbdLimits(session.sizeBytes, session.minimumBlockBytes, session.transmissionFlags, session.structuredReplies, session.baseAllocation, MAX_BLOCK_BYTES);
      this.#session = session;
    }
    const count = this.batch.decode(bytes, at, this.#limits!);
    assert(count > 0, 'a whole header was there');
    const records = this.batch.records;
    const requests = this.#requests;
    const verdicts = this.#verdicts;
    for (let i = 0, r = 0; i < count; i++, r += RECORD_WORDS) {
      const offsetHigh = records[r + OFFSET_HIGH]!;
      requests[i] = {
        flags: records[r + FLAGS]!,
        type: records[r + TYPE]!,
        handleHigh: records[r + COOKIE_HIGH]!,
        handleLow: records[r + COOKIE_LOW]!,
        offsetBytes: offsetHigh >= SAFE_HIGH_LIMIT ? -1 : offsetHigh * TWO_32 + records[r + OFFSET_LOW]!,
        lengthBytes: records[r + LENGTH]!,
      };
      verdicts[i] = records[r + VERDICT]!;
    }
    this.#chunk = bytes;
    this.#count = count;
    this.#next = 0;
    this.#nextAt = at;
  }
}

export function encodeRequest(request: NbdRequest, data?: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(REQUEST_HEADER_BYTES + (data?.length ?? 0));
  writeU32(bytes, 0, NBD_REQUEST_MAGIC);
  writeU16(bytes, 4, request.flags);
  writeU16(bytes, 6, request.type);
  writeU32(bytes, 8, request.handleHigh);
  writeU32(bytes, 12, request.handleLow);
  writeU64(bytes, 16, request.offsetBytes);
  writeU32(bytes, 24, request.lengthBytes);
  if (data) bytes.set(data, REQUEST_HEADER_BYTES);
  return bytes;
}

type Handle = Pick<NbdRequest, 'handleHigh' | 'handleLow'>;
/** What a chunk header echoes of its request: the handle, and (extended headers only) the offset. */
export type ReplyTo = Pick<NbdRequest, 'handleHigh' | 'handleLow'> & { offsetBytes?: number };

/**
 * How chunk headers look on one connection: compact structured (20 bytes, below) or extended
 * (32 bytes, extended-codec.ts). Every chunk encoder takes one; the payloads are the same.
 */
export interface ChunkFormat {
  readonly headerBytes: number;
  /** BLOCK_STATUS answers as BLOCK_STATUS_EXT (64-bit lengths and status). */
  readonly wideStatus: boolean;
  write(bytes: Uint8Array, at: number, flags: number, type: number, replyTo: ReplyTo, payloadBytes: number): void;
}

export const COMPACT_CHUNKS: ChunkFormat = {
  headerBytes: STRUCTURED_HEADER_BYTES,
  wideStatus: false,
  write: (bytes, at, flags, type, replyTo, payloadBytes) => writeStructuredHeader(bytes, at, flags, type, replyTo, payloadBytes),
};

export function writeSimpleReplyHeader(bytes: Uint8Array, at: number, error: number, handle: Handle): void {
  writeU32(bytes, at, NBD_SIMPLE_REPLY_MAGIC);
  writeU32(bytes, at + 4, error);
  writeU32(bytes, at + 8, handle.handleHigh);
  writeU32(bytes, at + 12, handle.handleLow);
}

export function writeStructuredHeader(bytes: Uint8Array, at: number, flags: number, type: number, handle: Handle, payloadBytes: number): void {
  writeU32(bytes, at, NBD_STRUCTURED_REPLY_MAGIC);
  writeU16(bytes, at + 4, flags);
  writeU16(bytes, at + 6, type);
  writeU32(bytes, at + 8, handle.handleHigh);
  writeU32(bytes, at + 12, handle.handleLow);
  writeU32(bytes, at + 16, payloadBytes);
}

export function encodeSimpleReply(error: number, handle: Handle): Uint8Array {
  const bytes = new Uint8Array(SIMPLE_REPLY_HEADER_BYTES);
  writeSimpleReplyHeader(bytes, 0, error, handle);
  return bytes;
}

/** Bytes before the data of a successful read reply. */
export function readReplyHeaderBytes(structured: boolean): number {
  return structured ? OFFSET_DATA_HEADER_BYTES : SIMPLE_REPLY_HEADER_BYTES;
}

/**
 * Writes the header of a successful read reply at the start of `bytes`, whose remaining
 * `dataBytes` hold the data: a simple reply, or one final OFFSET_DATA chunk.
 */
export function writeReadReplyHeader(bytes: Uint8Array, structured: boolean, handle: Handle, offsetBytes: number, dataBytes: number): void {
  if (!structured) {
    writeSimpleReplyHeader(bytes, 0, 0, handle);
    return;
  }
  writeStructuredHeader(bytes, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, handle, 8 + dataBytes);
  writeU64(bytes, STRUCTURED_HEADER_BYTES, offsetBytes);
}

/** Bytes of an OFFSET_HOLE chunk: header, offset u64, hole size u32. */
export function holeChunkBytes(format: ChunkFormat): number {
  return format.headerBytes + 12;
}

/** Bytes of an OFFSET_DATA chunk before its data: header, offset u64. */
export function dataChunkHeaderBytes(format: ChunkFormat): number {
  return format.headerBytes + 8;
}

/**
 * Writes the header of an OFFSET_DATA chunk at `at` (its `dataBytes` of data follow it, at
 * `at + dataChunkHeaderBytes(format)`); `done` flags the reply's last chunk.
 */
export function writeDataChunkHeader(bytes: Uint8Array, at: number, done: boolean, replyTo: ReplyTo, offsetBytes: number, dataBytes: number, format: ChunkFormat = COMPACT_CHUNKS): void {
  format.write(bytes, at, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_DATA, replyTo, 8 + dataBytes);
  writeU64(bytes, at + format.headerBytes, offsetBytes);
}

/** Writes an OFFSET_HOLE chunk at `at`: `lengthBytes` from `offsetBytes` read as zeros. */
export function writeHoleChunk(bytes: Uint8Array, at: number, done: boolean, replyTo: ReplyTo, offsetBytes: number, lengthBytes: number, format: ChunkFormat = COMPACT_CHUNKS): void {
  format.write(bytes, at, done ? NBD_REPLY_FLAG_DONE : 0, NBD_REPLY_TYPE_OFFSET_HOLE, replyTo, 12);
  writeU64(bytes, at + format.headerBytes, offsetBytes);
  writeU32(bytes, at + format.headerBytes + 8, lengthBytes);
}

/** A final NONE chunk: success with nothing to say (a zero-length structured read). */
export function encodeNoneChunk(replyTo: ReplyTo, format: ChunkFormat = COMPACT_CHUNKS): Uint8Array {
  const bytes = new Uint8Array(format.headerBytes);
  format.write(bytes, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, replyTo, 0);
  return bytes;
}

/** A final ERROR chunk: error u32, message length u16, message. */
export function encodeErrorChunk(replyTo: ReplyTo, error: number, message: Uint8Array, format: ChunkFormat = COMPACT_CHUNKS): Uint8Array {
  const at = format.headerBytes;
  const bytes = new Uint8Array(at + 6 + message.length);
  format.write(bytes, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, replyTo, 6 + message.length);
  writeU32(bytes, at, error);
  writeU16(bytes, at + 4, message.length);
  bytes.set(message, at + 6);
  return bytes;
}

export interface BlockDescriptor {
  lengthBytes: number;
  statusFlags: number;
}

/**
 * A BLOCK_STATUS chunk for one metadata context; the reply's last chunk (`done`, the default) is
 * flagged DONE. With extended headers it is BLOCK_STATUS_EXT: a descriptor count after the
 * context id, and each descriptor's length and status 64 bits wide.
 */
export function encodeBlockStatusChunk(replyTo: ReplyTo, contextId: number, descriptors: readonly BlockDescriptor[], done = true, format: ChunkFormat = COMPACT_CHUNKS): Uint8Array {
  const wide = format.wideStatus;
  const descriptorBytes = wide ? 2 * BLOCK_DESCRIPTOR_BYTES : BLOCK_DESCRIPTOR_BYTES;
  const payloadBytes = (wide ? 8 : 4) + descriptors.length * descriptorBytes;
  const bytes = new Uint8Array(format.headerBytes + payloadBytes);
  format.write(bytes, 0, done ? NBD_REPLY_FLAG_DONE : 0, wide ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT : NBD_REPLY_TYPE_BLOCK_STATUS, replyTo, payloadBytes);
  let at = format.headerBytes;
  writeU32(bytes, at, contextId);
  if (wide) writeU32(bytes, at + 4, descriptors.length);
  at += wide ? 8 : 4;
  for (const descriptor of descriptors) {
    if (wide) {
      writeU64(bytes, at, descriptor.lengthBytes);
      writeU64(bytes, at + 8, descriptor.statusFlags);
    } else {
      writeU32(bytes, at, descriptor.lengthBytes);
      writeU32(bytes, at + 4, descriptor.statusFlags);
    }
    at += descriptorBytes;
  }
  return bytes;
}

// ---- reply decoders, for clients and tests ----

export interface ReplyHeader {
  structured: boolean;
  /** Simple replies: the error. Structured: 0. */
  error: number;
  flags: number;
  type: number;
  handleHigh: number;
  handleLow: number;
  /** Structured: the payload length. Simple: 0 (a read's data length is known only to the client). */
  payloadBytes: number;
}

/** Bytes needed to decode the reply header starting with `magic`, or why `magic` is no reply. */
export function replyHeaderBytes(bytes: Uint8Array, at: number): number | string {
  const magic = readU32(bytes, at);
  if (magic === NBD_SIMPLE_REPLY_MAGIC) return SIMPLE_REPLY_HEADER_BYTES;
  if (magic === NBD_STRUCTURED_REPLY_MAGIC) return STRUCTURED_HEADER_BYTES;
  return `reply magic 0x${magic.toString(16)} is neither simple nor structured`;
}

export function decodeReplyHeader(bytes: Uint8Array, at: number): ReplyHeader | string {
  const size = replyHeaderBytes(bytes, at);
  if (typeof size === 'string') return size;
  if (size === SIMPLE_REPLY_HEADER_BYTES) {
    return { structured: false, error: readU32(bytes, at + 4), flags: 0, type: 0, handleHigh: readU32(bytes, at + 8), handleLow: readU32(bytes, at + 12), payloadBytes: 0 };
  }
  return {
    structured: true, error: 0, flags: readU16(bytes, at + 4), type: readU16(bytes, at + 6),
    handleHigh: readU32(bytes, at + 8), handleLow: readU32(bytes, at + 12), payloadBytes: readU32(bytes, at + 16),
  };
}
