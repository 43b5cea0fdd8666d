/**
 * Handshake frames (fixed newstyle, proto.md "Handshake"): the greeting, the client flags, option
 * headers and their replies, and the payloads of the options we understand. Codecs as
 * size/encode/decode; a decoder that meets a malformed frame returns the reason as a string
 * (STYLE 12), never throws, never reads past the frame.
 *
 *   greeting      S: 'NBDMAGIC' u64, 'IHAVEOPT' u64, handshake flags u16            (18 B)
 *   client flags  C: u32                                                              (4 B)
 *   option        C: 'IHAVEOPT' u64, option u32, length u32, data[length]           (16 B + data)
 *   option reply  S: 0x3e889045565a9 u64, option u32, reply type u32, length u32, data (20 B + data)
 *   EXPORT_NAME   S: size u64, transmission flags u16, [124 zero bytes unless NO_ZEROES]
 */
import {
  CLIENT_FLAGS_BYTES, EXPORT_NAME_REPLY_BYTES, EXPORT_NAME_REPLY_PAD_BYTES, GREETING_BYTES, IHAVEOPT_HI, IHAVEOPT_LO,
  INFO_BLOCK_SIZE_BYTES, INFO_EXPORT_BYTES, MAX_STRING_BYTES, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT, NBD_MAGIC_HI, NBD_MAGIC_LO,
  OPTION_HEADER_BYTES, OPTION_REPLY_HEADER_BYTES, OPTION_REPLY_MAGIC_HI, OPTION_REPLY_MAGIC_LO, SERVER_HANDSHAKE_FLAGS,
} from './constants.ts';
import { decodeString, readU16, readU32, utf8, writeU16, writeU32, writeU64 } from './wire.ts';

export function encodeGreeting(): Uint8Array {
  const bytes = new Uint8Array(GREETING_BYTES);
  writeU32(bytes, 0, NBD_MAGIC_HI);
  writeU32(bytes, 4, NBD_MAGIC_LO);
  writeU32(bytes, 8, IHAVEOPT_HI);
  writeU32(bytes, 12, IHAVEOPT_LO);
  writeU16(bytes, 16, SERVER_HANDSHAKE_FLAGS);
  return bytes;
}

export function decodeClientFlags(bytes: Uint8Array, at: number): number {
  return readU32(bytes, at);
}

export function encodeClientFlags(flags: number): Uint8Array {
  const bytes = new Uint8Array(CLIENT_FLAGS_BYTES);
  writeU32(bytes, 0, flags);
  return bytes;
}

export interface OptionHeader {
  option: number;
  lengthBytes: number;
}

/** The option header at `at` (OPTION_HEADER_BYTES available), or why it is not one. */
export function decodeOptionHeader(bytes: Uint8Array, at: number): OptionHeader | string {
  if (readU32(bytes, at) !== IHAVEOPT_HI || readU32(bytes, at + 4) !== IHAVEOPT_LO) return 'option magic is not IHAVEOPT';
  return { option: readU32(bytes, at + 8), lengthBytes: readU32(bytes, at + 12) };
}

export function encodeOptionHeader(option: number, data: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(OPTION_HEADER_BYTES + data.length);
  writeU32(bytes, 0, IHAVEOPT_HI);
  writeU32(bytes, 4, IHAVEOPT_LO);
  writeU32(bytes, 8, option);
  writeU32(bytes, 12, data.length);
  bytes.set(data, OPTION_HEADER_BYTES);
  return bytes;
}

export function encodeOptionReply(option: number, replyType: number, data: Uint8Array = EMPTY): Uint8Array {
  const bytes = new Uint8Array(OPTION_REPLY_HEADER_BYTES + data.length);
  writeU32(bytes, 0, OPTION_REPLY_MAGIC_HI);
  writeU32(bytes, 4, OPTION_REPLY_MAGIC_LO);
  writeU32(bytes, 8, option);
  writeU32(bytes, 12, replyType);
  writeU32(bytes, 16, data.length);
  bytes.set(data, OPTION_REPLY_HEADER_BYTES);
  return bytes;
}

export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Uint8Array {
  const bytes = new Uint8Array(EXPORT_NAME_REPLY_BYTES + (noZeroes ? 0 : EXPORT_NAME_REPLY_PAD_BYTES));
  writeU64(bytes, 0, sizeBytes);
  writeU16(bytes, 8, transmissionFlags);
  return bytes;
}

// ---- reply payloads ----

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Uint8Array {
  const bytes = new Uint8Array(INFO_EXPORT_BYTES);
  writeU16(bytes, 0, NBD_INFO_EXPORT);
  writeU64(bytes, 2, sizeBytes);
  writeU16(bytes, 10, transmissionFlags);
  return bytes;
}

/** NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type, then the string. */
export function encodeInfoString(infoType: number, text: string): Uint8Array {
  const textBytes = utf8(text);
  const bytes = new Uint8Array(2 + textBytes.length);
  writeU16(bytes, 0, infoType);
  bytes.set(textBytes, 2);
  return bytes;
}

