/**
 * RTRS wire formats frozen by hex vectors (STYLE 17): every kernel message of rtrs-pri.h
 * (conn_req, conn_rsp, info_req, info_rsp, rdma_write, rdma_read, rkey_rsp), every IMM encoding,
 * and our own TCP framing (the 32-byte frame header with and without its CRC32C digest, the hello,
 * the key's HMAC blocks). The expected bytes are written out by hand from the kernel's structs
 * (little-endian, packed as declared in drivers/infiniband/ulp/rtrs/rtrs-pri.h); the digest and
 * HMAC values were computed once with an independent bitwise CRC32C and Python's hmac. Encoding
 * must give the bytes, decoding must give the fields back. Then each decoder's reasons for bytes
 * that are not its message, and the server's conn_req and path name rules (rtrs_rdma_connect,
 * process_info_req).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  clientAuthValid, decodeFrameHeader, decodeHello, digestProblem, encodeFrameHeader, encodeHello, FRAME_FLAG_DIGEST, FRAME_HEADER_BYTES, FRAME_OP,
  frameDigest, type FrameHeader, serverProof, serverProofValid,
} from '../runtime/transport/rtrs-frame.ts';
import {
  CONN_REQ_BYTES, CONN_RSP_BYTES, type ConnReq, decodeConnReq, decodeConnRsp, decodeInfoReq, decodeInfoRsp, decodeRdmaRead, decodeRdmaWrite, decodeRkeyRsp,
  encodeConnReq, encodeConnRsp, encodeInfoReq, encodeInfoRsp, encodeRdmaRead, encodeRdmaWrite, encodeRkeyRsp, imm, IMM_TYPE, immPayload, immType,
  INFO_REQ_BYTES, ioMessageType, ioReqImm, ioReqOf, ioRspImm, ioRspOf, memBitsFor, MSG_TYPE, pathNameProblem, RDMA_WRITE_BYTES, rdmaReadBytes, READ_NEED_INVAL,
  RKEY_RSP_BYTES, RTRS_VERSION,
} from '../runtime/transport/rtrs-messages.ts';
import { connReqProblem } from '../runtime/transport/rtrs-server.ts';
import { kernelCrc32c } from './support/rtrs-pair.ts';

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
/** Hex with spaces (one group per field) to bytes. */
const bytesOf = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text.replaceAll(' ', ''), 'hex'));
const zeros = (count: number): string => '00'.repeat(count);
const PATH_UUID = '00112233445566778899aabbccddeeff';
const SESSION_UUID = '0f1e2d3c4b5a69788796a5b4c3d2e1f0';

const vectors = suite('rtrs messages: hex vectors');

vectors('conn_req (56 B): cma bytes, magic, version, cid, cid_num, recon_cnt, path uuid, session uuid, first_conn', () => {
  const req: ConnReq = { magic: 0x1bbd, version: 0x0200, cid: 1, cidCount: 3, reconnectCount: 2, pathUuid: PATH_UUID, sessionUuid: SESSION_UUID, firstConnection: true, askInvalidate: false };
  //               cma  ip magic ver  cid  num  recon
  const expected = `00 00 bd1b 0002 0100 0300 0200 ${PATH_UUID} ${SESSION_UUID} 01 ${zeros(11)}`;
  assert.is(hex(encodeConnReq(req)), expected.replaceAll(' ', ''));
  assert.is(encodeConnReq(req).length, CONN_REQ_BYTES);
  assert.equal(decodeConnReq(bytesOf(expected)), req);
  // first_conn is bit 0 of its byte; bit 1 is ours (the client asks for always_invalidate); the
  // other 6 bits are reserved and ignored (as are the cma bytes)
  const notFirst = `ff 04 bd1b 0102 ffff 0010 ffff ${SESSION_UUID} ${PATH_UUID} fe ${'aa'.repeat(11)}`;
  assert.equal(decodeConnReq(bytesOf(notFirst)), {
    magic: 0x1bbd, version: 0x0201, cid: 0xffff, cidCount: 4096, reconnectCount: 0xffff, pathUuid: SESSION_UUID, sessionUuid: PATH_UUID, firstConnection: false, askInvalidate: true,
  });
  assert.is(hex(encodeConnReq({ ...req, askInvalidate: true })), `00 00 bd1b 0002 0100 0300 0200 ${PATH_UUID} ${SESSION_UUID} 03 ${zeros(11)}`.replaceAll(' ', ''));
  assert.is(hex(encodeConnReq({ ...req, cid: 0, firstConnection: false })), `00 00 bd1b 0002 0000 0300 0200 ${PATH_UUID} ${SESSION_UUID} 00 ${zeros(11)}`.replaceAll(' ', ''));
});

