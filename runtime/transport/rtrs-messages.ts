/**
 * RTRS messages, byte-compatible with the kernel's (drivers/infiniband/ulp/rtrs/rtrs-pri.h; the
 * layouts are in ../shared/spec/REFERENCE.md), little-endian, plus the 32-bit immediate word. Each
 * message is a codec: `<MSG>_BYTES` (the fixed part), `encode<Msg>` and `decode<Msg>`, where a
 * decoder returns the fields or a string saying why the bytes are not that message (the caller
 * answers the document's error and closes that connection only). Reserved bytes are written zero;
 * decoders accept any reserved bytes (the kernel leaves some unset) except where noted.
 *
 *   conn_req   56 B  u8 0, u8 0, magic u16, version u16, cid u16, cid_num u16, recon_cnt u16,
 *                    path uuid[16], session uuid[16], u8 first_conn (bit 0; bit 1 is ours: the
 *                    client asks for always_invalidate, reserved 0 in the kernel), reserved[11]
 *   conn_rsp   56 B  magic u16, version u16, errno s16 (negative), queue_depth u16,
 *                    max_io_size u32, max_hdr_size u32, flags u32 (NEW_RKEY 0x2), reserved[36]
 *   info_req  272 B  type u16 = 0, pathname[255] (NUL padded), reserved[15]
 *   info_rsp   8+16n type u16 = 1, sg_cnt u16, reserved[4], sg_cnt x desc
 *   desc       16 B  addr u64, key u32, len u32
 *   rdma_write  4 B  type u16 = 2, usr_len u16
 *   rdma_read   8+16n type u16 = 3, usr_len u16, flags u16 (NEED_INVAL 0x1), sg_cnt u16, descs
 *   rkey_rsp    8 B  type u16 = 4, buf_id u16, rkey u32
 *
 * IMM: type in bits 31..28, payload in 27..0. IO_REQ's payload is the chunk's buffer id shifted
 * above `memBits` bits of offset (where the rdma_read/rdma_write message sits in the chunk);
 * memBits = 28 - ceil(log2(queue depth)), as the server computes it. IO_RSP's payload is a 9-bit
 * errno (positive here) << 19 | a 19-bit message id (the buffer id).
 *
 * The uuids are 16 raw bytes; sessions and paths name them as 32 lowercase hex digits.
 */
import { assert } from '../assert.ts';
import { smallBytes } from '../net/small-bytes.ts';

export const RTRS_MAGIC = 0x1bbd;
export const RTRS_VERSION_MAJOR = 2;
export const RTRS_VERSION_MINOR = 0;
export const RTRS_VERSION = (RTRS_VERSION_MAJOR << 8) | RTRS_VERSION_MINOR;

export const CONN_REQ_BYTES = 56;
export const CONN_RSP_BYTES = 56;
export const INFO_REQ_BYTES = 272;
export const INFO_RSP_FIXED_BYTES = 8;
export const DESC_BYTES = 16;
export const RDMA_WRITE_BYTES = 4;
export const RDMA_READ_FIXED_BYTES = 8;
export const RKEY_RSP_BYTES = 8;
export const UUID_BYTES = 16;
/** NAME_MAX: the pathname field of info_req. */
export const PATHNAME_BYTES = 255;

export const MSG_TYPE = { INFO_REQ: 0, INFO_RSP: 1, WRITE: 2, READ: 3, RKEY_RSP: 4 } as const;
/** conn_rsp flags. */
export const CONN_RSP_NEW_RKEY = 0x2;
/** rdma_read flags. */
export const READ_NEED_INVAL = 0x1;

export const IMM_TYPE = { IO_REQ: 0, IO_RSP: 1, IO_RSP_W_INV: 2, HB_MSG: 8, HB_ACK: 9 } as const;
export const IMM_PAYLOAD_BITS = 28;
const IMM_PAYLOAD_MASK = (1 << IMM_PAYLOAD_BITS) - 1;
const RSP_ID_BITS = 19;
const RSP_ID_MASK = (1 << RSP_ID_BITS) - 1;
const RSP_ERRNO_MASK = 0x1ff;

