/**
 * RNBD messages, byte-compatible with the kernel's (drivers/block/rnbd/rnbd-proto.h), little-endian.
 * They travel as RTRS user headers (rtrs-api.ts): SESS_INFO and OPEN as 'read' requests whose data
 * is the response buffer (SESS_INFO_RSP, OPEN_RSP land there), CLOSE as a 'write' with no data, IO
 * as a 'read' (READ) or a 'write' (every other op; only WRITE carries data).
 *
 *   msg_hdr         4 B  type u16, padding u16
 *   sess_info      36 B  hdr, ver u8, reserved[31]
 *   sess_info_rsp  36 B  hdr, ver u8, reserved[31]
 *   open          264 B  hdr, access_mode u8 (ro 0, rw 1, migration 2), resv1 u8,
 *                        dev_name[NAME_MAX = 255] (NUL-terminated inside the field), reserved[3]
 *   open_rsp       56 B  hdr, device_id u32, nsectors u64, max_hw_sectors u32,
 *                        max_write_zeroes_sectors u32, max_discard_sectors u32,
 *                        discard_granularity u32, discard_alignment u32 (bytes),
 *                        physical_block_size u16, logical_block_size u16, max_segments u16,
 *                        secure_discard u16, rotational u8 (obsolete), cache_policy u8
 *                        (FUA 1 << 0, WRITEBACK 1 << 1), reserved[10]
 *   io             32 B  hdr, device_id u32, sector u64, rw u32, bi_size u32, prio u16, and 6 bytes
 *                        of tail padding (the struct holds a u64, so sizeof is 32 on 64-bit builds)
 *   close           8 B  hdr, device_id u32
 *
 * `rw` is an op in the low RNBD_OP_BITS (READ 0, WRITE 1, FLUSH 2, DISCARD 3, SECURE_ERASE 4,
 * WRITE_ZEROES 5, formerly WRITE_SAME) and flags above (SYNC 1 << 8, FUA 1 << 9; newer kernels add
 * PREFLUSH 1 << 10 and NOUNMAP 1 << 11). Sectors are 512 bytes whatever the logical block size.
 *
 * Codecs (STYLE 13): each message is `<MSG>_BYTES`, `encode<Msg>(fields, out?)`,
 * `invalid<Msg>(bytes)` (why these bytes are not that message, or null) and `decode<Msg>(bytes)`
 * (the fields of bytes invalid() accepted; calling it on others is a bug). A message must have its
 * exact size. The kernel's server looks at no reserved or padding byte (and its client leaves the
 * IO header's padding unset), so decoders accept any there; encoders write zeros. What invalid()
 * refuses is what the kernel refuses or cannot represent: a wrong type, a wrong size, an unknown
 * access mode, op or flag, a device name without its NUL or not UTF-8, a sector count or sector
 * beyond 2^53. Which names a server serves is policy, not format: `deviceNameProblem`.
 */
import { assert } from '../assert.ts';
import { smallBytes } from '../net/small-bytes.ts';

export const RNBD_PROTOCOL_VERSION_MAJOR = 2;
export const RNBD_PROTOCOL_VERSION_MINOR = 0;
export const SECTOR_BYTES = 512;

export const RNBD_MSG = { SESS_INFO: 0, SESS_INFO_RSP: 1, OPEN: 2, OPEN_RSP: 3, IO: 4, CLOSE: 5 } as const;

export type RnbdAccess = 'ro' | 'rw' | 'migration';
export const RNBD_ACCESS: Readonly<Record<RnbdAccess, number>> = { ro: 0, rw: 1, migration: 2 };
const ACCESS_BY_CODE: readonly RnbdAccess[] = ['ro', 'rw', 'migration'];

export const RNBD_OP_BITS = 8;
export const RNBD_OP_MASK = (1 << RNBD_OP_BITS) - 1;
export const RNBD_OP = { READ: 0, WRITE: 1, FLUSH: 2, DISCARD: 3, SECURE_ERASE: 4, WRITE_ZEROES: 5 } as const;
/** One past the last op (RNBD_OP_LAST). */
export const RNBD_OP_COUNT = 6;
export const RNBD_F_SYNC = 1 << (RNBD_OP_BITS + 0);
export const RNBD_F_FUA = 1 << (RNBD_OP_BITS + 1);
export const RNBD_F_PREFLUSH = 1 << (RNBD_OP_BITS + 2);
export const RNBD_F_NOUNMAP = 1 << (RNBD_OP_BITS + 3);
export const RNBD_F_ALL = RNBD_F_SYNC | RNBD_F_FUA | RNBD_F_PREFLUSH | RNBD_F_NOUNMAP;