vectors('conn_rsp (56 B): accept with NEW_RKEY, and a reject with a negative errno', () => {
  const accept = { magic: 0x1bbd, version: 0x0200, errno: 0, queueDepth: 512, maxIoBytes: 124 * 1024, maxHeaderBytes: 4096, flags: 0x2 };
  //                     magic ver  errno qd   max_io   max_hdr  flags
  const acceptHex = `bd1b 0002 0000 0002 00f00100 00100000 02000000 ${zeros(36)}`;
  assert.is(hex(encodeConnRsp(accept)), acceptHex.replaceAll(' ', ''));
  assert.is(encodeConnRsp(accept).length, CONN_RSP_BYTES);
  assert.equal(decodeConnRsp(bytesOf(acceptHex)), accept);
  // -ECONNRESET (-104 = 0xff98 as s16), as rtrs_rdma_do_reject sends it
  const reject = { magic: 0x1bbd, version: 0x0200, errno: 104, queueDepth: 0, maxIoBytes: 0, maxHeaderBytes: 0, flags: 0 };
  const rejectHex = `bd1b 0002 98ff 0000 00000000 00000000 00000000 ${zeros(36)}`;
  assert.is(hex(encodeConnRsp(reject)), rejectHex.replaceAll(' ', ''));
  assert.equal(decodeConnRsp(bytesOf(rejectHex)), reject);
  // -EKEYREJECTED (-129 = 0xff7f), and queue depth 65535
  assert.is(hex(encodeConnRsp({ ...reject, errno: 129, queueDepth: 0xffff })).slice(0, 16), 'bd1b00027fffffff');
});

vectors('info_req (272 B): type 0, pathname[255] NUL padded, reserved[15]', () => {
  const expected = `0000 626c6b2d61 ${zeros(250)} ${zeros(15)}`; // "blk-a"
  const encoded = encodeInfoReq('blk-a');
  assert.is(encoded.length, INFO_REQ_BYTES);
  assert.is(hex(encoded), expected.replaceAll(' ', ''));
  assert.equal(decodeInfoReq(bytesOf(expected)), { pathName: 'blk-a' });
  // the longest name (254 bytes, NUL in the last byte of the field), UTF-8
  const longest = 'é'.repeat(127);
  assert.is(hex(encodeInfoReq(longest)), `0000 ${'c3a9'.repeat(127)} 00 ${zeros(15)}`.replaceAll(' ', ''));
  assert.equal(decodeInfoReq(encodeInfoReq(longest)), { pathName: longest });
});

vectors('info_rsp (8 + 16n B): type 1, sg_cnt, reserved[4], then {addr u64, key u32, len u32} each', () => {
  const descs = [
    { addr: 0x0000010000000000n, key: 0xdeadbeef, lengthBytes: 128 * 1024 },
    { addr: 0x0123456789abcdefn, key: 1, lengthBytes: 0x00020000 },
  ];
  //                 type cnt  reserved  addr             key      len
  const expected = `0100 0200 00000000 0000000000010000 efbeadde 00000200 efcdab8967452301 01000000 00000200`;
  assert.is(hex(encodeInfoRsp(descs)), expected.replaceAll(' ', ''));
  assert.equal(decodeInfoRsp(bytesOf(expected)), descs);
  assert.is(hex(encodeInfoRsp([])), '0100000000000000');
  assert.equal(decodeInfoRsp(bytesOf('0100 0000 ffffffff')), [], 'reserved bytes are not judged');
});

vectors('rdma_write (4 B): type 2, usr_len', () => {
  const out = new Uint8Array(RDMA_WRITE_BYTES);
  encodeRdmaWrite(9, out);
  assert.is(hex(out), '02000900');
  assert.equal(decodeRdmaWrite(bytesOf('0200 0900')), { userHeaderBytes: 9 });
  encodeRdmaWrite(4096, out);
  assert.is(hex(out), '02000010');
});

