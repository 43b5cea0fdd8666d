/**
 * Seeded fuzzing of RTRS (STYLE 16; issue 9: "seeded fuzzing of every decoder (no crash, no hang;
 * a garbage frame closes that connection only)").
 *
 * Decoders: random bytes and mutated valid messages into every decoder of rtrs-messages.ts and
 * rtrs-frame.ts: each returns its value or a reason string and never throws; what decodes
 * re-encodes to the same bytes (reserved bytes aside).
 *
 * Live: an RtrsServer on 127.0.0.1 / 127.0.0.2 and a healthy two-path RtrsClient session writing,
 * reading and verifying its data against a model throughout, while garbage clients on raw sockets
 * (frames built with the codecs) misbehave at a random point: from the first byte, as the
 * conn_req, after CON_RSP (a CONNECTING path), at INFO_REQ, and inside IO requests once
 * CONNECTED (a buffer id past the queue depth, a message offset past the payload, oversized
 * frames and reads, unknown ops, flags and immediates, wrong or missing digests, stale keys,
 * other chunks' addresses, mutated requests). Each garbage connection must be closed by the
 * server (none stays open), with exactly one log line saying why, plus one per IO request it
 * refused and answered (each garbage connection comes from its own loopback address, 127.1.x.y,
 * so the log names it alone); the healthy session never loses a path, its data is exact, it still works
 * afterwards; the process sees no uncaught exception or unhandled rejection.
 * BLOCKCORE_SEED replays a failure.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { ERRNO, type RtrsRequest, type RtrsServerHandler, type RtrsServerSession } from '../runtime/transport/rtrs-api.ts';
import {
  clientAuthValid, type Crc32c, decodeFrameHeader, decodeHello, digestProblem, encodeHello, FRAME_FLAG_DIGEST, FRAME_HEADER_BYTES, FRAME_OP,
  serverProofValid,
} from '../runtime/transport/rtrs-frame.ts';
import {
  type ConnReq, decodeConnReq, decodeConnRsp, decodeInfoReq, decodeInfoRsp, decodeRdmaRead, decodeRdmaWrite, decodeRkeyRsp, type Desc, encodeConnReq, encodeConnRsp,
  encodeInfoReq, encodeInfoRsp, encodeRdmaRead, encodeRdmaWrite, encodeRkeyRsp, imm, IMM_TYPE, immPayload, immType, ioMessageType, ioReqImm, ioReqOf, ioRspImm,
  ioRspOf, memBitsFor, pathNameProblem, RDMA_WRITE_BYTES, rdmaReadBytes, READ_NEED_INVAL, RTRS_MAGIC, RTRS_VERSION,
} from '../runtime/transport/rtrs-messages.ts';
import { connReqProblem } from '../runtime/transport/rtrs-server.ts';
import { watchProcessFaults } from './support/process-faults.ts';
import { BlockHandler, blockHeader, kernelCrc32c, OP_READ, OP_WRITE, type Pair, readBlock, rtrsPair, writeBlock } from './support/rtrs-pair.ts';
import { frameBytes, type FrameFields, mutate, randomBytes, RawSocket, type Received } from './support/rtrs-garbage.ts';
import { until } from './support/rtrs-raw.ts';

function seeded(name: string, test: ReturnType<typeof suite>, body: (prng: Prng, seed: number) => Promise<void> | void): void {
  test(name, async () => {
    const seed = seedFromEnv();
    try {
      await body(new Prng(seed), seed);
    } catch (error) {
      if (error instanceof Error) error.message += ` [seed ${seed}; replay with BLOCKCORE_SEED=${seed}]`;
      throw error;
    }
  });
}

const hexUuid = (prng: Prng): string => Array.from(prng.fill(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, '0')).join('');

function validConnReq(prng: Prng): ConnReq {
  const cidCount = prng.range(1, 8);
  return {
    magic: RTRS_MAGIC, version: RTRS_VERSION, cid: prng.below(cidCount), cidCount, reconnectCount: prng.below(65536),
    pathUuid: hexUuid(prng), sessionUuid: hexUuid(prng), firstConnection: prng.chance(0.5),
  };
}

function randomDescs(prng: Prng, count: number): Desc[] {
  return Array.from({ length: count }, () => ({ addr: BigInt(prng.nextU32()) << 32n | BigInt(prng.nextU32()), key: prng.nextU32(), lengthBytes: prng.nextU32() }));
}

/** A valid message of each kind, as bytes. */
function validMessages(prng: Prng): Uint8Array[] {
  const write = new Uint8Array(RDMA_WRITE_BYTES);
  encodeRdmaWrite(prng.below(65536), write);
  const descs = randomDescs(prng, prng.below(2));
  const read = new Uint8Array(rdmaReadBytes(descs.length));
  encodeRdmaRead({ userHeaderBytes: prng.below(65536), flags: prng.chance(0.5) ? READ_NEED_INVAL : 0, descs }, read);
  return [
    encodeConnReq(validConnReq(prng)),
    encodeConnRsp({ magic: RTRS_MAGIC, version: RTRS_VERSION, errno: prng.below(0x8000), queueDepth: prng.below(65536), maxIoBytes: prng.nextU32(), maxHeaderBytes: prng.nextU32(), flags: prng.nextU32() }),
    encodeInfoReq('x'.repeat(prng.range(1, 254))),
    encodeInfoRsp(randomDescs(prng, prng.below(6))),
    write,
    read,
    encodeRkeyRsp(prng.below(65536), prng.nextU32()),
    encodeHello({ keyRequired: prng.chance(0.5), nonce: prng.fill(new Uint8Array(16)) }),
  ];
}

