/**
 * The kernels' component (dist/blockcore-core.wasm, wit/blockcore-core.wit) through its jco
 * bindings, on Node, Bun and Deno alike: the kernels' model tests again, through the component.
 * The bitmap resource against the plain model (support/bit-model.ts) on seeded random contents
 * and edge positions; crc32c, xxh64, is-zero and copy against the plain module's facade
 * (runtime/wasm/kernels.ts) on seeded random data; NBD batch decoding and header encoding against
 * the plain frame facade (runtime/wasm/frame.ts) on seeded random streams, malformed ones
 * included. Then bad input: out-of-range positions, malformed ranges, wild lengths and limits
 * must come back as the WIT result's error case (a ComponentError carrying the error-code) and
 * change nothing; dropped and foreign handles are refused by the bindings before the component
 * sees them; memory filled to the last page gives `out-of-memory` results, and what is dropped is
 * reused. After each of those the instance must still answer: a trap would have poisoned it.
 * Last, the size check. Replay a failure with BLOCKCORE_SEED=<seed in the message>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { NBD_RECORD, NBD_VERDICTS, NbdLimits, NbdRequestBatch, RECORD_WORDS } from '../runtime/wasm/frame.ts';
import { Kernels } from '../runtime/wasm/kernels.ts';
import { BLOCK_BITS, BitModel } from './support/bit-model.ts';
import {
  componentBytes, dropBitmap, errorCodeOf, instantiateCoreComponent,
  type Bitmap, type CoreComponent, type ErrorCode, type NbdLimits as ComponentLimits,
} from './support/core-component.ts';

const SEED = seedFromEnv();
/** The component's bytes stay below this (30 KB when this test was written, the plain module 13 KB). */
const SIZE_LIMIT_BYTES = 40 * 1024;
const SIZES_BITS = [0, 1, 2, 63, 64, 65, 127, 129, 1000, 4097, BLOCK_BITS - 1, BLOCK_BITS, BLOCK_BITS + 1, 2 * BLOCK_BITS + 20011];
const DENSITIES = [0, 0.03, 0.5, 0.97, 1];
const U32_MAX = 0xffffffff;
const TWO_32 = 2 ** 32;
const where = (what: string) => `seed=${SEED} ${what}`;

/** Runs `call`, which must fail with the error-code `code` (a result's error, never a trap). */
function expectCode(code: ErrorCode, what: string, call: () => unknown): void {
  let thrown: unknown = null;
  try {
    call();
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown !== null, where(`${what}: returned instead of failing with ${code}`));
  assert.not.instance(thrown, WebAssembly.RuntimeError, where(`${what}: trapped (${String(thrown)})`));
  assert.is(errorCodeOf(thrown), code, where(`${what}: ${String(thrown)}`));
}

/** Runs `call`, which the bindings must refuse with a TypeError before the component runs. */
function expectRefused(what: string, call: () => unknown): void {
  assert.throws(call, (err: unknown) => err instanceof TypeError && errorCodeOf(err) === null, where(what));
}

function edges(bitCount: number, prng: Prng): number[] {
  const fixed = [0, 1, 63, 64, 65, 127, 128, BLOCK_BITS - 1, BLOCK_BITS, BLOCK_BITS + 1, bitCount >>> 1, bitCount - 65, bitCount - 64, bitCount - 2, bitCount - 1];
  const random = Array.from({ length: 4 }, () => prng.below(bitCount));
  return [...new Set([...fixed, ...random])].filter((bit) => bit >= 0 && bit < bitCount).sort((a, b) => a - b);
}

function lastsFor(from: number, bitCount: number, prng: Prng): number[] {
  const blockEnd = (Math.floor(from / BLOCK_BITS) + 1) * BLOCK_BITS;
  return [...new Set([from, from + 64, blockEnd - 1, blockEnd, bitCount - 1, from + prng.below(bitCount - from)])].filter((last) => last >= from && last < bitCount);
}

/** A component bitmap holding the model's bits, loaded through load-words (the bulk path). */
function loadModel(core: CoreComponent, model: BitModel): Bitmap {
  const bitmap = core.bitmap.Bitmap.create(model.bitCount);
  const population = model.bitCount === 0 ? 0 : model.count(0, model.bitCount - 1);
  assert.is(bitmap.loadWords(0, model.toBytes()), BigInt(population), where(`load-words of ${model.bitCount} bits reports the change`));
  return bitmap;
}