/** The kernel's limits and defaults (rtrs-srv.c, rtrs-pri.h). */
export const MAX_QUEUE_DEPTH = 65535;
export const MIN_CHUNK_BYTES = 8192;
export const DEFAULT_CHUNK_BYTES = 128 * 1024;
export const DEFAULT_QUEUE_DEPTH = 512;
export const MAX_HEADER_BYTES = 4096;
export const MAX_PATHS = 128;
/** The server's sanity bound on connections per path (rtrs_rdma_connect). */
export const MAX_CONNECTIONS_PER_PATH = 4096;
export const HB_INTERVAL_MS = 5000;
export const HB_MISSED_MAX = 5;

// ---- the immediate word ----

export function imm(type: number, payload: number): number {
  return (((type & 0xf) << IMM_PAYLOAD_BITS) | (payload & IMM_PAYLOAD_MASK)) >>> 0;
}

export function immType(word: number): number {
  return word >>> IMM_PAYLOAD_BITS;
}

export function immPayload(word: number): number {
  return word & IMM_PAYLOAD_MASK;
}

/** Offset bits of an IO_REQ payload for a session of `queueDepth` chunks (rtrs-srv.c map_cont_bufs). */
export function memBitsFor(queueDepth: number): number {
  assert(Number.isInteger(queueDepth) && queueDepth >= 1 && queueDepth <= MAX_QUEUE_DEPTH, `rtrs: queue depth ${queueDepth}`);
  const chunkBits = queueDepth === 1 ? 0 : 32 - Math.clz32(queueDepth - 1);
  return IMM_PAYLOAD_BITS - chunkBits;
}

export function ioReqImm(bufferId: number, offsetBytes: number, memBits: number): number {
  assert(offsetBytes < 2 ** memBits, `rtrs: message offset ${offsetBytes} needs more than ${memBits} bits`);
  return imm(IMM_TYPE.IO_REQ, bufferId * 2 ** memBits + offsetBytes);
}

export function ioReqOf(payload: number, memBits: number): { bufferId: number; offsetBytes: number } {
  return { bufferId: Math.floor(payload / 2 ** memBits), offsetBytes: payload % 2 ** memBits };
}

/** IO_RSP (or IO_RSP_W_INV when `withInvalidate`) for message `messageId`, errno positive or 0. */
export function ioRspImm(messageId: number, errno: number, withInvalidate = false): number {
  const payload = ((Math.abs(errno) & RSP_ERRNO_MASK) << RSP_ID_BITS) | (messageId & RSP_ID_MASK);
  return imm(withInvalidate ? IMM_TYPE.IO_RSP_W_INV : IMM_TYPE.IO_RSP, payload);
}

export function ioRspOf(payload: number): { messageId: number; errno: number } {
  return { messageId: payload & RSP_ID_MASK, errno: (payload >>> RSP_ID_BITS) & RSP_ERRNO_MASK };
}

// ---- uuids ----