function isValueOrReason(result: unknown): boolean {
  return typeof result === 'string' || typeof result === 'number' || (typeof result === 'object' && result !== null);
}

const decoders = suite('rtrs fuzz: decoders');

seeded('random and mutated bytes: every decoder returns a value or a reason, never throws', decoders, async (prng) => {
  const crc32c = await kernelCrc32c();
  const key = prng.fill(new Uint8Array(32));
  const started = Date.now();
  for (let i = 0; i < 4000; i++) {
    const valid = validMessages(prng);
    const input = prng.chance(0.4) ? randomBytes(prng, prng.chance(0.8) ? 80 : 600) : mutate(prng, valid[prng.below(valid.length)]!);
    const results: unknown[] = [
      decodeConnReq(input), decodeConnRsp(input), decodeInfoReq(input), decodeInfoRsp(input), decodeRdmaWrite(input), decodeRdmaRead(input), decodeRkeyRsp(input),
      ioMessageType(input), decodeHello(input),
    ];
    results.forEach((result, at) => assert.ok(isValueOrReason(result), `decoder ${at} on ${Buffer.from(input).toString('hex')}`));
    const req = results[0];
    if (typeof req === 'object') {
      const problem = connReqProblem(req as ConnReq);
      assert.ok(problem === null || typeof problem === 'string');
    }
    const info = results[2];
    if (typeof info === 'object') assert.ok(pathNameProblem((info as { pathName: string }).pathName) !== undefined);

    // the frame header: any 32 bytes at any offset, any limit; then the digest check over any payload
    const padded = new Uint8Array(FRAME_HEADER_BYTES + prng.below(40));
    padded.set(input.subarray(0, padded.length));
    if (prng.chance(0.5)) new DataView(padded.buffer).setUint16(0, RTRS_MAGIC, true);
    const at = prng.below(padded.length - FRAME_HEADER_BYTES + 1);
    const header = decodeFrameHeader(padded, at, prng.chance(0.5) ? prng.nextU32() : prng.below(8192));
    assert.ok(isValueOrReason(header));
    if (typeof header === 'object') {
      const problem = digestProblem(crc32c, header, padded.subarray(at, at + FRAME_HEADER_BYTES), input);
      assert.ok(problem === null || typeof problem === 'string');
    }
    // IMM words of any value unpack into their fields
    const word = prng.nextU32();
    const memBits = memBitsFor(prng.range(1, 65535));
    const io = ioReqOf(immPayload(word), memBits);
    assert.ok(io.bufferId < 2 ** (28 - memBits) && io.offsetBytes < 2 ** memBits, `IO_REQ 0x${word.toString(16)} at memBits ${memBits}`);
    assert.is(ioReqImm(io.bufferId, io.offsetBytes, memBits), immPayload(word));
    const rsp = ioRspOf(immPayload(word));
    assert.is(ioRspImm(rsp.messageId, rsp.errno, immType(word) === IMM_TYPE.IO_RSP_W_INV) & 0x0fffffff, immPayload(word));
    // the key's blocks of any length are simply not valid
    assert.not.ok(clientAuthValid(key, input.subarray(0, 16), valid[0]!, input));
    assert.not.ok(serverProofValid(key, input.subarray(0, 16), input.subarray(16, 32), valid[1]!, input));
  }
  assert.ok(Date.now() - started < 20_000, 'no decoder is slow on any input');
});

