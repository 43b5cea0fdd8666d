/**
 * RegionBitmap against the model (support/bit-model.ts) on seeded random operation sequences, a
 * full-size 2^32-bit bitmap (512 MiB, released at the end) with bits near both ends, every
 * method's out-of-range error, and the facade's own guards: bad bounds are BlockErrors (never wasm
 * traps), views do not survive memory growth, the allocator reuses and zeroes memory.
 * Replay a failure with BLOCKCORE_SEED=<seed printed in the message>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RegionBitmap } from '../runtime/bitmap.ts';
import { BlockError, type BlockErrorCode } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { Kernels, type KernelFlavor } from '../runtime/wasm/kernels.ts';
import { BLOCK_BITS, BitModel, crc32cReference } from './support/bit-model.ts';

const SEED = seedFromEnv();
const TWO_32 = 2 ** 32;

function expectError(fn: () => unknown, code: BlockErrorCode, mentions?: string | number): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, BlockError, `expected BlockError ${code}, got ${String(err)}`);
    assert.is((err as BlockError).code, code, (err as Error).message);
    if (mentions !== undefined) assert.ok((err as Error).message.includes(String(mentions)), `"${(err as Error).message}" should mention ${mentions}`);
    return;
  }
  assert.unreachable(`expected BlockError ${code}`);
}

/**
 * Bytes, setCount, and what the summary decides: each inner block's count (a count over
 * [blockStart - 1, blockEnd] takes the middle block's count from the summary) and every run of
 * equal bits from 0 to the end (each run ends where a search through the summary stops).
 */
function sameAsModel(bitmap: RegionBitmap, model: BitModel, where: string): void {
  assert.is(bitmap.setCount, model.count(0, model.bitCount - 1), `${where}: setCount`);
  assert.equal(bitmap.toBytes(), model.toBytes(), `${where}: bytes`);
  for (let start = BLOCK_BITS; start + BLOCK_BITS < model.bitCount; start += BLOCK_BITS) {
    assert.is(bitmap.countSet(start - 1, start + BLOCK_BITS + 1), model.count(start - 1, start + BLOCK_BITS), `${where}: block at ${start}`);
  }
  for (let at = 0; at < model.bitCount;) {
    const value = model.get(at);
    const run = bitmap.nextRun(at, value);
    assert.equal(run, model.nextRun(at, model.bitCount - 1, value, 2 ** 32), `${where}: run of ${value} at ${at}`);
    assert.is(value ? bitmap.nextZero(at) : bitmap.nextSet(at), at + run!.length < model.bitCount ? at + run!.length : -1, `${where}: end of the run at ${at}`);
    at += run!.length;
  }
}