vectors('rdma_read (8 + 16n B): type 3, usr_len, flags, sg_cnt, descs; 0 and 1 descriptors, NEED_INVAL', () => {
  const none = new Uint8Array(rdmaReadBytes(0));
  encodeRdmaRead({ userHeaderBytes: 9, flags: 0, descs: [] }, none);
  assert.is(hex(none), '0300090000000000');
  assert.equal(decodeRdmaRead(none), { userHeaderBytes: 9, flags: 0, descs: [] });

  const read = { userHeaderBytes: 9, flags: READ_NEED_INVAL, descs: [{ addr: 0x0000000500000007n, key: 0xcafef00d, lengthBytes: 4096 }] };
  const one = new Uint8Array(rdmaReadBytes(1));
  encodeRdmaRead(read, one);
  //                 type len  flags cnt  addr             key      len
  const expected = `0300 0900 0100 0100 0700000005000000 0df0feca 00100000`;
  assert.is(hex(one), expected.replaceAll(' ', ''));
  assert.equal(decodeRdmaRead(bytesOf(expected)), read);
  assert.equal(ioMessageType(one), MSG_TYPE.READ);
  assert.equal(ioMessageType(bytesOf('0200 0900')), MSG_TYPE.WRITE);
});

vectors('rkey_rsp (8 B): type 4, buf_id, rkey', () => {
  const encoded = encodeRkeyRsp(511, 0x89abcdef);
  assert.is(encoded.length, RKEY_RSP_BYTES);
  assert.is(hex(encoded), '0400ff01efcdab89');
  assert.equal(decodeRkeyRsp(bytesOf('0400 ff01 efcdab89')), { bufferId: 511, rkey: 0x89abcdef });
});

vectors('IMM: IO_REQ for queue depth 512 (memBits 19), 1 (28) and 65535 (12)', () => {
  assert.is(memBitsFor(512), 19);
  assert.is(memBitsFor(513), 18);
  assert.is(memBitsFor(1), 28);
  assert.is(memBitsFor(2), 27);
  assert.is(memBitsFor(65535), 12);
  // depth 512: buffer 511, message at 0x1f00c -> 511 << 19 | 0x1f00c
  assert.is(ioReqImm(511, 0x1f00c, 19), 0x0ff9f00c);
  assert.equal(ioReqOf(immPayload(0x0ff9f00c), 19), { bufferId: 511, offsetBytes: 0x1f00c });
  assert.is(ioReqImm(5, 4100, 19), 0x00281004);
  assert.equal(ioReqOf(0x00281004, 19), { bufferId: 5, offsetBytes: 4100 });
  assert.is(immType(0x00281004), IMM_TYPE.IO_REQ);
  // depth 1: all 28 bits are offset
  assert.is(ioReqImm(0, 0x0abcdef, 28), 0x00abcdef);
  assert.is(ioReqImm(0, 0x0fffffff, 28), 0x0fffffff);
  assert.equal(ioReqOf(0x0fffffff, 28), { bufferId: 0, offsetBytes: 0x0fffffff });
  // depth 65535: 16 bits of buffer id, 12 of offset
  assert.is(ioReqImm(65534, 0xfff, 12), 0x0fffefff);
  assert.equal(ioReqOf(0x0fffefff, 12), { bufferId: 65534, offsetBytes: 0xfff });
  assert.is(ioReqImm(1, 0, 12), 0x00001000);
  assert.throws(() => ioReqImm(0, 4096, 12), /needs more than 12 bits/);
});