seeded('what decodes re-encodes to the same bytes (reserved bytes aside)', decoders, (prng) => {
  for (let i = 0; i < 2000; i++) {
    const bytes = prng.chance(0.5) ? prng.fill(new Uint8Array(56)) : mutate(prng, encodeConnReq(validConnReq(prng)));
    const req = decodeConnReq(bytes);
    if (typeof req === 'object') {
      const expected = bytes.slice(0, 56);
      expected[0] = 0;
      expected[1] = 0;
      expected[44]! &= 3; // first_conn, and our ask-invalidate bit
      expected.fill(0, 45);
      assert.equal(encodeConnReq(req), expected, 'conn_req');
    }
    const descs = decodeInfoRsp(mutate(prng, encodeInfoRsp(randomDescs(prng, prng.below(4)))));
    if (typeof descs === 'object') {
      const again = decodeInfoRsp(encodeInfoRsp(descs));
      assert.equal(again, descs, 'info_rsp');
    }
    const read = decodeRdmaRead(mutate(prng, validMessages(prng)[5]!));
    if (typeof read === 'object') {
      const out = new Uint8Array(rdmaReadBytes(read.descs.length));
      encodeRdmaRead(read, out);
      assert.equal(decodeRdmaRead(out), read, 'rdma_read');
    }
    const rkey = decodeRkeyRsp(mutate(prng, encodeRkeyRsp(prng.below(65536), prng.nextU32())));
    if (typeof rkey === 'object') assert.equal(decodeRkeyRsp(encodeRkeyRsp(rkey.bufferId, rkey.rkey)), rkey, 'rkey_rsp');
    const name = decodeInfoReq(mutate(prng, encodeInfoReq('n'.repeat(prng.range(1, 254)))));
    if (typeof name === 'object' && pathNameProblem(name.pathName) === null) assert.equal(decodeInfoReq(encodeInfoReq(name.pathName)), name, 'info_req');
    const hello = decodeHello(mutate(prng, encodeHello({ keyRequired: prng.chance(0.5), nonce: prng.fill(new Uint8Array(16)) })));
    if (typeof hello === 'object') assert.equal(decodeHello(encodeHello(hello)), hello, 'hello');
  }
});

// ---- live ----

/** Queue depth of the fuzzed server: below 2^(28 - memBits), so an IMM can name a buffer past it. */
const QUEUE_DEPTH = 100;
const MEM_BITS = memBitsFor(QUEUE_DEPTH);
const CHUNK_BYTES = 128 * 1024;
const HEALTHY_REGION_BYTES = 4 * 1024 * 1024;
const REFUSAL_ERRNOS: ReadonlySet<number> = new Set([ERRNO.EFAULT, ERRNO.EKEYREJECTED, ERRNO.EINVAL, ERRNO.EBUSY]);

/** Routes each session's requests: the healthy session's to its device, every garbage session's to another. */
class RoutingHandler implements RtrsServerHandler {
  readonly healthy = new BlockHandler(HEALTHY_REGION_BYTES);
  readonly garbage = new BlockHandler(HEALTHY_REGION_BYTES);
  readonly closed: string[] = [];
  constructor(private readonly healthyName: () => string) {}

