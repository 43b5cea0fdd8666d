/**
 * The one check every transmission request passes before dispatch (STYLE 11, after nbdkit's
 * `validate_request`). A request that passes is safe to hand to the device as is; one that fails
 * gets the NBD error and a message naming the field. First failure wins, in this order:
 *   1. EINVAL  unknown command;
 *   2. EINVAL  unknown flag bits, or a flag this command does not take (with extended headers
 *              PAYLOAD_LEN is known, and set on WRITE and nothing else; FUA needs SEND_FUA and is
 *              then allowed on any command, as proto.md requires; NO_HOLE only on WRITE_ZEROES;
 *              DF only on READ with structured replies; REQ_ONE only on BLOCK_STATUS; FAST_ZERO
 *              only on WRITE_ZEROES of an export that advertised it);
 *   3. EPERM   WRITE, TRIM or WRITE_ZEROES on a read-only export;
 *   4. EINVAL  a command the export did not advertise (FLUSH, TRIM, WRITE_ZEROES), or BLOCK_STATUS
 *              without a metadata context negotiated for this export;
 *   5. EINVAL  FLUSH with a nonzero offset or length;
 *   6. ENOSPC  (WRITE, WRITE_ZEROES) / EINVAL (others) when offset + length passes the export end;
 *   7. EINVAL  offset or length not a multiple of the minimum block size we advertised;
 *   8. EINVAL  READ or WRITE longer than the maximum block size; BLOCK_STATUS of length 0.
 * Payload-free commands (TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS) may be longer than the maximum
 * block size: they need no buffer, and we would rather do them than refuse.
 */
import {
  COMMAND_NAMES, MAX_BLOCK_BYTES, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_PAYLOAD_LEN, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_ENOSPC,
  NBD_EPERM, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './constants.ts';
import type { NbdRequest } from './request-codec.ts';

/** What was agreed in the handshake, as the check needs it. */
export interface Session {
  sizeBytes: number;
  minimumBlockBytes: number;
  transmissionFlags: number;
  structuredReplies: boolean;
  /** A metadata context was selected (base:allocation or a bitmap): BLOCK_STATUS may be asked. */
  baseAllocation: boolean;
  /** Extended headers (extended-codec.ts): PAYLOAD_LEN is a known flag, and WRITE must carry it. */
  extendedHeaders?: boolean;
}

export interface Refusal {
  error: number;
  message: string;
}

const KNOWN_FLAGS = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF | NBD_CMD_FLAG_REQ_ONE | NBD_CMD_FLAG_FAST_ZERO;

/** null when the request may be dispatched; else the error to answer with. (DISC never gets here.) */
export function checkRequest(request: NbdRequest, session: Session): Refusal | null {
  const { type, flags, offsetBytes, lengthBytes } = request;
  const exportFlags = session.transmissionFlags;
  const name = COMMAND_NAMES[type];
  if (name === undefined) return refuse(NBD_EINVAL, `unknown command ${type}`);
  const known = session.extendedHeaders === true ? KNOWN_FLAGS | NBD_CMD_FLAG_PAYLOAD_LEN : KNOWN_FLAGS;
  if ((flags & ~known) !== 0) return refuse(NBD_EINVAL, `${name}: unknown flags 0x${(flags & ~known).toString(16)}`);
  if (session.extendedHeaders === true && ((flags & NBD_CMD_FLAG_PAYLOAD_LEN) !== 0) !== (type === NBD_CMD_WRITE)) {
    return refuse(NBD_EINVAL, type === NBD_CMD_WRITE ? 'WRITE: PAYLOAD_LEN flag missing (extended headers)' : `${name}: takes no payload (PAYLOAD_LEN flag)`);
  }
  if ((flags & NBD_CMD_FLAG_FUA) !== 0 && (exportFlags & NBD_FLAG_SEND_FUA) === 0) return refuse(NBD_EINVAL, `${name}: FUA flag on an export without FUA`);
  if ((flags & NBD_CMD_FLAG_NO_HOLE) !== 0 && type !== NBD_CMD_WRITE_ZEROES) return refuse(NBD_EINVAL, `${name}: NO_HOLE flag is only for WRITE_ZEROES`);
  if ((flags & NBD_CMD_FLAG_DF) !== 0 && (type !== NBD_CMD_READ || (exportFlags & NBD_FLAG_SEND_DF) === 0)) {
    return refuse(NBD_EINVAL, `${name}: DF flag is only for READ with structured replies`);
  }
  if ((flags & NBD_CMD_FLAG_REQ_ONE) !== 0 && type !== NBD_CMD_BLOCK_STATUS) return refuse(NBD_EINVAL, `${name}: REQ_ONE flag is only for BLOCK_STATUS`);
  if ((flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 && (type !== NBD_CMD_WRITE_ZEROES || (exportFlags & NBD_FLAG_SEND_FAST_ZERO) === 0)) {
    return refuse(NBD_EINVAL, `${name}: FAST_ZERO flag is only for WRITE_ZEROES on an export that advertised it`);
  }

  const writes = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES || type === NBD_CMD_TRIM;
  if (writes && (exportFlags & NBD_FLAG_READ_ONLY) !== 0) return refuse(NBD_EPERM, `${name} on a read-only export`);
  if (type === NBD_CMD_FLUSH && (exportFlags & NBD_FLAG_SEND_FLUSH) === 0) return refuse(NBD_EINVAL, 'FLUSH was not advertised for this export');
  if (type === NBD_CMD_TRIM && (exportFlags & NBD_FLAG_SEND_TRIM) === 0) return refuse(NBD_EINVAL, 'TRIM was not advertised for this export');
  if (type === NBD_CMD_WRITE_ZEROES && (exportFlags & NBD_FLAG_SEND_WRITE_ZEROES) === 0) return refuse(NBD_EINVAL, 'WRITE_ZEROES was not advertised for this export');
  if (type === NBD_CMD_BLOCK_STATUS && !(session.structuredReplies && session.baseAllocation)) {
    return refuse(NBD_EINVAL, 'BLOCK_STATUS without a metadata context negotiated for this export');
  }
  if (type === NBD_CMD_FLUSH) {
    if (offsetBytes !== 0 || lengthBytes !== 0) return refuse(NBD_EINVAL, 'FLUSH offset and length must be zero');
    return null;
  }

  if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes > session.sizeBytes || lengthBytes > session.sizeBytes - offsetBytes) {
    const error = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    return refuse(error, `${name}: offset ${offsetBytes < 0 ? '>= 2^53' : offsetBytes} + length ${lengthBytes < 0 ? '>= 2^53' : lengthBytes} passes the export size ${session.sizeBytes}`);
  }
  const blockBytes = session.minimumBlockBytes;
  if (offsetBytes % blockBytes !== 0) return refuse(NBD_EINVAL, `${name}: offset ${offsetBytes} is not a multiple of the minimum block size ${blockBytes}`);
  if (lengthBytes % blockBytes !== 0) return refuse(NBD_EINVAL, `${name}: length ${lengthBytes} is not a multiple of the minimum block size ${blockBytes}`);
  if ((type === NBD_CMD_READ || type === NBD_CMD_WRITE) && lengthBytes > MAX_BLOCK_BYTES) {
    return refuse(NBD_EINVAL, `${name}: length ${lengthBytes} exceeds the maximum block size ${MAX_BLOCK_BYTES}`);
  }
  if (type === NBD_CMD_BLOCK_STATUS && lengthBytes === 0) return refuse(NBD_EINVAL, 'BLOCK_STATUS of length 0');
  return null;
}

function refuse(error: number, message: string): Refusal {
  return { error, message };
}