/** open_rsp cache_policy bits. */
export const RNBD_CACHE_FUA = 1 << 0;
export const RNBD_CACHE_WRITEBACK = 1 << 1;

export const HDR_BYTES = 4;
export const SESS_INFO_BYTES = 36;
export const SESS_INFO_RSP_BYTES = 36;
/** NAME_MAX: the dev_name field, its NUL included. */
export const DEV_NAME_BYTES = 255;
export const OPEN_BYTES = 264;
export const OPEN_RSP_BYTES = 56;
export const IO_BYTES = 32;
export const CLOSE_BYTES = 8;

// Field offsets (the structs' layouts).
const OPEN_ACCESS_AT = HDR_BYTES;
const OPEN_NAME_AT = HDR_BYTES + 2;
const IO_DEVICE_ID_AT = 4;
const IO_SECTOR_AT = 8;
const IO_RW_AT = 16;
const IO_BI_SIZE_AT = 20;
const IO_PRIO_AT = 24;
const IO_FIELDS_END = 26;

/** The largest sector count or sector that stays a safe integer in bytes. */
const MAX_SECTORS = Math.floor(Number.MAX_SAFE_INTEGER / SECTOR_BYTES);

const U32_MAX = 0xffffffff;
const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkUint(name: string, value: number, max: number): void {
  assert(Number.isInteger(value) && value >= 0 && value <= max, `rnbd: ${name} ${value} is not in [0, ${max}]`);
}

function outFor(sizeBytes: number, out: Uint8Array | undefined): Uint8Array {
  const target = out ?? smallBytes(sizeBytes);
  assert(target.length >= sizeBytes, `rnbd: encode into ${target.length} bytes, ${sizeBytes} needed`);
  target.fill(0, 0, sizeBytes);
  return target.length === sizeBytes ? target : target.subarray(0, sizeBytes);
}

function writeHeader(v: DataView, type: number): void {
  v.setUint16(0, type, true);
}

/** The message type in the header, or why the bytes have no header. */
export function messageType(bytes: Uint8Array): number | string {
  if (bytes.length < HDR_BYTES) return `RNBD message of ${bytes.length} bytes, shorter than its ${HDR_BYTES}-byte header`;
  return view(bytes).getUint16(0, true);
}

function invalidFixed(bytes: Uint8Array, type: number, sizeBytes: number, label: string): string | null {
  const found = messageType(bytes);
  if (typeof found === 'string') return found;
  if (found !== type) return `${label} has type ${found}, not ${type}`;
  if (bytes.length !== sizeBytes) return `${label} of ${bytes.length} bytes, ${sizeBytes} expected`;
  return null;
}

function checkDecodable(problem: string | null): void {
  assert(problem === null, `rnbd: decode of an invalid message (${problem})`);
}

// ---- sess_info / sess_info_rsp ----

export interface SessInfo {
  /** RNBD protocol major version (the kernel's `ver`). */
  version: number;
}

function encodeVersionMessage(type: number, message: SessInfo, out: Uint8Array | undefined): Uint8Array {
  checkUint('ver', message.version, 0xff);
  const bytes = outFor(SESS_INFO_BYTES, out);
  writeHeader(view(bytes), type);
  bytes[HDR_BYTES] = message.version;
  return bytes;
}

export function encodeSessInfo(message: SessInfo, out?: Uint8Array): Uint8Array {
  return encodeVersionMessage(RNBD_MSG.SESS_INFO, message, out);
}

export function invalidSessInfo(bytes: Uint8Array): string | null {
  return invalidFixed(bytes, RNBD_MSG.SESS_INFO, SESS_INFO_BYTES, 'sess_info');
}

export function decodeSessInfo(bytes: Uint8Array): SessInfo {
  checkDecodable(invalidSessInfo(bytes));
  return { version: bytes[HDR_BYTES]! };
}

export function encodeSessInfoRsp(message: SessInfo, out?: Uint8Array): Uint8Array {
  return encodeVersionMessage(RNBD_MSG.SESS_INFO_RSP, message, out);
}