const none = (position: number) => (position < 0 ? undefined : position);

const s = suite('component (blockcore:core@0.1.0)');
let core: CoreComponent;
let kernels: Kernels;

s.before(async () => {
  core = await instantiateCoreComponent();
  kernels = await Kernels.create();
});
s.after(() => kernels.release());

s('bitmap: single bits, searches and counts against the model', () => {
  const prng = new Prng(SEED);
  for (const bitCount of SIZES_BITS) {
    for (const density of [DENSITIES[prng.below(DENSITIES.length)]!, 0.5]) {
      const model = new BitModel(bitCount);
      model.randomize(() => prng.next(), density);
      const bitmap = loadModel(core, model);
      assert.is(bitmap.bitCount(), bitCount);
      for (const bit of edges(bitCount, prng)) {
        const at = `bit ${bit} of ${bitCount}, density ${density}`;
        assert.is(bitmap.get(bit), model.get(bit), where(`get ${at}`));
        const value = prng.chance(0.5);
        assert.is(value ? bitmap.set(bit) : bitmap.clear(bit), model.get(bit), where(`${value ? 'set' : 'clear'} ${at} returns the old value`));
        model.set(bit, value);
        assert.is(bitmap.get(bit), value, where(`get after ${at}`));
      }
      for (const from of edges(bitCount, prng)) {
        for (const last of lastsFor(from, bitCount, prng)) {
          const at = `${from}..${last} of ${bitCount}, density ${density}`;
          assert.is(bitmap.nextSet(from, last), none(model.next(from, last, true)), where(`next-set ${at}`));
          assert.is(bitmap.nextZero(from, last), none(model.next(from, last, false)), where(`next-zero ${at}`));
          assert.is(bitmap.nextSetWrapping(from, last), none(model.nextWrapping(from, last, true)), where(`next-set-wrapping ${at}`));
          assert.is(bitmap.nextZeroWrapping(from, last), none(model.nextWrapping(from, last, false)), where(`next-zero-wrapping ${at}`));
          assert.is(bitmap.countSet(from, last), model.count(from, last), where(`count-set ${at}`));
          for (const value of [true, false]) {
            for (const maxLength of [1, 64, BLOCK_BITS + 1, U32_MAX, 1 + prng.below(bitCount)]) {
              const run = model.nextRun(from, last, value, maxLength);
              const expected = run === null ? undefined : { startBit: run.start, lengthBits: run.length };
              assert.equal(bitmap.nextRun(from, last, value, maxLength), expected, where(`next-run ${value} max ${maxLength} ${at}`));
            }
          }
        }
      }
      assert.equal(bitmap.words(0, model.toBytes().length / 8), model.toBytes(), where(`words of ${bitCount} bits`));
      dropBitmap(bitmap);
    }
  }
});

s('bitmap: set and clear ranges, words in and out, or and and-not', () => {
  const prng = new Prng(SEED + 1);
  for (const bitCount of [...SIZES_BITS.filter((n) => n > 0), 5 * BLOCK_BITS + 1]) {
    const model = new BitModel(bitCount);
    model.randomize(() => prng.next(), 0.5);
    const bitmap = loadModel(core, model);
    for (let step = 0; step < 30; step++) {
      const first = prng.below(bitCount);
      const lasts = lastsFor(first, bitCount, prng);
      const last = lasts[prng.below(lasts.length)]!;
      const value = prng.chance(0.5);
      const what = `${value ? 'set' : 'clear'}-range ${first}..${last} of ${bitCount}`;
      assert.is(value ? bitmap.setRange(first, last) : bitmap.clearRange(first, last), model.fill(first, last, value), where(what));
      assert.is(bitmap.countSet(0, bitCount - 1), model.count(0, bitCount - 1), where(`${what}: count`));
    }
    const wordCount = model.toBytes().length / 8;
    const startWord = prng.below(wordCount);
    const count = prng.below(wordCount - startWord + 1);
    assert.equal(bitmap.words(startWord, count), model.toBytes().subarray(startWord * 8, (startWord + count) * 8), where(`words ${startWord}+${count} of ${bitCount} bits`));
    for (const andNot of [false, true]) {
      const srcModel = new BitModel(bitCount);
      srcModel.randomize(() => prng.next(), prng.next());
      const src = loadModel(core, srcModel);
      for (let i = 0; i < bitCount; i++) model.set(i, andNot ? model.get(i) && !srcModel.get(i) : model.get(i) || srcModel.get(i));
      assert.is(andNot ? bitmap.andNot(src) : bitmap.or(src), model.count(0, bitCount - 1), where(`${andNot ? 'and-not' : 'or'} of ${bitCount} bits`));
      assert.equal(bitmap.words(0, wordCount), model.toBytes(), where(`${andNot ? 'and-not' : 'or'} of ${bitCount} bits: words`));
      dropBitmap(src);
    }
    assert.is(bitmap.or(bitmap), model.count(0, bitCount - 1), where('or with itself'));
    dropBitmap(bitmap);
  }
});