export function encodeInfoBlockSize(minimumBytes: number, preferredBytes: number, maximumBytes: number): Uint8Array {
  const bytes = new Uint8Array(INFO_BLOCK_SIZE_BYTES);
  writeU16(bytes, 0, NBD_INFO_BLOCK_SIZE);
  writeU32(bytes, 2, minimumBytes);
  writeU32(bytes, 6, preferredBytes);
  writeU32(bytes, 10, maximumBytes);
  return bytes;
}

/** NBD_REP_SERVER: name length u32, name, then a description for humans (may be empty). */
export function encodeServerEntry(name: string, description: string): Uint8Array {
  const nameBytes = utf8(name);
  const descriptionBytes = utf8(description);
  const bytes = new Uint8Array(4 + nameBytes.length + descriptionBytes.length);
  writeU32(bytes, 0, nameBytes.length);
  bytes.set(nameBytes, 4);
  bytes.set(descriptionBytes, 4 + nameBytes.length);
  return bytes;
}

/** NBD_REP_META_CONTEXT: context id u32, then the context name. */
export function encodeMetaContext(contextId: number, name: string): Uint8Array {
  const nameBytes = utf8(name);
  const bytes = new Uint8Array(4 + nameBytes.length);
  writeU32(bytes, 0, contextId);
  bytes.set(nameBytes, 4);
  return bytes;
}

// ---- option payloads the client sends ----

/** NBD_OPT_INFO / NBD_OPT_GO: name length u32, name, count u16, count x info type u16. */
export interface GoRequest {
  name: string;
  infoTypes: number[];
}

export function decodeGoRequest(data: Uint8Array): GoRequest | string {
  if (data.length < 6) return `INFO/GO data is ${data.length} bytes, less than the minimum 6`;
  const nameBytes = readU32(data, 0);
  if (nameBytes > data.length - 6) return `INFO/GO name length ${nameBytes} overruns the ${data.length}-byte option`;
  const name = decodeString(data.subarray(4, 4 + nameBytes), MAX_STRING_BYTES);
  if (name === null) return 'INFO/GO export name is not a valid string (UTF-8, no NUL, at most 4096 bytes)';
  const countAt = 4 + nameBytes;
  const count = readU16(data, countAt);
  if (data.length !== countAt + 2 + 2 * count) return `INFO/GO lists ${count} info requests but carries ${data.length - countAt - 2} bytes for them`;
  const infoTypes: number[] = [];
  for (let i = 0; i < count; i++) infoTypes.push(readU16(data, countAt + 2 + 2 * i));
  return { name, infoTypes };
}

export function encodeGoRequest(request: GoRequest): Uint8Array {
  const nameBytes = utf8(request.name);
  const bytes = new Uint8Array(4 + nameBytes.length + 2 + 2 * request.infoTypes.length);
  writeU32(bytes, 0, nameBytes.length);
  bytes.set(nameBytes, 4);
  writeU16(bytes, 4 + nameBytes.length, request.infoTypes.length);
  request.infoTypes.forEach((type, i) => writeU16(bytes, 6 + nameBytes.length + 2 * i, type));
  return bytes;
}

/** NBD_OPT_LIST_META_CONTEXT / SET_META_CONTEXT: name length u32, name, count u32, count x (length u32, query). */
export interface MetaContextRequest {
  name: string;
  queries: string[];
}

export function decodeMetaContextRequest(data: Uint8Array): MetaContextRequest | string {
  if (data.length < 8) return `META_CONTEXT data is ${data.length} bytes, less than the minimum 8`;
  const nameBytes = readU32(data, 0);
  if (nameBytes > data.length - 8) return `META_CONTEXT name length ${nameBytes} overruns the ${data.length}-byte option`;
  const name = decodeString(data.subarray(4, 4 + nameBytes), MAX_STRING_BYTES);
  if (name === null) return 'META_CONTEXT export name is not a valid string';
  let at = 4 + nameBytes;
  const count = readU32(data, at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (data.length - at < 4) return `META_CONTEXT query ${i} of ${count} overruns the option`;
    const queryBytes = readU32(data, at);
    at += 4;
    if (queryBytes > data.length - at) return `META_CONTEXT query ${i} length ${queryBytes} overruns the option`;
    const query = decodeString(data.subarray(at, at + queryBytes), MAX_STRING_BYTES);
    if (query === null) return `META_CONTEXT query ${i} is not a valid string`;
    queries.push(query);
    at += queryBytes;
  }
  if (at !== data.length) return `META_CONTEXT has ${data.length - at} bytes after its last query`;
  return { name, queries };
}

export function encodeMetaContextRequest(request: MetaContextRequest): Uint8Array {
  const nameBytes = utf8(request.name);
  const queryBytes = request.queries.map(utf8);
  const bytes = new Uint8Array(8 + nameBytes.length + queryBytes.reduce((sum, q) => sum + 4 + q.length, 0));
  writeU32(bytes, 0, nameBytes.length);
  bytes.set(nameBytes, 4);
  let at = 4 + nameBytes.length;
  writeU32(bytes, at, queryBytes.length);
  at += 4;
  for (const query of queryBytes) {
    writeU32(bytes, at, query.length);
    bytes.set(query, at + 4);
    at += 4 + query.length;
  }
  return bytes;
}

const EMPTY = new Uint8Array(0);