export function invalidSessInfoRsp(bytes: Uint8Array): string | null {
  return invalidFixed(bytes, RNBD_MSG.SESS_INFO_RSP, SESS_INFO_RSP_BYTES, 'sess_info_rsp');
}

export function decodeSessInfoRsp(bytes: Uint8Array): SessInfo {
  checkDecodable(invalidSessInfoRsp(bytes));
  return { version: bytes[HDR_BYTES]! };
}

// ---- open ----

export interface Open {
  access: RnbdAccess;
  deviceName: string;
}

/**
 * Why a server will not open `name` (or a client will not ask for it), or null: empty, too long
 * for dev_name, a NUL inside, an absolute path, or `..` anywhere (the kernel refuses any name
 * containing `..`, like rnbd-srv's process_msg_open).
 */
export function deviceNameProblem(name: string): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'device name is empty';
  if (name.includes('\0')) return 'device name contains NUL';
  if (encoder.encode(name).length >= DEV_NAME_BYTES) return `device name is ${DEV_NAME_BYTES} bytes or longer`;
  if (name.startsWith('/')) return 'device name is an absolute path';
  if (name.includes('..')) return 'device name contains ..';
  return null;
}

/** `a//b/./c/` is `a/b/c`: one device, one name (for names deviceNameProblem accepted). */
export function normalizeDeviceName(name: string): string {
  return name.split('/').filter((part) => part !== '' && part !== '.').join('/');
}

export function encodeOpen(message: Open, out?: Uint8Array): Uint8Array {
  const name = encoder.encode(message.deviceName);
  assert(name.length < DEV_NAME_BYTES && !name.includes(0), `rnbd: device name of ${name.length} bytes does not fit dev_name`);
  assert(message.access in RNBD_ACCESS, `rnbd: access ${message.access}`);
  const bytes = outFor(OPEN_BYTES, out);
  writeHeader(view(bytes), RNBD_MSG.OPEN);
  bytes[OPEN_ACCESS_AT] = RNBD_ACCESS[message.access];
  bytes.set(name, OPEN_NAME_AT);
  return bytes;
}

export function invalidOpen(bytes: Uint8Array): string | null {
  const problem = invalidFixed(bytes, RNBD_MSG.OPEN, OPEN_BYTES, 'open');
  if (problem !== null) return problem;
  const access = bytes[OPEN_ACCESS_AT]!;
  if (access >= ACCESS_BY_CODE.length) return `open has access_mode ${access}, not ro 0, rw 1 or migration 2`;
  const field = bytes.subarray(OPEN_NAME_AT, OPEN_NAME_AT + DEV_NAME_BYTES);
  const end = field.indexOf(0);
  if (end < 0) return 'open dev_name is not NUL-terminated';
  try {
    strictDecoder.decode(field.subarray(0, end));
  } catch {
    return 'open dev_name is not UTF-8';
  }
  return null;
}

export function decodeOpen(bytes: Uint8Array): Open {
  checkDecodable(invalidOpen(bytes));
  const field = bytes.subarray(OPEN_NAME_AT, OPEN_NAME_AT + DEV_NAME_BYTES);
  return { access: ACCESS_BY_CODE[bytes[OPEN_ACCESS_AT]!]!, deviceName: strictDecoder.decode(field.subarray(0, field.indexOf(0))) };
}

// ---- open_rsp ----

export interface OpenRsp {
  deviceId: number;
  sizeSectors: number;
  maxHwSectors: number;
  maxWriteZeroesSectors: number;
  maxDiscardSectors: number;
  discardGranularityBytes: number;
  discardAlignmentBytes: number;
  physicalBlockBytes: number;
  logicalBlockBytes: number;
  maxSegments: number;
  /** Non-zero: the device supports secure erase (the kernel sends its max secure-erase sectors). */
  secureDiscard: number;
  /** Obsolete in the kernel (always 0 there now); carried as sent. */
  rotational: number;
  /** RNBD_CACHE_FUA | RNBD_CACHE_WRITEBACK bits. */
  cachePolicy: number;
}