s('bytes: is-zero and copy against the plain module', () => {
  const prng = new Prng(SEED + 2);
  for (let trial = 0; trial < 300; trial++) {
    const lengthBytes = prng.chance(0.9) ? prng.below(300) : prng.range(4000, 70000);
    const data = new Uint8Array(lengthBytes);
    if (lengthBytes > 0 && prng.chance(0.6)) data[prng.below(lengthBytes)] = 1 + prng.below(255);
    assert.is(core.bytes.isZero(data), kernels.isZero(data), where(`is-zero of ${lengthBytes} bytes`));

    const dstBytes = prng.below(200);
    const srcBytes = prng.below(200);
    const dst = prng.fill(new Uint8Array(dstBytes));
    const src = prng.fill(new Uint8Array(srcBytes));
    const dstOffset = prng.below(dstBytes + 1) + (prng.chance(0.1) ? prng.range(1, 5) : 0);
    const srcOffset = prng.below(srcBytes + 1) + (prng.chance(0.1) ? prng.range(1, 5) : 0);
    const length = prng.chance(0.1) ? prng.below(400) : prng.below(Math.max(0, Math.min(dstBytes - dstOffset, srcBytes - srcOffset)) + 1);
    const what = `copy ${length} bytes from ${srcOffset}/${srcBytes} to ${dstOffset}/${dstBytes}`;
    const plainDst = kernels.alloc(dstBytes);
    const plainSrc = kernels.alloc(srcBytes);
    plainDst.view().set(dst);
    plainSrc.view().set(src);
    let plainError: unknown = null;
    try {
      kernels.copy(plainDst, dstOffset, plainSrc, srcOffset, length);
    } catch (err) {
      plainError = err;
    }
    if (plainError === null) {
      assert.equal(core.bytes.copy(dst, dstOffset, src, srcOffset, length), plainDst.view().slice(), where(what));
    } else {
      assert.ok(plainError instanceof BlockError && plainError.code === 'ERANGE', where(`${what}: plain ${String(plainError)}`));
      expectCode('out-of-range', what, () => core.bytes.copy(dst, dstOffset, src, srcOffset, length));
    }
    plainDst.free();
    plainSrc.free();
  }
});

s('digest: crc32c and xxh64 against the plain module, crc32c chained', () => {
  const prng = new Prng(SEED + 3);
  for (const lengthBytes of [0, 1, 3, 7, 8, 15, 16, 17, 63, 64, 255, 256, 511, 512, 513, 1000, 4096, 8192 + 7, 70000]) {
    const data = prng.fill(new Uint8Array(lengthBytes));
    const seed = prng.chance(0.3) ? 0 : prng.nextU32();
    assert.is(core.digest.crc32c(seed, data), kernels.crc32c(data, seed), where(`crc32c of ${lengthBytes} bytes from ${seed}`));
    const cut = prng.below(lengthBytes + 1);
    assert.is(core.digest.crc32c(core.digest.crc32c(0, data.subarray(0, cut)), data.subarray(cut)), kernels.crc32c(data), where(`crc32c chained at ${cut}/${lengthBytes}`));
    const seed64 = (BigInt(prng.nextU32()) << 32n) | BigInt(prng.nextU32());
    assert.is(core.digest.xxh64(seed64, data), kernels.xxh64(data, seed64), where(`xxh64 of ${lengthBytes} bytes`));
  }
  assert.is(core.digest.crc32c(0, new TextEncoder().encode('123456789')), 0xe3069283, 'the CRC32C check value');
});

