/**
 * A plain TypeScript model of the NBD request batch kernel (assembly/frame.ts): the same walk, the
 * same records (NBD_RECORD words in a Uint32Array) and the same verdict codes, written as a
 * DataView loop. The fuzz test checks the kernel against it; `bench frame` races the two.
 */
import { NBD_RECORD, RECORD_WORDS, type NbdLimits } from '../../runtime/wasm/frame.ts';
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES, NBD_REQUEST_MAGIC, REQUEST_HEADER_BYTES,
} from '../../server/nbd/constants.ts';

const KNOWN_FLAGS = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF | NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO;
const COMMAND_COUNT = 8;
const TWO_32 = 2 ** 32;
const SAFE_HIGH_LIMIT = 2 ** 21;

/** Verdict codes, in the kernel's order (runtime/wasm/frame.ts NBD_VERDICTS). */
const V = {
  ok: 0, badMagic: 1, unknownCommand: 2, unknownFlags: 3, fua: 4, noHole: 5, df: 6, reqOne: 7, fastZero: 8, readOnly: 9,
  flush: 10, trim: 11, writeZeroes: 12, blockStatus: 13, flushNotEmpty: 14, outOfRange: 15, offsetMisaligned: 16,
  lengthMisaligned: 17, tooLong: 18, blockStatusEmpty: 19,
};

function verdictOf(flags: number, type: number, offsetHigh: number, offsetLow: number, length: number, limits: NbdLimits): number {
  if (type >= COMMAND_COUNT) return V.unknownCommand;
  if (type === NBD_CMD_DISC) return V.ok;
  const exportFlags = limits.transmissionFlags;
  if ((flags & ~KNOWN_FLAGS) !== 0) return V.unknownFlags;
  if ((flags & NBD_CMD_FLAG_FUA) !== 0 && (exportFlags & NBD_FLAG_SEND_FUA) === 0) return V.fua;
  if ((flags & NBD_CMD_FLAG_NO_HOLE) !== 0 && type !== NBD_CMD_WRITE_ZEROES) return V.noHole;
  if ((flags & NBD_CMD_FLAG_DF) !== 0 && (type !== NBD_CMD_READ || (exportFlags & NBD_FLAG_SEND_DF) === 0)) return V.df;
  if ((flags & NBD_CMD_FLAG_REQ_ONE) !== 0 && type !== NBD_CMD_BLOCK_STATUS) return V.reqOne;
  if ((flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 && (type !== NBD_CMD_WRITE_ZEROES || (exportFlags & NBD_FLAG_SEND_FAST_ZERO) === 0)) return V.fastZero;
  const writes = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES || type === NBD_CMD_TRIM;
  if (writes && (exportFlags & NBD_FLAG_READ_ONLY) !== 0) return V.readOnly;
  if (type === NBD_CMD_FLUSH && (exportFlags & NBD_FLAG_SEND_FLUSH) === 0) return V.flush;
  if (type === NBD_CMD_TRIM && (exportFlags & NBD_FLAG_SEND_TRIM) === 0) return V.trim;
  if (type === NBD_CMD_WRITE_ZEROES && (exportFlags & NBD_FLAG_SEND_WRITE_ZEROES) === 0) return V.writeZeroes;
  if (type === NBD_CMD_BLOCK_STATUS && limits.negotiated !== 3) return V.blockStatus;
  if (type === NBD_CMD_FLUSH) return offsetHigh !== 0 || offsetLow !== 0 || length !== 0 ? V.flushNotEmpty : V.ok;
  const offset = offsetHigh * TWO_32 + offsetLow;
  if (offsetHigh >= SAFE_HIGH_LIMIT || offset > limits.sizeBytes || length > limits.sizeBytes - offset) return V.outOfRange;
  if (offset % limits.minimumBlockBytes !== 0) return V.offsetMisaligned;
  if (length % limits.minimumBlockBytes !== 0) return V.lengthMisaligned;
  if ((type === NBD_CMD_READ || type === NBD_CMD_WRITE) && length > limits.maxBlockBytes) return V.tooLong;
  if (type === NBD_CMD_BLOCK_STATUS && length === 0) return V.blockStatusEmpty;
  return V.ok;
}

export interface ModelBatch {
  count: number;
  endBytes: number;
}

/** Decodes like NbdRequestBatch.decode over bytes[at, at + windowBytes) into `records`. */
export function modelDecode(bytes: Uint8Array, at: number, windowBytes: number, capacityRecords: number, limits: NbdLimits, records: Uint32Array): ModelBatch {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, Math.min(bytes.length - at, windowBytes));
  const inBytes = view.byteLength;
  let walk = 0;
  let count = 0;
  while (count < capacityRecords && inBytes - walk >= REQUEST_HEADER_BYTES) {
    const magicOk = view.getUint32(walk) === NBD_REQUEST_MAGIC;
    const flags = view.getUint16(walk + 4);
    const type = view.getUint16(walk + 6);
    const offsetHigh = view.getUint32(walk + 16);
    const offsetLow = view.getUint32(walk + 20);
    const length = view.getUint32(walk + 24);
    const r = count * RECORD_WORDS;
    records[r + NBD_RECORD.verdict] = magicOk ? verdictOf(flags, type, offsetHigh, offsetLow, length, limits) : V.badMagic;
    records[r + NBD_RECORD.flags] = flags;
    records[r + NBD_RECORD.type] = type;
    records[r + NBD_RECORD.cookieHigh] = view.getUint32(walk + 8);
    records[r + NBD_RECORD.cookieLow] = view.getUint32(walk + 12);
    records[r + NBD_RECORD.offsetHigh] = offsetHigh;
    records[r + NBD_RECORD.offsetLow] = offsetLow;
    records[r + NBD_RECORD.lengthBytes] = length;
    count++;
    walk += REQUEST_HEADER_BYTES;
    if (!magicOk || type === NBD_CMD_DISC) break;
    if (type === NBD_CMD_WRITE) {
      walk += length;
      if (walk > inBytes) break;
    }
  }
  return { count, endBytes: walk };
}