export function encodeOpenRsp(message: OpenRsp, out?: Uint8Array): Uint8Array {
  checkUint('device_id', message.deviceId, U32_MAX);
  checkUint('nsectors', message.sizeSectors, MAX_SECTORS);
  for (const [name, value] of [
    ['max_hw_sectors', message.maxHwSectors], ['max_write_zeroes_sectors', message.maxWriteZeroesSectors],
    ['max_discard_sectors', message.maxDiscardSectors], ['discard_granularity', message.discardGranularityBytes],
    ['discard_alignment', message.discardAlignmentBytes],
  ] as const) checkUint(name, value, U32_MAX);
  for (const [name, value] of [
    ['physical_block_size', message.physicalBlockBytes], ['logical_block_size', message.logicalBlockBytes],
    ['max_segments', message.maxSegments], ['secure_discard', message.secureDiscard],
  ] as const) checkUint(name, value, 0xffff);
  checkUint('rotational', message.rotational, 0xff);
  checkUint('cache_policy', message.cachePolicy, 0xff);
  const bytes = outFor(OPEN_RSP_BYTES, out);
  const v = view(bytes);
  writeHeader(v, RNBD_MSG.OPEN_RSP);
  v.setUint32(4, message.deviceId, true);
  v.setBigUint64(8, BigInt(message.sizeSectors), true);
  v.setUint32(16, message.maxHwSectors, true);
  v.setUint32(20, message.maxWriteZeroesSectors, true);
  v.setUint32(24, message.maxDiscardSectors, true);
  v.setUint32(28, message.discardGranularityBytes, true);
  v.setUint32(32, message.discardAlignmentBytes, true);
  v.setUint16(36, message.physicalBlockBytes, true);
  v.setUint16(38, message.logicalBlockBytes, true);
  v.setUint16(40, message.maxSegments, true);
  v.setUint16(42, message.secureDiscard, true);
  bytes[44] = message.rotational;
  bytes[45] = message.cachePolicy;
  return bytes;
}

export function invalidOpenRsp(bytes: Uint8Array): string | null {
  const problem = invalidFixed(bytes, RNBD_MSG.OPEN_RSP, OPEN_RSP_BYTES, 'open_rsp');
  if (problem !== null) return problem;
  const sectors = view(bytes).getBigUint64(8, true);
  if (sectors > BigInt(MAX_SECTORS)) return `open_rsp nsectors ${sectors} is beyond 2^53 bytes`;
  return null;
}

export function decodeOpenRsp(bytes: Uint8Array): OpenRsp {
  checkDecodable(invalidOpenRsp(bytes));
  const v = view(bytes);
  return {
    deviceId: v.getUint32(4, true),
    sizeSectors: Number(v.getBigUint64(8, true)),
    maxHwSectors: v.getUint32(16, true),
    maxWriteZeroesSectors: v.getUint32(20, true),
    maxDiscardSectors: v.getUint32(24, true),
    discardGranularityBytes: v.getUint32(28, true),
    discardAlignmentBytes: v.getUint32(32, true),
    physicalBlockBytes: v.getUint16(36, true),
    logicalBlockBytes: v.getUint16(38, true),
    maxSegments: v.getUint16(40, true),
    secureDiscard: v.getUint16(42, true),
    rotational: bytes[44]!,
    cachePolicy: bytes[45]!,
  };
}

// ---- io ----

export interface Io {
  deviceId: number;
  /** bi_sector: where the request starts, in 512-byte sectors. */
  offsetSectors: number;
  /** RNBD_OP value (the low bits of rw). */
  op: number;
  /** RNBD_F_* bits (the high bits of rw). */
  flags: number;
  /** bi_size: the request's length in bytes (also for DISCARD and WRITE_ZEROES, which carry no data). */
  lengthBytes: number;
  prio: number;
}

export function encodeIo(message: Io, out?: Uint8Array): Uint8Array {
  checkUint('device_id', message.deviceId, U32_MAX);
  checkUint('sector', message.offsetSectors, MAX_SECTORS);
  assert(Number.isInteger(message.op) && message.op >= 0 && message.op < RNBD_OP_COUNT, `rnbd: op ${message.op}`);
  assert(Number.isInteger(message.flags) && (message.flags & ~RNBD_F_ALL) === 0, `rnbd: flags 0x${message.flags.toString(16)}`);
  checkUint('bi_size', message.lengthBytes, U32_MAX);
  checkUint('prio', message.prio, 0xffff);
  const bytes = outFor(IO_BYTES, out);
  const v = view(bytes);
  writeHeader(v, RNBD_MSG.IO);
  v.setUint32(IO_DEVICE_ID_AT, message.deviceId, true);
  v.setBigUint64(IO_SECTOR_AT, BigInt(message.offsetSectors), true);
  v.setUint32(IO_RW_AT, (message.op | message.flags) >>> 0, true);
  v.setUint32(IO_BI_SIZE_AT, message.lengthBytes, true);
  v.setUint16(IO_PRIO_AT, message.prio, true);
  return bytes;
}