function modelSuite(flavor: KernelFlavor): void {
  const s = suite(`RegionBitmap (${flavor})`);

  s('random operations match the model', async () => {
    const prng = new Prng(SEED);
    // Sizes below, at and past a summary block, and one of 65 blocks plus a bit: its last block is
    // partial and its summary levels take two words.
    for (const bitCount of [1, 2, 63, 64, 65, 130, 1000, 4097, BLOCK_BITS - 1, BLOCK_BITS, BLOCK_BITS + 1, 3 * BLOCK_BITS + 5, 65 * BLOCK_BITS + 1]) {
      const bitmap = await RegionBitmap.create(bitCount, { flavor });
      const model = new BitModel(bitCount);
      const last = bitCount - 1;
      const blocks = Math.ceil(bitCount / BLOCK_BITS);
      const blockEdge = () => prng.below(blocks + 1) * BLOCK_BITS + [-1, 0, 0, 1, 63, 64][prng.below(6)]!;
      const pick = () => (prng.chance(0.3) ? [0, 63, 64, 65, last, last - 1][prng.below(6)]! : prng.chance(0.3) ? blockEdge() : prng.below(bitCount));
      const bit = () => Math.max(0, Math.min(last, pick()));
      const clamp = (x: number) => Math.max(0, Math.min(bitCount, x));
      const range = (): [number, number] => {
        if (prng.chance(0.2)) { // whole blocks, one or many
          const first = prng.below(blocks);
          return [first * BLOCK_BITS, clamp((first + 1 + prng.below(blocks - first)) * BLOCK_BITS)];
        }
        const a = clamp(pick() + (prng.chance(0.5) ? 1 : 0));
        const b = clamp(pick() + 1);
        return a <= b ? [a, b] : [b, a];
      };
      for (let step = 0; step < 400; step++) {
        const where = `seed=${SEED} ${flavor} ${bitCount} bits step ${step}`;
        const op = prng.below(12);
        if (op === 0) {
          const b = bit();
          assert.is(bitmap.set(b), !model.get(b), `${where} set ${b}`);
          model.set(b);
        } else if (op === 1) {
          const b = bit();
          assert.is(bitmap.clear(b), model.get(b), `${where} clear ${b}`);
          model.set(b, false);
        } else if (op === 2 || op === 3) {
          const [start, end] = range();
          const value = op === 2;
          const changed = value ? bitmap.setRange(start, end) : bitmap.clearRange(start, end);
          assert.is(changed, end > start ? model.fill(start, end - 1, value) : 0, `${where} ${value ? 'set' : 'clear'}Range ${start}..${end}`);
        } else if (op === 4) {
          const b = bit();
          assert.is(bitmap.get(b), model.get(b), `${where} get ${b}`);
        } else if (op === 5 || op === 6) {
          const from = prng.chance(0.1) ? bitCount : bit();
          const value = op === 5;
          const expected = from === bitCount ? -1 : model.next(from, last, value);
          assert.is(value ? bitmap.nextSet(from) : bitmap.nextZero(from), expected, `${where} next ${value} from ${from}`);
        } else if (op === 7) {
          const from = bit();
          assert.is(bitmap.nextSetWrapping(from), model.nextWrapping(from, last, true), `${where} nextSetWrapping ${from}`);
          assert.is(bitmap.nextZeroWrapping(from), model.nextWrapping(from, last, false), `${where} nextZeroWrapping ${from}`);
        } else if (op === 8) {
          const [start, end] = range();
          assert.is(bitmap.countSet(start, end), end > start ? model.count(start, end - 1) : 0, `${where} countSet ${start}..${end}`);
        } else if (op === 9) {
          const from = bit();
          const value = prng.chance(0.5);
          const maxLength = prng.chance(0.3) ? TWO_32 : 1 + prng.below(bitCount + 2);
          assert.equal(bitmap.nextRun(from, value, maxLength), model.nextRun(from, last, value, maxLength), `${where} nextRun ${from} ${value} ${maxLength}`);
        } else if (op === 10) {
          const [start, end] = range();
          const startWord = start >>> 6;
          const wordCount = Math.ceil(end / 64) - startWord;
          const fill = prng.below(3); // all ones, all zeros, random
          const bytes = fill === 2 ? prng.fill(new Uint8Array(wordCount * 8)) : new Uint8Array(wordCount * 8).fill(fill === 0 ? 0xff : 0);
          for (let i = 0; i < wordCount * 64; i++) {
            const at = startWord * 64 + i;
            if (at >= bitCount) bytes[i >>> 3]! &= ~(1 << (i & 7)); // nothing past the bitmap
            else model.set(at, ((bytes[i >>> 3]! >>> (i & 7)) & 1) === 1);
          }
          bitmap.loadBytes(startWord, bytes);
          assert.is(bitmap.setCount, model.count(0, last), `${where} loadBytes ${wordCount} words at ${startWord}: setCount`);
        } else {
          assert.is(bitmap.isFull(), model.count(0, last) === bitCount, `${where} isFull`);
          assert.is(bitmap.isEmpty(), model.count(0, last) === 0, `${where} isEmpty`);
        }
        if (step % 50 === 0) sameAsModel(bitmap, model, where);
      }
      sameAsModel(bitmap, model, `seed=${SEED} ${flavor} ${bitCount} bits end`);
      bitmap.release();
    }
  });

  s('orFrom / andNotFrom across instances, in several staging chunks', async () => {
    const prng = new Prng(SEED + 1);
    const bitCount = 3 * 2 ** 21 + 77; // 3 staging chunks of 32 Ki words, and a partial word
    const a = await RegionBitmap.create(bitCount, { flavor });
    const b = await RegionBitmap.create(bitCount, { flavor });
    const inA = new Set<number>();
    const inB = new Set<number>();
    for (let i = 0; i < 3000; i++) {
      const x = prng.below(bitCount);
      a.set(x);
      inA.add(x);
      const y = i % 100 === 0 ? bitCount - 1 - (i % 7) : prng.below(bitCount);
      b.set(y);
      inB.add(y);
    }
    for (const x of [...inA].slice(0, 500)) {
      b.set(x);
      inB.add(x);
    }
    const list = (bitmap: RegionBitmap) => {
      const found: number[] = [];
      for (let at = bitmap.nextSet(0); at !== -1; at = bitmap.nextSet(at + 1)) found.push(at);
      return found;
    };
    const sorted = (set: Set<number>) => [...set].sort((x, y) => x - y);
    a.orFrom(b);
    const union = new Set([...inA, ...inB]);
    assert.is(a.setCount, union.size, `seed=${SEED} or setCount`);
    assert.equal(list(a), sorted(union), `seed=${SEED} or bits`);
    a.andNotFrom(b);
    const difference = new Set([...union].filter((x) => !inB.has(x)));
    assert.is(a.setCount, difference.size, `seed=${SEED} andNot setCount`);
    assert.equal(list(a), sorted(difference), `seed=${SEED} andNot bits`);
    assert.is(a.countSet(), difference.size, `seed=${SEED} andNot countSet`);
    const small = await RegionBitmap.create(bitCount - 1, { flavor });
    expectError(() => a.orFrom(small), 'EINVAL');
    b.andNotFrom(b);
    assert.ok(b.isEmpty());
    small.release();
    b.release();
    expectError(() => a.orFrom(b), 'EBADF');
    a.release();
  });

  s('toBytes / loadBytes round trip and keep setCount', async () => {
    const prng = new Prng(SEED + 2);
    for (const bitCount of [1, 64, 65, 1000, 4097]) {
      const model = new BitModel(bitCount);
      model.randomize(() => prng.next(), 0.3);
      const bitmap = await RegionBitmap.create(bitCount, { flavor });
      bitmap.setRange(0, bitCount);
      bitmap.loadBytes(0, model.toBytes());
      sameAsModel(bitmap, model, `seed=${SEED} ${bitCount} loaded`);
      const wordCount = bitmap.wordCount;
      const start = prng.below(wordCount);
      const count = prng.below(wordCount - start + 1);
      assert.equal(bitmap.toBytes(start, count), model.toBytes().subarray(start * 8, (start + count) * 8));
      const patch = prng.fill(new Uint8Array(count * 8));
      if (start + count === wordCount && bitCount % 64 !== 0) {
        for (let b = bitCount % 64; b < 64; b++) patch[patch.length - 8 + (b >>> 3)]! &= ~(1 << (b & 7));
        const bad = patch.slice();
        bad[bad.length - 1]! |= 0x80; // bit 63 of the last word, past bitCount
        expectError(() => bitmap.loadBytes(start, bad), 'EINVAL', wordCount * 64 - 1);
      }
      bitmap.loadBytes(start, patch);
      const bytes = model.toBytes();
      bytes.set(patch, start * 8);
      for (let i = 0; i < bitCount; i++) model.set(i, ((bytes[i >>> 3]! >>> (i & 7)) & 1) === 1);
      sameAsModel(bitmap, model, `seed=${SEED} ${bitCount} patched ${count} words at ${start}`);
      expectError(() => bitmap.loadBytes(0, new Uint8Array(7)), 'EINVAL');
      bitmap.release();
    }
  });

  s.run();
}

