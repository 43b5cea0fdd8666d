/**
 * NBD protocol numbers (NetworkBlockDevice/nbd doc/proto.md; all integers on the wire are
 * big-endian) and this server's limits. Frame sizes are asserted against their field layouts at
 * load, so a typo here stops the process instead of corrupting a stream.
 */
import { assert } from '../../runtime/assert.ts';

// ---- handshake ----
/** 'NBDMAGIC', first 8 bytes the server sends. */
export const NBD_MAGIC_HI = 0x4e42444d;
export const NBD_MAGIC_LO = 0x41474943;
/** 'IHAVEOPT': second 8 bytes of the greeting and the magic of every option the client sends. */
export const IHAVEOPT_HI = 0x49484156;
export const IHAVEOPT_LO = 0x454f5054;
/** Magic of every option reply: 0x0003e889045565a9. */
export const OPTION_REPLY_MAGIC_HI = 0x0003e889;
export const OPTION_REPLY_MAGIC_LO = 0x045565a9;

export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
/** What we announce in the greeting, and so the only client flags we accept. */
export const SERVER_HANDSHAKE_FLAGS = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;
export const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
/** proto.md's EXTENDED_HEADERS extension (extended-codec.ts). */
export const NBD_OPT_EXTENDED_HEADERS = 11;

export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = (NBD_REP_FLAG_ERROR | 1) >>> 0;
export const NBD_REP_ERR_POLICY = (NBD_REP_FLAG_ERROR | 2) >>> 0;
export const NBD_REP_ERR_INVALID = (NBD_REP_FLAG_ERROR | 3) >>> 0;
export const NBD_REP_ERR_PLATFORM = (NBD_REP_FLAG_ERROR | 4) >>> 0;
export const NBD_REP_ERR_TLS_REQD = (NBD_REP_FLAG_ERROR | 5) >>> 0;
export const NBD_REP_ERR_UNKNOWN = (NBD_REP_FLAG_ERROR | 6) >>> 0;
export const NBD_REP_ERR_SHUTDOWN = (NBD_REP_FLAG_ERROR | 7) >>> 0;
export const NBD_REP_ERR_TOO_BIG = (NBD_REP_FLAG_ERROR | 9) >>> 0;
/** Extended headers were agreed: no going back to compact structured replies. */
export const NBD_REP_ERR_EXT_HEADER_REQD = (NBD_REP_FLAG_ERROR | 10) >>> 0;

export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

export const BASE_ALLOCATION = 'base:allocation';
/** The id we give base:allocation in SET_META_CONTEXT (any value works; clients treat it as opaque). */
export const BASE_ALLOCATION_ID = 1;

// ---- transmission flags (16 bits, in NBD_INFO_EXPORT and the EXPORT_NAME reply) ----
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// ---- transmission ----
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const NBD_EXTENDED_REQUEST_MAGIC = 0x21e41c71;
export const NBD_EXTENDED_REPLY_MAGIC = 0x6e8a278c;

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;
export const COMMAND_NAMES: Record<number, string> = {
  0: 'READ', 1: 'WRITE', 2: 'DISC', 3: 'FLUSH', 4: 'TRIM', 5: 'CACHE', 6: 'WRITE_ZEROES', 7: 'BLOCK_STATUS',
};

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;
/** Extended headers only: the length is a payload that follows the header (WRITE always has it). */
export const NBD_CMD_FLAG_PAYLOAD_LEN = 1 << 5;

export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_BLOCK_STATUS_EXT = 6;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) | 1;