export function invalidIo(bytes: Uint8Array): string | null {
  const problem = invalidFixed(bytes, RNBD_MSG.IO, IO_BYTES, 'io');
  if (problem !== null) return problem;
  const v = view(bytes);
  const rw = v.getUint32(IO_RW_AT, true);
  const op = rw & RNBD_OP_MASK;
  if (op >= RNBD_OP_COUNT) return `io has op ${op}, not one of 0..${RNBD_OP_COUNT - 1}`;
  const unknown = (rw & ~RNBD_OP_MASK & ~RNBD_F_ALL) >>> 0;
  if (unknown !== 0) return `io has unknown flags 0x${unknown.toString(16)}`;
  const sector = v.getBigUint64(IO_SECTOR_AT, true);
  if (sector > BigInt(MAX_SECTORS)) return `io sector ${sector} is beyond 2^53 bytes`;
  return null;
}

export function decodeIo(bytes: Uint8Array): Io {
  checkDecodable(invalidIo(bytes));
  const v = view(bytes);
  const rw = v.getUint32(IO_RW_AT, true);
  return {
    deviceId: v.getUint32(IO_DEVICE_ID_AT, true),
    offsetSectors: Number(v.getBigUint64(IO_SECTOR_AT, true)),
    op: rw & RNBD_OP_MASK,
    flags: (rw & ~RNBD_OP_MASK) >>> 0,
    lengthBytes: v.getUint32(IO_BI_SIZE_AT, true),
    prio: v.getUint16(IO_PRIO_AT, true),
  };
}

// ---- close ----

export interface Close {
  deviceId: number;
}

export function encodeClose(message: Close, out?: Uint8Array): Uint8Array {
  checkUint('device_id', message.deviceId, U32_MAX);
  const bytes = outFor(CLOSE_BYTES, out);
  const v = view(bytes);
  writeHeader(v, RNBD_MSG.CLOSE);
  v.setUint32(4, message.deviceId, true);
  return bytes;
}

export function invalidClose(bytes: Uint8Array): string | null {
  return invalidFixed(bytes, RNBD_MSG.CLOSE, CLOSE_BYTES, 'close');
}

export function decodeClose(bytes: Uint8Array): Close {
  checkDecodable(invalidClose(bytes));
  return { deviceId: view(bytes).getUint32(4, true) };
}

// The kernel's BUILD_BUG_ONs (rnbd-srv.c) and the layouts above agree.
assert(SESS_INFO_BYTES === HDR_BYTES + 1 + 31, 'rnbd: sess_info is 36 bytes');
assert(SESS_INFO_RSP_BYTES === HDR_BYTES + 1 + 31, 'rnbd: sess_info_rsp is 36 bytes');
assert(OPEN_BYTES === HDR_BYTES + 1 + 1 + DEV_NAME_BYTES + 3, 'rnbd: open is 264 bytes');
assert(OPEN_RSP_BYTES === HDR_BYTES + 4 + 8 + 5 * 4 + 4 * 2 + 1 + 1 + 10, 'rnbd: open_rsp is 56 bytes');
assert(CLOSE_BYTES === HDR_BYTES + 4, 'rnbd: close is 8 bytes');
assert(IO_FIELDS_END === IO_PRIO_AT + 2 && IO_BYTES === Math.ceil(IO_FIELDS_END / 8) * 8, 'rnbd: io is 26 bytes of fields padded to 8: 32');
assert(IO_SECTOR_AT % 8 === 0, 'rnbd: io sector is naturally aligned');
assert((RNBD_F_ALL & RNBD_OP_MASK) === 0 && RNBD_OP_COUNT <= RNBD_OP_MASK, 'rnbd: ops and flags do not overlap');
