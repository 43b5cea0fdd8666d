/**
 * Every kernel, in both builds (scalar and SIMD), against the plain model in support/bit-model.ts
 * on seeded random inputs: sizes that are and are not multiples of 64 (and large enough for the
 * SIMD block loops and popcount widening), densities from empty through sparse and dense to full,
 * and edge positions (0, 63, 64, 65, last bit, from == last). isZero with one non-zero byte at
 * every position; copy with overlap. Digests: kernels-digests.test.ts.
 * Replay a failure with BLOCKCORE_SEED=<seed printed in the message>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { Kernels, defaultKernels, type KernelFlavor, type WasmBuffer } from '../runtime/wasm/kernels.ts';
import { simdSupported } from '../runtime/wasm/load.ts';
import { BlockError } from '../runtime/errors.ts';
import { BitModel, SparseModel } from './support/bit-model.ts';

const SEED = seedFromEnv();
const SIZES_BITS = [1, 2, 63, 64, 65, 127, 128, 129, 512, 513, 1000, 4097, 20011];
const DENSITIES = [0, 0.001, 0.03, 0.5, 0.97, 0.999, 1];
const MAX_LENGTHS = [1, 2, 63, 64, 65, 100, 2 ** 32];
/** Long scans read 64 KiB chunks (8192 words) as four 16 KiB streams: see assembly/words.ts. */
const CHUNK_BITS = 8192 * 64;
const STREAM_BITS = CHUNK_BITS / 4;
const LARGE_BITS = 3 * CHUNK_BITS + 2 * STREAM_BITS + 4097;

function edges(bitCount: number, prng: Prng): number[] {
  const fixed = [0, 1, 62, 63, 64, 65, 127, 128, 511, 512, 513, bitCount >>> 1, bitCount - 65, bitCount - 64, bitCount - 2, bitCount - 1];
  const random = Array.from({ length: 6 }, () => prng.below(bitCount));
  return [...new Set([...fixed, ...random])].filter((bit) => bit >= 0 && bit < bitCount).sort((a, b) => a - b);
}

/** Lasts to pair with `from`: from itself, the end, and a few in between. */
function lastsFor(from: number, bitCount: number, prng: Prng): number[] {
  const candidates = [from, from + 1, from + 63, from + 64, bitCount - 1, from + prng.below(bitCount - from)];
  return [...new Set(candidates)].filter((last) => last >= from && last < bitCount);
}

function loadModel(k: Kernels, model: BitModel): WasmBuffer {
  const buffer = k.alloc(Math.ceil(model.bitCount / 64) * 8);
  buffer.view().set(model.toBytes());
  return buffer;
}

