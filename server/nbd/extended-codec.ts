/**
 * Extended headers (proto.md's EXTENDED_HEADERS extension, branch extension-ext-header): after
 * NBD_OPT_EXTENDED_HEADERS is acknowledged, every request and every reply chunk has a 32-byte
 * header with 64-bit lengths, and no simple replies are used:
 *
 *   request   C: magic 0x21e41c71 u32, flags u16, type u16, cookie u64, offset u64, length u64  (32 B)
 *                [+ length bytes of payload when flags has PAYLOAD_LEN: WRITE always]
 *   chunk     S: magic 0x6e8a278c u32, flags u16, type u16, cookie u64, offset u64 (the request's),
 *                payload length u64  (32 B) + payload
 *     BLOCK_STATUS_EXT  context id u32, descriptor count u32, n x (length u64, status u64)
 *                       (request-codec.ts's encodeBlockStatusChunk, given this format)
 *
 * Without PAYLOAD_LEN the length is the effect length (TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS
 * may cover more than 4 GiB in one request); the chunk payloads are the compact ones otherwise.
 * The cookie is kept as two u32 words like the compact handle.
 */
import {
  EXTENDED_REPLY_HEADER_BYTES, EXTENDED_REQUEST_HEADER_BYTES, NBD_CMD_FLAG_PAYLOAD_LEN, NBD_EXTENDED_REPLY_MAGIC, NBD_EXTENDED_REQUEST_MAGIC,
} from './constants.ts';
import { checkRequest } from './request-check.ts';
import type { ChunkFormat, NbdRequest, RequestDecoder } from './request-codec.ts';
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from './wire.ts';

/** The extended request header at `at` (EXTENDED_REQUEST_HEADER_BYTES available), or why it is not one. */
export function decodeExtendedRequest(bytes: Uint8Array, at: number): NbdRequest | string {
  const magic = readU32(bytes, at);
  if (magic !== NBD_EXTENDED_REQUEST_MAGIC) return `extended request magic is 0x${magic.toString(16).padStart(8, '0')}, not 0x21e41c71`;
  return {
    flags: readU16(bytes, at + 4),
    type: readU16(bytes, at + 6),
    handleHigh: readU32(bytes, at + 8),
    handleLow: readU32(bytes, at + 12),
    offsetBytes: readU64(bytes, at + 16),
    // -1 (2^53 or more) is past any export: the check refuses it.
    lengthBytes: readU64(bytes, at + 24),
  };
}

/** A request as a client sends it with extended headers (for our clients and tests). */
export function encodeExtendedRequest(request: NbdRequest, payload?: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(EXTENDED_REQUEST_HEADER_BYTES + (payload?.length ?? 0));
  writeU32(bytes, 0, NBD_EXTENDED_REQUEST_MAGIC);
  writeU16(bytes, 4, request.flags);
  writeU16(bytes, 6, request.type);
  writeU32(bytes, 8, request.handleHigh);
  writeU32(bytes, 12, request.handleLow);
  writeU64(bytes, 16, request.offsetBytes);
  writeU64(bytes, 24, request.lengthBytes);
  if (payload !== undefined) bytes.set(payload, EXTENDED_REQUEST_HEADER_BYTES);
  return bytes;
}

/** Payload bytes that follow an extended request's header. */
export function extendedPayloadBytes(request: NbdRequest): number {
  return (request.flags & NBD_CMD_FLAG_PAYLOAD_LEN) !== 0 ? request.lengthBytes : 0;
}

/** One decoder for every extended-header connection (one header at a time; the frame kernel reads compact headers only). */
export const extendedRequestDecoder: RequestDecoder = { kind: 'ts', decode: decodeExtendedRequest, check: checkRequest };

export const EXTENDED_CHUNKS: ChunkFormat = {
  headerBytes: EXTENDED_REPLY_HEADER_BYTES,
  wideStatus: true,
  write(bytes, at, flags, type, replyTo, payloadBytes) {
    writeU32(bytes, at, NBD_EXTENDED_REPLY_MAGIC);
    writeU16(bytes, at + 4, flags);
    writeU16(bytes, at + 6, type);
    writeU32(bytes, at + 8, replyTo.handleHigh);
    writeU32(bytes, at + 12, replyTo.handleLow);
    // The request's offset (one past the safe range was decoded as -1: echoed as all ones).
    const offsetBytes = replyTo.offsetBytes ?? 0;
    if (offsetBytes < 0) {
      writeU32(bytes, at + 16, 0xffffffff);
      writeU32(bytes, at + 20, 0xffffffff);
    } else {
      writeU64(bytes, at + 16, offsetBytes);
    }
    writeU64(bytes, at + 24, payloadBytes);
  },
};

/** A decoded extended reply chunk header (for our clients and tests). */
export interface ExtendedReplyHeader {
  flags: number;
  type: number;
  handleHigh: number;
  handleLow: number;
  offsetBytes: number;
  payloadBytes: number;
}

export function decodeExtendedReplyHeader(bytes: Uint8Array, at: number): ExtendedReplyHeader | string {
  const magic = readU32(bytes, at);
  if (magic !== NBD_EXTENDED_REPLY_MAGIC) return `reply magic 0x${magic.toString(16)} is not the extended reply magic`;
  return {
    flags: readU16(bytes, at + 4),
    type: readU16(bytes, at + 6),
    handleHigh: readU32(bytes, at + 8),
    handleLow: readU32(bytes, at + 12),
    offsetBytes: readU64(bytes, at + 16),
    payloadBytes: readU64(bytes, at + 24),
  };
}
