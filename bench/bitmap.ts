/**
 * Bitmap kernels vs plain TypeScript over a 128 MiB sparse bitmap (2^30 bits, one set bit per
 * ~1 MiB of bitmap at seeded positions), the shape of a dirty log over 4 TiB of 4 KiB regions:
 *   find-next-set  walk every set bit with nextSet(at + 1) from 0 to the end (scans all 128 MiB)
 *   popcount       countSet over the whole bitmap
 *   copy           64 MiB region copy: Kernels.copy (memory.copy) vs Uint8Array.set
 * Every page of every bitmap is written before timing: pages never written all map the kernel's
 * one zero page, and scanning those is a cache-resident loop, not a pass over memory. That makes
 * these memory-bound numbers (one core's read bandwidth, ~11-14 GB/s here), so the same walk is
 * also timed over a 1 MiB bitmap that stays in L2 (`-l2` lines): the compute-bound comparison.
 *
 * Contenders: RegionBitmap on the SIMD build, on the scalar build, and the fastest TypeScript we
 * could write (measured against simpler loops and BigUint64Array on all three runtimes): Int32Array
 * read as four interleaved streams like the kernels, Math.clz32 for the bit, SWAR popcount that
 * skips zero blocks. Interleaved A B C A B C ... for ROUNDS rounds after a warm-up round; each
 * sample repeats the operation until >= SAMPLE_BYTES are processed; medians of the samples.
 * Prints `bitmap <what> <contender>: N GB/s` (GB = 1e9 bytes), then `ratio <what>: <ours/peer>`
 * (above 1 = ours faster).
 * Run: npx tsx bench/bitmap.ts | npx bun bench/bitmap.ts | npx deno run -A bench/bitmap.ts
 * BLOCKCORE_BENCH_ROUNDS overrides the rounds (default 7).
 */
import { loadAdapter } from '../runtime/adapter/index.ts';
import { RegionBitmap } from '../runtime/bitmap.ts';
import { Prng } from '../runtime/prng.ts';
import { Kernels } from '../runtime/wasm/kernels.ts';
import { interleave, median, ratioLine } from './stats.ts';

const MIB = 1024 * 1024;
const BITMAP_BYTES = 128 * MIB;
const SMALL_BITMAP_BYTES = 1 * MIB;
const SET_BIT_SPACING_BYTES = 1 * MIB; // one set bit per ~1 MiB of bitmap
const SMALL_SET_BIT_SPACING_BYTES = 8 * 1024;
const COPY_BYTES = 64 * MIB;
const SAMPLE_BYTES = 512 * MIB;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 7);
const SEED = 0xb17;
const GB = 1e9;
/** TypeScript streams: four interleaved streams of 4096 Int32 words (16 KiB), like the kernels. */
const TS_STREAM_WORDS = 4096;
const TS_CHUNK_WORDS = 4 * TS_STREAM_WORDS;

const adapter = await loadAdapter();

interface Subject {
  bitCount: number;
  setBits: number[];
  positionSum: number;
  simd: RegionBitmap;
  scalar: RegionBitmap;
  words: Int32Array;
}

/** The same sparse bitmap three times: RegionBitmap (SIMD), RegionBitmap (scalar), JS memory. */
async function subject(byteLength: number, spacingBytes: number, seed: number): Promise<Subject> {
  const bitCount = byteLength * 8;
  const prng = new Prng(seed);
  const setBits: number[] = [];
  for (let base = 0; base < bitCount; base += spacingBytes * 8) setBits.push(base + prng.below(spacingBytes * 8));
  const simd = await RegionBitmap.create(bitCount, { flavor: 'simd' });
  const scalar = await RegionBitmap.create(bitCount, { flavor: 'scalar' });
  const bytes = new Uint8Array(byteLength);
  for (const bitmap of [simd, scalar]) {
    bitmap.setRange(0, bitCount); // write every page (see the note on top)
    bitmap.clearRange(0, bitCount);
  }
  bytes.fill(1).fill(0);
  for (const bit of setBits) {
    simd.set(bit);
    scalar.set(bit);
    bytes[bit >>> 3]! |= 1 << (bit & 7);
  }
  const positionSum = setBits.reduce((sum, bit) => sum + bit, 0);
  return { bitCount, setBits, positionSum, simd, scalar, words: new Int32Array(bytes.buffer) };
}