modelSuite('simd');
modelSuite('scalar');

const full = suite('RegionBitmap 2^32 bits');

full('finds and counts bits near 0 and near 2^32 - 1, fills and empties it all', async () => {
  const bitmap = await RegionBitmap.create(TWO_32);
  try {
    assert.is(bitmap.byteLength, 512 * 2 ** 20);
    const last = TWO_32 - 1;
    const bits = [0, 1, 63, 64, 2 ** 31 - 1, 2 ** 31, last - 64, last - 63, last - 1, last];
    for (const bit of bits) assert.ok(bitmap.set(bit), `set ${bit}`);
    assert.is(bitmap.countSet(), bits.length);
    assert.is(bitmap.countSet(0, TWO_32), bits.length);
    assert.is(bitmap.countSet(2 ** 31, TWO_32), 5);
    const found: number[] = [];
    for (let at = bitmap.nextSet(0); at !== -1; at = bitmap.nextSet(at + 1)) found.push(at);
    assert.equal(found, bits);
    assert.is(bitmap.nextSet(last), last);
    assert.is(bitmap.nextSet(TWO_32), -1);
    assert.is(bitmap.nextZero(last - 1), -1);
    assert.is(bitmap.nextSetWrapping(last - 62), last - 1);
    bitmap.clear(last);
    bitmap.clear(last - 1);
    assert.is(bitmap.nextSetWrapping(last - 62), 0);
    assert.is(bitmap.nextZeroWrapping(last - 1), last - 1);
    assert.equal(bitmap.nextRun(2, true), { start: 63, length: 2 });
    assert.equal(bitmap.nextRun(last - 62, false), { start: last - 62, length: 63 });
    assert.equal(bitmap.nextRun(65, false), { start: 65, length: 2 ** 31 - 1 - 65 });
    assert.is(bitmap.setRange(last - 99, TWO_32), 98);
    assert.is(bitmap.countSet(last - 200, TWO_32), 100);
    assert.is(bitmap.setCount, 106);
    assert.is(bitmap.setRange(0, TWO_32), TWO_32 - 106);
    assert.ok(bitmap.isFull());
    assert.is(bitmap.countSet(), TWO_32);
    assert.is(bitmap.nextZero(0), -1);
    assert.is(bitmap.nextZeroWrapping(12345), -1);
    assert.equal(bitmap.nextRun(0, true), { start: 0, length: TWO_32 });
    assert.equal(bitmap.nextRun(1, true, TWO_32), { start: 1, length: TWO_32 - 1 });
    assert.equal(bitmap.nextRun(5, true, 2 ** 32 - 7), { start: 5, length: 2 ** 32 - 7 });
    assert.is(bitmap.nextRun(0, false), null);
    assert.is(bitmap.clearRange(1, TWO_32), TWO_32 - 1);
    assert.is(bitmap.setCount, 1);
    assert.equal(bitmap.nextRun(0, false), { start: 1, length: TWO_32 - 1 });
    expectError(() => bitmap.get(TWO_32), 'ERANGE', TWO_32);
  } finally {
    bitmap.release();
  }
  assert.ok(bitmap.released);
  expectError(() => bitmap.get(0), 'EBADF');
});

