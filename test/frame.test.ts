/**
 * The frame kernel (assembly/frame.ts through runtime/wasm/frame.ts), both builds: layouts frozen
 * by hex vectors and equal to the NBD server's constants; batch decoding of hand-made streams;
 * then seeded fuzzing against the plain model in support/nbd-frame-model.ts (random mixes of
 * valid and invalid headers, payloads, truncations, windows, capacities and negotiated sessions:
 * the same records, the same walk), and every verdict against request-check.ts, the check the
 * server answers with (accepted exactly when it accepts, with its error and its reason).
 * Replay a failure with BLOCKCORE_SEED=<seed in the message>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import type { KernelFlavor } from '../runtime/wasm/kernels.ts';
import { NBD_RECORD, NBD_VERDICTS, NbdLimits, NbdRequestBatch, RECORD_WORDS, type NbdVerdict } from '../runtime/wasm/frame.ts';
import * as nbd from '../server/nbd/constants.ts';
import { checkRequest, type Session } from '../server/nbd/request-check.ts';
import { encodeRequest, writeSimpleReplyHeader, writeStructuredHeader, type NbdRequest } from '../server/nbd/request-codec.ts';
import { modelDecode } from './support/nbd-frame-model.ts';

const SEED = seedFromEnv();
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const bytesOf = (text: string) => Uint8Array.from(Buffer.from(text.replaceAll(' ', ''), 'hex'));
const COOKIE_HEX = '0102030405060708';

/** What request-check.ts must answer for each kernel verdict: the NBD error and its reason. */
const EXPECTED: Record<Exclude<NbdVerdict, 'ok' | 'bad-magic'>, { error: number | 'space'; reason: RegExp }> = {
  'unknown-command': { error: nbd.NBD_EINVAL, reason: /^unknown command \d+$/ },
  'unknown-flags': { error: nbd.NBD_EINVAL, reason: /: unknown flags 0x/ },
  'fua-not-advertised': { error: nbd.NBD_EINVAL, reason: /: FUA flag on an export without FUA$/ },
  'no-hole-misplaced': { error: nbd.NBD_EINVAL, reason: /: NO_HOLE flag is only for WRITE_ZEROES$/ },
  'df-misplaced': { error: nbd.NBD_EINVAL, reason: /: DF flag is only for READ with structured replies$/ },
  'req-one-misplaced': { error: nbd.NBD_EINVAL, reason: /: REQ_ONE flag is only for BLOCK_STATUS$/ },
  'fast-zero-misplaced': { error: nbd.NBD_EINVAL, reason: /: FAST_ZERO flag is only for WRITE_ZEROES/ },
  'read-only': { error: nbd.NBD_EPERM, reason: / on a read-only export$/ },
  'flush-not-advertised': { error: nbd.NBD_EINVAL, reason: /^FLUSH was not advertised/ },
  'trim-not-advertised': { error: nbd.NBD_EINVAL, reason: /^TRIM was not advertised/ },
  'write-zeroes-not-advertised': { error: nbd.NBD_EINVAL, reason: /^WRITE_ZEROES was not advertised/ },
  'block-status-not-negotiated': { error: nbd.NBD_EINVAL, reason: /^BLOCK_STATUS without a metadata context/ },
  'flush-not-empty': { error: nbd.NBD_EINVAL, reason: /^FLUSH offset and length must be zero$/ },
  'out-of-range': { error: 'space', reason: /passes the export size/ },
  'offset-misaligned': { error: nbd.NBD_EINVAL, reason: /: offset \d+ is not a multiple of the minimum block size/ },
  'length-misaligned': { error: nbd.NBD_EINVAL, reason: /: length \d+ is not a multiple of the minimum block size/ },
  'too-long': { error: nbd.NBD_EINVAL, reason: /exceeds the maximum block size/ },
  'block-status-empty': { error: nbd.NBD_EINVAL, reason: /^BLOCK_STATUS of length 0$/ },
};

function limitsOf(session: Session): NbdLimits {
  return new NbdLimits(session.sizeBytes, session.minimumBlockBytes, session.transmissionFlags, session.structuredReplies, session.baseAllocation, nbd.MAX_BLOCK_BYTES);
}

const ALL_EXPORT_FLAGS = [
  nbd.NBD_FLAG_READ_ONLY, nbd.NBD_FLAG_SEND_FLUSH, nbd.NBD_FLAG_SEND_FUA, nbd.NBD_FLAG_SEND_TRIM,
  nbd.NBD_FLAG_SEND_WRITE_ZEROES, nbd.NBD_FLAG_SEND_DF, nbd.NBD_FLAG_SEND_FAST_ZERO, nbd.NBD_FLAG_SEND_CACHE,
];