  handle(session: RtrsServerSession, request: RtrsRequest): Promise<void> {
    return (session.sessionName === this.healthyName() ? this.healthy : this.garbage).handle(session, request);
  }

  async sessionClosed(session: RtrsServerSession): Promise<void> {
    this.closed.push(session.sessionName);
  }
}

interface GarbageRecord {
  what: string;
  localAddress: string;
  localPort: number;
  pathUuid: string | null;
  sessionName: string | null;
  /** IO responses with a refusal errno this connection read. */
  refusalsSeen: number;
}

type Stage = 'first-bytes' | 'conn-req' | 'connecting' | 'info-req' | 'io';
const STAGES: readonly Stage[] = ['first-bytes', 'conn-req', 'connecting', 'info-req', 'io'];

/**
 * One garbage connection: a valid start up to `stage`, then garbage there. Resolves once the
 * server closed the connection (rejects when it stays open).
 */
async function garbageConnection(prng: Prng, stage: Stage, address: string, localAddress: string, crc32c: Crc32c, taken: string): Promise<GarbageRecord> {
  const raw = await RawSocket.open(address, crc32c, localAddress);
  const record: GarbageRecord = { what: stage, localAddress: raw.localAddress, localPort: raw.localPort, pathUuid: null, sessionName: null, refusalsSeen: 0 };
  const digest = prng.chance(0.4);
  const hello = await raw.frame();
  assert.ok(hello !== null && hello.header.op === FRAME_OP.HELLO && typeof decodeHello(hello.payload) === 'object', 'a hello first');

  const garbageFrames = (count: number): void => {
    for (let i = 0; i < count; i++) {
      const choice = prng.below(4);
      if (choice === 0) raw.send(randomBytes(prng, 100));
      else if (choice === 1) raw.send(mutate(prng, frameBytes(crc32c, { op: prng.range(1, 7), imm: prng.nextU32(), seq: prng.nextU32() }, randomBytes(prng, 64), digest)));
      else if (choice === 2) raw.send(frameBytes(crc32c, { op: prng.range(0, 12), flags: prng.below(4), imm: prng.nextU32() }, randomBytes(prng, 64), digest, prng.chance(0.5)));
      else raw.send(frameBytes(crc32c, { op: FRAME_OP.SEND }, mutate(prng, encodeInfoReq('garbage')), digest));
    }
  };

  if (stage === 'first-bytes') {
    if (prng.chance(0.5)) {
      record.what += ': random bytes';
      raw.send(randomBytes(prng, 200));
    } else {
      record.what += ': bad frames';
      garbageFrames(prng.range(1, 3));
    }
    return finish(raw, record);
  }

  const req = { ...validConnReq(prng), firstConnection: true, cid: 0, cidCount: stage === 'io' && prng.chance(0.85) ? 1 : prng.range(1, 2) };
  if (stage === 'conn-req') {
    const reqBytes = encodeConnReq(req);
    const kind = prng.below(6);
    const payload = kind === 0 ? mutate(prng, reqBytes)
      : kind === 1 ? encodeConnReq({ ...req, magic: prng.nextU32() & 0xffff || 1 })
      : kind === 2 ? encodeConnReq({ ...req, version: (prng.range(3, 255) << 8) | prng.below(256) })
      : kind === 3 ? encodeConnReq({ ...req, cid: req.cidCount + prng.below(100) })
      : kind === 4 ? encodeConnReq({ ...req, cid: 0, cidCount: prng.chance(0.5) ? 0 : prng.range(4097, 65535) })
      : encodeConnReq({ ...req, firstConnection: false });
    record.what += ` (${['mutated', 'magic', 'major version', 'cid', 'cid_num', 'not first'][kind]})`;
    const sent = decodeConnReq(payload);
    record.pathUuid = typeof sent === 'object' ? sent.pathUuid : null; // a mutation may change it
    raw.send(frameBytes(crc32c, { op: FRAME_OP.CON_REQ }, payload, digest, prng.chance(0.1)));
    const answer = await raw.frame();
    if (answer !== null && answer.header.op === FRAME_OP.CON_RSP) {
      const rsp = decodeConnRsp(answer.payload);
      assert.type(rsp, 'object');
      // a refusal says why; a mutation that left a valid conn_req is accepted (and then left to rot)
      if (typeof rsp === 'object' && rsp.errno === 0) assert.is(kind, 0, `${record.what}: accepted`);
    }
    return finish(raw, record);
  }

  raw.send(frameBytes(crc32c, { op: FRAME_OP.CON_REQ }, encodeConnReq(req), digest));
  const answer = await raw.frame();
  assert.ok(answer !== null && answer.header.op === FRAME_OP.CON_RSP, `${stage}: CON_RSP`);
  const rsp = decodeConnRsp(answer.payload);
  assert.ok(typeof rsp === 'object' && rsp.errno === 0 && rsp.queueDepth === QUEUE_DEPTH, `${stage}: accepted`);
  record.pathUuid = req.pathUuid;

  if (stage === 'connecting') {
    const kind = prng.below(3);
    record.what += [': garbage frames', ': a partial frame', ': an IO request before INFO_REQ'][kind]!;
    if (kind === 0) garbageFrames(prng.range(1, 4));
    else if (kind === 1) raw.send(frameBytes(crc32c, { op: FRAME_OP.SEND, lengthBytes: 272 }, encodeInfoReq('partial').subarray(0, prng.below(272)), digest));
    else raw.send(frameBytes(crc32c, { op: FRAME_OP.WRITE_IMM, imm: ioReqImm(0, 13, MEM_BITS) }, new Uint8Array(17), digest));
    return finish(raw, record);
  }

  const sessionName = `fuzz-garbage-${prng.nextU32().toString(16)}`;
  if (stage === 'info-req') {
    const names = ['', 'a/b', '.', 'x.y', taken, 'n'.repeat(254)];
    const kind = prng.below(names.length + 3);
    let payload: Uint8Array;
    if (kind < names.length) {
      payload = new Uint8Array(272);
      payload.set(new TextEncoder().encode(names[kind]!).subarray(0, 254), 2);
      record.what += `: name ${JSON.stringify(names[kind]!.slice(0, 12))}`;
      if (kind === names.length - 1) payload.fill(0x6e, 2, 257); // not NUL-terminated
    } else if (kind === names.length) {
      payload = mutate(prng, encodeInfoReq(sessionName));
      record.what += ': mutated';
    } else if (kind === names.length + 1) {
      payload = encodeInfoReq(sessionName);
      new DataView(payload.buffer).setUint16(0, prng.range(1, 65535), true);
      record.what += ': wrong type';
    } else {
      payload = encodeInfoReq(sessionName).subarray(0, prng.below(272));
      record.what += ': short';
    }
    record.sessionName = sessionName;
    raw.send(frameBytes(crc32c, { op: FRAME_OP.SEND }, payload, digest));
    return finish(raw, record);
  }

  // stage 'io': a whole path, then IO requests, some of them broken
  raw.send(frameBytes(crc32c, { op: FRAME_OP.SEND }, encodeInfoReq(sessionName), digest));
  let info: Received | null;
  do info = await raw.frame();
  while (info !== null && info.header.op === FRAME_OP.WRITE_IMM && info.header.lengthBytes === 0);
  const chunks = info === null ? 'closed' : decodeInfoRsp(info.payload);
  if (req.cidCount > 1) {
    // INFO_REQ before the path's other connection: refused, and this is the garbage
    record.what += ': INFO_REQ with a connection missing';
    assert.is(chunks, 'closed');
    return finish(raw, record);
  }
  assert.ok(typeof chunks === 'object' && chunks.length === QUEUE_DEPTH, `${stage}: INFO_RSP`);
  record.sessionName = sessionName;
  const descs = chunks as Desc[];
  const count = prng.range(1, 20);
  const kinds: string[] = [];
  for (let i = 0; i < count; i++) {
    const bufferId = prng.below(QUEUE_DEPTH);
    const chunk = descs[bufferId]!;
    const data = prng.fill(new Uint8Array(prng.range(0, 8) * 512));
    const header = blockHeader(prng.chance(0.5) ? OP_WRITE : OP_READ, prng.below(HEALTHY_REGION_BYTES / 512) * 512);
    const trailer = new Uint8Array(header.length + RDMA_WRITE_BYTES);
    trailer.set(header);
    encodeRdmaWrite(header.length, trailer.subarray(header.length));
    const writePayload = new Uint8Array(data.length + trailer.length);
    writePayload.set(data);
    writePayload.set(trailer, data.length);
    const offset = data.length + header.length;
    const io = (fields: Partial<FrameFields>, payload: Uint8Array = writePayload, badDigest = false): Uint8Array =>
      frameBytes(crc32c, { op: FRAME_OP.WRITE_IMM, imm: ioReqImm(bufferId, offset, MEM_BITS), addr: chunk.addr, key: chunk.key, seq: prng.nextU32(), ...fields }, payload, digest, badDigest);
    // most requests are answered (a refusal or a result) and the connection goes on; the others end it
    const kind = prng.chance(0.6) ? [3, 9, 10, 15][prng.below(4)]! : prng.below(16);
    kinds.push(String(kind));
    switch (kind) {
      case 0: // a buffer id past the queue depth
        raw.send(io({ imm: ioReqImm(prng.range(QUEUE_DEPTH, 2 ** (28 - MEM_BITS) - 1), offset, MEM_BITS) }));
        break;
      case 1: // the message offset past the payload
        raw.send(io({ imm: ioReqImm(bufferId, writePayload.length + prng.below(1000), MEM_BITS) }));
        break;
      case 2: // a frame larger than a chunk
        raw.send(io({ lengthBytes: CHUNK_BYTES + 1 + prng.below(1 << 20) }, new Uint8Array(0)));
        break;
      case 3: { // a read of more than max io
        const read = new Uint8Array(header.length + rdmaReadBytes(1));
        read.set(header);
        encodeRdmaRead({ userHeaderBytes: header.length, flags: 0, descs: [{ addr: 1n, key: 1, lengthBytes: CHUNK_BYTES - 4096 + 1 + prng.below(1 << 24) }] }, read.subarray(header.length));
        raw.send(io({ imm: ioReqImm(bufferId, header.length, MEM_BITS) }, read));
        break;
      }
      case 4: // an unknown op
        raw.send(io({ op: prng.chance(0.5) ? prng.range(8, 255) : 0 }));
        break;
      case 5: // unknown flags
        raw.send(io({ flags: (prng.range(1, 127) << 1) | (digest ? 1 : 0) }));
        break;
      case 6: // a wrong digest, or none on a digest connection, or one on a plain connection with a wrong value
        raw.send(digest && prng.chance(0.5) ? io({ flags: 0 }) : io({ flags: FRAME_FLAG_DIGEST }, writePayload, true));
        break;
      case 7: // an immediate of a type a client does not send
        raw.send(io({ imm: imm([1, 2, 3, 7, 10, 15][prng.below(6)]!, prng.nextU32()) }));
        break;
      case 8: // a heartbeat with a payload
        raw.send(io({ imm: imm(IMM_TYPE.HB_MSG, 0) }, prng.fill(new Uint8Array(prng.range(1, 16)))));
        break;
      case 9: // a stale or wrong key
        raw.send(io({ key: (chunk.key ^ (1 << prng.below(32))) >>> 0 }));
        break;
      case 10: // another chunk's address
        raw.send(io({ addr: chunk.addr + BigInt(CHUNK_BYTES) * BigInt(prng.range(1, 3)) * (prng.chance(0.5) ? 1n : -1n) }));
        break;
      case 11: { // a message that is no rdma_write or rdma_read, or a user header longer than the offset
        const bad = writePayload.slice();
        const view = new DataView(bad.buffer);
        if (prng.chance(0.5)) view.setUint16(offset, [0, 1, 4, 5, 0xffff][prng.below(5)]!, true);
        else view.setUint16(offset + 2, offset + 1 + prng.below(5000), true);
        raw.send(io({}, bad));
        break;
      }
      case 12: { // an rdma_read with two descriptors, or of zero bytes
        const read = new Uint8Array(header.length + rdmaReadBytes(2));
        read.set(header);
        const two = prng.chance(0.5);
        encodeRdmaRead({ userHeaderBytes: header.length, flags: 0, descs: two ? randomDescs(prng, 2) : [{ addr: 1n, key: 1, lengthBytes: 0 }] }, read.subarray(header.length));
        raw.send(io({ imm: ioReqImm(bufferId, header.length, MEM_BITS) }, two ? read : read.subarray(0, header.length + rdmaReadBytes(1))));
        break;
      }
      case 13: // a mutated request
        raw.send(mutate(prng, io({})));
        break;
      case 14: // a request cut short: the connection waits for the rest until the heartbeat gives up
        raw.send(io({}).subarray(0, prng.range(1, FRAME_HEADER_BYTES + writePayload.length - 1)));
        break;
      default: // a valid request (its key rotates: the next one naming it is stale)
        raw.send(io({}));
    }
    if (![3, 9, 10, 15].includes(kind)) break; // fatal to the path (or may be): nothing after it would be read
    await new Promise((resolve) => setTimeout(resolve, prng.below(5)));
  }
  record.what += `: IO kinds ${kinds.join(',')}${digest ? ' with digest' : ''}`;
  return finish(raw, record);
}

