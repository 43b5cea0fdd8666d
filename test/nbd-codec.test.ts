/**
 * NBD frames frozen by hex vectors (STYLE 16): every frame the server encodes and every client
 * frame it decodes, written out from proto.md's layouts by hand, so a change to a codec that
 * changes a byte fails here. Then the decoders' refusals (the reason strings), the request check's
 * order, and option negotiation driven without a socket.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH,
  NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_ENOSPC, NBD_EPERM, NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_CACHE, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_DF, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_INFO_DESCRIPTION, NBD_INFO_NAME, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO,
  NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT, NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK, NBD_REP_ERR_INVALID, NBD_REP_ERR_TOO_BIG, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from '../server/nbd/constants.ts';
import { transmissionFlags } from '../server/nbd/export-flags.ts';
import { Negotiation } from '../server/nbd/negotiation.ts';
import {
  decodeClientFlags, decodeGoRequest, decodeMetaContextRequest, decodeOptionHeader, encodeExportNameReply, encodeGoRequest,
  encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString, encodeMetaContext, encodeMetaContextRequest,
  encodeOptionHeader, encodeOptionReply, encodeServerEntry,
} from '../server/nbd/option-codec.ts';
import { checkRequest, type Session } from '../server/nbd/request-check.ts';
import {
  decodeReplyHeader, decodeRequest, encodeBlockStatusChunk, encodeErrorChunk, encodeNoneChunk, encodeRequest, encodeSimpleReply,
  writeDataChunkHeader, writeHoleChunk, writeReadReplyHeader, type NbdRequest,
} from '../server/nbd/request-codec.ts';
import { readPieces } from '../server/nbd/export-session.ts';
import type { NbdExport } from '../server/nbd/types.ts';
import type { DeviceBitmap } from '../runtime/devices/block-device.ts';
import { decodeString, readU32, readU64, utf8, utf8Truncated } from '../server/nbd/wire.ts';

const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const bytesOf = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const HANDLE = { handleHigh: 0x01020304, handleLow: 0x05060708 };
const HANDLE_HEX = '0102030405060708';
const BASE_ALLOCATION_HEX = '626173653a616c6c6f636174696f6e';

const vectors = suite('nbd frames: hex vectors');

vectors('greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES', () => {
  assert.is(hex(encodeGreeting()), '4e42444d41474943' + '49484156454f5054' + '0003');
});

vectors('client flags and option header', () => {
  assert.is(decodeClientFlags(bytesOf('00000003'), 0), 3);
  const header = bytesOf('49484156454f5054 00000007 0000000a');
  assert.equal(decodeOptionHeader(header, 0), { option: 7, lengthBytes: 10 });
  assert.is(hex(encodeOptionHeader(7, bytesOf('aabb'))), '49484156454f5054' + '00000007' + '00000002' + 'aabb');
  assert.is(decodeOptionHeader(bytesOf('49484156454f5055 00000007 00000000'), 0), 'option magic is not IHAVEOPT');
});

vectors('option replies: ACK, error with message, SERVER, META_CONTEXT', () => {
  assert.is(hex(encodeOptionReply(NBD_OPT_GO, NBD_REP_ACK)), '0003e889045565a9' + '00000007' + '00000001' + '00000000');
  assert.is(hex(encodeOptionReply(NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, utf8('no'))), '0003e889045565a9' + '00000005' + '80000001' + '00000002' + '6e6f');
  assert.is(hex(encodeServerEntry('disk', 'a')), '00000004' + '6469736b' + '61');
  assert.is(hex(encodeServerEntry('disk', '')), '00000004' + '6469736b');
  assert.is(hex(encodeMetaContext(1, 'base:allocation')), '00000001' + BASE_ALLOCATION_HEX);
  assert.is(NBD_REP_ERR_INVALID, 0x80000003);
  assert.is(NBD_REP_ERR_UNKNOWN, 0x80000006);
  assert.is(NBD_REP_ERR_TOO_BIG, 0x80000009);
});

vectors('NBD_REP_INFO payloads: EXPORT, NAME, DESCRIPTION, BLOCK_SIZE', () => {
  assert.is(hex(encodeInfoExport(0x100000, 0x014d)), '0000' + '0000000000100000' + '014d');
  assert.is(hex(encodeInfoExport(2 ** 44 + 512, 1)), '0000' + '0000100000000200' + '0001');
  assert.is(hex(encodeInfoString(NBD_INFO_NAME, 'disk')), '0001' + '6469736b');
  assert.is(hex(encodeInfoString(NBD_INFO_DESCRIPTION, 'é')), '0002' + 'c3a9');
  assert.is(hex(encodeInfoBlockSize(512, 4096, 32 << 20)), '0003' + '00000200' + '00001000' + '02000000');
});

vectors('EXPORT_NAME reply, with and without the 124 zero bytes', () => {
  assert.is(hex(encodeExportNameReply(0x100000, 0x0003, true)), '0000000000100000' + '0003');
  assert.is(hex(encodeExportNameReply(0x100000, 0x0003, false)), '0000000000100000' + '0003' + '00'.repeat(124));
});

vectors('INFO/GO and META_CONTEXT option data', () => {
  const go = bytesOf('00000004 6469736b 0002 0003 0001');
  assert.equal(decodeGoRequest(go), { name: 'disk', infoTypes: [3, 1] });
  assert.is(hex(encodeGoRequest({ name: 'disk', infoTypes: [3, 1] })), hex(go));
  assert.equal(decodeGoRequest(bytesOf('00000000 0000')), { name: '', infoTypes: [] });
  const meta = bytesOf(`00000004 6469736b 00000001 0000000f ${BASE_ALLOCATION_HEX}`);
  assert.equal(decodeMetaContextRequest(meta), { name: 'disk', queries: ['base:allocation'] });
  assert.is(hex(encodeMetaContextRequest({ name: 'disk', queries: ['base:allocation'] })), hex(meta));
  assert.equal(decodeMetaContextRequest(bytesOf('00000000 00000000')), { name: '', queries: [] });
});

vectors('request header', () => {
  const frame = bytesOf(`25609513 0001 0000 ${HANDLE_HEX} 0000000100000200 00001000`);
  const request: NbdRequest = { flags: 1, type: NBD_CMD_READ, ...HANDLE, offsetBytes: 2 ** 32 + 512, lengthBytes: 4096 };
  assert.equal(decodeRequest(frame, 0), request);
  assert.is(hex(encodeRequest(request)), hex(frame));
  assert.is(hex(encodeRequest({ ...request, type: NBD_CMD_WRITE, flags: 0, lengthBytes: 2 }, bytesOf('cafe'))), `25609513000000010102030405060708000000010000020000000002cafe`);
  // Decoded at an offset inside a larger buffer, as the server does from socket chunks.
  const shifted = new Uint8Array(3 + frame.length);
  shifted.set(frame, 3);
  assert.equal(decodeRequest(shifted, 3), request);
  // An offset of 2^53 or more cannot be any export's: -1.
  assert.is((decodeRequest(bytesOf(`25609513 0000 0000 ${HANDLE_HEX} 0020000000000000 00000200`), 0) as NbdRequest).offsetBytes, -1);
  assert.is((decodeRequest(bytesOf(`25609513 0000 0000 ${HANDLE_HEX} 001fffffffffffff 00000200`), 0) as NbdRequest).offsetBytes, 2 ** 53 - 1);
  assert.is(decodeRequest(bytesOf(`25609514 0000 0000 ${HANDLE_HEX} 0000000000000000 00000000`), 0), 'request magic is 0x25609514, not 0x25609513');
});

vectors('simple reply, read reply headers, NONE / ERROR / BLOCK_STATUS chunks', () => {
  assert.is(hex(encodeSimpleReply(5, HANDLE)), '67446698' + '00000005' + HANDLE_HEX);
  const simpleRead = new Uint8Array(16 + 4);
  writeReadReplyHeader(simpleRead, false, HANDLE, 512, 4);
  assert.is(hex(simpleRead), '67446698' + '00000000' + HANDLE_HEX + '00000000');
  const structuredRead = new Uint8Array(28 + 4);
  structuredRead.set(bytesOf('deadbeef'), 28);
  writeReadReplyHeader(structuredRead, true, HANDLE, 512, 4);
  assert.is(hex(structuredRead), '668e33ef' + '0001' + '0001' + HANDLE_HEX + '0000000c' + '0000000000000200' + 'deadbeef');
  assert.is(hex(encodeNoneChunk(HANDLE)), '668e33ef' + '0001' + '0000' + HANDLE_HEX + '00000000');
  assert.is(hex(encodeErrorChunk(HANDLE, 22, utf8('bad'))), '668e33ef' + '0001' + '8001' + HANDLE_HEX + '00000009' + '00000016' + '0003' + '626164');
  assert.is(
    hex(encodeBlockStatusChunk(HANDLE, 1, [{ lengthBytes: 0x1000, statusFlags: 3 }, { lengthBytes: 0x2000, statusFlags: 0 }])),
    '668e33ef' + '0001' + '0005' + HANDLE_HEX + '00000014' + '00000001' + '00001000' + '00000003' + '00002000' + '00000000',
  );
  assert.is(
    hex(encodeBlockStatusChunk(HANDLE, 2, [{ lengthBytes: 0x1000, statusFlags: 1 }], false)),
    '668e33ef' + '0000' + '0005' + HANDLE_HEX + '0000000c' + '00000002' + '00001000' + '00000001',
    'a chunk that is not the last: no DONE',
  );
  const sparseRead = new Uint8Array(32 + 28 + 4);
  writeHoleChunk(sparseRead, 0, false, HANDLE, 0x200, 0x1000);
  writeDataChunkHeader(sparseRead, 32, true, HANDLE, 0x1200, 4);
  sparseRead.set(bytesOf('deadbeef'), 60);
  assert.is(
    hex(sparseRead),
    '668e33ef' + '0000' + '0002' + HANDLE_HEX + '0000000c' + '0000000000000200' + '00001000' +
      '668e33ef' + '0001' + '0001' + HANDLE_HEX + '0000000c' + '0000000000001200' + 'deadbeef',
  );
  assert.equal(decodeReplyHeader(bytesOf(`67446698 00000005 ${HANDLE_HEX}`), 0), { structured: false, error: 5, flags: 0, type: 0, ...HANDLE, payloadBytes: 0 });
  assert.equal(decodeReplyHeader(bytesOf(`668e33ef 0001 0005 ${HANDLE_HEX} 00000014`), 0), { structured: true, error: 0, flags: 1, type: 5, ...HANDLE, payloadBytes: 20 });
});

vectors('sparse read chunks: zero runs of 4 KiB and more are holes, shorter ones data, the range covered exactly', () => {
  const z = (lengthBytes: number) => ({ lengthBytes, hole: true, zero: true });
  const d = (lengthBytes: number) => ({ lengthBytes, hole: false, zero: false });
  assert.equal(readPieces([d(8192), z(4096), d(512), z(2048), d(512), z(65536)], 4096, 20480), [
    { offsetBytes: 4096, lengthBytes: 8192, zero: false },
    { offsetBytes: 12288, lengthBytes: 4096, zero: true },
    { offsetBytes: 16384, lengthBytes: 3072, zero: false },
    { offsetBytes: 19456, lengthBytes: 5120, zero: true },
  ]);
  assert.equal(readPieces([z(1 << 20)], 0, 65536), [{ offsetBytes: 0, lengthBytes: 65536, zero: true }], 'an extent past the range is cut');
  assert.equal(readPieces([z(8192)], 0, 65536), [{ offsetBytes: 0, lengthBytes: 8192, zero: true }, { offsetBytes: 8192, lengthBytes: 57344, zero: false }], 'extents short of the range: the rest is data');
  assert.equal(readPieces([], 0, 4096), [{ offsetBytes: 0, lengthBytes: 4096, zero: false }]);
});

vectors('transmission flags per export', () => {
  const device = new MemoryDevice({ sizeBytes: 1 << 20 });
  const base = NBD_FLAG_HAS_FLAGS | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
  const writable = base | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_FAST_ZERO;
  assert.is(transmissionFlags({ device, readOnly: false }, false), writable);
  assert.is(writable, 0x0d6d);
  assert.is(transmissionFlags({ device, readOnly: false }, true), writable | NBD_FLAG_SEND_DF);
  assert.is(transmissionFlags({ device, readOnly: true }, false), base | NBD_FLAG_READ_ONLY);
  assert.is(transmissionFlags({ device: new MemoryDevice({ sizeBytes: 4096, readOnly: true }), readOnly: false }, false), base | NBD_FLAG_READ_ONLY);
});

const refusals = suite('nbd frames: malformed input is refused with a reason');

refusals('INFO/GO data that does not add up', () => {
  assert.match(decodeGoRequest(bytesOf('0000')) as string, /less than the minimum 6/);
  assert.match(decodeGoRequest(bytesOf('00000005 6469736b 0000')) as string, /name length 5 overruns/);
  assert.match(decodeGoRequest(bytesOf('00000004 6469736b 0002 0003')) as string, /lists 2 info requests but carries 2 bytes/);
  assert.match(decodeGoRequest(bytesOf('00000004 6469736b 0000 00')) as string, /lists 0 info requests but carries 1 bytes/);
  assert.match(decodeGoRequest(bytesOf('00000002 6100 0000')) as string, /not a valid string/); // NUL
  assert.match(decodeGoRequest(bytesOf('00000002 c328 0000')) as string, /not a valid string/); // bad UTF-8
  assert.match(decodeGoRequest(bytesOf('ffffffff 0000')) as string, /overruns/);
});

refusals('META_CONTEXT data that does not add up', () => {
  assert.match(decodeMetaContextRequest(bytesOf('00000000')) as string, /less than the minimum 8/);
  assert.match(decodeMetaContextRequest(bytesOf('00000000 00000002 00000001 61')) as string, /query 1 of 2 overruns/);
  assert.match(decodeMetaContextRequest(bytesOf('00000000 00000001 00000005 61')) as string, /query 0 length 5 overruns/);
  assert.match(decodeMetaContextRequest(bytesOf('00000000 00000000 ff')) as string, /1 bytes after its last query/);
  assert.match(decodeMetaContextRequest(bytesOf('00000000 ffffffff')) as string, /query 0 of 4294967295 overruns/);
});

refusals('strings and u64 helpers', () => {
  assert.is(decodeString(utf8('ok'), 4096), 'ok');
  assert.is(decodeString(new Uint8Array(4097).fill(0x61), 4096), null);
  assert.is(readU64(bytesOf('ffffffffffffffff'), 0), -1);
  assert.is(hex(utf8Truncated('aé', 2)), '61'); // never half a character
  assert.is(hex(utf8Truncated('aé', 3)), '61c3a9');
});

const check = suite('nbd request check: order and errors');
const SESSION: Session = {
  sizeBytes: 1 << 20,
  minimumBlockBytes: 512,
  transmissionFlags: transmissionFlags({ device: new MemoryDevice({ sizeBytes: 1 << 20 }), readOnly: false }, true),
  structuredReplies: true,
  baseAllocation: true,
};
const READ_ONLY_SESSION: Session = { ...SESSION, transmissionFlags: transmissionFlags({ device: new MemoryDevice({ sizeBytes: 1 << 20 }), readOnly: true }, false), structuredReplies: false, baseAllocation: false };
const req = (type: number, offsetBytes: number, lengthBytes: number, flags = 0): NbdRequest => ({ type, offsetBytes, lengthBytes, flags, handleHigh: 0, handleLow: 1 });
const errorOf = (request: NbdRequest, session = SESSION) => checkRequest(request, session)?.error ?? 0;

check('valid requests pass', () => {
  for (const type of [NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES, NBD_CMD_CACHE, NBD_CMD_BLOCK_STATUS]) {
    assert.is(checkRequest(req(type, 4096, 8192), SESSION), null, `type ${type}`);
    assert.is(checkRequest(req(type, (1 << 20) - 512, 512, NBD_CMD_FLAG_FUA), SESSION), null, `type ${type} at the end, FUA`);
  }
  assert.is(checkRequest(req(NBD_CMD_FLUSH, 0, 0), SESSION), null);
  assert.is(checkRequest(req(NBD_CMD_READ, 0, 0), SESSION), null, 'zero-length read is allowed');
  assert.is(checkRequest(req(NBD_CMD_READ, 0, 32 << 20, NBD_CMD_FLAG_DF), { ...SESSION, sizeBytes: 64 << 20 }), null);
  assert.is(checkRequest(req(NBD_CMD_WRITE_ZEROES, 0, 1 << 20, NBD_CMD_FLAG_NO_HOLE), SESSION), null);
  assert.is(checkRequest(req(NBD_CMD_WRITE_ZEROES, 0, 1 << 20, NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE), SESSION), null);
  assert.is(checkRequest(req(NBD_CMD_BLOCK_STATUS, 0, 1 << 20, NBD_CMD_FLAG_REQ_ONE), SESSION), null);
  assert.is(checkRequest(req(NBD_CMD_TRIM, 0, 1 << 20), { ...SESSION, sizeBytes: 2 ** 45 }), null);
});

check('each refusal names its field, first failure wins', () => {
  assert.equal(checkRequest(req(9, 0, 512), SESSION), { error: NBD_EINVAL, message: 'unknown command 9' });
  assert.match(checkRequest(req(NBD_CMD_READ, 0, 512, 1 << 5), SESSION)!.message, /unknown flags 0x20/);
  assert.match(checkRequest(req(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_FUA), READ_ONLY_SESSION)!.message, /FUA flag on an export without FUA/);
  assert.match(checkRequest(req(NBD_CMD_WRITE, 0, 512, NBD_CMD_FLAG_NO_HOLE), SESSION)!.message, /NO_HOLE flag is only for WRITE_ZEROES/);
  assert.match(checkRequest(req(NBD_CMD_WRITE, 0, 512, NBD_CMD_FLAG_DF), SESSION)!.message, /DF flag is only for READ/);
  assert.match(checkRequest(req(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_DF), READ_ONLY_SESSION)!.message, /DF flag/);
  assert.match(checkRequest(req(NBD_CMD_READ, 0, 512, NBD_CMD_FLAG_REQ_ONE), SESSION)!.message, /REQ_ONE flag is only for BLOCK_STATUS/);
  assert.match(checkRequest(req(NBD_CMD_WRITE, 0, 512, NBD_CMD_FLAG_FAST_ZERO), SESSION)!.message, /FAST_ZERO flag is only for WRITE_ZEROES/);
  assert.match(checkRequest(req(NBD_CMD_WRITE_ZEROES, 0, 512, NBD_CMD_FLAG_FAST_ZERO), READ_ONLY_SESSION)!.message, /FAST_ZERO flag/);
  for (const type of [NBD_CMD_WRITE, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES]) {
    assert.is(errorOf(req(type, 0, 512), READ_ONLY_SESSION), NBD_EPERM);
    assert.is(errorOf(req(type, 1 << 30, 512), READ_ONLY_SESSION), NBD_EPERM, 'read-only is checked before the range');
  }
  assert.match(checkRequest(req(NBD_CMD_FLUSH, 0, 0), READ_ONLY_SESSION)!.message, /FLUSH was not advertised/);
  assert.match(checkRequest(req(NBD_CMD_BLOCK_STATUS, 0, 512), READ_ONLY_SESSION)!.message, /without a metadata context/);
  assert.match(checkRequest(req(NBD_CMD_FLUSH, 512, 0), SESSION)!.message, /FLUSH offset and length must be zero/);
  assert.is(errorOf(req(NBD_CMD_WRITE, 1 << 20, 512)), NBD_ENOSPC);
  assert.is(errorOf(req(NBD_CMD_WRITE_ZEROES, (1 << 20) - 512, 1024)), NBD_ENOSPC);
  assert.is(errorOf(req(NBD_CMD_READ, 1 << 20, 512)), NBD_EINVAL);
  assert.is(errorOf(req(NBD_CMD_TRIM, -1, 512)), NBD_EINVAL);
  assert.match(checkRequest(req(NBD_CMD_READ, -1, 512), SESSION)!.message, /offset >= 2\^53/);
  assert.match(checkRequest(req(NBD_CMD_READ, 100, 512), SESSION)!.message, /offset 100 is not a multiple of the minimum block size 512/);
  assert.match(checkRequest(req(NBD_CMD_WRITE, 0, 100), SESSION)!.message, /length 100 is not a multiple/);
  const big = { ...SESSION, sizeBytes: 1 << 30 };
  assert.match(checkRequest(req(NBD_CMD_READ, 0, (32 << 20) + 512), big)!.message, /exceeds the maximum block size/);
  assert.match(checkRequest(req(NBD_CMD_WRITE, 0, (32 << 20) + 512), big)!.message, /exceeds the maximum block size/);
  assert.is(checkRequest(req(NBD_CMD_WRITE_ZEROES, 0, 64 << 20), big), null, 'payload-free commands may exceed it');
  assert.match(checkRequest(req(NBD_CMD_BLOCK_STATUS, 0, 0), SESSION)!.message, /BLOCK_STATUS of length 0/);
});

const negotiate = suite('nbd negotiation without a socket');
const disk: NbdExport = { name: 'disk', device: new MemoryDevice({ sizeBytes: 1 << 20 }), readOnly: false, description: 'scratch' };
const catalogue = { lookup: (name: string) => (name === 'disk' ? disk : undefined), list: () => [disk] };
const types = (replies: Uint8Array[]) => replies.map((reply) => Buffer.from(reply).readUInt32BE(12));

negotiate('LIST, INFO, GO, unknown options', () => {
  const n = new Negotiation(catalogue);
  const list = n.handle(NBD_OPT_LIST, new Uint8Array(0));
  assert.equal(types(list.replies), [NBD_REP_SERVER, NBD_REP_ACK]);
  assert.is(hex(list.replies[0]!.subarray(20)), hex(encodeServerEntry('disk', 'scratch')));
  assert.equal(types(n.handle(NBD_OPT_LIST, new Uint8Array(1)).replies), [NBD_REP_ERR_INVALID]);
  const info = n.handle(NBD_OPT_INFO, encodeGoRequest({ name: 'disk', infoTypes: [NBD_INFO_NAME, NBD_INFO_DESCRIPTION] }));
  assert.is(info.next, 'options');
  assert.equal(types(info.replies), [NBD_REP_INFO, NBD_REP_INFO, NBD_REP_INFO, NBD_REP_INFO, NBD_REP_ACK]);
  assert.is(hex(info.replies[0]!.subarray(20)), hex(encodeInfoExport(1 << 20, transmissionFlags(disk, false))));
  assert.is(hex(info.replies[1]!.subarray(20)), hex(encodeInfoBlockSize(512, 4096, 32 << 20)));
  assert.is(hex(info.replies[3]!.subarray(20)), hex(encodeInfoString(NBD_INFO_DESCRIPTION, 'scratch')));
  assert.equal(types(n.handle(NBD_OPT_GO, encodeGoRequest({ name: 'nope', infoTypes: [] })).replies), [NBD_REP_ERR_UNKNOWN]);
  assert.equal(types(n.handle(NBD_OPT_GO, bytesOf('0001')).replies), [NBD_REP_ERR_INVALID]);
  assert.equal(types(n.handle(NBD_OPT_STARTTLS, new Uint8Array(0)).replies), [NBD_REP_ERR_UNSUP]);
  assert.equal(types(n.handle(0x12345, new Uint8Array(3)).replies), [NBD_REP_ERR_UNSUP]);
  assert.equal(types(n.tooBig(NBD_OPT_GO, 1 << 20).replies), [NBD_REP_ERR_TOO_BIG]);
  assert.is(n.tooBig(NBD_OPT_EXPORT_NAME, 1 << 20).next, 'close');
  assert.is(n.handle(NBD_OPT_ABORT, new Uint8Array(5)).next, 'abort', 'ABORT ignores stray data');
  const go = n.handle(NBD_OPT_GO, encodeGoRequest({ name: 'disk', infoTypes: [] }));
  assert.is(go.next, 'transmission');
});

negotiate('metadata contexts: need structured replies, select base:allocation for the export GO names', () => {
  const n = new Negotiation(catalogue);
  const set = (queries: string[], name = 'disk') => n.handle(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest({ name, queries }));
  const list = (queries: string[]) => n.handle(NBD_OPT_LIST_META_CONTEXT, encodeMetaContextRequest({ name: 'disk', queries }));
  assert.equal(types(set(['base:allocation']).replies), [NBD_REP_ERR_INVALID]);
  assert.equal(types(n.handle(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(1)).replies), [NBD_REP_ERR_INVALID]);
  assert.equal(types(n.handle(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(0)).replies), [NBD_REP_ACK]);
  assert.equal(types(list([]).replies), [NBD_REP_META_CONTEXT, NBD_REP_ACK]);
  assert.equal(types(list(['base:']).replies), [NBD_REP_META_CONTEXT, NBD_REP_ACK]);
  assert.equal(types(list(['qemu:dirty-bitmap:x']).replies), [NBD_REP_ACK], 'other namespaces are ignored');
  assert.equal(types(list(['nonamespace']).replies), [NBD_REP_ERR_INVALID]);
  assert.equal(types(set(['base:allocation'], 'nope').replies), [NBD_REP_ERR_UNKNOWN]);
  const selected = set(['base:', 'base:allocation', 'x-foo:bar']);
  assert.equal(types(selected.replies), [NBD_REP_META_CONTEXT, NBD_REP_ACK]);
  assert.is(hex(selected.replies[0]!.subarray(20)), hex(encodeMetaContext(1, 'base:allocation')));
  const go = n.handle(NBD_OPT_GO, encodeGoRequest({ name: 'disk', infoTypes: [] }));
  assert.ok(go.next === 'transmission' && go.agreement.metaContexts.length === 1 && go.agreement.structuredReplies);
  // SET with no queries selects nothing; a failed SET clears the selection too.
  assert.equal(types(set([]).replies), [NBD_REP_ACK]);
  const after = n.handle(NBD_OPT_GO, encodeGoRequest({ name: 'disk', infoTypes: [] }));
  assert.ok(after.next === 'transmission' && after.agreement.metaContexts.length === 0);
});

negotiate("metadata contexts: an engine's bitmaps are qemu:dirty-bitmap:<name>, listed by namespace or prefix, selected by exact name", () => {
  const device = new MemoryDevice({ sizeBytes: 1 << 20 });
  const bitmap = (name: string): DeviceBitmap => ({ name, granularityBytes: 4096, meaning: name, runs: (_, lengthBytes) => [{ lengthBytes, set: true }] });
  const withBitmaps = Object.assign(device, { bitmaps: () => [bitmap('hydrated'), bitmap('other')] });
  const marked: NbdExport = { name: 'marked', device: withBitmaps, readOnly: false };
  const n = new Negotiation({ lookup: (name) => (name === 'marked' ? marked : undefined), list: () => [marked] });
  n.handle(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(0));
  const names = (outcome: { replies: Uint8Array[] }) =>
    outcome.replies.filter((reply) => readU32(reply, 12) === NBD_REP_META_CONTEXT).map((reply) => `${readU32(reply, 20)} ${new TextDecoder().decode(reply.subarray(24))}`);
  const list = (queries: string[]) => names(n.handle(NBD_OPT_LIST_META_CONTEXT, encodeMetaContextRequest({ name: 'marked', queries })));
  const set = (queries: string[]) => n.handle(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest({ name: 'marked', queries }));
  assert.equal(list([]), ['0 base:allocation', '0 qemu:dirty-bitmap:hydrated', '0 qemu:dirty-bitmap:other']);
  assert.equal(list(['qemu:']), ['0 qemu:dirty-bitmap:hydrated', '0 qemu:dirty-bitmap:other']);
  assert.equal(list(['qemu:dirty-bitmap:']), ['0 qemu:dirty-bitmap:hydrated', '0 qemu:dirty-bitmap:other']);
  assert.equal(list(['qemu:dirty-bitmap:other', 'base:']), ['0 base:allocation', '0 qemu:dirty-bitmap:other']);
  assert.equal(list(['qemu:dirty-bitmap:nope']), []);
  assert.equal(names(set(['qemu:dirty-bitmap:', 'qemu:'])), [], 'SET takes exact names only');
  assert.equal(names(set(['qemu:dirty-bitmap:other', 'base:allocation'])), ['1 base:allocation', '3 qemu:dirty-bitmap:other']);
  const go = n.handle(NBD_OPT_GO, encodeGoRequest({ name: 'marked', infoTypes: [] }));
  assert.ok(go.next === 'transmission');
  assert.equal(go.agreement.metaContexts.map((context) => [context.id, context.name, context.bitmap?.name ?? null]), [[1, 'base:allocation', null], [3, 'qemu:dirty-bitmap:other', 'other']]);
});

negotiate('EXPORT_NAME: known export enters transmission, unknown closes', () => {
  const n = new Negotiation(catalogue);
  n.noZeroes = true;
  const known = n.handle(NBD_OPT_EXPORT_NAME, utf8('disk'));
  assert.is(known.next, 'transmission');
  assert.is(hex(known.replies[0]!), hex(encodeExportNameReply(1 << 20, transmissionFlags(disk, false), true)));
  const unknown = n.handle(NBD_OPT_EXPORT_NAME, utf8('nope'));
  assert.ok(unknown.next === 'close' && /no export named "nope"/.test(unknown.reason));
});

vectors.run();
refusals.run();
check.run();
negotiate.run();
