/**
 * The bitmap kernels through the facade (Kernels' WasmBitmap), in both builds (scalar and SIMD),
 * against the plain models in support/bit-model.ts on seeded random inputs: sizes that are and
 * are not multiples of a word and of a summary block (256 words, 16384 bits: assembly/summary.ts),
 * densities from empty through sparse and dense to full, edge positions (0, 63, 64, 65, block
 * edges, last bit, from == last), and sparse bitmaps of many blocks where searches must skip
 * blocks through the summary. Every bitmap is loaded with bitLoad (the bulk path, which recounts
 * the summary) and read back with bitWords. Replay a failure with BLOCKCORE_SEED=<seed>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { Kernels, type KernelFlavor, type WasmBitmap } from '../runtime/wasm/kernels.ts';
import { BLOCK_BITS, BitModel, SparseModel } from './support/bit-model.ts';

const SEED = seedFromEnv();
const SIZES_BITS = [1, 2, 63, 64, 65, 127, 128, 129, 512, 513, 1000, 4097, BLOCK_BITS - 1, BLOCK_BITS, BLOCK_BITS + 1, 2 * BLOCK_BITS + 20011];
const DENSITIES = [0, 0.001, 0.03, 0.5, 0.97, 0.999, 1];
const MAX_LENGTHS = [1, 2, 63, 64, 65, 100, BLOCK_BITS, BLOCK_BITS + 1, 2 ** 32];
/** Many blocks, the last one partial, and a summary level of more than one word (65 blocks and up). */
const LARGE_BITS = 200 * BLOCK_BITS + 4097;

function edges(bitCount: number, prng: Prng): number[] {
  const fixed = [0, 1, 62, 63, 64, 65, 127, 128, 511, 512, 513, BLOCK_BITS - 1, BLOCK_BITS, BLOCK_BITS + 1, 2 * BLOCK_BITS - 64,
    bitCount >>> 1, bitCount - BLOCK_BITS, bitCount - 65, bitCount - 64, bitCount - 2, bitCount - 1];
  const random = Array.from({ length: 6 }, () => prng.below(bitCount));
  return [...new Set([...fixed, ...random])].filter((bit) => bit >= 0 && bit < bitCount).sort((a, b) => a - b);
}

/** Lasts to pair with `from`: from itself, the end, block edges and a few in between. */
function lastsFor(from: number, bitCount: number, prng: Prng): number[] {
  const blockEnd = (Math.floor(from / BLOCK_BITS) + 1) * BLOCK_BITS;
  const candidates = [from, from + 1, from + 63, from + 64, blockEnd - 1, blockEnd, bitCount - 1, from + prng.below(bitCount - from)];
  return [...new Set(candidates)].filter((last) => last >= from && last < bitCount);
}

function loadModel(k: Kernels, model: BitModel | SparseModel): WasmBitmap {
  const bitmap = k.allocBitmap(model.bitCount);
  const population = model.bitCount === 0 ? 0 : model.count(0, model.bitCount - 1);
  assert.is(k.bitLoad(bitmap, 0, model.toBytes()), population, `bitLoad of ${model.bitCount} bits reports the change`);
  return bitmap;
}

function bytesOf(k: Kernels, bitmap: WasmBitmap): Uint8Array {
  return k.bitWords(bitmap, 0, bitmap.wordCount);
}

/**
 * Each inner block's exact count, read through the summary: a count over [blockStart - 1,
 * blockEnd] takes the middle block's count straight from the summary.
 */
function checkBlockCounts(k: Kernels, bitmap: WasmBitmap, model: BitModel, where: string): void {
  for (let start = BLOCK_BITS; start + BLOCK_BITS < model.bitCount; start += BLOCK_BITS) {
    assert.is(k.bitCountSet(bitmap, start - 1, start + BLOCK_BITS), model.count(start - 1, start + BLOCK_BITS), `${where}: block at ${start}`);
  }
}

