/**
 * NBD extended headers (proto.md's EXTENDED_HEADERS extension; server/nbd/extended-codec.ts). The
 * installed libnbd (1.14) and qemu (7.2) predate it, so our own client speaks it, against the
 * document: frames frozen by hex vectors, the option's rules, and a live connection to an 8 GiB
 * sparse file where requests and answers need 64 bits (a TRIM and a BLOCK_STATUS of more than
 * 4 GiB), every reply a 32-byte chunk echoing the request's offset, PAYLOAD_LEN's rules, and a
 * seeded fuzz of the header decoder and check.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng } from '../runtime/prng.ts';
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_PAYLOAD_LEN, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_EINVAL, NBD_OPT_EXPORT_NAME,
  NBD_OPT_EXTENDED_HEADERS, NBD_OPT_GO, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_EXT_HEADER_REQD, NBD_REP_ERR_INVALID,
  NBD_STATE_HOLE, NBD_STATE_ZERO,
} from '../server/nbd/constants.ts';
import {
  decodeExtendedReplyHeader, decodeExtendedRequest, encodeExtendedRequest, EXTENDED_CHUNKS,
} from '../server/nbd/extended-codec.ts';
import { transmissionFlags } from '../server/nbd/export-flags.ts';
import { Negotiation } from '../server/nbd/negotiation.ts';
import { encodeGoRequest } from '../server/nbd/option-codec.ts';
import { checkRequest, type Session } from '../server/nbd/request-check.ts';
import { encodeBlockStatusChunk, encodeErrorChunk, encodeNoneChunk, writeDataChunkHeader, writeHoleChunk } from '../server/nbd/request-codec.ts';
import type { NbdExport } from '../server/nbd/types.ts';
import { readU32, utf8 } from '../server/nbd/wire.ts';
import { RawNbd } from './support/nbd-client.ts';
import { serve, type Served } from './support/nbd-fixtures.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const REPLY_TO = { handleHigh: 0x01020304, handleLow: 0x05060708, offsetBytes: 0x1_0000_0200 };
const COOKIE = '0102030405060708';

const frames = suite('nbd extended headers: frames');

frames('requests, chunk headers and BLOCK_STATUS_EXT as the document lays them out', () => {
  const request = { flags: NBD_CMD_FLAG_PAYLOAD_LEN, type: NBD_CMD_WRITE, ...REPLY_TO, lengthBytes: 4 };
  assert.is(hex(encodeExtendedRequest(request, utf8('abcd'))), '21e41c71' + '0020' + '0001' + COOKIE + '0000000100000200' + '0000000000000004' + '61626364');
  assert.equal(decodeExtendedRequest(encodeExtendedRequest(request), 0), request);
  assert.match(decodeExtendedRequest(new Uint8Array(32), 0) as string, /not 0x21e41c71/);
  const long = decodeExtendedRequest(Buffer.from('21e41c71' + '0000' + '0004' + COOKIE + '0000000000000000' + '0000000140000000', 'hex'), 0);
  assert.is((long as { lengthBytes: number }).lengthBytes, 5 * GiB, 'a 64-bit effect length');
  const huge = decodeExtendedRequest(Buffer.from('21e41c71' + '0000' + '0004' + COOKIE + '0000000000000000' + 'ffffffffffffffff', 'hex'), 0);
  assert.is((huge as { lengthBytes: number }).lengthBytes, -1, 'past 2^53: out of range for any export');

  assert.is(hex(encodeNoneChunk(REPLY_TO, EXTENDED_CHUNKS)), '6e8a278c' + '0001' + '0000' + COOKIE + '0000000100000200' + '0000000000000000');
  assert.is(
    hex(encodeErrorChunk(REPLY_TO, 22, utf8('no'), EXTENDED_CHUNKS)),
    '6e8a278c' + '0001' + '8001' + COOKIE + '0000000100000200' + '0000000000000008' + '00000016' + '0002' + '6e6f',
  );
  const read = new Uint8Array(32 + 12 + 32 + 8 + 2);
  writeHoleChunk(read, 0, false, REPLY_TO, 0x1_0000_0200, 0x1000, EXTENDED_CHUNKS);
  writeDataChunkHeader(read, 44, true, REPLY_TO, 0x1_0000_1200, 2, EXTENDED_CHUNKS);
  read.set([0xab, 0xcd], 84);
  assert.is(
    hex(read),
    '6e8a278c' + '0000' + '0002' + COOKIE + '0000000100000200' + '000000000000000c' + '0000000100000200' + '00001000' +
      '6e8a278c' + '0001' + '0001' + COOKIE + '0000000100000200' + '000000000000000a' + '0000000100001200' + 'abcd',
  );
  assert.is(
    hex(encodeBlockStatusChunk(REPLY_TO, 1, [{ lengthBytes: 5 * GiB, statusFlags: 3 }, { lengthBytes: 0x1000, statusFlags: 0 }], true, EXTENDED_CHUNKS)),
    '6e8a278c' + '0001' + '0006' + COOKIE + '0000000100000200' + '0000000000000028' + '00000001' + '00000002' +
      '0000000140000000' + '0000000000000003' + '0000000000001000' + '0000000000000000',
  );
  const header = decodeExtendedReplyHeader(encodeNoneChunk(REPLY_TO, EXTENDED_CHUNKS), 0);
  assert.equal(header, { flags: 1, type: 0, handleHigh: REPLY_TO.handleHigh, handleLow: REPLY_TO.handleLow, offsetBytes: REPLY_TO.offsetBytes, payloadBytes: 0 });
});

frames('negotiation: EXTENDED_HEADERS takes no data, implies structured replies, forbids going back and EXPORT_NAME', () => {
  const disk: NbdExport = { name: 'disk', device: new MemoryDevice({ sizeBytes: MiB }), readOnly: false };
  const n = new Negotiation({ lookup: (name) => (name === 'disk' ? disk : undefined), list: () => [disk] });
  const typeOf = (outcome: { replies: Uint8Array[] }) => readU32(outcome.replies[0]!, 12);
  assert.is(typeOf(n.handle(NBD_OPT_EXTENDED_HEADERS, new Uint8Array(1))), NBD_REP_ERR_INVALID);
  assert.is(typeOf(n.handle(NBD_OPT_EXTENDED_HEADERS, new Uint8Array(0))), NBD_REP_ACK);
  assert.is(typeOf(n.handle(NBD_OPT_EXTENDED_HEADERS, new Uint8Array(0))), NBD_REP_ACK, 'again: still ACK');
  assert.is(typeOf(n.handle(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(0))), NBD_REP_ERR_EXT_HEADER_REQD);
  assert.is(n.handle(NBD_OPT_EXPORT_NAME, utf8('disk')).next, 'close');
  const go = n.handle(NBD_OPT_GO, encodeGoRequest({ name: 'disk', infoTypes: [] }));
  assert.ok(go.next === 'transmission' && go.agreement.extendedHeaders && go.agreement.structuredReplies);
});

frames('seeded fuzz: any 32 bytes after the magic decode and check without throwing; an accepted request lies inside the export', () => {
  const seed = Number(process.env.BLOCKCORE_FUZZ_SEED ?? 0x5eed_e47);
  const prng = new Prng(seed);
  const sizeBytes = 3 * GiB + 512;
  const session: Session = {
    sizeBytes, minimumBlockBytes: 512, structuredReplies: true, baseAllocation: true, extendedHeaders: true,
    transmissionFlags: transmissionFlags({ device: new MemoryDevice({ sizeBytes: MiB }), readOnly: false }, true),
  };
  for (let i = 0; i < 5000; i++) {
    const bytes = prng.fill(new Uint8Array(32));
    bytes.set([0x21, 0xe4, 0x1c, 0x71], 0);
    if (prng.chance(0.5)) bytes[6] = 0, bytes[7] = prng.nextU32() % 9; // a known command half the time
    if (prng.chance(0.5)) bytes.fill(0, 16, 20), bytes.fill(0, 24, 28); // offsets and lengths in range half the time
    const request = decodeExtendedRequest(bytes, 0);
    assert.type(request, 'object', `seed ${seed}, case ${i}`);
    if (typeof request === 'string') continue;
    const refusal = checkRequest(request, session);
    if (refusal !== null || request.type === NBD_CMD_FLUSH) continue;
    assert.ok(request.offsetBytes >= 0 && request.lengthBytes >= 0 && request.offsetBytes + request.lengthBytes <= sizeBytes, `seed ${seed}, case ${i}: accepted ${JSON.stringify(request)}`);
    assert.is((request.flags & NBD_CMD_FLAG_PAYLOAD_LEN) !== 0, request.type === NBD_CMD_WRITE, `seed ${seed}, case ${i}: PAYLOAD_LEN on WRITE and only there`);
  }
});

const live = suite('nbd extended headers: a live connection');
let tempDir = '';
let served: Served | undefined;
let device: FileDevice | undefined;
const clients: RawNbd[] = [];

live.before.each(async () => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-nbd-extended-'));
  device = await FileDevice.open(path.join(tempDir, 'big.img'), { create: { sizeBytes: 8 * GiB } });
  served = await serve([{ name: 'big', device, readOnly: false }]);
});
live.after.each(async () => {
  for (const client of clients.splice(0)) client.close();
  await served?.stop();
  await device?.close();
  fs.rmSync(tempDir, { recursive: true, force: true });
});

async function connect(): Promise<RawNbd> {
  const client = await RawNbd.connect(served!.tcp);
  clients.push(client);
  await client.go('big', { extended: true, meta: ['base:allocation'] });
  return client;
}

live('writes, reads, a TRIM and a BLOCK_STATUS past 4 GiB: 32-byte chunks with 64-bit lengths', async () => {
  const client = await connect();
  const data = new Prng(9).fill(new Uint8Array(4 * KiB));
  client.request(NBD_CMD_WRITE, 5 * GiB, data.length, { data });
  assert.is((await client.reply()).error, 0, 'WRITE (PAYLOAD_LEN) answered with a NONE chunk');
  client.request(NBD_CMD_READ, 5 * GiB, data.length);
  const back = await client.reply();
  assert.is(back.error, 0, back.message);
  assert.ok(Buffer.from(back.data!).equals(Buffer.from(data)));

  client.request(NBD_CMD_READ, 5 * GiB - 512 * KiB, MiB);
  const sparse = await client.reply();
  assert.is(sparse.error, 0, sparse.message);
  assert.equal(sparse.holes, [{ offsetBytes: 5 * GiB - 512 * KiB, lengthBytes: 512 * KiB }, { offsetBytes: 5 * GiB + 4 * KiB, lengthBytes: 508 * KiB }]);
  assert.ok(Buffer.from(sparse.data!.subarray(512 * KiB, 516 * KiB)).equals(Buffer.from(data)));

  client.request(NBD_CMD_BLOCK_STATUS, 0, 6 * GiB);
  const status = await client.reply();
  assert.is(status.error, 0, status.message);
  const holeFlags = NBD_STATE_HOLE | NBD_STATE_ZERO;
  assert.equal(status.contexts, [{ contextId: 1, extents: [{ lengthBytes: 5 * GiB, flags: holeFlags }, { lengthBytes: 4 * KiB, flags: 0 }, { lengthBytes: GiB - 4 * KiB, flags: holeFlags }] }]);

  client.request(NBD_CMD_TRIM, 0, 6 * GiB);
  assert.is((await client.reply()).error, 0, 'a TRIM of 6 GiB in one request');
  client.request(NBD_CMD_BLOCK_STATUS, 5 * GiB, 4 * KiB);
  assert.equal((await client.reply()).extents, [{ lengthBytes: 4 * KiB, flags: holeFlags }], 'trimmed');
});

live('PAYLOAD_LEN: a WRITE without it and a FLUSH with one are refused, the payload skipped, the connection goes on; a bad magic closes it', async () => {
  const client = await connect();
  // A WRITE whose length is an effect length (no payload follows): EINVAL.
  client.send(encodeExtendedRequest({ flags: 0, type: NBD_CMD_WRITE, handleHigh: 0, handleLow: 100, offsetBytes: 0, lengthBytes: 4096 }));
  const noPayload = decodeExtendedReplyHeader(await client.read(32), 0);
  assert.ok(typeof noPayload !== 'string' && noPayload.type === 0x8001 && noPayload.offsetBytes === 0);
  const payload = await client.read((noPayload as { payloadBytes: number }).payloadBytes);
  assert.is(readU32(payload, 0), NBD_EINVAL);
  assert.match(new TextDecoder().decode(payload.subarray(6)), /PAYLOAD_LEN/);
  // A FLUSH carrying 8 bytes of payload: refused, and the 8 bytes are not read as the next header.
  client.request(NBD_CMD_FLUSH, 0, 8, { flags: NBD_CMD_FLAG_PAYLOAD_LEN, data: new Uint8Array(8).fill(0x21) });
  const flush = await client.reply();
  assert.is(flush.error, NBD_EINVAL);
  assert.match(flush.message!, /takes no payload/);
  client.request(NBD_CMD_READ, 0, 4096);
  assert.is((await client.reply()).error, 0, 'the stream is still in step');
  client.request(NBD_CMD_READ, 8 * GiB, 512);
  assert.is((await client.reply()).error, NBD_EINVAL, 'past the end');
  // A compact header after extended ones were agreed is a bad magic: that connection closes.
  client.send(new Uint8Array(32).fill(7));
  assert.ok(await client.waitClosed());
  const other = await connect();
  other.request(NBD_CMD_READ, 0, 512);
  assert.is((await other.reply()).error, 0, 'the server goes on');
});

frames.run();
live.run();