function kernelSuite(flavor: KernelFlavor): void {
  const s = suite(`kernels (${flavor})`);
  let k: Kernels;
  const where = (what: string) => `${flavor} seed=${SEED} ${what}`;

  s.before(async () => {
    k = await Kernels.create({ flavor });
  });
  s.after(() => k.release());

  s('loads the requested flavor', () => {
    assert.is(k.flavor, flavor);
  });

  s('get/set/clear single bits, little-endian layout', () => {
    const prng = new Prng(SEED);
    for (const bitCount of SIZES_BITS) {
      const model = new BitModel(bitCount);
      const buffer = loadModel(k, model);
      for (const bit of edges(bitCount, prng)) {
        assert.is(k.bitSet(buffer, bit), false, where(`set ${bit}/${bitCount} was clear`));
        assert.is(k.bitSet(buffer, bit), true, where(`set ${bit}/${bitCount} again`));
        model.set(bit);
        if (prng.chance(0.3)) {
          assert.is(k.bitClear(buffer, bit), true, where(`clear ${bit}/${bitCount}`));
          assert.is(k.bitClear(buffer, bit), false, where(`clear ${bit}/${bitCount} again`));
          model.set(bit, false);
        }
      }
      assert.equal(buffer.view(), model.toBytes(), where(`layout of ${bitCount} bits`));
      for (let bit = 0; bit < bitCount; bit++) assert.is(k.bitGet(buffer, bit), model.get(bit), where(`get ${bit}/${bitCount}`));
      buffer.free();
    }
  });

  s('next set / next zero / wrapping against the model', () => {
    const prng = new Prng(SEED + 1);
    for (const bitCount of SIZES_BITS) {
      for (const density of DENSITIES) {
        const model = new BitModel(bitCount);
        model.randomize(() => prng.next(), density);
        const buffer = loadModel(k, model);
        for (const from of edges(bitCount, prng)) {
          for (const last of lastsFor(from, bitCount, prng)) {
            const at = `${from}..${last} of ${bitCount} bits, density ${density}`;
            assert.is(k.bitNextSet(buffer, from, last), model.next(from, last, true), where(`nextSet ${at}`));
            assert.is(k.bitNextZero(buffer, from, last), model.next(from, last, false), where(`nextZero ${at}`));
            assert.is(k.bitNextSetWrapping(buffer, from, last), model.nextWrapping(from, last, true), where(`nextSetWrapping ${at}`));
            assert.is(k.bitNextZeroWrapping(buffer, from, last), model.nextWrapping(from, last, false), where(`nextZeroWrapping ${at}`));
          }
        }
        buffer.free();
      }
    }
  });

  s('count set bits of inclusive ranges', () => {
    const prng = new Prng(SEED + 2);
    for (const bitCount of SIZES_BITS) {
      for (const density of DENSITIES) {
        const model = new BitModel(bitCount);
        model.randomize(() => prng.next(), density);
        const buffer = loadModel(k, model);
        for (const first of edges(bitCount, prng)) {
          for (const last of lastsFor(first, bitCount, prng)) {
            assert.is(k.bitCountSet(buffer, first, last), model.count(first, last), where(`count ${first}..${last} of ${bitCount}, density ${density}`));
          }
        }
        buffer.free();
      }
    }
  });

  s('runs capped by maxLength and by the end', () => {
    const prng = new Prng(SEED + 3);
    for (const bitCount of SIZES_BITS) {
      for (const density of DENSITIES) {
        const model = new BitModel(bitCount);
        // Runs need clumps: draw run lengths rather than independent bits.
        for (let bit = 0, value = prng.chance(0.5); bit < bitCount; value = !value) {
          const length = 1 + prng.below(prng.chance(0.5) ? 8 : 300);
          model.fill(bit, Math.min(bit + length, bitCount) - 1, value ? prng.next() < density + 0.5 : prng.next() < density);
          bit += length;
        }
        const buffer = loadModel(k, model);
        for (const from of edges(bitCount, prng)) {
          for (const last of lastsFor(from, bitCount, prng)) {
            for (const value of [true, false]) {
              for (const maxLength of [...MAX_LENGTHS, 1 + prng.below(bitCount)]) {
                const at = `from ${from} last ${last} value ${value} max ${maxLength} of ${bitCount}`;
                assert.equal(k.bitNextRun(buffer, from, last, value, maxLength), model.nextRun(from, last, value, maxLength), where(`run ${at}`));
              }
            }
          }
        }
        buffer.free();
      }
    }
  });

  s('set and clear ranges, counting changed bits', () => {
    const prng = new Prng(SEED + 4);
    for (const bitCount of SIZES_BITS) {
      const model = new BitModel(bitCount);
      model.randomize(() => prng.next(), 0.5);
      const buffer = loadModel(k, model);
      const points = edges(bitCount, prng);
      for (let step = 0; step < 60; step++) {
        const first = prng.chance(0.5) ? points[prng.below(points.length)]! : prng.below(bitCount);
        const lasts = lastsFor(first, bitCount, prng);
        const last = lasts[prng.below(lasts.length)]!;
        const value = prng.chance(0.5);
        const changed = value ? k.bitSetRange(buffer, first, last) : k.bitClearRange(buffer, first, last);
        assert.is(changed, model.fill(first, last, value), where(`${value ? 'set' : 'clear'} ${first}..${last} of ${bitCount}: changed`));
        assert.equal(buffer.view(), model.toBytes(), where(`${value ? 'set' : 'clear'} ${first}..${last} of ${bitCount}: bytes`));
      }
      buffer.free();
    }
  });

  s('or / and-not over word ranges, returning the population', () => {
    const prng = new Prng(SEED + 5);
    for (const bitCount of SIZES_BITS) {
      const wordCount = Math.ceil(bitCount / 64);
      for (const [dstDensity, srcDensity] of [[0.5, 0.5], [0.01, 0.99], [0, 1], [1, 0], [0.999, 0.001]] as const) {
        for (const andNot of [false, true]) {
          const dstModel = new BitModel(bitCount);
          const srcModel = new BitModel(bitCount);
          dstModel.randomize(() => prng.next(), dstDensity);
          srcModel.randomize(() => prng.next(), srcDensity);
          const dst = loadModel(k, dstModel);
          const src = loadModel(k, srcModel);
          const count = prng.chance(0.5) ? wordCount : prng.below(wordCount + 1);
          const dstStart = prng.below(wordCount - count + 1);
          const srcStart = prng.below(wordCount - count + 1);
          const expected = dstModel.toBytes();
          const source = srcModel.toBytes();
          let population = 0;
          for (let i = 0; i < count * 8; i++) {
            const d = dstStart * 8 + i;
            const s8 = source[srcStart * 8 + i]!;
            expected[d] = andNot ? expected[d]! & ~s8 : expected[d]! | s8;
            for (let b = expected[d]!; b; b &= b - 1) population++;
          }
          const at = `${andNot ? 'andNot' : 'or'} ${count} words dst@${dstStart} src@${srcStart} of ${bitCount} bits`;
          const result = andNot ? k.bitAndNot(dst, dstStart, src, srcStart, count) : k.bitOr(dst, dstStart, src, srcStart, count);
          assert.is(result, population, where(`${at}: population`));
          assert.equal(dst.view(), expected, where(`${at}: bytes`));
          assert.equal(src.view(), source, where(`${at}: src untouched`));
          dst.free();
          src.free();
        }
      }
    }
  });

  s('long scans: one set (or clear) bit at every word slot of every stream', () => {
    const buffer = k.alloc(Math.ceil(LARGE_BITS / 64) * 8);
    const lastBit = LARGE_BITS - 1;
    const singles: number[] = [lastBit, lastBit - 64];
    for (let chunk = 0; chunk <= 3; chunk++) {
      for (let stream = 0; stream < 4; stream++) {
        const base = chunk * CHUNK_BITS + stream * STREAM_BITS;
        for (let word = 0; word < 18; word++) singles.push(base + word * 64 + (word % 3 === 2 ? 63 : word % 3));
        for (const offset of [1, 64, 128, 192, 256]) singles.push(base + STREAM_BITS - offset);
      }
    }
    for (const bit of singles.filter((b) => b < LARGE_BITS)) {
      for (const inverted of [false, true]) {
        const model = new SparseModel(LARGE_BITS, [bit], inverted);
        buffer.view().set(model.toBytes());
        const froms = [0, Math.max(0, bit - CHUNK_BITS), Math.max(0, bit - 64), bit, Math.min(lastBit, bit + 1)];
        for (const from of froms) {
          for (const last of [lastBit, Math.max(from, bit - 1), Math.max(from, bit)]) {
            const at = `${from}..${last}, only bit ${bit} ${inverted ? 'clear' : 'set'} of ${LARGE_BITS}`;
            const value = !inverted;
            assert.is(value ? k.bitNextSet(buffer, from, last) : k.bitNextZero(buffer, from, last), model.next(from, last, value), where(`next ${at}`));
            assert.is(value ? k.bitNextZero(buffer, from, last) : k.bitNextSet(buffer, from, last), model.next(from, last, !value), where(`next other ${at}`));
            assert.is(k.bitCountSet(buffer, from, last), model.count(from, last), where(`count ${at}`));
            assert.equal(k.bitNextRun(buffer, from, last, !value, 2 ** 32), model.nextRun(from, last, !value, 2 ** 32), where(`run ${at}`));
          }
        }
      }
    }
    buffer.free();
  });

  s('long scans across chunk and stream boundaries (sparse and inverted)', () => {
    const prng = new Prng(SEED + 9);
    const buffer = k.alloc(Math.ceil(LARGE_BITS / 64) * 8);
    const special: number[] = [LARGE_BITS - 1, LARGE_BITS - 64, 0];
    for (let chunk = 1; chunk <= 3; chunk++) {
      for (let stream = 0; stream < 4; stream++) {
        const base = chunk * CHUNK_BITS + stream * STREAM_BITS;
        special.push(base - 1, base, base + 1, base + 63, base + 64, base + 200, base + STREAM_BITS - 64);
      }
    }
    for (let round = 0; round < 10; round++) {
      const picked = special.filter(() => prng.chance(0.25));
      for (let i = 0; i < 8; i++) picked.push(prng.below(LARGE_BITS));
      const model = new SparseModel(LARGE_BITS, picked.filter((bit) => bit < LARGE_BITS), round % 2 === 1);
      buffer.view().set(model.toBytes());
      const froms = [0, 1, 64, CHUNK_BITS - 1, CHUNK_BITS, LARGE_BITS - 1, prng.below(LARGE_BITS)];
      for (const bit of model.positions) froms.push(Math.max(0, bit - 1), bit, Math.min(LARGE_BITS - 1, bit + 1));
      for (const from of froms) {
        for (const last of [LARGE_BITS - 1, from, Math.min(LARGE_BITS - 1, from + CHUNK_BITS), from + prng.below(LARGE_BITS - from)]) {
          const at = `${from}..${last} of ${LARGE_BITS}, ${model.positions.length} ${model.inverted ? 'clear' : 'set'} bits, round ${round}`;
          assert.is(k.bitNextSet(buffer, from, last), model.next(from, last, true), where(`nextSet ${at}`));
          assert.is(k.bitNextZero(buffer, from, last), model.next(from, last, false), where(`nextZero ${at}`));
          const wrapped = model.next(from, last, true) >= 0 || from === 0 ? model.next(from, last, true) : model.next(0, from - 1, true);
          assert.is(k.bitNextSetWrapping(buffer, from, last), wrapped, where(`nextSetWrapping ${at}`));
          assert.is(k.bitCountSet(buffer, from, last), model.count(from, last), where(`count ${at}`));
          for (const value of [true, false]) {
            const maxLength = prng.chance(0.5) ? 2 ** 32 : 1 + prng.below(2 * CHUNK_BITS);
            assert.equal(k.bitNextRun(buffer, from, last, value, maxLength), model.nextRun(from, last, value, maxLength), where(`run ${value} max ${maxLength} ${at}`));
          }
        }
      }
    }
    buffer.free();
  });

  s('isZero: one non-zero byte at every position', () => {
    const prng = new Prng(SEED + 7);
    for (let length = 0; length <= 160; length++) {
      const bytes = new Uint8Array(length);
      const buffer = k.alloc(length);
      assert.ok(k.isZero(bytes), where(`zero ${length} bytes`));
      assert.ok(k.isZero(buffer), where(`zero buffer of ${length} bytes`));
      for (let at = 0; at < length; at++) {
        bytes.fill(0);
        bytes[at] = 1 + prng.below(255);
        buffer.view().set(bytes);
        assert.not.ok(k.isZero(bytes), where(`byte ${at} of ${length}`));
        assert.not.ok(k.isZero(buffer), where(`buffer byte ${at} of ${length}`));
        assert.ok(k.isZero(bytes, at + 1), where(`after byte ${at} of ${length}`));
        assert.ok(k.isZero(buffer, 0, at), where(`buffer before byte ${at} of ${length}`));
        assert.not.ok(k.isZero(buffer, at, 1), where(`buffer just byte ${at} of ${length}`));
      }
      buffer.free();
    }
    const large = new Uint8Array(300_000);
    assert.ok(k.isZero(large), where('300 kB of zeros'));
    large[299_999] = 1;
    assert.not.ok(k.isZero(large), where('300 kB, last byte set'));
  });

  s('copy: overlapping and disjoint ranges behave like copyWithin', () => {
    const prng = new Prng(SEED + 8);
    const lengthBytes = 1000;
    const buffer = k.alloc(lengthBytes);
    const other = k.alloc(lengthBytes);
    const model = prng.fill(new Uint8Array(lengthBytes));
    buffer.view().set(model);
    for (let step = 0; step < 300; step++) {
      const length = prng.chance(0.2) ? prng.below(8) : prng.below(lengthBytes + 1);
      const src = prng.below(lengthBytes - length + 1);
      const dst = prng.chance(0.5) ? Math.min(lengthBytes - length, Math.max(0, src + prng.range(-70, 70))) : prng.below(lengthBytes - length + 1);
      k.copy(buffer, dst, buffer, src, length);
      model.copyWithin(dst, src, src + length);
      assert.equal(buffer.view(), model, where(`copy ${length} bytes ${src} -> ${dst}`));
    }
    k.copy(other, 10, buffer, 20, 900);
    assert.equal(other.view().subarray(10, 910), model.subarray(20, 920), where('copy between buffers'));
    assert.ok(k.isZero(other, 0, 10) && k.isZero(other, 910), where('copy stays inside its range'));
    buffer.free();
    other.free();
  });

  s.run();
}

kernelSuite('scalar');
kernelSuite('simd');

const shared = suite('defaultKernels');

shared('one shared instance, best flavor, cannot be released', async () => {
  const k = await defaultKernels();
  assert.is(await defaultKernels(), k);
  assert.is(k.flavor, simdSupported() ? 'simd' : 'scalar');
  assert.is(k.crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.throws(() => k.release(), (err: unknown) => err instanceof BlockError && err.code === 'EINVAL');
  assert.not.ok(k.released);
});

shared.run();