// ---- frames ----

const NBD_REQUEST_MAGIC = 0x25609513;
const NBD_CMD_WRITE = 1;
const NBD_CMD_DISC = 2;
const NBD_CMD_FLUSH = 3;
/** Export flags the checks look at: read-only, flush, FUA, trim, write-zeroes, DF, fast-zero. */
const EXPORT_FLAG_BITS = [1 << 1, 1 << 2, 1 << 3, 1 << 5, 1 << 6, 1 << 7, 1 << 11];

interface Limits {
  plain: NbdLimits;
  component: ComponentLimits;
}

function randomLimits(prng: Prng): Limits {
  const minimumBlockBytes = [1, 3, 512, 4096][prng.below(4)]!;
  const sizeBytes = prng.chance(0.1) ? prng.below(2 ** 53) : minimumBlockBytes * prng.below(1 << 20) + (prng.chance(0.2) ? prng.below(minimumBlockBytes) : 0);
  let transmissionFlags = 1;
  for (const flag of EXPORT_FLAG_BITS) if (prng.chance(flag === 2 ? 0.2 : 0.8)) transmissionFlags |= flag;
  const structuredReplies = prng.chance(0.8);
  const baseAllocation = prng.chance(0.8);
  const maxBlockBytes = [0, 4096, 32 * 1024 * 1024, U32_MAX][prng.below(4)]!;
  return {
    plain: new NbdLimits(sizeBytes, minimumBlockBytes, transmissionFlags, structuredReplies, baseAllocation, maxBlockBytes),
    component: { sizeBytes: BigInt(sizeBytes), minimumBlockBytes, transmissionFlags, structuredReplies, baseAllocation, maxBlockBytes },
  };
}

/** One request header, mostly plausible for `limits`, now and then broken in one field. */
function randomHeader(prng: Prng, limits: NbdLimits): { bytes: Uint8Array; payloadBytes: number } {
  const block = limits.minimumBlockBytes;
  const type = prng.chance(0.05) ? prng.range(8, 0xffff) : prng.chance(0.03) ? NBD_CMD_DISC : prng.below(8);
  const blocks = Math.floor(limits.sizeBytes / block);
  const first = prng.below(blocks + 1);
  let offset = type === NBD_CMD_FLUSH ? 0 : first * block;
  let length = type === NBD_CMD_FLUSH ? 0 : Math.min(prng.below(64), blocks - first) * block;
  let flags = prng.chance(0.3) ? 1 << prng.below(6) : 0;
  let magic = NBD_REQUEST_MAGIC;
  switch (prng.chance(0.2) ? prng.below(6) : -1) {
    case 0: flags = prng.below(0x10000); break;
    case 1: offset = prng.below(2 ** 53) + (prng.chance(0.5) ? 2 ** 53 : 0); break;
    case 2: length = prng.nextU32(); break;
    case 3: offset += prng.below(block + 1); length += prng.below(3); break;
    case 4: magic ^= 1 << prng.below(32); break;
    case 5: length = limits.maxBlockBytes + block; offset = 0; break;
  }
  const bytes = new Uint8Array(28);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, magic >>> 0);
  view.setUint16(4, flags);
  view.setUint16(6, type);
  view.setUint32(8, prng.nextU32());
  view.setUint32(12, prng.nextU32());
  view.setUint32(16, Math.floor(offset / TWO_32));
  view.setUint32(20, offset % TWO_32);
  view.setUint32(24, length >>> 0);
  return { bytes, payloadBytes: type === NBD_CMD_WRITE && length < 400 ? length : 0 };
}