full('searches run the whole summary level (2^32 bits: 4096 level words, each 2^20 bits)', async () => {
  const bitmap = await RegionBitmap.create(TWO_32);
  try {
    // Pairs on both sides of a level word boundary (a multiple of 2^20), then a bit in the next
    // level word but one: searches between them skip 2^29 bits of empty blocks.
    const bits: number[] = [];
    for (let k = 1; k < 8; k++) bits.push(k * 2 ** 29 - 1, k * 2 ** 29, k * 2 ** 29 + 2 ** 21);
    bits.push(TWO_32 - 1);
    for (const bit of bits) bitmap.set(bit);
    const found: number[] = [];
    for (let at = bitmap.nextSet(0); at !== -1; at = bitmap.nextSet(at + 1)) found.push(at);
    assert.equal(found, bits);
    for (let i = 1; i < bits.length; i++) {
      assert.is(bitmap.countSet(bits[i - 1]! + 1, bits[i]!), 0, `nothing between ${bits[i - 1]} and ${bits[i]}`);
      const gap = bits[i]! - bits[i - 1]! - 1;
      assert.equal(bitmap.nextRun(bits[i - 1]! + 1, false), gap === 0 ? { start: bits[i]! + 1, length: bits[i + 1]! - bits[i]! - 1 } : { start: bits[i - 1]! + 1, length: gap });
    }
    assert.is(bitmap.nextSetWrapping(TWO_32 - 1), TWO_32 - 1);
    bitmap.clear(TWO_32 - 1);
    assert.is(bitmap.nextSetWrapping(bits[bits.length - 2]! + 1), bits[0]);
    assert.is(bitmap.countSet(), bits.length - 1);
  } finally {
    bitmap.release();
  }
});

full.run();

const errors = suite('RegionBitmap and Kernels errors');