vectors('IMM: IO_RSP and IO_RSP_W_INV with errno << 19 | msg id; HB_MSG, HB_ACK', () => {
  assert.is(ioRspImm(0, 0), 0x10000000);
  assert.is(ioRspImm(511, 5), 0x102801ff); // EIO
  assert.is(ioRspImm(511, -5), 0x102801ff, 'the kernel packs abs(errno)');
  assert.equal(ioRspOf(immPayload(0x102801ff)), { messageId: 511, errno: 5 });
  assert.is(immType(0x102801ff), IMM_TYPE.IO_RSP);
  assert.is(ioRspImm(0x7ffff, 129, true), 0x240fffff); // EKEYREJECTED, largest msg id, with invalidate
  assert.is(immType(0x240fffff), IMM_TYPE.IO_RSP_W_INV);
  assert.equal(ioRspOf(immPayload(0x240fffff)), { messageId: 0x7ffff, errno: 129 });
  assert.is(ioRspImm(3, 0x1ff), 0x1ff80003, 'errno 511, the largest of 9 bits');
  assert.is(imm(IMM_TYPE.HB_MSG, 0), 0x80000000);
  assert.is(imm(IMM_TYPE.HB_ACK, 0), 0x90000000);
  assert.is(immType(0x90000000), IMM_TYPE.HB_ACK);
  assert.is(immType(0xffffffff), 15);
  assert.is(immPayload(0xffffffff), 0x0fffffff);
});

vectors('frame header (32 B): magic, op, flags, imm, addr, key, length, seq, digest; without DIGEST', () => {
  const header: FrameHeader = { op: FRAME_OP.WRITE_IMM, flags: 0, imm: 0x00281004, addr: 0x0000010000140000n, key: 0xdeadbeef, lengthBytes: 4100, seq: 7, digest: 0 };
  //                 magic op flags imm     addr             key      length   seq      digest
  const expected = `bd1b 07 00 04102800 0000140000010000 efbeadde 04100000 07000000 00000000`;
  const out = new Uint8Array(FRAME_HEADER_BYTES + 3);
  encodeFrameHeader(header, out, 3);
  assert.is(hex(out.subarray(3)), expected.replaceAll(' ', ''));
  assert.equal(decodeFrameHeader(out, 3, 4100), header);
  const noDigest = (): number => {
    throw new Error('no digest to check');
  };
  assert.is(digestProblem(noDigest, header, out.subarray(3), new Uint8Array(4100)), null);
  assert.equal(decodeFrameHeader(bytesOf(`bd1b 01 00 ${zeros(28)}`), 0, 0), { op: FRAME_OP.HELLO, flags: 0, imm: 0, addr: 0n, key: 0, lengthBytes: 0, seq: 0, digest: 0 });
});

vectors('frame header with DIGEST: CRC32C over header bytes 0..27, then the payload', async () => {
  const crc32c = await kernelCrc32c();
  assert.is(crc32c(new TextEncoder().encode('123456789')), 0xe3069283, 'the CRC32C check value');
  const payload = new TextEncoder().encode('hello');
  const header: FrameHeader = { op: FRAME_OP.WRITE_IMM, flags: FRAME_FLAG_DIGEST, imm: 0x00281004, addr: 0x0000010000140000n, key: 0xdeadbeef, lengthBytes: 5, seq: 7, digest: 0 };
  const out = new Uint8Array(FRAME_HEADER_BYTES);
  encodeFrameHeader(header, out);
  header.digest = frameDigest(crc32c, out, payload);
  assert.is(header.digest, 0x11b35533);
  encodeFrameHeader(header, out);
  const expected = `bd1b 07 01 04102800 0000140000010000 efbeadde 05000000 07000000 3355b311`;
  assert.is(hex(out), expected.replaceAll(' ', ''));
  assert.equal(decodeFrameHeader(bytesOf(expected), 0, 5), header);
  assert.is(digestProblem(crc32c, header, out, payload), null);
  assert.match(digestProblem(crc32c, header, out, new TextEncoder().encode('hellO')) ?? '', /^frame digest 0x11b35533 does not match the bytes/);
  // an HB_ACK with no payload: the digest is the header's alone
  const ack: FrameHeader = { op: FRAME_OP.WRITE_IMM, flags: FRAME_FLAG_DIGEST, imm: 0x90000000, addr: 0n, key: 0, lengthBytes: 0, seq: 0, digest: 0 };
  encodeFrameHeader(ack, out);
  ack.digest = frameDigest(crc32c, out, new Uint8Array(0));
  encodeFrameHeader(ack, out);
  assert.is(hex(out), `bd1b 07 01 00000090 ${zeros(8)} ${zeros(4)} ${zeros(4)} ${zeros(4)} 250acebb`.replaceAll(' ', ''));
});