/** Headers with their WRITE payloads (a long one ends the stream), random garbage now and then, cut at random. */
function randomStream(prng: Prng, limits: NbdLimits): Uint8Array {
  if (prng.chance(0.05)) return prng.fill(new Uint8Array(prng.below(200)));
  const pieces: number[] = [];
  const headerCount = prng.below(40);
  for (let i = 0; i < headerCount; i++) {
    const { bytes, payloadBytes } = randomHeader(prng, limits);
    pieces.push(...bytes, ...prng.fill(new Uint8Array(payloadBytes)));
  }
  const whole = Uint8Array.from(pieces);
  return prng.chance(0.5) ? whole : whole.subarray(0, prng.below(whole.length + 1));
}

s('frame: NBD batches decode as the plain facade decodes them, malformed ones included', async () => {
  const prng = new Prng(SEED + 4);
  const batches = await Promise.all([1, 3, 32, 200].map((capacityRecords) => NbdRequestBatch.create({ capacityRecords })));
  for (let trial = 0; trial < 400; trial++) {
    const batch = batches[prng.below(batches.length)]!;
    const limits = randomLimits(prng);
    const stream = randomStream(prng, limits.plain);
    // The plain facade looks at its window's worth of bytes: the component gets the same bytes.
    const seen = stream.subarray(0, Math.min(stream.length, batch.windowBytes));
    const count = batch.decode(seen, 0, limits.plain);
    const what = `trial ${trial}: ${seen.length} bytes, at most ${batch.capacityRecords} requests`;
    const decoded = core.frame.decodeNbdRequests(seen, limits.component, batch.capacityRecords);
    assert.is(decoded.requests.length, count, where(`${what}: count`));
    assert.is(decoded.endBytes, BigInt(batch.endBytes), where(`${what}: end`));
    decoded.requests.forEach((request, i) => {
      const word = (name: keyof typeof NBD_RECORD) => batch.records[i * RECORD_WORDS + NBD_RECORD[name]]!;
      assert.equal(request, {
        verdict: batch.verdict(i),
        flags: word('flags'),
        command: word('type'),
        cookie: (BigInt(word('cookieHigh')) << 32n) | BigInt(word('cookieLow')),
        offsetBytes: (BigInt(word('offsetHigh')) << 32n) | BigInt(word('offsetLow')),
        lengthBytes: word('lengthBytes'),
      }, where(`${what}: request ${i}`));
    });
  }
  const seenVerdicts = new Set<string>();
  for (let trial = 0; trial < 200; trial++) {
    const limits = randomLimits(prng);
    for (const request of core.frame.decodeNbdRequests(randomStream(prng, limits.plain), limits.component, U32_MAX).requests) seenVerdicts.add(request.verdict);
  }
  assert.ok(seenVerdicts.size >= NBD_VERDICTS.length / 2, where(`the fuzz reaches many verdicts (${[...seenVerdicts].join(', ')})`));
});

s('frame: NBD headers encode byte for byte as the plain facade encodes them', async () => {
  const prng = new Prng(SEED + 5);
  const batch = await NbdRequestBatch.create({ capacityRecords: 1 });
  for (let trial = 0; trial < 200; trial++) {
    const [flags, type, error] = [prng.below(0x10000), prng.below(0x10000), prng.nextU32()];
    const [cookieHigh, cookieLow, lengthBytes] = [prng.nextU32(), prng.nextU32(), prng.nextU32()];
    const cookie = (BigInt(cookieHigh) << 32n) | BigInt(cookieLow);
    const offset = prng.below(2 ** 53);
    assert.equal(core.frame.encodeNbdRequest(flags, type, cookie, BigInt(offset), lengthBytes), batch.encodeRequest(flags, type, cookieHigh, cookieLow, offset, lengthBytes), where('request'));
    assert.equal(core.frame.encodeNbdSimpleReply(error, cookie), batch.encodeSimpleReply(error, cookieHigh, cookieLow), where('simple reply'));
    assert.equal(core.frame.encodeNbdStructuredReply(flags, type, cookie, lengthBytes), batch.encodeStructuredReply(flags, type, cookieHigh, cookieLow, lengthBytes), where('structured reply'));
  }
  // Offsets past 2^53 (which a JS number cannot hold exactly) encode exactly as u64s.
  const request = core.frame.encodeNbdRequest(0, 0, 0n, 0xfedcba9876543210n, 0);
  assert.is(new DataView(request.buffer, request.byteOffset).getBigUint64(16), 0xfedcba9876543210n);
});

// ---- bad input ----

