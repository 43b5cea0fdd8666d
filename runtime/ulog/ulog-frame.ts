/**
 * dm-log-userspace frames (include/uapi/linux/dm-log-userspace.h as current kernels have it; the
 * spec's ../shared/spec/dm-log-userspace.h is the seed's layout), little-endian here:
 *
 *   0    luid u64            the log instance (dm-log-userspace-luid.txt): uuid + luid name one
 *   8    uuid[129]           DM_UUID_LEN, NUL-terminated inside the field
 *   137  padding[3]
 *   140  version u32         2 from current kernels; 0 where the seed's padding[7] lay
 *   144  error i32           a reply's result: 0 or a negative errno
 *   148  seq u32             replies are matched to requests by it
 *   152  request_type u32    the type in the low 8 bits (DM_ULOG_REQUEST_MASK)
 *   156  data_size u32       payload bytes after the header
 *   160  data
 *
 * Payloads (to the log server: `request`, back to the client: `reply`), per type:
 *   CTR       request: "<args...>" string (the table's log arguments, NUL-terminated), reply:
 *             optional device name string
 *   GET_REGION_SIZE reply u64; IS_CLEAN / IN_SYNC request u64 region, reply i64 0|1
 *   MARK_REGION / CLEAR_REGION request u64[] regions (data_size / 8 of them)
 *   GET_RESYNC_WORK reply {i64 has_work, u64 region}; SET_REGION_SYNC request {u64 region, i64 in_sync}
 *   GET_SYNC_COUNT reply u64; STATUS_INFO / STATUS_TABLE reply string
 *   IS_REMOTE_RECOVERING request u64 region, reply {i64 recovering, u64 in_sync_hint}
 *   FLUSH request: none, or u64[] regions to mark first (the kernel's integrated_flush)
 *   DTR, PRESUSPEND, POSTSUSPEND, RESUME: none (DTR may carry the CTR string; it is kept).
 *
 * Codecs (STYLE 13): `invalidHeader(bytes)` says why bytes are not a header (or null),
 * `decodeHeader` reads one it accepted, `encodeHeader` writes one; payloads likewise per shape.
 * What is refused: a short header, a version other than 0 or 2, an unknown type, a uuid without
 * its NUL or not UTF-8, data_size above `maxDataBytes`, payloads of the wrong size for their type,
 * regions beyond 2^53.
 */
import { getU64, setU64 } from '../le64.ts';
import { strictUtf8 } from '../net/strict-utf8.ts';

export const ULOG_HEADER_BYTES = 160;
export const ULOG_UUID_BYTES = 129;
export const ULOG_VERSION = 2;
export const ULOG_REQUEST_MASK = 0xff;
/** What a server takes in one payload unless told otherwise (a MARK of 32 regions is 256 bytes). */
export const ULOG_MAX_DATA_BYTES = 64 * 1024;

export const ULOG = {
  CTR: 1, DTR: 2, PRESUSPEND: 3, POSTSUSPEND: 4, RESUME: 5, GET_REGION_SIZE: 6, IS_CLEAN: 7, IN_SYNC: 8, FLUSH: 9,
  MARK_REGION: 10, CLEAR_REGION: 11, GET_RESYNC_WORK: 12, SET_REGION_SYNC: 13, GET_SYNC_COUNT: 14, STATUS_INFO: 15,
  STATUS_TABLE: 16, IS_REMOTE_RECOVERING: 17,
} as const;
export type UlogType = (typeof ULOG)[keyof typeof ULOG];
const TYPE_NAMES = Object.fromEntries(Object.entries(ULOG).map(([name, code]) => [code, name])) as Record<number, string>;