/** Waits for the server to close the connection; counts the refusals it answered. */
async function finish(raw: RawSocket, record: GarbageRecord): Promise<GarbageRecord> {
  try {
    await until(() => raw.closed, `the server to close the garbage connection (${record.what})`, 4000);
  } finally {
    raw.socket.destroy();
  }
  for (const { header } of raw.rest()) {
    const type = immType(header.imm);
    if (header.op === FRAME_OP.WRITE_IMM && (type === IMM_TYPE.IO_RSP || type === IMM_TYPE.IO_RSP_W_INV) && REFUSAL_ERRNOS.has(ioRspOf(immPayload(header.imm)).errno)) record.refusalsSeen += 1;
  }
  return record;
}

const live = suite('rtrs fuzz: live connections');

seeded('garbage at every stage closes that connection only: one log line each, the healthy session keeps its data and its paths', live, async (prng) => {
  const faults = watchProcessFaults();
  let healthyName = '';
  const handler = new RoutingHandler(() => healthyName);
  const pair = await rtrsPair({ handler, queueDepth: QUEUE_DEPTH, handshakeTimeoutMs: 300, sessionLingerMs: 100, heartbeatIntervalMs: 100 });
  try {
    await fuzzLive(prng, pair, handler, (name) => (healthyName = name));
    assert.equal(faults.faults, [], 'no uncaught exception or unhandled rejection');
  } finally {
    faults.dispose();
    await pair.close();
  }
});