function randomSession(prng: Prng): Session {
  const minimumBlockBytes = [1, 512, 4096, 65536][prng.below(4)]!;
  const sizeBytes = prng.chance(0.1) ? prng.below(2 ** 53) : minimumBlockBytes * prng.range(0, 1 << 20) + (prng.chance(0.2) ? prng.below(minimumBlockBytes) : 0);
  let transmissionFlags = nbd.NBD_FLAG_HAS_FLAGS;
  for (const flag of ALL_EXPORT_FLAGS) if (prng.chance(flag === nbd.NBD_FLAG_READ_ONLY ? 0.2 : 0.8)) transmissionFlags |= flag;
  return { sizeBytes, minimumBlockBytes, transmissionFlags, structuredReplies: prng.chance(0.8), baseAllocation: prng.chance(0.8) };
}

/** A header that passes the check most of the time, with one or two fields then disturbed. */
function randomRequest(prng: Prng, session: Session): NbdRequest {
  const block = session.minimumBlockBytes;
  const blocks = Math.floor(session.sizeBytes / block);
  const type = prng.below(8);
  const first = prng.below(blocks + 1);
  const count = Math.min(prng.chance(0.1) ? 0 : prng.below(64), blocks - first);
  const request: NbdRequest = {
    flags: 0, type, handleHigh: prng.nextU32(), handleLow: prng.nextU32(),
    offsetBytes: type === nbd.NBD_CMD_FLUSH ? 0 : first * block, lengthBytes: type === nbd.NBD_CMD_FLUSH ? 0 : count * block,
  };
  if (prng.chance(0.3)) request.flags = 1 << prng.below(6);
  if (prng.chance(0.15)) {
    switch (prng.below(7)) {
      case 0: request.type = prng.chance(0.5) ? prng.range(8, 12) : 0xffff; break;
      case 1: request.flags = prng.below(0x10000); break;
      case 2: request.offsetBytes = prng.below(2 ** 53); break;
      case 3: request.offsetBytes = 2 ** 53 + prng.below(2 ** 40) * 2048; break; // >= 2^53 on the wire
      case 4: request.lengthBytes = prng.nextU32(); break;
      // A READ (no payload to follow, no flag to be refused first) over the maximum block: 'too-long' must come up under every seed.
      case 5: request.type = nbd.NBD_CMD_READ; request.flags = 0; request.lengthBytes = nbd.MAX_BLOCK_BYTES + block * prng.range(1, 4); request.offsetBytes = 0; break;
      default: request.offsetBytes += prng.below(block + 1); request.lengthBytes += prng.below(3); break;
    }
  }
  return request;
}

/** encodeRequest takes a number; offsets from 2^53 up are written here from their two halves. */
function encodeAny(request: NbdRequest, data?: Uint8Array): Uint8Array {
  if (request.offsetBytes < 2 ** 53) return encodeRequest(request, data);
  const bytes = encodeRequest({ ...request, offsetBytes: 0 }, data);
  const view = new DataView(bytes.buffer);
  view.setUint32(16, Math.floor(request.offsetBytes / 2 ** 32));
  view.setUint32(20, request.offsetBytes % 2 ** 32);
  return bytes;
}

interface Stream {
  bytes: Uint8Array;
  /** Where the first header starts (random bytes before it). */
  start: number;
  /** The headers as generated, in order (their intended fields). */
  requests: NbdRequest[];
}

/** Headers, WRITE payloads, now and then a broken magic or DISC, and a random cut at the end. */
function randomStream(prng: Prng, session: Session, headerCount: number): Stream {
  const start = prng.below(40);
  const pieces: Uint8Array[] = [prng.fill(new Uint8Array(start))];
  const requests: NbdRequest[] = [];
  for (let i = 0; i < headerCount; i++) {
    const request = randomRequest(prng, session);
    if (prng.chance(0.02)) request.type = nbd.NBD_CMD_DISC;
    let data: Uint8Array | undefined;
    if (request.type === nbd.NBD_CMD_WRITE) {
      if (request.lengthBytes > 4096 || prng.chance(0.5)) request.lengthBytes = prng.below(300);
      data = prng.fill(new Uint8Array(request.lengthBytes));
    }
    const frame = encodeAny(request, data);
    if (prng.chance(0.02)) frame[prng.below(4)]! ^= 1 << prng.below(8);
    pieces.push(frame);
    requests.push(request);
  }
  const whole = Buffer.concat(pieces);
  const cut = prng.chance(0.5) ? whole.length : prng.below(whole.length + 1);
  return { bytes: Uint8Array.from(whole.subarray(0, Math.max(cut, start))), start, requests };
}