function lowestBit(word: number, x: number): number {
  return word * 32 + (31 - Math.clz32(x & -x));
}

/** First non-zero Int32 word in [i, end), one stream, 8 words a step; end if none. */
function tsSequential(words: Int32Array, i: number, end: number): number {
  while (i + 8 <= end && (words[i]! | words[i + 1]! | words[i + 2]! | words[i + 3]! | words[i + 4]! | words[i + 5]! | words[i + 6]! | words[i + 7]!) === 0) i += 8;
  while (i < end && words[i] === 0) i++;
  return i;
}

/** Any non-zero word in the chunk at c, read as four interleaved streams. */
function tsChunkAny(words: Int32Array, c: number): boolean {
  const s = TS_STREAM_WORDS;
  for (let i = c; i < c + s; i += 2) {
    if ((words[i]! | words[i + 1]! | words[i + s]! | words[i + s + 1]! | words[i + 2 * s]! | words[i + 2 * s + 1]! | words[i + 3 * s]! | words[i + 3 * s + 1]!) !== 0) return true;
  }
  return false;
}

/** Plain TypeScript: first set bit in [fromBit, bitCount), or -1 (bitCount = words.length * 32). */
function tsNextSet(words: Int32Array, fromBit: number): number {
  const endWord = words.length;
  let i = fromBit >>> 5;
  if (i >= endWord) return -1;
  const first = words[i]! & (-1 << (fromBit & 31));
  if (first !== 0) return lowestBit(i, first);
  i++;
  const boundary = Math.min(endWord, Math.ceil(i / TS_CHUNK_WORDS) * TS_CHUNK_WORDS);
  i = tsSequential(words, i, boundary);
  if (i < boundary) return lowestBit(i, words[i]!);
  while (endWord - i >= TS_CHUNK_WORDS && !tsChunkAny(words, i)) i += TS_CHUNK_WORDS;
  i = tsSequential(words, i, endWord);
  return i < endWord ? lowestBit(i, words[i]!) : -1;
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Plain TypeScript popcount: four interleaved streams, zero pairs skipped, SWAR for the rest. */
function tsPopcount(words: Int32Array): number {
  const s = TS_STREAM_WORDS;
  let total = 0;
  let c = 0;
  for (; c + TS_CHUNK_WORDS <= words.length; c += TS_CHUNK_WORDS) {
    for (let i = c; i < c + s; i += 2) {
      if ((words[i]! | words[i + 1]! | words[i + s]! | words[i + s + 1]! | words[i + 2 * s]! | words[i + 2 * s + 1]! | words[i + 3 * s]! | words[i + 3 * s + 1]!) === 0) continue;
      for (let k = 0; k < 4; k++) total += popcount32(words[i + k * s]!) + popcount32(words[i + k * s + 1]!);
    }
  }
  for (; c < words.length; c++) total += popcount32(words[c]!);
  return total;
}

/** Runs `pass` (which processes `bytesPerPass`) until SAMPLE_BYTES are done; returns GB/s. */
function sample(bytesPerPass: number, pass: () => void): number {
  const passes = Math.max(1, Math.ceil(SAMPLE_BYTES / bytesPerPass));
  const startMs = performance.now();
  for (let i = 0; i < passes; i++) pass();
  const elapsedMs = performance.now() - startMs;
  return (passes * bytesPerPass) / GB / (elapsedMs / 1000);
}

function checkWalk(what: string, s: Subject, count: number, sum: number): void {
  if (count !== s.setBits.length || sum !== s.positionSum) throw new Error(`${what} found ${count} bits (sum ${sum})`);
}

function walk(s: Subject, bitmap: RegionBitmap): void {
  let count = 0;
  let sum = 0;
  for (let at = bitmap.nextSet(0); at !== -1; at = bitmap.nextSet(at + 1)) {
    count++;
    sum += at;
  }
  checkWalk(`find-next-set ${bitmap === s.simd ? 'simd' : 'scalar'}`, s, count, sum);
}

function walkTs(s: Subject): void {
  let count = 0;
  let sum = 0;
  for (let at = tsNextSet(s.words, 0); at !== -1; at = tsNextSet(s.words, at + 1)) {
    count++;
    sum += at;
  }
  checkWalk('find-next-set ts', s, count, sum);
}

function checkCount(what: string, s: Subject, count: number): void {
  if (count !== s.setBits.length) throw new Error(`${what} counted ${count}, expected ${s.setBits.length}`);
}

function findContenders(s: Subject) {
  const bytes = s.bitCount / 8;
  return {
    simd: () => sample(bytes, () => walk(s, s.simd)),
    scalar: () => sample(bytes, () => walk(s, s.scalar)),
    ts: () => sample(bytes, () => walkTs(s)),
  };
}

function report<K extends string>(what: string, results: Record<K, number[]>): Record<K, number> {
  const medians = {} as Record<K, number>;
  for (const name of Object.keys(results) as K[]) {
    const rates = results[name];
    medians[name] = median(rates);
    console.log(`bitmap ${what} ${name}: ${medians[name].toFixed(2)} GB/s  (min ${Math.min(...rates).toFixed(2)}, max ${Math.max(...rates).toFixed(2)})`);
  }
  return medians;
}

async function measure<K extends string>(what: string, contenders: Record<K, () => number>): Promise<Record<K, number>> {
  await interleave(1, contenders);
  return report(what, await interleave(ROUNDS, contenders));
}

const big = await subject(BITMAP_BYTES, SET_BIT_SPACING_BYTES, SEED);
const small = await subject(SMALL_BITMAP_BYTES, SMALL_SET_BIT_SPACING_BYTES, SEED + 1);

// Copy: 64 MiB between two buffers of one Kernels instance vs between two JS Uint8Arrays.
const kernels = await Kernels.create();
const copySrc = kernels.alloc(COPY_BYTES);
const copyDst = kernels.alloc(COPY_BYTES);
new Prng(SEED + 2).fill(copySrc.view());
copyDst.view().fill(1); // write every page before timing
const jsSrc = copySrc.view().slice();
const jsDst = new Uint8Array(COPY_BYTES).fill(1);

console.log(
  `bitmap bench on ${adapter.name} ${adapter.version} (kernels: ${kernels.flavor}): ${BITMAP_BYTES / MIB} MiB bitmap with ` +
    `${big.setBits.length} set bits, ${SMALL_BITMAP_BYTES / MIB} MiB L2 bitmap with ${small.setBits.length}, ${ROUNDS} rounds (+1 warm-up), medians`,
);

const find = await measure('find-next-set', findContenders(big));
const pop = await measure('popcount', {
  simd: () => sample(BITMAP_BYTES, () => checkCount('popcount simd', big, big.simd.countSet(0, big.bitCount))),
  scalar: () => sample(BITMAP_BYTES, () => checkCount('popcount scalar', big, big.scalar.countSet(0, big.bitCount))),
  ts: () => sample(BITMAP_BYTES, () => checkCount('popcount ts', big, tsPopcount(big.words))),
});
const copy = await measure('copy', {
  facade: () => sample(COPY_BYTES, () => kernels.copy(copyDst, 0, copySrc, 0, COPY_BYTES)),
  'Uint8Array.set': () => sample(COPY_BYTES, () => jsDst.set(jsSrc)),
});
const findL2 = await measure('find-next-set-l2', findContenders(small));

if (kernels.crc32c(copyDst) !== kernels.crc32c(copySrc) || kernels.crc32c(jsDst) !== kernels.crc32c(copySrc)) throw new Error('copies differ');
for (const s of [big, small]) {
  s.simd.release();
  s.scalar.release();
}
kernels.release();

const rt = adapter.name;
console.log(ratioLine(`find-next-set simd/ts (${rt})`, find.simd, find.ts));
console.log(ratioLine(`find-next-set simd/scalar (${rt})`, find.simd, find.scalar));
console.log(ratioLine(`popcount simd/ts (${rt})`, pop.simd, pop.ts));
console.log(ratioLine(`popcount simd/scalar (${rt})`, pop.simd, pop.scalar));
console.log(ratioLine(`copy facade/Uint8Array.set (${rt})`, copy.facade, copy['Uint8Array.set']));
console.log(ratioLine(`find-next-set-l2 simd/ts (${rt})`, findL2.simd, findL2.ts));
console.log(ratioLine(`find-next-set-l2 simd/scalar (${rt})`, findL2.simd, findL2.scalar));
