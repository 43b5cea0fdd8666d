/**
 * RTRS over TCP: every RDMA operation of the document becomes one frame, a 32-byte header and a
 * payload, on one TCP connection (the document's connection, a QP). Little-endian like the
 * messages it carries (rtrs-messages.ts).
 *
 *   0  magic u16 0x1BBD      4  imm u32              16 key u32       24 seq u32
 *   2  op u8                 8  addr u64             20 length u32    28 digest u32
 *   3  flags u8 (DIGEST 1)
 *
 * Ops, and what each stands for in the document:
 *   HELLO      server -> client, first on every connection: our hello (below): version, whether
 *              a key is required, a nonce for the key's challenge
 *   CON_REQ    rdma_connect's private data: conn_req [+ auth: client nonce, HMAC]
 *   CON_RSP    rdma_accept's (or reject's) private data: conn_rsp [+ proof: HMAC]
 *   SEND       a two-sided send: INFO_REQ, INFO_RSP
 *   SEND_IMM   a send with immediate: RKEY_RSP with the IO_RSP immediate (always_invalidate)
 *   WRITE      a one-sided RDMA write of the payload at (key, addr) of the peer's memory, with no
 *              completion on the peer: a read's data into the client's buffer
 *   WRITE_IMM  an RDMA write with immediate: the payload at (key, addr), then `imm` completes on
 *              the peer; with no payload (key and addr 0) it is the document's "empty rdma
 *              message with an immediate field": IO_RSP, heartbeats
 * `seq` is ours: on an IO request, the client's issue number for that buffer id in the low 24 bits
 * (the same when a failed-over request is re-issued, so the server applies a write at most once)
 * and the attempt in the high 8 (+1 at every re-issue, so a late copy of an earlier attempt is
 * told apart and dropped); 0 elsewhere.
 * `digest` (when flag DIGEST) is CRC32C over header bytes 0..27 and then the payload, like
 * iSCSI's header and data digests in one: a TCP checksum is 16 bits and RDMA's link CRC is gone.
 *
 * Hello (24 B): magic u16, version u16, flags u32 (KEY_REQUIRED 1), nonce[16].
 * Auth after conn_req (48 B): client nonce[16], HMAC-SHA256(key, "rtrs-client" server nonce client
 * nonce conn_req). Proof after conn_rsp (32 B): HMAC-SHA256(key, "rtrs-server" client nonce server
 * nonce conn_rsp). Each side proves it holds the pre-shared key for this connection's nonces, so
 * neither a replayed conn_req nor a server without the key gets through.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { assert } from '../assert.ts';
import { RTRS_MAGIC, RTRS_VERSION } from './rtrs-messages.ts';

export const FRAME_HEADER_BYTES = 32;
export const FRAME_OP = { HELLO: 1, CON_REQ: 2, CON_RSP: 3, SEND: 4, SEND_IMM: 5, WRITE: 6, WRITE_IMM: 7 } as const;
export type FrameOp = (typeof FRAME_OP)[keyof typeof FRAME_OP];
export const FRAME_OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(FRAME_OP).map(([name, op]) => [op, name]));
export const FRAME_FLAG_DIGEST = 1;
/** Bits of `seq` that are the issue number; the attempt is above them. */
export const SEQ_ISSUE_BITS = 24;
const KNOWN_FLAGS = FRAME_FLAG_DIGEST;
/** Bytes the digest covers in the header: everything before it. */
const DIGESTED_HEADER_BYTES = 28;

export const HELLO_BYTES = 24;
export const HELLO_KEY_REQUIRED = 1;
export const NONCE_BYTES = 16;
export const MAC_BYTES = 32;
export const AUTH_BYTES = NONCE_BYTES + MAC_BYTES;

export interface FrameHeader {
  op: number;
  flags: number;
  imm: number;
  addr: bigint;
  key: number;
  lengthBytes: number;
  seq: number;
  digest: number;
}

/** CRC32C as the kernels compute it: `crc32c(bytes, seed)` continues `seed`. */
export type Crc32c = (bytes: Uint8Array, seed?: number) => number;

export function encodeFrameHeader(header: FrameHeader, out: Uint8Array, at = 0): void {
  const v = new DataView(out.buffer, out.byteOffset + at, FRAME_HEADER_BYTES);
  v.setUint16(0, RTRS_MAGIC, true);
  v.setUint8(2, header.op);
  v.setUint8(3, header.flags);
  v.setUint32(4, header.imm >>> 0, true);
  v.setBigUint64(8, header.addr, true);
  v.setUint32(16, header.key >>> 0, true);
  v.setUint32(20, header.lengthBytes, true);
  v.setUint32(24, header.seq >>> 0, true);
  v.setUint32(28, header.digest >>> 0, true);
}

/**
 * The header at `at`, or why it cannot be one: bad magic, an unknown op or flag, a payload over
 * `maxPayloadBytes` (the caller's limit for this connection's state). The digest is checked by
 * `digestProblem` once the payload is in.
 */