function kernelSuite(flavor: KernelFlavor): void {
  const s = suite(`bitmap kernels (${flavor})`);
  let k: Kernels;
  const where = (what: string) => `${flavor} seed=${SEED} ${what}`;

  s.before(async () => {
    k = await Kernels.create({ flavor });
  });
  s.after(() => k.release());

  s('get/set/clear single bits, little-endian layout', () => {
    const prng = new Prng(SEED);
    for (const bitCount of SIZES_BITS) {
      const model = new BitModel(bitCount);
      const bitmap = loadModel(k, model);
      for (const bit of edges(bitCount, prng)) {
        assert.is(k.bitSet(bitmap, bit), false, where(`set ${bit}/${bitCount} was clear`));
        assert.is(k.bitSet(bitmap, bit), true, where(`set ${bit}/${bitCount} again`));
        model.set(bit);
        if (prng.chance(0.3)) {
          assert.is(k.bitClear(bitmap, bit), true, where(`clear ${bit}/${bitCount}`));
          assert.is(k.bitClear(bitmap, bit), false, where(`clear ${bit}/${bitCount} again`));
          model.set(bit, false);
        }
      }
      assert.equal(bytesOf(k, bitmap), model.toBytes(), where(`layout of ${bitCount} bits`));
      for (let bit = 0; bit < bitCount; bit++) assert.is(k.bitGet(bitmap, bit), model.get(bit), where(`get ${bit}/${bitCount}`));
      bitmap.free();
    }
  });

  s('next set / next zero / wrapping against the model', () => {
    const prng = new Prng(SEED + 1);
    for (const bitCount of SIZES_BITS) {
      for (const density of DENSITIES) {
        const model = new BitModel(bitCount);
        model.randomize(() => prng.next(), density);
        const bitmap = loadModel(k, model);
        for (const from of edges(bitCount, prng)) {
          for (const last of lastsFor(from, bitCount, prng)) {
            const at = `${from}..${last} of ${bitCount} bits, density ${density}`;
            assert.is(k.bitNextSet(bitmap, from, last), model.next(from, last, true), where(`nextSet ${at}`));
            assert.is(k.bitNextZero(bitmap, from, last), model.next(from, last, false), where(`nextZero ${at}`));
            assert.is(k.bitNextSetWrapping(bitmap, from, last), model.nextWrapping(from, last, true), where(`nextSetWrapping ${at}`));
            assert.is(k.bitNextZeroWrapping(bitmap, from, last), model.nextWrapping(from, last, false), where(`nextZeroWrapping ${at}`));
          }
        }
        bitmap.free();
      }
    }
  });

  s('count set bits of inclusive ranges', () => {
    const prng = new Prng(SEED + 2);
    for (const bitCount of SIZES_BITS) {
      for (const density of DENSITIES) {
        const model = new BitModel(bitCount);
        model.randomize(() => prng.next(), density);
        const bitmap = loadModel(k, model);
        for (const first of edges(bitCount, prng)) {
          for (const last of lastsFor(first, bitCount, prng)) {
            assert.is(k.bitCountSet(bitmap, first, last), model.count(first, last), where(`count ${first}..${last} of ${bitCount}, density ${density}`));
          }
        }
        bitmap.free();
      }
    }
  });

  s('runs capped by maxLength and by the end', () => {
    const prng = new Prng(SEED + 3);
    for (const bitCount of SIZES_BITS) {
      for (const density of DENSITIES) {
        const model = new BitModel(bitCount);
        // Runs need clumps: draw run lengths rather than independent bits, some longer than a block.
        for (let bit = 0, value = prng.chance(0.5); bit < bitCount; value = !value) {
          const length = 1 + prng.below(prng.chance(0.5) ? 8 : prng.chance(0.8) ? 300 : 3 * BLOCK_BITS);
          model.fill(bit, Math.min(bit + length, bitCount) - 1, value ? prng.next() < density + 0.5 : prng.next() < density);
          bit += length;
        }
        const bitmap = loadModel(k, model);
        for (const from of edges(bitCount, prng)) {
          for (const last of lastsFor(from, bitCount, prng)) {
            for (const value of [true, false]) {
              for (const maxLength of [...MAX_LENGTHS, 1 + prng.below(bitCount)]) {
                const at = `from ${from} last ${last} value ${value} max ${maxLength} of ${bitCount}`;
                assert.equal(k.bitNextRun(bitmap, from, last, value, maxLength), model.nextRun(from, last, value, maxLength), where(`run ${at}`));
              }
            }
          }
        }
        bitmap.free();
      }
    }
  });

  s('set and clear ranges, counting changed bits, whole blocks and parts', () => {
    const prng = new Prng(SEED + 4);
    for (const bitCount of [...SIZES_BITS, 5 * BLOCK_BITS, 5 * BLOCK_BITS + 1, 66 * BLOCK_BITS - 3]) {
      const model = new BitModel(bitCount);
      model.randomize(() => prng.next(), 0.5);
      const bitmap = loadModel(k, model);
      const points = edges(bitCount, prng);
      for (let b = BLOCK_BITS; b < bitCount; b += BLOCK_BITS) points.push(b - 1, b);
      for (let step = 0; step < 80; step++) {
        const first = prng.chance(0.6) ? points[prng.below(points.length)]! : prng.below(bitCount);
        const lasts = [...lastsFor(first, bitCount, prng), ...points.filter((p) => p >= first)];
        const last = lasts[prng.below(lasts.length)]!;
        const value = prng.chance(0.5);
        const what = `${value ? 'set' : 'clear'} ${first}..${last} of ${bitCount}`;
        const changed = value ? k.bitSetRange(bitmap, first, last) : k.bitClearRange(bitmap, first, last);
        assert.is(changed, model.fill(first, last, value), where(`${what}: changed`));
        if (step % 8 === 0) {
          assert.equal(bytesOf(k, bitmap), model.toBytes(), where(`${what}: bytes`));
          checkBlockCounts(k, bitmap, model, where(what));
        }
        for (const from of [first, Math.max(0, first - 1), prng.below(bitCount)]) {
          assert.is(k.bitNextSet(bitmap, from, bitCount - 1), model.next(from, bitCount - 1, true), where(`${what}: nextSet ${from}`));
          assert.is(k.bitNextZero(bitmap, from, bitCount - 1), model.next(from, bitCount - 1, false), where(`${what}: nextZero ${from}`));
        }
        assert.is(k.bitCountSet(bitmap, 0, bitCount - 1), model.count(0, bitCount - 1), where(`${what}: count`));
      }
      bitmap.free();
    }
  });

  s('or / and-not of whole bitmaps, in one instance and across two, returning the population', async () => {
    const prng = new Prng(SEED + 5);
    const other = await Kernels.create({ flavor });
    for (const bitCount of [...SIZES_BITS, 3 * BLOCK_BITS, 9000 * 64 + 13]) { // the last: more than one 64 KiB staging piece
      for (const [dstDensity, srcDensity] of [[0.5, 0.5], [0.01, 0.99], [0, 1], [1, 0], [0.999, 0.001]] as const) {
        for (const andNot of [false, true]) {
          for (const srcKernels of [k, other]) {
            const dstModel = new BitModel(bitCount);
            const srcModel = new BitModel(bitCount);
            dstModel.randomize(() => prng.next(), dstDensity);
            srcModel.randomize(() => prng.next(), srcDensity);
            const dst = loadModel(k, dstModel);
            const src = loadModel(srcKernels, srcModel);
            for (let i = 0; i < bitCount; i++) dstModel.set(i, andNot ? dstModel.get(i) && !srcModel.get(i) : dstModel.get(i) || srcModel.get(i));
            const at = `${andNot ? 'andNot' : 'or'} of ${bitCount} bits ${dstDensity}/${srcDensity}${srcKernels === k ? '' : ' across instances'}`;
            const result = andNot ? k.bitAndNot(dst, src) : k.bitOr(dst, src);
            assert.is(result, dstModel.count(0, bitCount - 1), where(`${at}: population`));
            assert.equal(bytesOf(k, dst), dstModel.toBytes(), where(`${at}: bytes`));
            assert.equal(bytesOf(srcKernels, src), srcModel.toBytes(), where(`${at}: src untouched`));
            checkBlockCounts(k, dst, dstModel, where(at));
            for (const from of edges(bitCount, prng)) {
              assert.is(k.bitNextSet(dst, from, bitCount - 1), dstModel.next(from, bitCount - 1, true), where(`${at}: nextSet ${from}`));
              assert.is(k.bitNextZero(dst, from, bitCount - 1), dstModel.next(from, bitCount - 1, false), where(`${at}: nextZero ${from}`));
            }
            dst.free();
            src.free();
          }
        }
      }
    }
    const same = loadModel(k, new SparseModel(LARGE_BITS, [5, BLOCK_BITS, LARGE_BITS - 1]));
    assert.is(k.bitOr(same, same), 3, 'or with itself');
    assert.is(k.bitAndNot(same, same), 0, 'and-not with itself');
    assert.is(k.bitNextSet(same, 0, LARGE_BITS - 1), -1);
    assert.is(k.bitNextZero(same, 0, LARGE_BITS - 1), 0);
    same.free();
    other.release();
  });

  s('bitLoad of word ranges recounts their blocks: patches that fill, empty or straddle blocks', () => {
    const prng = new Prng(SEED + 6);
    for (const bitCount of [4097, 3 * BLOCK_BITS, 3 * BLOCK_BITS + 100, 66 * BLOCK_BITS + 1]) {
      const model = new BitModel(bitCount);
      model.randomize(() => prng.next(), 0.1);
      const bitmap = loadModel(k, model);
      const wordCount = bitmap.wordCount;
      for (let step = 0; step < 40; step++) {
        const blockWords = BLOCK_BITS / 64;
        const start = prng.chance(0.5) ? blockWords * prng.below(Math.ceil(wordCount / blockWords)) : prng.below(wordCount);
        const count = prng.below(Math.min(wordCount - start, 3 * blockWords) + 1);
        const fill = prng.below(4); // all ones, all zeros, random, sparse
        const patch = new Uint8Array(count * 8);
        if (fill === 0) patch.fill(0xff);
        else if (fill === 2) prng.fill(patch);
        else if (fill === 3) for (let i = 0; i < 3 && count > 0; i++) patch[prng.below(patch.length)] = 1 << prng.below(8);
        if (start + count === wordCount && bitCount % 64 !== 0) {
          for (let b = bitCount % 64; b < 64; b++) patch[patch.length - 8 + (b >>> 3)]! &= ~(1 << (b & 7));
        }
        const before = model.count(0, bitCount - 1);
        for (let i = 0; i < count * 64; i++) {
          const bit = start * 64 + i;
          if (bit < bitCount) model.set(bit, ((patch[i >>> 3]! >>> (i & 7)) & 1) === 1);
        }
        const what = `load ${count} words (fill ${fill}) at word ${start} of ${bitCount} bits`;
        assert.is(k.bitLoad(bitmap, start, patch), model.count(0, bitCount - 1) - before, where(`${what}: change`));
        assert.equal(bytesOf(k, bitmap), model.toBytes(), where(`${what}: bytes`));
        checkBlockCounts(k, bitmap, model, where(what));
        for (const from of [start * 64, Math.max(0, start * 64 - 1), 0, prng.below(bitCount)].filter((b) => b < bitCount)) {
          assert.is(k.bitNextSet(bitmap, from, bitCount - 1), model.next(from, bitCount - 1, true), where(`${what}: nextSet ${from}`));
          assert.is(k.bitNextZero(bitmap, from, bitCount - 1), model.next(from, bitCount - 1, false), where(`${what}: nextZero ${from}`));
          assert.equal(k.bitNextRun(bitmap, from, bitCount - 1, true, 2 ** 32), model.nextRun(from, bitCount - 1, true, 2 ** 32), where(`${what}: run ${from}`));
        }
      }
      bitmap.free();
    }
  });

  s('sparse and inverted bitmaps of many blocks: one bit at every block edge and word slot', () => {
    const lastBit = LARGE_BITS - 1;
    const singles: number[] = [lastBit, lastBit - 64, lastBit - BLOCK_BITS];
    for (const block of [0, 1, 2, 63, 64, 65, 127, 128, 199, 200]) {
      const base = block * BLOCK_BITS;
      for (const offset of [0, 1, 63, 64, 65, BLOCK_BITS / 2, BLOCK_BITS - 64, BLOCK_BITS - 1]) singles.push(base + offset);
    }
    for (const bit of singles.filter((b) => b < LARGE_BITS)) {
      for (const inverted of [false, true]) {
        const model = new SparseModel(LARGE_BITS, [bit], inverted);
        const bitmap = loadModel(k, model);
        const froms = [0, Math.max(0, bit - 2 * BLOCK_BITS), Math.max(0, bit - 64), bit, Math.min(lastBit, bit + 1)];
        for (const from of froms) {
          for (const last of [lastBit, Math.max(from, bit - 1), Math.max(from, bit), Math.min(lastBit, bit + BLOCK_BITS)]) {
            const at = `${from}..${last}, only bit ${bit} ${inverted ? 'clear' : 'set'} of ${LARGE_BITS}`;
            const value = !inverted;
            assert.is(value ? k.bitNextSet(bitmap, from, last) : k.bitNextZero(bitmap, from, last), model.next(from, last, value), where(`next ${at}`));
            assert.is(value ? k.bitNextZero(bitmap, from, last) : k.bitNextSet(bitmap, from, last), model.next(from, last, !value), where(`next other ${at}`));
            assert.is(k.bitCountSet(bitmap, from, last), model.count(from, last), where(`count ${at}`));
            assert.equal(k.bitNextRun(bitmap, from, last, !value, 2 ** 32), model.nextRun(from, last, !value, 2 ** 32), where(`run ${at}`));
          }
        }
        bitmap.free();
      }
    }
  });

  s('sparse bitmaps of many blocks: searches skip empty and full blocks, then edits flip them', () => {
    const prng = new Prng(SEED + 9);
    for (let round = 0; round < 12; round++) {
      const picked: number[] = [];
      for (let i = 0; i < 12; i++) picked.push(prng.below(LARGE_BITS));
      for (let i = 0; i < 4; i++) picked.push(prng.below(LARGE_BITS / BLOCK_BITS) * BLOCK_BITS + (prng.chance(0.5) ? 0 : BLOCK_BITS - 1));
      const model = new SparseModel(LARGE_BITS, picked.filter((bit) => bit < LARGE_BITS), round % 2 === 1);
      const bitmap = loadModel(k, model);
      const froms = [0, 1, 64, BLOCK_BITS - 1, BLOCK_BITS, LARGE_BITS - 1, prng.below(LARGE_BITS)];
      for (const bit of model.positions) froms.push(Math.max(0, bit - 1), bit, Math.min(LARGE_BITS - 1, bit + 1));
      for (const from of froms) {
        for (const last of [LARGE_BITS - 1, from, Math.min(LARGE_BITS - 1, from + BLOCK_BITS), from + prng.below(LARGE_BITS - from)]) {
          const at = `${from}..${last} of ${LARGE_BITS}, ${model.positions.length} ${model.inverted ? 'clear' : 'set'} bits, round ${round}`;
          assert.is(k.bitNextSet(bitmap, from, last), model.next(from, last, true), where(`nextSet ${at}`));
          assert.is(k.bitNextZero(bitmap, from, last), model.next(from, last, false), where(`nextZero ${at}`));
          const wrapped = model.next(from, last, true) >= 0 || from === 0 ? model.next(from, last, true) : model.next(0, from - 1, true);
          assert.is(k.bitNextSetWrapping(bitmap, from, last), wrapped, where(`nextSetWrapping ${at}`));
          assert.is(k.bitCountSet(bitmap, from, last), model.count(from, last), where(`count ${at}`));
          for (const value of [true, false]) {
            const maxLength = prng.chance(0.5) ? 2 ** 32 : 1 + prng.below(3 * BLOCK_BITS);
            assert.equal(k.bitNextRun(bitmap, from, last, value, maxLength), model.nextRun(from, last, value, maxLength), where(`run ${value} max ${maxLength} ${at}`));
          }
        }
      }
      // Flip the listed bits back one by one: each flip empties (or fills) a block again.
      const walk = () => {
        const found: number[] = [];
        const value = !model.inverted;
        for (let at = value ? k.bitNextSet(bitmap, 0, LARGE_BITS - 1) : k.bitNextZero(bitmap, 0, LARGE_BITS - 1); at !== -1;) {
          found.push(at);
          if (at === LARGE_BITS - 1) break;
          at = value ? k.bitNextSet(bitmap, at + 1, LARGE_BITS - 1) : k.bitNextZero(bitmap, at + 1, LARGE_BITS - 1);
        }
        return found;
      };
      const remaining = [...model.positions];
      while (remaining.length > 0) {
        const bit = remaining.splice(prng.below(remaining.length), 1)[0]!;
        assert.is(model.inverted ? k.bitSet(bitmap, bit) : k.bitClear(bitmap, bit), !model.inverted, where(`flip ${bit} round ${round}`));
        assert.equal(walk(), remaining.slice().sort((a, b) => a - b), where(`walk after flipping ${bit}, round ${round}`));
      }
      assert.is(k.bitCountSet(bitmap, 0, LARGE_BITS - 1), model.inverted ? LARGE_BITS : 0, where(`count after flips, round ${round}`));
      bitmap.free();
    }
  });

  s.run();
}

kernelSuite('scalar');
kernelSuite('simd');