export function uuidHex(bytes: Uint8Array): string {
  assert(bytes.length === UUID_BYTES, 'rtrs: uuid of 16 bytes');
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

export function uuidBytes(hex: string): Uint8Array {
  assert(/^[0-9a-f]{32}$/.test(hex), `rtrs: uuid ${hex} is not 32 lowercase hex digits`);
  const out = new Uint8Array(UUID_BYTES);
  for (let i = 0; i < UUID_BYTES; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkU16(name: string, value: number): void {
  assert(Number.isInteger(value) && value >= 0 && value <= 0xffff, `rtrs: ${name} ${value} is not a u16`);
}

// ---- conn_req ----

export interface ConnReq {
  magic: number;
  version: number;
  cid: number;
  cidCount: number;
  reconnectCount: number;
  /** The path's uuid (the kernel's sess_uuid), hex. */
  pathUuid: string;
  /** The session's uuid (the kernel's paths_uuid), hex. */
  sessionUuid: string;
  firstConnection: boolean;
  /** Ours (bit 1 of the first_conn byte): rotate this session's keys even if the server would not. */
  askInvalidate?: boolean;
}

/** Bit 1 of conn_req's first_conn byte. */
export const CONN_REQ_ASK_INVALIDATE = 0x2;

export function encodeConnReq(req: ConnReq, out = new Uint8Array(CONN_REQ_BYTES)): Uint8Array {
  for (const [name, value] of [['magic', req.magic], ['version', req.version], ['cid', req.cid], ['cid_num', req.cidCount], ['recon_cnt', req.reconnectCount]] as const) checkU16(name, value);
  out.fill(0, 0, CONN_REQ_BYTES);
  const v = view(out);
  v.setUint16(2, req.magic, true);
  v.setUint16(4, req.version, true);
  v.setUint16(6, req.cid, true);
  v.setUint16(8, req.cidCount, true);
  v.setUint16(10, req.reconnectCount, true);
  out.set(uuidBytes(req.pathUuid), 12);
  out.set(uuidBytes(req.sessionUuid), 28);
  out[44] = (req.firstConnection ? 1 : 0) | (req.askInvalidate === true ? CONN_REQ_ASK_INVALIDATE : 0);
  return out;
}

/** The fields, or why these bytes are no conn_req. Magic and version are the caller's to judge. */
export function decodeConnReq(bytes: Uint8Array): ConnReq | string {
  if (bytes.length < CONN_REQ_BYTES) return `conn_req of ${bytes.length} bytes, ${CONN_REQ_BYTES} needed`;
  const v = view(bytes);
  return {
    magic: v.getUint16(2, true),
    version: v.getUint16(4, true),
    cid: v.getUint16(6, true),
    cidCount: v.getUint16(8, true),
    reconnectCount: v.getUint16(10, true),
    pathUuid: uuidHex(bytes.subarray(12, 28)),
    sessionUuid: uuidHex(bytes.subarray(28, 44)),
    firstConnection: (bytes[44]! & 1) === 1,
    askInvalidate: (bytes[44]! & CONN_REQ_ASK_INVALIDATE) !== 0,
  };
}

// ---- conn_rsp ----

export interface ConnRsp {
  magic: number;
  version: number;
  /** 0 on accept, else a positive errno (sent negative, as the kernel does). */
  errno: number;
  queueDepth: number;
  maxIoBytes: number;
  maxHeaderBytes: number;
  flags: number;
}

export function encodeConnRsp(rsp: ConnRsp, out = new Uint8Array(CONN_RSP_BYTES)): Uint8Array {
  checkU16('queue_depth', rsp.queueDepth);
  assert(Number.isInteger(rsp.errno) && rsp.errno >= 0 && rsp.errno < 0x8000, `rtrs: errno ${rsp.errno}`);
  out.fill(0, 0, CONN_RSP_BYTES);
  const v = view(out);
  v.setUint16(0, rsp.magic, true);
  v.setUint16(2, rsp.version, true);
  v.setInt16(4, -rsp.errno, true);
  v.setUint16(6, rsp.queueDepth, true);
  v.setUint32(8, rsp.maxIoBytes, true);
  v.setUint32(12, rsp.maxHeaderBytes, true);
  v.setUint32(16, rsp.flags, true);
  return out;
}

export function decodeConnRsp(bytes: Uint8Array): ConnRsp | string {
  if (bytes.length < CONN_RSP_BYTES) return `conn_rsp of ${bytes.length} bytes, ${CONN_RSP_BYTES} needed`;
  const v = view(bytes);
  return {
    magic: v.getUint16(0, true),
    version: v.getUint16(2, true),
    errno: Math.abs(v.getInt16(4, true)),
    queueDepth: v.getUint16(6, true),
    maxIoBytes: v.getUint32(8, true),
    maxHeaderBytes: v.getUint32(12, true),
    flags: v.getUint32(16, true),
  };
}

// ---- info_req / info_rsp ----

/** A path name as the server accepts it (rtrs-srv.c process_info_req: no '/' and no '.'). */
export function pathNameProblem(name: string): string | null {
  if (name.length === 0) return 'path name is empty';
  if (new TextEncoder().encode(name).length >= PATHNAME_BYTES) return `path name is ${PATHNAME_BYTES} bytes or longer`;
  if (name.includes('/') || name.includes('.')) return 'path name cannot contain / or .';
  if (name.includes('\0')) return 'path name cannot contain NUL';
  return null;
}

export function encodeInfoReq(pathName: string): Uint8Array {
  const name = new TextEncoder().encode(pathName);
  assert(name.length < PATHNAME_BYTES, 'rtrs: path name too long');
  const out = new Uint8Array(INFO_REQ_BYTES);
  view(out).setUint16(0, MSG_TYPE.INFO_REQ, true);
  out.set(name, 2);
  return out;
}

export function decodeInfoReq(bytes: Uint8Array): { pathName: string } | string {
  if (bytes.length < INFO_REQ_BYTES) return `info_req of ${bytes.length} bytes, ${INFO_REQ_BYTES} needed`;
  const type = view(bytes).getUint16(0, true);
  if (type !== MSG_TYPE.INFO_REQ) return `info_req of type ${type}`;
  const field = bytes.subarray(2, 2 + PATHNAME_BYTES);
  const end = field.indexOf(0);
  if (end < 0) return 'info_req path name is not NUL-terminated';
  let pathName: string;
  try {
    pathName = new TextDecoder('utf-8', { fatal: true }).decode(field.subarray(0, end));
  } catch {
    return 'info_req path name is not UTF-8';
  }
  return { pathName };
}

export interface Desc {
  /** Address in the owner's memory (the server's chunk space, or a client's read buffer). */
  addr: bigint;
  key: number;
  lengthBytes: number;
}

function writeDesc(v: DataView, at: number, desc: Desc): void {
  v.setBigUint64(at, desc.addr, true);
  v.setUint32(at + 8, desc.key, true);
  v.setUint32(at + 12, desc.lengthBytes, true);
}

function readDesc(v: DataView, at: number): Desc {
  return { addr: v.getBigUint64(at, true), key: v.getUint32(at + 8, true), lengthBytes: v.getUint32(at + 12, true) };
}

export function encodeInfoRsp(descs: readonly Desc[]): Uint8Array {
  checkU16('sg_cnt', descs.length);
  const out = new Uint8Array(INFO_RSP_FIXED_BYTES + DESC_BYTES * descs.length);
  const v = view(out);
  v.setUint16(0, MSG_TYPE.INFO_RSP, true);
  v.setUint16(2, descs.length, true);
  descs.forEach((desc, i) => writeDesc(v, INFO_RSP_FIXED_BYTES + i * DESC_BYTES, desc));
  return out;
}

export function decodeInfoRsp(bytes: Uint8Array): Desc[] | string {
  if (bytes.length < INFO_RSP_FIXED_BYTES) return `info_rsp of ${bytes.length} bytes, ${INFO_RSP_FIXED_BYTES} needed`;
  const v = view(bytes);
  const type = v.getUint16(0, true);
  if (type !== MSG_TYPE.INFO_RSP) return `info_rsp of type ${type}`;
  const count = v.getUint16(2, true);
  if (bytes.length !== INFO_RSP_FIXED_BYTES + count * DESC_BYTES) return `info_rsp of ${bytes.length} bytes for ${count} descriptors`;
  const descs: Desc[] = [];
  for (let i = 0; i < count; i++) descs.push(readDesc(v, INFO_RSP_FIXED_BYTES + i * DESC_BYTES));
  return descs;
}

// ---- rdma_write / rdma_read / rkey_rsp ----

export function encodeRdmaWrite(userHeaderBytes: number, out: Uint8Array): void {
  checkU16('usr_len', userHeaderBytes);
  const v = view(out);
  v.setUint16(0, MSG_TYPE.WRITE, true);
  v.setUint16(2, userHeaderBytes, true);
}

export interface RdmaRead {
  userHeaderBytes: number;
  flags: number;
  descs: Desc[];
}

export function rdmaReadBytes(descCount: number): number {
  return RDMA_READ_FIXED_BYTES + descCount * DESC_BYTES;
}

export function encodeRdmaRead(read: RdmaRead, out: Uint8Array): void {
  checkU16('usr_len', read.userHeaderBytes);
  const v = view(out);
  v.setUint16(0, MSG_TYPE.READ, true);
  v.setUint16(2, read.userHeaderBytes, true);
  v.setUint16(4, read.flags, true);
  v.setUint16(6, read.descs.length, true);
  read.descs.forEach((desc, i) => writeDesc(v, RDMA_READ_FIXED_BYTES + i * DESC_BYTES, desc));
}

/** The message type at the start of an IO request's message (WRITE or READ), or a reason. */
export function ioMessageType(bytes: Uint8Array): number | string {
  if (bytes.length < 2) return 'IO message shorter than its type';
  const type = view(bytes).getUint16(0, true);
  return type === MSG_TYPE.WRITE || type === MSG_TYPE.READ ? type : `IO message of type ${type}`;
}

export function decodeRdmaWrite(bytes: Uint8Array): { userHeaderBytes: number } | string {
  if (bytes.length < RDMA_WRITE_BYTES) return `rdma_write of ${bytes.length} bytes`;
  return { userHeaderBytes: view(bytes).getUint16(2, true) };
}

export function decodeRdmaRead(bytes: Uint8Array): RdmaRead | string {
  if (bytes.length < RDMA_READ_FIXED_BYTES) return `rdma_read of ${bytes.length} bytes`;
  const v = view(bytes);
  const count = v.getUint16(6, true);
  if (count > 1) return `rdma_read with ${count} descriptors (0 or 1 allowed)`;
  if (bytes.length < rdmaReadBytes(count)) return `rdma_read of ${bytes.length} bytes for ${count} descriptors`;
  const descs: Desc[] = [];
  for (let i = 0; i < count; i++) descs.push(readDesc(v, RDMA_READ_FIXED_BYTES + i * DESC_BYTES));
  return { userHeaderBytes: v.getUint16(2, true), flags: v.getUint16(4, true), descs };
}

export function encodeRkeyRsp(bufferId: number, rkey: number): Uint8Array {
  checkU16('buf_id', bufferId);
  const out = smallBytes(RKEY_RSP_BYTES);
  const v = view(out);
  v.setUint16(0, MSG_TYPE.RKEY_RSP, true);
  v.setUint16(2, bufferId, true);
  v.setUint32(4, rkey >>> 0, true);
  return out;
}

export function decodeRkeyRsp(bytes: Uint8Array): { bufferId: number; rkey: number } | string {
  if (bytes.length !== RKEY_RSP_BYTES) return `rkey_rsp of ${bytes.length} bytes`;
  const v = view(bytes);
  const type = v.getUint16(0, true);
  if (type !== MSG_TYPE.RKEY_RSP) return `rkey_rsp of type ${type}`;
  return { bufferId: v.getUint16(2, true), rkey: v.getUint32(4, true) };
}

assert(memBitsFor(DEFAULT_QUEUE_DEPTH) === 19 && 2 ** memBitsFor(DEFAULT_QUEUE_DEPTH) >= DEFAULT_CHUNK_BYTES, 'rtrs: 512 chunks of 128 KiB fit the IMM');
assert(DEFAULT_CHUNK_BYTES - MAX_HEADER_BYTES === 124 * 1024, 'rtrs: max io 124 KiB by default');
