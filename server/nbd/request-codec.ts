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
 */
import {
  BLOCK_DESCRIPTOR_BYTES, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA, NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC, NBD_STRUCTURED_REPLY_MAGIC, OFFSET_DATA_HEADER_BYTES,
  REQUEST_HEADER_BYTES, SIMPLE_REPLY_HEADER_BYTES, STRUCTURED_HEADER_BYTES,
} from './constants.ts';
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from './wire.ts';

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

/** A final NONE chunk: success with nothing to say (a zero-length structured read). */
export function encodeNoneChunk(handle: Handle): Uint8Array {
  const bytes = new Uint8Array(STRUCTURED_HEADER_BYTES);
  writeStructuredHeader(bytes, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, handle, 0);
  return bytes;
}

/** A final ERROR chunk: error u32, message length u16, message. */
export function encodeErrorChunk(handle: Handle, error: number, message: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(STRUCTURED_HEADER_BYTES + 6 + message.length);
  writeStructuredHeader(bytes, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, 6 + message.length);
  writeU32(bytes, STRUCTURED_HEADER_BYTES, error);
  writeU16(bytes, STRUCTURED_HEADER_BYTES + 4, message.length);
  bytes.set(message, STRUCTURED_HEADER_BYTES + 6);
  return bytes;
}

export interface BlockDescriptor {
  lengthBytes: number;
  statusFlags: number;
}

/** A final BLOCK_STATUS chunk for one metadata context. */
export function encodeBlockStatusChunk(handle: Handle, contextId: number, descriptors: readonly BlockDescriptor[]): Uint8Array {
  const payloadBytes = 4 + descriptors.length * BLOCK_DESCRIPTOR_BYTES;
  const bytes = new Uint8Array(STRUCTURED_HEADER_BYTES + payloadBytes);
  writeStructuredHeader(bytes, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, handle, payloadBytes);
  writeU32(bytes, STRUCTURED_HEADER_BYTES, contextId);
  let at = STRUCTURED_HEADER_BYTES + 4;
  for (const descriptor of descriptors) {
    writeU32(bytes, at, descriptor.lengthBytes);
    writeU32(bytes, at + 4, descriptor.statusFlags);
    at += BLOCK_DESCRIPTOR_BYTES;
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