s('bad input: positions, ranges, words and lengths come back as errors and change nothing', () => {
  const prng = new Prng(SEED + 6);
  for (const bitCount of [0, 1, 64, 1000, BLOCK_BITS + 1]) {
    const model = new BitModel(bitCount);
    model.randomize(() => prng.next(), 0.5);
    const bitmap = loadModel(core, model);
    const other = core.bitmap.Bitmap.create(bitCount + 1);
    const wordCount = model.toBytes().length / 8;
    const outside = [bitCount, bitCount + 1, U32_MAX, U32_MAX - 1, 2 ** 31];
    for (const bit of outside) {
      const at = `bit ${bit} of ${bitCount}`;
      expectCode('out-of-range', `get ${at}`, () => bitmap.get(bit));
      expectCode('out-of-range', `set ${at}`, () => bitmap.set(bit));
      expectCode('out-of-range', `clear ${at}`, () => bitmap.clear(bit));
      for (const [first, last] of [[0, bit], [bit, bit], [bit, 0]]) {
        const range = `${first}..${last} of ${bitCount}`;
        expectCode('out-of-range', `next-set ${range}`, () => bitmap.nextSet(first!, last!));
        expectCode('out-of-range', `next-zero ${range}`, () => bitmap.nextZero(first!, last!));
        expectCode('out-of-range', `next-set-wrapping ${range}`, () => bitmap.nextSetWrapping(first!, last!));
        expectCode('out-of-range', `next-zero-wrapping ${range}`, () => bitmap.nextZeroWrapping(first!, last!));
        expectCode('out-of-range', `count-set ${range}`, () => bitmap.countSet(first!, last!));
        expectCode('out-of-range', `set-range ${range}`, () => bitmap.setRange(first!, last!));
        expectCode('out-of-range', `clear-range ${range}`, () => bitmap.clearRange(first!, last!));
        expectCode('out-of-range', `next-run ${range}`, () => bitmap.nextRun(first!, last!, true, 1));
      }
    }
    if (bitCount >= 2) {
      const [first, last] = [bitCount - 1, 0];
      expectCode('invalid-argument', 'next-set first > last', () => bitmap.nextSet(first, last));
      expectCode('invalid-argument', 'count-set first > last', () => bitmap.countSet(first, last));
      expectCode('invalid-argument', 'set-range first > last', () => bitmap.setRange(first, last));
      expectCode('invalid-argument', 'clear-range first > last', () => bitmap.clearRange(first, last));
      expectCode('invalid-argument', 'next-run first > last', () => bitmap.nextRun(first, last, false, 5));
      expectCode('invalid-argument', 'next-run of max length 0', () => bitmap.nextRun(0, bitCount - 1, true, 0));
    }
    expectCode('out-of-range', 'words past the end', () => bitmap.words(wordCount, 1));
    expectCode('out-of-range', 'words from far past the end', () => bitmap.words(U32_MAX, U32_MAX));
    expectCode('invalid-argument', 'load-words of a partial word', () => bitmap.loadWords(0, new Uint8Array(wordCount * 8 + 3)));
    expectCode('out-of-range', 'load-words past the end', () => bitmap.loadWords(0, new Uint8Array(wordCount * 8 + 8)));
    expectCode('out-of-range', 'load-words from far past the end', () => bitmap.loadWords(U32_MAX, new Uint8Array(8)));
    if (bitCount % 64 !== 0) {
      expectCode('invalid-argument', 'load-words setting bits past the end', () => bitmap.loadWords(wordCount - 1, new Uint8Array(8).fill(0xff)));
    }
    expectCode('invalid-argument', 'or of another size', () => bitmap.or(other));
    expectCode('invalid-argument', 'and-not of another size', () => bitmap.andNot(other));
    assert.equal(bitmap.words(0, wordCount), model.toBytes(), where(`bitmap of ${bitCount} bits unchanged by refused calls`));
    dropBitmap(other);
    dropBitmap(bitmap);
  }
  const dst = Uint8Array.of(1, 2, 3);
  for (const [dstOffset, srcOffset, length] of [[4, 0, 0], [0, 0, 4], [U32_MAX, 0, 1], [0, U32_MAX, 1], [0, 0, U32_MAX], [1, 1, U32_MAX]]) {
    expectCode('out-of-range', `copy ${length} bytes at ${srcOffset} to ${dstOffset}`, () => core.bytes.copy(dst, dstOffset!, Uint8Array.of(9, 9, 9), srcOffset!, length!));
  }
  assert.equal(dst, Uint8Array.of(1, 2, 3), 'the caller\'s bytes are never written');
  const limits = randomLimits(prng).component;
  const request = core.frame.encodeNbdRequest(0, 0, 1n, 0n, 0);
  expectCode('invalid-argument', 'decode with an export of 2^53 bytes', () => core.frame.decodeNbdRequests(request, { ...limits, sizeBytes: 2n ** 53n }, 1));
  expectCode('invalid-argument', 'decode with an export of 2^64 - 1 bytes', () => core.frame.decodeNbdRequests(request, { ...limits, sizeBytes: 2n ** 64n - 1n }, 1));
  expectCode('invalid-argument', 'decode with a minimum block of 0', () => core.frame.decodeNbdRequests(request, { ...limits, minimumBlockBytes: 0 }, 1));
  expectCode('invalid-argument', 'decode of at most 0 requests', () => core.frame.decodeNbdRequests(request, limits, 0));
  assert.equal(core.frame.decodeNbdRequests(new Uint8Array(27), limits, U32_MAX), { requests: [], endBytes: 0n }, 'less than a header decodes nothing');
  assert.ok(core.bitmap.Bitmap.create(3).get(2) === false, 'the instance still answers');
});