function frameSuite(flavor: KernelFlavor): void {
  const s = suite(`frame kernel (${flavor})`);
  let batch: NbdRequestBatch;
  /** Batches of other capacities (so other windows) for the fuzz. */
  let others: NbdRequestBatch[];
  const where = (what: string) => `${flavor} seed=${SEED} ${what}`;

  s.before(async () => {
    batch = await NbdRequestBatch.create({ flavor });
    others = [batch, await NbdRequestBatch.create({ flavor, capacityRecords: 1 }), await NbdRequestBatch.create({ flavor, capacityRecords: 5 })];
  });

  s('layout constants are the NBD server\'s', () => {
    const same: Array<[string, number]> = [
      ['NBD_REQUEST_BYTES', nbd.REQUEST_HEADER_BYTES], ['NBD_SIMPLE_REPLY_BYTES', nbd.SIMPLE_REPLY_HEADER_BYTES],
      ['NBD_STRUCTURED_REPLY_BYTES', nbd.STRUCTURED_HEADER_BYTES], ['NBD_REQUEST_MAGIC', nbd.NBD_REQUEST_MAGIC],
      ['NBD_SIMPLE_REPLY_MAGIC', nbd.NBD_SIMPLE_REPLY_MAGIC], ['NBD_STRUCTURED_REPLY_MAGIC', nbd.NBD_STRUCTURED_REPLY_MAGIC],
      ['NBD_CMD_READ', nbd.NBD_CMD_READ], ['NBD_CMD_WRITE', nbd.NBD_CMD_WRITE], ['NBD_CMD_DISC', nbd.NBD_CMD_DISC],
      ['NBD_CMD_FLUSH', nbd.NBD_CMD_FLUSH], ['NBD_CMD_TRIM', nbd.NBD_CMD_TRIM], ['NBD_CMD_CACHE', nbd.NBD_CMD_CACHE],
      ['NBD_CMD_WRITE_ZEROES', nbd.NBD_CMD_WRITE_ZEROES], ['NBD_CMD_BLOCK_STATUS', nbd.NBD_CMD_BLOCK_STATUS],
      ['NBD_COMMAND_COUNT', Object.keys(nbd.COMMAND_NAMES).length],
      ['NBD_CMD_FLAG_FUA', nbd.NBD_CMD_FLAG_FUA], ['NBD_CMD_FLAG_NO_HOLE', nbd.NBD_CMD_FLAG_NO_HOLE], ['NBD_CMD_FLAG_DF', nbd.NBD_CMD_FLAG_DF],
      ['NBD_CMD_FLAG_REQ_ONE', nbd.NBD_CMD_FLAG_REQ_ONE], ['NBD_CMD_FLAG_FAST_ZERO', nbd.NBD_CMD_FLAG_FAST_ZERO],
      ['NBD_FLAG_READ_ONLY', nbd.NBD_FLAG_READ_ONLY], ['NBD_FLAG_SEND_FLUSH', nbd.NBD_FLAG_SEND_FLUSH], ['NBD_FLAG_SEND_FUA', nbd.NBD_FLAG_SEND_FUA],
      ['NBD_FLAG_SEND_TRIM', nbd.NBD_FLAG_SEND_TRIM], ['NBD_FLAG_SEND_WRITE_ZEROES', nbd.NBD_FLAG_SEND_WRITE_ZEROES],
      ['NBD_FLAG_SEND_DF', nbd.NBD_FLAG_SEND_DF], ['NBD_FLAG_SEND_FAST_ZERO', nbd.NBD_FLAG_SEND_FAST_ZERO],
    ];
    for (const [name, value] of same) assert.is(batch.constant(name), value, name);
    assert.is(batch.constant('RECORD_WORDS'), RECORD_WORDS);
  });

  s('encoders: hex vectors, byte for byte the TypeScript encoders', () => {
    const request = '25609513 0011 0006 ' + COOKIE_HEX + ' 0000000100000200 00001000';
    assert.is(hex(batch.encodeRequest(0x11, 6, 0x01020304, 0x05060708, 2 ** 32 + 512, 4096)), request.replaceAll(' ', ''));
    assert.is(hex(encodeRequest({ flags: 0x11, type: 6, handleHigh: 0x01020304, handleLow: 0x05060708, offsetBytes: 2 ** 32 + 512, lengthBytes: 4096 })), request.replaceAll(' ', ''));
    const simple = '67446698 00000016 ' + COOKIE_HEX;
    assert.is(hex(batch.encodeSimpleReply(22, 0x01020304, 0x05060708)), simple.replaceAll(' ', ''));
    const simpleTs = new Uint8Array(16);
    writeSimpleReplyHeader(simpleTs, 0, 22, { handleHigh: 0x01020304, handleLow: 0x05060708 });
    assert.is(hex(simpleTs), simple.replaceAll(' ', ''));
    const structured = '668e33ef 0001 0005 ' + COOKIE_HEX + ' 0000000c';
    assert.is(hex(batch.encodeStructuredReply(1, 5, 0x01020304, 0x05060708, 12)), structured.replaceAll(' ', ''));
    const structuredTs = new Uint8Array(20);
    writeStructuredHeader(structuredTs, 0, 1, 5, { handleHigh: 0x01020304, handleLow: 0x05060708 }, 12);
    assert.is(hex(structuredTs), structured.replaceAll(' ', ''));
    assert.throws(() => batch.encodeSimpleReply(-1, 0, 0), (err: unknown) => err instanceof BlockError && err.code === 'EINVAL');
    assert.throws(() => batch.encodeRequest(0x10000, 0, 0, 0, 0, 0), (err: unknown) => err instanceof BlockError && err.code === 'EINVAL');
  });

  s('a hand-made stream: valid ones decode, the walk follows payloads and stops at a bad magic', () => {
    const session: Session = { sizeBytes: 1 << 20, minimumBlockBytes: 512, transmissionFlags: nbd.NBD_FLAG_HAS_FLAGS | nbd.NBD_FLAG_SEND_FLUSH, structuredReplies: true, baseAllocation: true };
    const stream = bytesOf(
      'ffff' + // two bytes before `at`
      '25609513 0000 0000 ' + COOKIE_HEX + ' 0000000000000200 00000400' + // READ 1 KiB at 512
      '25609513 0000 0001 ' + COOKIE_HEX + ' 0000000000000000 00000008 aabbccddeeff0011' + // WRITE 8 B: misaligned length
      '25609513 0000 0003 ' + COOKIE_HEX + ' 0000000000000200 00000000' + // FLUSH with an offset
      '25609514 0000 0000 ' + COOKIE_HEX + ' 0000000000000000 00000000' + // bad magic: the stream ends here
      '25609513 0000 0000 ' + COOKIE_HEX + ' 0000000000000000 00000200', // never looked at
    );
    const count = batch.decode(stream, 2, limitsOf(session));
    assert.is(count, 4);
    assert.equal([0, 1, 2, 3].map((i) => batch.verdict(i)), ['ok', 'length-misaligned', 'flush-not-empty', 'bad-magic']);
    assert.is(batch.endBytes, 28 + 36 + 28 + 28);
    const r = batch.records;
    assert.equal(Array.from(r.subarray(0, RECORD_WORDS)), [0, 0, 0, 0x01020304, 0x05060708, 0, 512, 1024]);
    assert.is(batch.offsetBytes(0), 512);
    assert.throws(() => batch.verdict(4), (err: unknown) => err instanceof BlockError && err.code === 'ERANGE');
    // A WRITE whose payload is cut ends the walk past the buffer; less than a header decodes nothing.
    const cut = bytesOf('25609513 0000 0001 ' + COOKIE_HEX + ' 0000000000000000 00000200 0000');
    assert.is(batch.decode(cut, 0, limitsOf(session)), 1);
    assert.is(batch.endBytes, 28 + 512);
    assert.is(batch.decode(cut.subarray(0, 27), 0, limitsOf(session)), 0);
    assert.is(batch.endBytes, 0);
    // An offset of 2^53 or more is out of range and reads back as -1.
    const huge = bytesOf('25609513 0000 0000 ' + COOKIE_HEX + ' 0020000000000000 00000200');
    assert.is(batch.decode(huge, 0, limitsOf(session)), 1);
    assert.is(batch.verdict(0), 'out-of-range');
    assert.is(batch.offsetBytes(0), -1);
  });

  s('fuzz: the kernel decodes exactly like the TypeScript model', () => {
    const prng = new Prng(SEED + 21);
    for (let trial = 0; trial < 400; trial++) {
      const session = randomSession(prng);
      const stream = randomStream(prng, session, prng.range(0, 48));
      const at = prng.chance(0.7) ? stream.start : prng.below(stream.bytes.length + 1);
      const subject = others[prng.below(others.length)]!;
      const records = new Uint32Array(subject.capacityRecords * RECORD_WORDS);
      const limits = limitsOf(session);
      const expected = modelDecode(stream.bytes, at, subject.windowBytes, subject.capacityRecords, limits, records);
      const count = subject.decode(stream.bytes, at, limits);
      const what = where(`trial ${trial}, capacity ${subject.capacityRecords}, at ${at}`);
      assert.is(count, expected.count, `${what}: record count`);
      assert.is(subject.endBytes, expected.endBytes, `${what}: walk end`);
      assert.equal(Array.from(subject.records.subarray(0, count * RECORD_WORDS)), Array.from(records.subarray(0, count * RECORD_WORDS)), `${what}: records`);
    }
  });

  s('fuzz: every verdict is request-check.ts\'s answer, and valid headers keep their fields', () => {
    const prng = new Prng(SEED + 22);
    const seen = new Set<NbdVerdict>();
    for (let trial = 0; trial < 600; trial++) {
      const session = randomSession(prng);
      const stream = randomStream(prng, session, 32);
      const count = batch.decode(stream.bytes, stream.start, limitsOf(session));
      for (let i = 0; i < count; i++) {
        const r = batch.records.subarray(i * RECORD_WORDS, (i + 1) * RECORD_WORDS);
        const verdict = batch.verdict(i);
        seen.add(verdict);
        if (verdict === 'bad-magic') continue;
        const request: NbdRequest = {
          flags: r[NBD_RECORD.flags]!, type: r[NBD_RECORD.type]!, handleHigh: r[NBD_RECORD.cookieHigh]!, handleLow: r[NBD_RECORD.cookieLow]!,
          offsetBytes: batch.offsetBytes(i), lengthBytes: r[NBD_RECORD.lengthBytes]!,
        };
        const intended = stream.requests[i]!;
        assert.equal({ ...request, offsetBytes: request.offsetBytes < 0 ? intended.offsetBytes : request.offsetBytes }, intended, where(`trial ${trial} header ${i}: fields`));
        if (request.offsetBytes < 0) assert.ok(intended.offsetBytes >= 2 ** 53, where('only offsets from 2^53 read back as -1'));
        if (request.type === nbd.NBD_CMD_DISC) {
          assert.is(verdict, 'ok', where('DISC with a good magic is always taken'));
          continue;
        }
        const refusal = checkRequest(request, session);
        const what = where(`trial ${trial} header ${i} ${JSON.stringify(request)} ${JSON.stringify(session)}`);
        if (verdict === 'ok') {
          assert.is(refusal, null, what);
          continue;
        }
        assert.ok(refusal !== null, `${what}: kernel says ${verdict}`);
        const expected = EXPECTED[verdict];
        const error = expected.error === 'space'
          ? (request.type === nbd.NBD_CMD_WRITE || request.type === nbd.NBD_CMD_WRITE_ZEROES ? nbd.NBD_ENOSPC : nbd.NBD_EINVAL)
          : expected.error;
        assert.is(refusal!.error, error, `${what}: ${verdict} error`);
        assert.match(refusal!.message, expected.reason, `${what}: ${verdict}`);
      }
    }
    const missing = NBD_VERDICTS.filter((verdict) => !seen.has(verdict));
    assert.equal(missing, [], where('every verdict came up'));
  });

  s('bad arguments are refused before the call', () => {
    const session: Session = { sizeBytes: 4096, minimumBlockBytes: 512, transmissionFlags: 1, structuredReplies: false, baseAllocation: false };
    const code = (fn: () => unknown, expected: string) => assert.throws(fn, (err: unknown) => err instanceof BlockError && err.code === expected);
    code(() => batch.decode(new Uint8Array(28), 29, limitsOf(session)), 'ERANGE');
    code(() => batch.decode(new Uint8Array(28), -1, limitsOf(session)), 'ERANGE');
    code(() => new NbdLimits(-1, 512, 0, false, false, 1), 'EINVAL');
    code(() => new NbdLimits(4096, 0, 0, false, false, 1), 'EINVAL');
    code(() => new NbdLimits(2 ** 53, 512, 0, false, false, 1), 'EINVAL');
  });

  s.run();
}

frameSuite('scalar');
frameSuite('simd');