vectors('hello (24 B): magic, version, flags (KEY_REQUIRED 1), nonce[16]', () => {
  const nonce = bytesOf('000102030405060708090a0b0c0d0e0f');
  const expected = 'bd1b 0002 01000000 000102030405060708090a0b0c0d0e0f';
  assert.is(hex(encodeHello({ keyRequired: true, nonce })), expected.replaceAll(' ', ''));
  assert.equal(decodeHello(bytesOf(expected)), { keyRequired: true, nonce });
  assert.is(hex(encodeHello({ keyRequired: false, nonce })), 'bd1b000200000000000102030405060708090a0b0c0d0e0f');
  assert.equal(decodeHello(bytesOf('bd1b 0502 fefffffe 000102030405060708090a0b0c0d0e0f')), { keyRequired: false, nonce }, 'minor version and other flag bits ignored');
});

vectors('the key blocks: HMAC-SHA256 of "rtrs-client" + server nonce + client nonce + conn_req, and "rtrs-server" + client nonce + server nonce + conn_rsp', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  const clientNonce = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
  const serverNonce = Uint8Array.from({ length: 16 }, (_, i) => 0x20 + i);
  const connReq = encodeConnReq({ magic: 0x1bbd, version: 0x0200, cid: 1, cidCount: 3, reconnectCount: 2, pathUuid: PATH_UUID, sessionUuid: SESSION_UUID, firstConnection: true });
  const auth = bytesOf(`${hex(clientNonce)} d02d4761b0868008613ec291de7dc2618f31a5546b94ab9089a35132e0c40058`);
  assert.ok(clientAuthValid(key, serverNonce, connReq, auth));
  assert.not.ok(clientAuthValid(key, clientNonce, connReq, auth), 'nonces swapped');
  assert.not.ok(clientAuthValid(key.map((b) => b ^ 1), serverNonce, connReq, auth), 'another key');
  assert.not.ok(clientAuthValid(key, serverNonce, connReq, auth.subarray(0, 47)), 'short');
  const connRsp = encodeConnRsp({ magic: 0x1bbd, version: 0x0200, errno: 0, queueDepth: 512, maxIoBytes: 124 * 1024, maxHeaderBytes: 4096, flags: 0x2 });
  const proof = '4bbc29c67f3e5eec3fdd57682bdf35b1ead217ecadd4d5a0cb3bd233a2dbf240';
  assert.is(hex(serverProof(key, clientNonce, serverNonce, connRsp)), proof);
  assert.ok(serverProofValid(key, clientNonce, serverNonce, connRsp, bytesOf(proof)));
  assert.not.ok(serverProofValid(key, clientNonce, serverNonce, connRsp, new Uint8Array(32)));
  assert.not.ok(serverProofValid(key, clientNonce, serverNonce, connRsp, new Uint8Array(0)));
});

const reasons = suite('rtrs messages: reasons');