s('bad input: a seeded storm of wild arguments never traps', () => {
  const prng = new Prng(SEED + 7);
  const wild = (bitCount: number) => {
    switch (prng.below(5)) {
      case 0: return prng.below(bitCount + 2);
      case 1: return U32_MAX - prng.below(3);
      case 2: return prng.nextU32();
      default: return Math.max(0, bitCount - 1 - prng.below(3));
    }
  };
  for (const bitCount of [0, 1, 70, BLOCK_BITS + 3]) {
    const model = new BitModel(bitCount);
    const bitmap = core.bitmap.Bitmap.create(bitCount);
    for (let call = 0; call < 500; call++) {
      const [a, b] = [wild(bitCount), wild(bitCount)];
      const bitsOk = a < bitCount && b < bitCount;
      const rangeCode: ErrorCode | null = !bitsOk ? 'out-of-range' : a > b ? 'invalid-argument' : null;
      const op = prng.below(6);
      const what = `op ${op} (${a}, ${b}) of ${bitCount} bits`;
      const run = (): unknown => {
        switch (op) {
          case 0: return bitmap.set(a);
          case 1: return bitmap.setRange(a, b);
          case 2: return bitmap.clearRange(a, b);
          case 3: return bitmap.nextZeroWrapping(a, b);
          case 4: return bitmap.countSet(a, b);
          default: return bitmap.nextRun(a, b, prng.chance(0.5), wild(bitCount));
        }
      };
      const expected: ErrorCode | null = op === 0 ? (a < bitCount ? null : 'out-of-range') : rangeCode;
      if (expected !== null) {
        expectCode(expected, what, run);
        continue;
      }
      let result: unknown;
      try {
        result = run();
      } catch (err) {
        // next-run's maximum is wild too: 0 is the only one refused.
        assert.ok(op === 5 && errorCodeOf(err) === 'invalid-argument', where(`${what}: ${String(err)}`));
        continue;
      }
      if (op === 0) model.set(a);
      if (op === 1) assert.is(result, model.fill(a, b, true), where(what));
      if (op === 2) assert.is(result, model.fill(a, b, false), where(what));
      if (op === 4) assert.is(result, model.count(a, b), where(what));
    }
    assert.equal(bitmap.words(0, model.toBytes().length / 8), model.toBytes(), where(`${bitCount} bits after the storm`));
    dropBitmap(bitmap);
  }
});