errors('every RegionBitmap method rejects positions outside the bitmap with ERANGE', async () => {
  const bitCount = 1000;
  const bitmap = await RegionBitmap.create(bitCount);
  const past = [bitCount, bitCount + 1, 2 ** 32, 2 ** 40];
  for (const bit of past) {
    expectError(() => bitmap.get(bit), 'ERANGE', bit);
    expectError(() => bitmap.set(bit), 'ERANGE', bit);
    expectError(() => bitmap.clear(bit), 'ERANGE', bit);
  }
  for (const end of past.slice(1)) {
    expectError(() => bitmap.setRange(0, end), 'ERANGE', end);
    expectError(() => bitmap.clearRange(5, end), 'ERANGE', end);
    expectError(() => bitmap.countSet(0, end), 'ERANGE', end);
    expectError(() => bitmap.setRange(end, end), 'ERANGE', end);
    expectError(() => bitmap.nextSet(end), 'ERANGE', end);
    expectError(() => bitmap.nextZero(end), 'ERANGE', end);
    expectError(() => bitmap.nextSetWrapping(end), 'ERANGE', end);
    expectError(() => bitmap.nextZeroWrapping(end), 'ERANGE', end);
    expectError(() => bitmap.nextRun(end, true), 'ERANGE', end);
  }
  expectError(() => bitmap.toBytes(0, bitmap.wordCount + 1), 'ERANGE');
  expectError(() => bitmap.toBytes(bitmap.wordCount + 1, 0), 'ERANGE');
  expectError(() => bitmap.loadBytes(bitmap.wordCount, new Uint8Array(8)), 'ERANGE');
  for (const bad of [-1, 1.5, Number.NaN]) {
    expectError(() => bitmap.get(bad), 'EINVAL');
    expectError(() => bitmap.setRange(bad, 10), 'EINVAL');
    expectError(() => bitmap.nextSet(bad), 'EINVAL');
  }
  expectError(() => bitmap.setRange(10, 5), 'EINVAL');
  expectError(() => bitmap.nextRun(0, true, 0), 'EINVAL');
  expectError(() => bitmap.nextRun(0, true, 2 ** 32 + 1), 'EINVAL');
  assert.is(bitmap.setRange(1000, 1000), 0, 'empty range at the end is a no-op');
  assert.is(bitmap.nextSet(1000), -1);
  assert.is(bitmap.nextRun(1000, false), null);
  assert.ok(bitmap.isEmpty());
  bitmap.release();
  expectError(() => bitmap.nextSet(0), 'EBADF');
  const empty = await RegionBitmap.create(0);
  assert.is(empty.nextSet(0), -1);
  assert.is(empty.nextZeroWrapping(0), -1);
  assert.is(empty.countSet(), 0);
  assert.ok(empty.isFull() && empty.isEmpty());
  expectError(() => empty.get(0), 'ERANGE', 0);
  empty.release();
  let caught: unknown;
  await RegionBitmap.create(2 ** 32 + 1).catch((err) => (caught = err));
  assert.instance(caught, BlockError);
  assert.is((caught as BlockError).code, 'ERANGE');
});