function reason(result: unknown): string {
  assert.type(result, 'string', `a reason, got ${JSON.stringify(result, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  return result as string;
}

reasons('short input: every decoder says how many bytes it got', () => {
  assert.match(reason(decodeConnReq(new Uint8Array(55))), /^conn_req of 55 bytes, 56 needed$/);
  assert.match(reason(decodeConnRsp(new Uint8Array(0))), /^conn_rsp of 0 bytes, 56 needed$/);
  assert.match(reason(decodeInfoReq(new Uint8Array(271))), /^info_req of 271 bytes, 272 needed$/);
  assert.match(reason(decodeInfoRsp(bytesOf('0100 00'))), /^info_rsp of 3 bytes, 8 needed$/);
  assert.match(reason(decodeRdmaWrite(bytesOf('0200 09'))), /^rdma_write of 3 bytes$/);
  assert.match(reason(decodeRdmaRead(bytesOf('0300 0900 0000'))), /^rdma_read of 6 bytes$/);
  assert.match(reason(decodeRdmaRead(bytesOf(`0300 0900 0000 0100 ${zeros(15)}`))), /^rdma_read of 23 bytes for 1 descriptors$/);
  assert.match(reason(decodeRkeyRsp(bytesOf('0400 ff01 efcdab'))), /^rkey_rsp of 7 bytes$/);
  assert.match(reason(decodeRkeyRsp(bytesOf('0400 ff01 efcdab89 00'))), /^rkey_rsp of 9 bytes$/);
  assert.match(reason(ioMessageType(bytesOf('02'))), /^IO message shorter than its type$/);
  assert.match(reason(decodeHello(new Uint8Array(23))), /^hello of 23 bytes, 24 expected$/);
  assert.match(reason(decodeHello(new Uint8Array(25))), /^hello of 25 bytes, 24 expected$/);
  assert.throws(() => decodeFrameHeader(new Uint8Array(40), 9, 0), /header not all in/, 'a caller bug, not input: asserted');
});

reasons('wrong type or magic', () => {
  assert.match(reason(decodeInfoReq(bytesOf(`0100 626c6b ${zeros(267)}`))), /^info_req of type 1$/);
  assert.match(reason(decodeInfoRsp(bytesOf('0000 0000 00000000'))), /^info_rsp of type 0$/);
  assert.match(reason(decodeRkeyRsp(bytesOf('0300 ff01 efcdab89'))), /^rkey_rsp of type 3$/);
  assert.match(reason(ioMessageType(bytesOf('0400 0900'))), /^IO message of type 4$/);
  assert.match(reason(ioMessageType(bytesOf('0000'))), /^IO message of type 0$/);
  assert.match(reason(decodeHello(bytesOf(`bd1c 0002 00000000 ${zeros(16)}`))), /^hello with a bad magic$/);
  assert.match(reason(decodeHello(bytesOf(`bd1b 0003 00000000 ${zeros(16)}`))), /^hello of major version 3$/);
  assert.match(reason(decodeHello(bytesOf(`bd1b 0001 00000000 ${zeros(16)}`))), /^hello of major version 1$/);
});

reasons('frame header: bad magic, unknown op or flags, a payload over the limit of the state', () => {
  const frame = (text: string) => decodeFrameHeader(bytesOf(text), 0, 4096);
  assert.match(reason(frame(`bdbd 07 00 ${zeros(28)}`)), /^bad frame magic 0xbdbd$/);
  assert.match(reason(frame(`bd1b 00 00 ${zeros(28)}`)), /^unknown frame op 0$/);
  assert.match(reason(frame(`bd1b 08 00 ${zeros(28)}`)), /^unknown frame op 8$/);
  assert.match(reason(frame(`bd1b 07 02 ${zeros(28)}`)), /^unknown frame flags 0x2$/);
  assert.match(reason(frame(`bd1b 07 81 ${zeros(28)}`)), /^unknown frame flags 0x81$/);
  assert.match(reason(frame(`bd1b 07 00 ${zeros(16)} 01100000 ${zeros(8)}`)), /^WRITE_IMM frame of 4097 bytes, at most 4096 allowed here$/);
  assert.match(reason(frame(`bd1b 02 00 ${zeros(16)} ffffffff ${zeros(8)}`)), /^CON_REQ frame of 4294967295 bytes/);
  assert.type(frame(`bd1b 07 01 ${zeros(16)} 00100000 ${zeros(8)}`), 'object', '4096 bytes is allowed');
});

reasons('info_req names that are not NUL-terminated or not UTF-8', () => {
  assert.match(reason(decodeInfoReq(bytesOf(`0000 ${'41'.repeat(255)} ${zeros(15)}`))), /^info_req path name is not NUL-terminated$/);
  assert.match(reason(decodeInfoReq(bytesOf(`0000 ff41 ${zeros(268)}`))), /^info_req path name is not UTF-8$/);
  // what follows the NUL is not judged
  assert.equal(decodeInfoReq(bytesOf(`0000 41 00 ${'42'.repeat(253)} ${'ff'.repeat(15)}`)), { pathName: 'A' });
});

reasons('info_rsp that does not add up: sg_cnt against the bytes', () => {
  const desc = `0000000000010000 efbeadde 00000200`;
  assert.match(reason(decodeInfoRsp(bytesOf(`0100 0200 00000000 ${desc}`))), /^info_rsp of 24 bytes for 2 descriptors$/);
  assert.match(reason(decodeInfoRsp(bytesOf(`0100 0100 00000000 ${desc} ${desc}`))), /^info_rsp of 40 bytes for 1 descriptors$/);
  assert.match(reason(decodeInfoRsp(bytesOf(`0100 0100 00000000 ${desc} 00`))), /^info_rsp of 25 bytes for 1 descriptors$/);
  assert.match(reason(decodeInfoRsp(bytesOf(`0100 ffff 00000000`))), /^info_rsp of 8 bytes for 65535 descriptors$/);
});

reasons('rdma_read with 2 (or more) descriptors: this transport reads into one buffer', () => {
  const desc = `0700000005000000 0df0feca 00100000`;
  assert.match(reason(decodeRdmaRead(bytesOf(`0300 0900 0000 0200 ${desc} ${desc}`))), /^rdma_read with 2 descriptors \(0 or 1 allowed\)$/);
  assert.match(reason(decodeRdmaRead(bytesOf(`0300 0900 0000 ffff`))), /^rdma_read with 65535 descriptors/);
});

const rules = suite('rtrs messages: conn_req and path name rules');

const GOOD_REQ: ConnReq = { magic: 0x1bbd, version: RTRS_VERSION, cid: 0, cidCount: 3, reconnectCount: 0, pathUuid: PATH_UUID, sessionUuid: SESSION_UUID, firstConnection: true };

rules('connReqProblem: magic, major version (minor ignored), cid < cid_num, cid_num 1..4096', () => {
  assert.is(connReqProblem(GOOD_REQ), null);
  assert.is(connReqProblem({ ...GOOD_REQ, version: 0x02ff }), null, 'another minor version is fine');
  assert.is(connReqProblem({ ...GOOD_REQ, cid: 4095, cidCount: 4096 }), null);
  assert.is(connReqProblem({ ...GOOD_REQ, cid: 0, cidCount: 1 }), null);
  assert.is(connReqProblem({ ...GOOD_REQ, magic: 0x1bbc }), 'bad magic 0x1bbc');
  assert.is(connReqProblem({ ...GOOD_REQ, magic: 0xbd1b }), 'bad magic 0xbd1b');
  assert.is(connReqProblem({ ...GOOD_REQ, version: 0x0100 }), 'unsupported major version 1, expected 2');
  assert.is(connReqProblem({ ...GOOD_REQ, version: 0x0300 }), 'unsupported major version 3, expected 2');
  assert.is(connReqProblem({ ...GOOD_REQ, version: 0x0002 }), 'unsupported major version 0, expected 2', 'byte order matters');
  assert.is(connReqProblem({ ...GOOD_REQ, cid: 3, cidCount: 3 }), 'cid 3 >= cid_num 3');
  assert.is(connReqProblem({ ...GOOD_REQ, cid: 0xffff, cidCount: 3 }), 'cid 65535 >= cid_num 3');
  assert.is(connReqProblem({ ...GOOD_REQ, cid: 0, cidCount: 0 }), 'cid_num 0 (1..4096)');
  assert.is(connReqProblem({ ...GOOD_REQ, cid: 0, cidCount: 4097 }), 'cid_num 4097 (1..4096)');
  assert.is(connReqProblem({ ...GOOD_REQ, cid: 0, cidCount: 0xffff }), 'cid_num 65535 (1..4096)');
});

rules('pathNameProblem: no /, no ., not empty, shorter than 255 bytes', () => {
  assert.is(pathNameProblem('blk-a_1'), null);
  assert.is(pathNameProblem('x'.repeat(254)), null);
  assert.is(pathNameProblem('é'.repeat(127)), null, '254 bytes of UTF-8');
  assert.is(pathNameProblem(''), 'path name is empty');
  assert.is(pathNameProblem('a/b'), 'path name cannot contain / or .');
  assert.is(pathNameProblem('/'), 'path name cannot contain / or .');
  assert.is(pathNameProblem('a.b'), 'path name cannot contain / or .');
  assert.is(pathNameProblem('.'), 'path name cannot contain / or .');
  assert.is(pathNameProblem('..'), 'path name cannot contain / or .');
  assert.is(pathNameProblem('x'.repeat(255)), 'path name is 255 bytes or longer');
  assert.is(pathNameProblem('é'.repeat(128)), 'path name is 255 bytes or longer', '256 bytes of UTF-8 in 128 characters');
  assert.is(pathNameProblem('a\0b'), 'path name cannot contain NUL');
  assert.throws(() => encodeInfoReq('x'.repeat(255)), /path name too long/);
});

vectors.run();
reasons.run();
rules.run();