s('bad input: dropped and foreign handles are refused before the component runs', async () => {
  const bitmap = core.bitmap.Bitmap.create(100);
  const kept = core.bitmap.Bitmap.create(100);
  kept.set(7);
  dropBitmap(bitmap);
  dropBitmap(bitmap); // a second drop does nothing
  expectRefused('get on a dropped bitmap', () => bitmap.get(1));
  expectRefused('set-range on a dropped bitmap', () => bitmap.setRange(0, 99));
  expectRefused('or with a dropped bitmap', () => kept.or(bitmap));
  const elsewhere = await instantiateCoreComponent();
  const foreign = elsewhere.bitmap.Bitmap.create(100);
  foreign.set(50);
  expectRefused('or with a bitmap of another instance', () => kept.or(foreign));
  expectRefused('and-not with a plain object', () => kept.andNot({} as Bitmap));
  const get = kept.get as (this: unknown, bit: number) => boolean;
  expectRefused('a method called on a foreign bitmap', () => get.call(foreign, 50));
  expectRefused('a method called on a plain object', () => get.call({}, 0));
  assert.is(kept.get(7), true, 'the instance still answers');
  assert.is(kept.countSet(0, 99), 1, 'and its bitmaps are unchanged');
  assert.is(foreign.countSet(0, 99), 1, 'so is the other instance\'s');
  dropBitmap(foreign);
  dropBitmap(kept);
});

s('memory: filled to the last page, creates return out-of-memory, lists still pass, drops are reused', async () => {
  const full = await instantiateCoreComponent();
  const listBytes = 256 * 1024;
  const small = full.bitmap.Bitmap.create(listBytes * 8);
  const reserve = full.bitmap.Bitmap.create(1 << 25); // 4 MiB of words, given back once memory is full
  const held: Bitmap[] = [];
  let largestBits = 0;
  // Biggest first (2^32 - 1 bits: 512 MiB of words, memory the kernels never touch until bits
  // are set), halving on every refusal, down to 1 MiB bitmaps: at most ~1 MiB is left after.
  let refusals = 0;
  for (let bitCount = U32_MAX; bitCount >= 1 << 23; ) {
    try {
      held.push(full.bitmap.Bitmap.create(bitCount));
      largestBits = Math.max(largestBits, bitCount);
    } catch (err) {
      assert.is(errorCodeOf(err), 'out-of-memory', where(`create of ${bitCount} bits: ${String(err)}`));
      refusals++;
      bitCount = Math.floor(bitCount / 2);
    }
  }
  assert.ok(held.length > 0 && refusals > 0, where(`${held.length} bitmaps held, ${refusals} refused`));
  expectCode('out-of-memory', 'create with memory full', () => full.bitmap.Bitmap.create(1 << 24));
  dropBitmap(reserve);
  // Lists in and out, each released after its call: 32 rounds of a leak of any one of them
  // (8 MiB) would not fit in the ~5 MiB left, and the call would fail.
  const prng = new Prng(SEED + 8);
  const data = prng.fill(new Uint8Array(listBytes));
  let population = 0;
  for (const byte of data) for (let b = byte; b !== 0; b &= b - 1) population++;
  const limits = randomLimits(prng).component;
  for (let round = 0; round < 32; round++) {
    assert.is(full.bytes.isZero(data), false);
    assert.is(full.digest.crc32c(0, data), kernels.crc32c(data));
    assert.is(full.digest.xxh64(0n, data), kernels.xxh64(data));
    assert.equal(full.bytes.copy(data, 0, data, 0, listBytes), data);
    assert.is(small.loadWords(0, data), round === 0 ? BigInt(population) : 0n);
    assert.equal(small.words(0, listBytes / 8), data);
    full.frame.decodeNbdRequests(data, limits, U32_MAX);
  }
  for (const bitmap of held) dropBitmap(bitmap);
  dropBitmap(small);
  const again = full.bitmap.Bitmap.create(largestBits);
  assert.is(again.setRange(largestBits - 1001, largestBits - 2), 1000, where(`a bitmap of ${largestBits} bits again: memory given back is reused`));
  dropBitmap(again);
});

s('size: the component stays small', async () => {
  const bytes = await componentBytes();
  console.log(`\n  dist/blockcore-core.wasm: ${bytes} bytes (limit ${SIZE_LIMIT_BYTES})`);
  assert.ok(bytes < SIZE_LIMIT_BYTES, `the component is ${bytes} bytes, over ${SIZE_LIMIT_BYTES}`);
});

s.run();