errors('facade bounds are BlockErrors, never wasm traps', async () => {
  const k = await Kernels.create();
  const other = await Kernels.create();
  const a = k.alloc(64);
  const b = k.alloc(100);
  expectError(() => k.copy(a, 0, b, 0, 65), 'ERANGE');
  expectError(() => k.copy(a, 60, b, 0, 5), 'ERANGE', 'offset 60');
  expectError(() => k.copy(a, 0, b, 96, 5), 'ERANGE', 'offset 96');
  expectError(() => k.copy(a, -1, b, 0, 1), 'EINVAL');
  expectError(() => k.copy(a, 0, b, 0, 1.5), 'EINVAL');
  expectError(() => k.isZero(a, 0, 65), 'ERANGE');
  expectError(() => k.isZero(new Uint8Array(4), 3, 2), 'ERANGE');
  expectError(() => k.isZero(new Uint8Array(4), 5), 'ERANGE', 'offset 5');
  expectError(() => k.crc32c(a, 0, 65), 'ERANGE', 'offset 65');
  expectError(() => k.crc32c(b, 0, 99, 2), 'ERANGE');
  expectError(() => k.crc32c(b, -1), 'EINVAL');
  expectError(() => k.crc32c(b, 2 ** 32), 'EINVAL');
  const bits = k.allocBitmap(500); // 8 words, the last one partly past the bits
  const otherBits = other.allocBitmap(500);
  expectError(() => k.bitGet(bits, 500), 'ERANGE', 500);
  expectError(() => k.bitSet(bits, 2 ** 32), 'ERANGE');
  expectError(() => k.bitNextSet(bits, 0, 500), 'ERANGE', 500); // inside the last word, past bitCount
  expectError(() => k.bitNextSet(bits, 5, 4), 'EINVAL');
  expectError(() => k.bitSetRange(bits, 10, 511), 'ERANGE', 511);
  expectError(() => k.bitNextRun(bits, 0, 10, true, 0), 'EINVAL');
  expectError(() => k.bitOr(bits, k.allocBitmap(501)), 'EINVAL', 501);
  expectError(() => other.bitGet(bits, 0), 'EINVAL');
  expectError(() => k.bitWords(bits, 0, 9), 'ERANGE');
  expectError(() => k.bitLoad(bits, 0, new Uint8Array(7)), 'EINVAL');
  expectError(() => k.bitLoad(bits, 7, new Uint8Array(16)), 'ERANGE');
  const pastEnd = new Uint8Array(8);
  pastEnd[7] = 0x80; // bit 63 of word 7: bit 511
  expectError(() => k.bitLoad(bits, 7, pastEnd), 'EINVAL', 511);
  expectError(() => k.allocBitmap(2 ** 32 + 1), 'EINVAL');
  expectError(() => k.allocBitmap(-1), 'EINVAL');
  assert.is(k.bitOr(bits, otherBits), 0, 'or across instances');
  otherBits.free();
  assert.ok(otherBits.freed);
  expectError(() => k.bitOr(bits, otherBits), 'EBADF');
  expectError(() => other.bitGet(otherBits, 0), 'EBADF');
  expectError(() => other.copy(a, 0, a, 0, 1), 'EINVAL');
  expectError(() => k.alloc(-1), 'EINVAL');
  expectError(() => k.alloc(2 ** 32), 'ERANGE');
  b.free();
  expectError(() => b.view(), 'EBADF');
  expectError(() => k.copy(a, 0, b, 0, 1), 'EBADF');
  expectError(() => b.free(), 'EBADF');
  k.release();
  expectError(() => a.view(), 'EBADF');
  expectError(() => k.alloc(1), 'EBADF');
  other.release();
});

errors('views do not survive memory growth; buffers do', async () => {
  const prng = new Prng(SEED + 3);
  const k = await Kernels.create();
  const a = k.alloc(4096);
  const pattern = prng.fill(new Uint8Array(4096));
  const before = a.view();
  before.set(pattern);
  const memoryBefore = k.memoryBytes;
  const big = k.alloc(64 * 2 ** 20); // more than is free: memory grows, memory.buffer is replaced
  assert.ok(k.memoryBytes >= memoryBefore + 64 * 2 ** 20, 'memory grew');
  assert.is(before.byteLength, 0, 'the old view is detached, not silently stale');
  assert.equal(a.view(), pattern, 'contents survive growth');
  assert.is(k.crc32c(a), crc32cReference(pattern));
  assert.ok(k.isZero(big), 'fresh memory is zero');
  k.copy(big, 64 * 2 ** 20 - 4096, a, 0, 4096);
  assert.equal(big.view().subarray(64 * 2 ** 20 - 4096), pattern);
  k.release();
});

errors('allocator: no overlap, reuse after free comes back zeroed', async () => {
  const prng = new Prng(SEED + 4);
  const k = await Kernels.create();
  const live = new Map<ReturnType<Kernels['alloc']>, number>();
  for (let step = 0; step < 400; step++) {
    if (live.size > 0 && prng.chance(0.45)) {
      const victims = [...live.keys()];
      const victim = victims[prng.below(victims.length)]!;
      victim.free();
      live.delete(victim);
      continue;
    }
    const lengthBytes = prng.chance(0.1) ? prng.below(300_000) : prng.below(3000);
    const buffer = k.alloc(lengthBytes);
    assert.ok(k.isZero(buffer), `seed=${SEED} step ${step}: ${lengthBytes} bytes come back zeroed`);
    const mark = 1 + (step % 255);
    buffer.view().fill(mark);
    live.set(buffer, mark);
  }
  for (const [buffer, mark] of live) {
    assert.ok(buffer.view().every((byte) => byte === mark), `seed=${SEED}: a live buffer was overwritten`);
  }
  k.release();
});

errors.run();