async function fuzzLive(prng: Prng, pair: Pair, handler: RoutingHandler, setHealthyName: (name: string) => void): Promise<void> {
  const healthy = await pair.connect({ heartbeatIntervalMs: 250 });
  const healthyName = healthy.sessionName;
  setHealthyName(healthyName);
  const model = new Uint8Array(HEALTHY_REGION_BYTES);
  let stop = false;
  let healthyOps = 0;
  let healthyError: unknown = null;
  const healthySeed = prng.nextU32();
  const healthyLoop = (async () => {
    const ops = new Prng(healthySeed);
    while (!stop) {
      const lengthBytes = ops.range(1, 32) * 512;
      const offsetBytes = ops.below((HEALTHY_REGION_BYTES - lengthBytes) / 512 + 1) * 512;
      if (ops.chance(0.5)) {
        const data = ops.fill(new Uint8Array(lengthBytes));
        await writeBlock(healthy, offsetBytes, data);
        model.set(data, offsetBytes);
      } else {
        const data = await readBlock(healthy, offsetBytes, lengthBytes);
        assert.ok(Buffer.from(data).equals(model.subarray(offsetBytes, offsetBytes + lengthBytes)), `healthy read at ${offsetBytes} (+${lengthBytes})`);
      }
      healthyOps += 1;
    }
  })().catch((error: unknown) => {
    healthyError = error;
    stop = true;
  });

  const records: GarbageRecord[] = [];
  const CONNECTIONS = 60;
  const CONCURRENCY = 4;
  const seeds = Array.from({ length: CONNECTIONS }, () => prng.nextU32());
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < CONNECTIONS && !stop) {
      const index = next++;
      // each from its own loopback address, so the server's log names it alone (ports get reused)
      const localAddress = `127.1.${index >> 8}.${(index & 0xff) + 1}`;
      records.push(await garbageConnection(new Prng(seeds[index]!), STAGES[index % STAGES.length]!, pair.addresses[index % 2]!, localAddress, pair.crc32c, healthyName));
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  } finally {
    stop = true;
    await healthyLoop;
  }
  if (healthyError !== null) throw healthyError;

  // the healthy session: never lost a path, still works, its data exact
  assert.ok(healthyOps > 20, `the healthy session kept working (${healthyOps} requests)`);
  for (const path of healthy.pathsInfo()) {
    assert.is(path.stats.state, 'CONNECTED', path.name);
    assert.equal(path.stats.reconnects, { ok: 0, failed: 0 }, `${path.name} never reconnected`);
    assert.is(path.stats.failoverCount, 0, `${path.name} never failed over`);
  }
  const last = prng.fill(new Uint8Array(8192));
  await writeBlock(healthy, 0, last);
  model.set(last, 0);
  assert.equal(await readBlock(healthy, 0, 8192), last);
  const device = new Uint8Array(HEALTHY_REGION_BYTES);
  await handler.healthy.device.read(0, device);
  assert.ok(Buffer.from(device).equals(model), 'the healthy device holds exactly what the healthy session wrote');

  // one log line per refusal: each garbage connection's close, and each IO request refused
  const logs = pair.logs;
  const healthyPaths = healthy.pathsInfo().map((path) => path.pathUuid);
  const aboutHealthy = logs.filter((line) => line.includes(`session ${healthyName}:`) || healthyPaths.some((uuid) => line.includes(uuid)) || line.includes(healthy.sessionUuid));
  assert.equal(aboutHealthy, [], 'nothing was logged about the healthy session');
  for (const record of records) {
    const closing = logs.filter((line) => line.includes(`from ${record.localAddress}:${record.localPort}: `) || (record.pathUuid !== null && line.includes(`path ${record.pathUuid} `)));
    assert.is(closing.length, 1, `one line for the close of ${record.what}:\n${closing.join('\n')}`);
    const refusals = record.sessionName === null ? [] : logs.filter((line) => line.includes(`session ${record.sessionName}: refused an IO request`));
    assert.ok(refusals.length >= record.refusalsSeen, `${record.what}: ${refusals.length} refusal lines for ${record.refusalsSeen} refusals answered`);
  }
  const accounted = new Set<string>();
  for (const record of records) {
    for (const line of logs) {
      if (line.includes(`from ${record.localAddress}:${record.localPort}: `) || (record.pathUuid !== null && line.includes(`path ${record.pathUuid} `))) accounted.add(line);
      if (record.sessionName !== null && line.includes(`session ${record.sessionName}: refused an IO request`)) accounted.add(line);
    }
  }
  assert.equal(logs.filter((line) => !accounted.has(line)), [], 'every log line is about one garbage connection');

  // no garbage session or path is left; the process saw no fault
  await until(() => pair.server.sessionsInfo().length === 1, 'the garbage sessions to go', 3000);
  assert.not.ok(handler.closed.includes(healthyName), 'the healthy session was never closed');
  assert.equal(pair.server.sessionsInfo().map((session) => session.paths.length), [2]);
}

decoders.run();
live.run();