export function decodeFrameHeader(bytes: Uint8Array, at: number, maxPayloadBytes: number): FrameHeader | string {
  assert(bytes.length - at >= FRAME_HEADER_BYTES, 'rtrs frame: header not all in');
  const v = new DataView(bytes.buffer, bytes.byteOffset + at, FRAME_HEADER_BYTES);
  const magic = v.getUint16(0, true);
  if (magic !== RTRS_MAGIC) return `bad frame magic 0x${magic.toString(16)}`;
  const op = v.getUint8(2);
  if (FRAME_OP_NAMES[op] === undefined) return `unknown frame op ${op}`;
  const flags = v.getUint8(3);
  if ((flags & ~KNOWN_FLAGS) !== 0) return `unknown frame flags 0x${flags.toString(16)}`;
  const lengthBytes = v.getUint32(20, true);
  if (lengthBytes > maxPayloadBytes) return `${FRAME_OP_NAMES[op]} frame of ${lengthBytes} bytes, at most ${maxPayloadBytes} allowed here`;
  return {
    op,
    flags,
    imm: v.getUint32(4, true),
    addr: v.getBigUint64(8, true),
    key: v.getUint32(16, true),
    lengthBytes,
    seq: v.getUint32(24, true),
    digest: v.getUint32(28, true),
  };
}

/** The digest of a frame: its header bytes before the digest, then the payload. */
export function frameDigest(crc32c: Crc32c, headerBytes: Uint8Array, payload: Uint8Array): number {
  const headerCrc = crc32c(headerBytes.subarray(0, DIGESTED_HEADER_BYTES));
  return payload.length === 0 ? headerCrc : crc32c(payload, headerCrc);
}

/** Null when the frame's digest (if it carries one) matches; else the reason. */
export function digestProblem(crc32c: Crc32c, header: FrameHeader, headerBytes: Uint8Array, payload: Uint8Array): string | null {
  if ((header.flags & FRAME_FLAG_DIGEST) === 0) return null;
  const computed = frameDigest(crc32c, headerBytes, payload);
  return computed === header.digest ? null : `frame digest 0x${header.digest.toString(16)} does not match the bytes (0x${computed.toString(16)})`;
}

// ---- hello and the key's challenge ----

export interface Hello {
  keyRequired: boolean;
  nonce: Uint8Array;
}

export function encodeHello(hello: Hello): Uint8Array {
  assert(hello.nonce.length === NONCE_BYTES, 'rtrs: hello nonce');
  const out = new Uint8Array(HELLO_BYTES);
  const v = new DataView(out.buffer);
  v.setUint16(0, RTRS_MAGIC, true);
  v.setUint16(2, RTRS_VERSION, true);
  v.setUint32(4, hello.keyRequired ? HELLO_KEY_REQUIRED : 0, true);
  out.set(hello.nonce, 8);
  return out;
}

export function decodeHello(bytes: Uint8Array): Hello | string {
  if (bytes.length !== HELLO_BYTES) return `hello of ${bytes.length} bytes, ${HELLO_BYTES} expected`;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint16(0, true) !== RTRS_MAGIC) return 'hello with a bad magic';
  if (v.getUint16(2, true) >> 8 !== RTRS_VERSION >> 8) return `hello of major version ${v.getUint16(2, true) >> 8}`;
  return { keyRequired: (v.getUint32(4, true) & HELLO_KEY_REQUIRED) !== 0, nonce: bytes.slice(8, 8 + NONCE_BYTES) };
}

export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

function mac(key: Uint8Array, label: string, parts: readonly Uint8Array[]): Uint8Array {
  const hmac = createHmac('sha256', key);
  hmac.update(label);
  for (const part of parts) hmac.update(part);
  return new Uint8Array(hmac.digest());
}

/** The auth block a client appends to conn_req. */
export function clientAuth(key: Uint8Array, serverNonce: Uint8Array, connReq: Uint8Array): Uint8Array {
  const clientNonce = newNonce();
  const out = new Uint8Array(AUTH_BYTES);
  out.set(clientNonce, 0);
  out.set(mac(key, 'rtrs-client', [serverNonce, clientNonce, connReq]), NONCE_BYTES);
  return out;
}

function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** True when `auth` proves the client holds `key` for this conn_req and our nonce. */
export function clientAuthValid(key: Uint8Array, serverNonce: Uint8Array, connReq: Uint8Array, auth: Uint8Array): boolean {
  if (auth.length !== AUTH_BYTES) return false;
  const clientNonce = auth.subarray(0, NONCE_BYTES);
  return sameMac(auth.subarray(NONCE_BYTES), mac(key, 'rtrs-client', [serverNonce, clientNonce, connReq]));
}

export function serverProof(key: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array, connRsp: Uint8Array): Uint8Array {
  return mac(key, 'rtrs-server', [clientNonce, serverNonce, connRsp]);
}

export function serverProofValid(key: Uint8Array, clientNonce: Uint8Array, serverNonce: Uint8Array, connRsp: Uint8Array, proof: Uint8Array): boolean {
  return sameMac(proof, serverProof(key, clientNonce, serverNonce, connRsp));
}