export function ulogTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type ${type}`;
}

export interface UlogHeader {
  luid: number;
  uuid: string;
  version: number;
  error: number;
  seq: number;
  /** The type (request_type & 0xff). */
  type: UlogType;
  /** request_type's bits above the type, kept as they came. */
  typeFlags: number;
  dataBytes: number;
}

export function encodeHeader(header: UlogHeader, out = new Uint8Array(ULOG_HEADER_BYTES)): Uint8Array {
  const uuid = new TextEncoder().encode(header.uuid);
  if (uuid.length >= ULOG_UUID_BYTES) throw new RangeError(`uuid is ${uuid.length} bytes; at most ${ULOG_UUID_BYTES - 1}`);
  out.fill(0, 0, ULOG_HEADER_BYTES);
  const v = new DataView(out.buffer, out.byteOffset, ULOG_HEADER_BYTES);
  setU64(v, 0, header.luid);
  out.set(uuid, 8);
  v.setUint32(140, header.version, true);
  v.setInt32(144, header.error, true);
  v.setUint32(148, header.seq >>> 0, true);
  v.setUint32(152, ((header.typeFlags & ~ULOG_REQUEST_MASK) | header.type) >>> 0, true);
  v.setUint32(156, header.dataBytes, true);
  return out;
}

/** Why `bytes` (at least a header's worth, from a frame's start) is not a header we serve, or null. */
export function invalidHeader(bytes: Uint8Array, maxDataBytes = ULOG_MAX_DATA_BYTES): string | null {
  if (bytes.length < ULOG_HEADER_BYTES) return `a header is ${ULOG_HEADER_BYTES} bytes, got ${bytes.length}`;
  const v = new DataView(bytes.buffer, bytes.byteOffset, ULOG_HEADER_BYTES);
  if (getU64(v, 0) === null) return 'luid beyond 2^53';
  const nul = bytes.subarray(8, 8 + ULOG_UUID_BYTES).indexOf(0);
  if (nul < 0) return 'uuid has no NUL inside its 129 bytes';
  if (strictUtf8(bytes.subarray(8, 8 + nul)) === null) return 'uuid is not UTF-8';
  const version = v.getUint32(140, true);
  if (version !== 0 && version !== ULOG_VERSION) return `version ${version} (0 or ${ULOG_VERSION} are served)`;
  const type = v.getUint32(152, true) & ULOG_REQUEST_MASK;
  if (TYPE_NAMES[type] === undefined) return `unknown request type ${type}`;
  const dataBytes = v.getUint32(156, true);
  if (dataBytes > maxDataBytes) return `data_size ${dataBytes} is above ${maxDataBytes}`;
  return null;
}

/** The header of bytes invalidHeader accepted (calling it on others is a bug). */
export function decodeHeader(bytes: Uint8Array): UlogHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset, ULOG_HEADER_BYTES);
  const nul = bytes.subarray(8, 8 + ULOG_UUID_BYTES).indexOf(0);
  const requestType = v.getUint32(152, true);
  return {
    luid: getU64(v, 0)!,
    uuid: strictUtf8(bytes.subarray(8, 8 + nul))!,
    version: v.getUint32(140, true),
    error: v.getInt32(144, true),
    seq: v.getUint32(148, true),
    type: (requestType & ULOG_REQUEST_MASK) as UlogType,
    typeFlags: requestType & ~ULOG_REQUEST_MASK,
    dataBytes: v.getUint32(156, true),
  };
}

// ---- payloads ----

/** A NUL-terminated string payload (CTR arguments, a device name, a status line). */
export function encodeString(text: string): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** The string of a payload: up to its first NUL (the kernel's strings end there), UTF-8; null if not. */
export function decodeString(data: Uint8Array): string | null {
  const nul = data.indexOf(0);
  return strictUtf8(nul < 0 ? data : data.subarray(0, nul));
}

/** u64 regions (MARK_REGION, CLEAR_REGION), or why the payload is not a list of them. */
export function decodeRegions(data: Uint8Array): number[] | string {
  if (data.length % 8 !== 0) return `a region list is a multiple of 8 bytes, got ${data.length}`;
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const regions: number[] = [];
  for (let at = 0; at < data.length; at += 8) {
    const region = getU64(v, at);
    if (region === null) return `region at byte ${at} beyond 2^53`;
    regions.push(region);
  }
  return regions;
}

export function encodeRegions(regions: readonly number[]): Uint8Array {
  const out = new Uint8Array(regions.length * 8);
  const v = new DataView(out.buffer);
  regions.forEach((region, i) => setU64(v, i * 8, region));
  return out;
}

/** One u64 (a region in; a region size or sync count out), or why not. */
export function decodeU64(data: Uint8Array): number | string {
  if (data.length !== 8) return `expected 8 bytes, got ${data.length}`;
  return getU64(new DataView(data.buffer, data.byteOffset, 8), 0) ?? 'a value beyond 2^53';
}

export function encodeU64(value: number): Uint8Array {
  const out = new Uint8Array(8);
  setU64(new DataView(out.buffer), 0, value);
  return out;
}

/** Two 64-bit fields: {i64, u64} (GET_RESYNC_WORK and IS_REMOTE_RECOVERING replies) or {u64, i64} (SET_REGION_SYNC). */
export function encodePair(first: number, second: number): Uint8Array {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  v.setBigInt64(0, BigInt(first), true);
  v.setBigInt64(8, BigInt(second), true);
  return out;
}

export function decodePair(data: Uint8Array): [number, number] | string {
  if (data.length !== 16) return `expected 16 bytes, got ${data.length}`;
  const v = new DataView(data.buffer, data.byteOffset, 16);
  const a = v.getBigInt64(0, true);
  const b = v.getBigInt64(8, true);
  const limit = BigInt(Number.MAX_SAFE_INTEGER);
  if (a > limit || a < -limit || b > limit || b < -limit) return 'a value beyond 2^53';
  return [Number(a), Number(b)];
}

/** Payload sizes a request of each type may carry: a fixed size, or a check. */
export function invalidRequestPayload(type: UlogType, data: Uint8Array): string | null {
  switch (type) {
    case ULOG.IS_CLEAN:
    case ULOG.IN_SYNC:
    case ULOG.IS_REMOTE_RECOVERING: {
      const region = decodeU64(data);
      return typeof region === 'string' ? `${ulogTypeName(type)}: ${region}` : null;
    }
    case ULOG.MARK_REGION:
    case ULOG.CLEAR_REGION:
    case ULOG.FLUSH: {
      const regions = decodeRegions(data);
      return typeof regions === 'string' ? `${ulogTypeName(type)}: ${regions}` : null;
    }
    case ULOG.SET_REGION_SYNC: {
      const pair = decodePair(data);
      if (typeof pair === 'string') return `SET_REGION_SYNC: ${pair}`;
      return pair[0] < 0 ? 'SET_REGION_SYNC: a negative region' : null;
    }
    case ULOG.CTR:
    case ULOG.DTR:
      return decodeString(data) === null ? `${ulogTypeName(type)}: the arguments are not UTF-8` : null;
    default:
      return data.length === 0 ? null : `${ulogTypeName(type)} carries no payload, got ${data.length} bytes`;
  }
}