/** NBD error values (proto.md "Error values"); they happen to equal Linux errnos. */
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
/** Only for a DF read too large for one chunk, which cannot happen here (reads are one chunk). */
export const NBD_EOVERFLOW = 75;
/** Only for WRITE_ZEROES with FAST_ZERO that would be no faster than writing zeros. */
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** qemu:dirty-bitmap:<name> contexts: the bit is set (qemu's meaning: dirty). */
export const NBD_STATE_DIRTY = 1 << 0;

// ---- frame sizes ----
export const GREETING_BYTES = 8 + 8 + 2;
export const CLIENT_FLAGS_BYTES = 4;
export const OPTION_HEADER_BYTES = 8 + 4 + 4;
export const OPTION_REPLY_HEADER_BYTES = 8 + 4 + 4 + 4;
/** EXPORT_NAME reply: size u64, flags u16, then 124 zero bytes unless NO_ZEROES was agreed. */
export const EXPORT_NAME_REPLY_BYTES = 8 + 2;
export const EXPORT_NAME_REPLY_PAD_BYTES = 124;
export const REQUEST_HEADER_BYTES = 4 + 2 + 2 + 8 + 8 + 4;
export const SIMPLE_REPLY_HEADER_BYTES = 4 + 4 + 8;
export const STRUCTURED_HEADER_BYTES = 4 + 2 + 2 + 8 + 4;
export const EXTENDED_REQUEST_HEADER_BYTES = 4 + 2 + 2 + 8 + 8 + 8;
export const EXTENDED_REPLY_HEADER_BYTES = 4 + 2 + 2 + 8 + 8 + 8;
/** An OFFSET_DATA chunk up to its data: chunk header and the u64 offset. */
export const OFFSET_DATA_HEADER_BYTES = STRUCTURED_HEADER_BYTES + 8;
export const BLOCK_DESCRIPTOR_BYTES = 4 + 4;
export const INFO_EXPORT_BYTES = 2 + 8 + 2;
export const INFO_BLOCK_SIZE_BYTES = 2 + 4 + 4 + 4;

// ---- limits of this server ----
/** Largest READ or WRITE we accept: proto.md's interoperable maximum (2^25). */
export const MAX_BLOCK_BYTES = 32 * 1024 * 1024;
/** Preferred block size we advertise (at least the device's logical block). */
export const PREFERRED_BLOCK_BYTES = 4096;
/** NBD_INFO_BLOCK_SIZE's minimum may not exceed 64 KiB; devices with larger blocks are refused. */
export const MAX_MINIMUM_BLOCK_BYTES = 65536;
/** Requests dispatched and not yet answered, per connection, before we stop reading the socket. */
export const MAX_REQUESTS_IN_FLIGHT = 64;
/** Payload bytes (write data held, read data owed) in flight per connection before we stop reading. */
export const MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
/** Reply bytes not yet taken by the kernel (queued by us or the socket) before we stop reading. */
export const MAX_UNSENT_BYTES = 16 * 1024 * 1024;
/** A refused WRITE's payload up to this size is read and dropped; a larger one closes the connection. */
export const MAX_SKIPPED_WRITE_BYTES = 2 * MAX_BLOCK_BYTES;
/** Option payloads above this are dropped unread and answered NBD_REP_ERR_TOO_BIG. */
export const MAX_OPTION_BYTES = 64 * 1024;
/** Options per connection before we call it abuse and hang up. */
export const MAX_OPTIONS = 256;
/** proto.md: strings (export names, queries, messages) are at most 4096 bytes. */
export const MAX_STRING_BYTES = 4096;
/** Error messages we send are cut to this many bytes. */
export const MAX_MESSAGE_BYTES = 1024;
/** Descriptors in one BLOCK_STATUS reply; the client asks again for the rest. */
export const MAX_BLOCK_DESCRIPTORS = 4096;
/** A client that has not finished the handshake by then is disconnected. */
export const HANDSHAKE_TIMEOUT_MS = 30_000;
/** On close(), how long in-flight requests get to finish before connections are cut. */
export const SHUTDOWN_GRACE_MS = 5_000;

assert(GREETING_BYTES === 18 && OPTION_HEADER_BYTES === 16 && OPTION_REPLY_HEADER_BYTES === 20, 'nbd: handshake frame sizes');
assert(REQUEST_HEADER_BYTES === 28 && SIMPLE_REPLY_HEADER_BYTES === 16 && STRUCTURED_HEADER_BYTES === 20, 'nbd: transmission frame sizes');
assert(INFO_EXPORT_BYTES === 12 && INFO_BLOCK_SIZE_BYTES === 14, 'nbd: info payload sizes');
assert(MAX_BLOCK_BYTES % MAX_MINIMUM_BLOCK_BYTES === 0, 'nbd: the maximum block must be a multiple of any minimum we advertise');
assert(MAX_BLOCK_BYTES <= 2 ** 32 - 1 - OFFSET_DATA_HEADER_BYTES, 'nbd: a whole read must fit one OFFSET_DATA chunk');
assert(MAX_BYTES_IN_FLIGHT >= MAX_BLOCK_BYTES, 'nbd: one maximal request must always fit in flight');
assert(MAX_SKIPPED_WRITE_BYTES >= MAX_BLOCK_BYTES, 'nbd: refused writes up to the maximum are always skipped');
assert(MAX_OPTION_BYTES >= 4 + MAX_STRING_BYTES + 2 + 2 * 16, 'nbd: a maximal GO option must fit');
