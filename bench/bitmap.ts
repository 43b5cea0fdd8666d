/**
 * Bitmap kernels vs plain TypeScript and vs the flat kernels the summary replaced, over a 128 MiB
 * sparse bitmap (2^30 bits, one set bit per ~1 MiB of bitmap at seeded positions), the shape of a
 * dirty log over 4 TiB of 4 KiB regions:
 *   find-next-set   walk every set bit with nextSet(at + 1) from 0 to the end
 *   popcount        countSet over the whole bitmap
 *   copy            64 MiB region copy: Kernels.copy (memory.copy) vs Uint8Array.set
 *   set-clear       set then clear 2^20 bits, at random positions and in order (set-clear-seq)
 * Every page of every bitmap is written before timing: pages never written all map the kernel's
 * one zero page, and scanning those is a cache-resident loop, not a pass over memory. A flat scan
 * is then memory-bound (one core's read bandwidth, ~11-14 GB/s here), so the same walk is also
 * timed over a 1 MiB bitmap that stays in L2 (`-l2` lines). Rates are bitmap bytes covered per
 * second (GB = 1e9 bytes): a walk that skips blocks through the summary covers more than it reads.
 *
 * Contenders: `summary` is RegionBitmap on the SIMD build (`summary-scalar` on the scalar build);
 * `flat` is the flat SIMD kernels the summary replaced, compiled at start (bench/peers/
 * flat-bitmap.ts), called straight from the loop; `ts` is the fastest TypeScript we could write
 * (measured against simpler loops and BigUint64Array on all three runtimes): Int32Array read as
 * four interleaved streams like the kernels, Math.clz32 for the bit, SWAR popcount that skips
 * zero blocks. set-clear compares what a caller pays: RegionBitmap.set/clear against the same
 * JavaScript over the flat kernel as it was before the summary (FlatRegionBitmap); the `-kernel`
 * pair calls both kernels straight from the loop (what the summary adds inside wasm, the
 * strictest view, since no JavaScript dilutes it). Interleaved A B C A B C ... for ROUNDS rounds after a warm-up round;
 * each sample repeats the operation until >= SAMPLE_BYTES are covered and >= SAMPLE_MS passed;
 * medians of the samples. Prints `bitmap <what> <contender>: N GB/s` (or Mops/s), then
 * `ratio <what> <ours>/<peer> (<runtime>): X` (above 1 = ours faster).
 * Run: npm run bench -- bitmap. BLOCKCORE_BENCH_ROUNDS overrides the rounds (default 7).
 */
import { loadAdapter } from '../runtime/adapter/index.ts';
import { RegionBitmap } from '../runtime/bitmap.ts';
import { Prng } from '../runtime/prng.ts';
import { Kernels } from '../runtime/wasm/kernels.ts';
import { loadKernelModule } from '../runtime/wasm/load.ts';
import { FlatBitmap, FlatRegionBitmap } from './peers/flat-bitmap.ts';
import { interleave, median, ratioLine } from './stats.ts';

const MIB = 1024 * 1024;
const BITMAP_BYTES = 128 * MIB;
const SMALL_BITMAP_BYTES = 1 * MIB;
const SET_BIT_SPACING_BYTES = 1 * MIB; // one set bit per ~1 MiB of bitmap
const SMALL_SET_BIT_SPACING_BYTES = 8 * 1024;
const COPY_BYTES = 64 * MIB;
const SAMPLE_BYTES = 512 * MIB;
const SAMPLE_MS = 40;
const SET_CLEAR_BITS = 2 ** 20;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 7);
const SEED = 0xb17;
const GB = 1e9;
const PAGE_BYTES = 65536;
/** TypeScript streams: four interleaved streams of 4096 Int32 words (16 KiB), like the kernels. */
const TS_STREAM_WORDS = 4096;
const TS_CHUNK_WORDS = 4 * TS_STREAM_WORDS;

const adapter = await loadAdapter();

interface Subject {
  bitCount: number;
  setBits: number[];
  positionSum: number;
  summary: RegionBitmap;
  scalar: RegionBitmap;
  flat: FlatBitmap;
  words: Int32Array;
}

/** The same sparse bitmap four times: RegionBitmap (SIMD, scalar), the flat peer, JS memory. */
async function subject(byteLength: number, spacingBytes: number, seed: number): Promise<Subject> {
  const bitCount = byteLength * 8;
  const prng = new Prng(seed);
  const setBits: number[] = [];
  for (let base = 0; base < bitCount; base += spacingBytes * 8) setBits.push(base + prng.below(spacingBytes * 8));
  const summary = await RegionBitmap.create(bitCount, { flavor: 'simd' });
  const scalar = await RegionBitmap.create(bitCount, { flavor: 'scalar' });
  const flat = await FlatBitmap.create(bitCount);
  const bytes = new Uint8Array(byteLength);
  for (const bitmap of [summary, scalar]) {
    bitmap.setRange(0, bitCount); // write every page (see the note on top)
    bitmap.clearRange(0, bitCount);
  }
  flat.bytes().fill(1).fill(0);
  bytes.fill(1).fill(0);
  for (const bit of setBits) {
    summary.set(bit);
    scalar.set(bit);
    flat.exports.bitmap_set(flat.ptr, bit);
    bytes[bit >>> 3]! |= 1 << (bit & 7);
  }
  const positionSum = setBits.reduce((sum, bit) => sum + bit, 0);
  return { bitCount, setBits, positionSum, summary, scalar, flat, words: new Int32Array(bytes.buffer) };
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

/**
 * Runs `pass` (which covers `unitsPerPass` bytes, or operations when `scale` is not GB) until
 * SAMPLE_MS passed and, for bytes, SAMPLE_BYTES were covered; returns units per second / `scale`.
 */
function sample(unitsPerPass: number, scale: number, pass: () => void): number {
  const minPasses = scale === GB ? Math.max(1, Math.ceil(SAMPLE_BYTES / unitsPerPass)) : 1;
  const startMs = performance.now();
  let passes = 0;
  let elapsedMs = 0;
  while (passes < minPasses || elapsedMs < SAMPLE_MS) {
    pass();
    passes++;
    elapsedMs = performance.now() - startMs;
  }
  return (passes * unitsPerPass) / scale / (elapsedMs / 1000);
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
  checkWalk(`find-next-set ${bitmap === s.summary ? 'summary' : 'summary-scalar'}`, s, count, sum);
}

function walkFlat(s: Subject): void {
  let count = 0;
  let sum = 0;
  for (let at = s.flat.nextSet(0); at !== -1; at = s.flat.nextSet(at + 1)) {
    count++;
    sum += at;
  }
  checkWalk('find-next-set flat', s, count, sum);
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
    summary: () => sample(bytes, GB, () => walk(s, s.summary)),
    'summary-scalar': () => sample(bytes, GB, () => walk(s, s.scalar)),
    flat: () => sample(bytes, GB, () => walkFlat(s)),
    ts: () => sample(bytes, GB, () => walkTs(s)),
  };
}

interface SummaryExports {
  readonly memory: WebAssembly.Memory;
  heap_base(): number;
  bitmap_layout_bytes(wordCount: number): number;
  bitmap_init(bm: number, wordCount: number): void;
  bitmap_set(bm: number, bit: number): number;
  bitmap_clear(bm: number, bit: number): number;
  bitmap_set_range(bm: number, firstBit: number, lastBit: number): number;
  bitmap_clear_range(bm: number, firstBit: number, lastBit: number): number;
}

/** Our SIMD kernels in an instance of their own, one summarized bitmap at heap_base, for calls straight from a loop. */
async function rawSummary(bitCount: number): Promise<{ ex: SummaryExports; bm: number }> {
  const { module } = await loadKernelModule('simd');
  const ex = new WebAssembly.Instance(module, {}).exports as unknown as SummaryExports;
  const bm = Math.ceil(ex.heap_base() / 64) * 64;
  const needBytes = bm + ex.bitmap_layout_bytes(bitCount / 64) - ex.memory.buffer.byteLength;
  if (needBytes > 0) ex.memory.grow(Math.ceil(needBytes / PAGE_BYTES));
  ex.bitmap_init(bm, bitCount / 64);
  ex.bitmap_set_range(bm, 0, bitCount - 1); // write every page
  ex.bitmap_clear_range(bm, 0, bitCount - 1);
  return { ex, bm };
}

/** Set then clear every listed bit (clear in the subject bitmaps, so each pass leaves them as they were). */
function setClearContenders(s: Subject, positions: Uint32Array, raw: { ex: SummaryExports; bm: number }) {
  const ops = positions.length * 2;
  const { ex, bm } = raw;
  const flat = s.flat.exports;
  const ptr = s.flat.ptr;
  const summary = s.summary;
  const flatApi = new FlatRegionBitmap(s.flat);
  warmFlatApi(flatApi);
  return {
    summary: () => sample(ops, 1e6, () => {
      for (let i = 0; i < positions.length; i++) summary.set(positions[i]!);
      for (let i = 0; i < positions.length; i++) summary.clear(positions[i]!);
    }),
    flat: () => sample(ops, 1e6, () => {
      for (let i = 0; i < positions.length; i++) flatApi.set(positions[i]!);
      for (let i = 0; i < positions.length; i++) flatApi.clear(positions[i]!);
    }),
    'summary-kernel': () => sample(ops, 1e6, () => {
      for (let i = 0; i < positions.length; i++) ex.bitmap_set(bm, positions[i]!);
      for (let i = 0; i < positions.length; i++) ex.bitmap_clear(bm, positions[i]!);
    }),
    'flat-kernel': () => sample(ops, 1e6, () => {
      for (let i = 0; i < positions.length; i++) flat.bitmap_set(ptr, positions[i]!);
      for (let i = 0; i < positions.length; i++) flat.bitmap_clear(ptr, positions[i]!);
    }),
  };
}

/** RegionBitmaps made before set-clear runs: subject() makes a SIMD and a scalar one for each of two subjects. */
const REGION_BITMAP_INSTANCES = 4;
const flatTwins: FlatRegionBitmap[] = [];

/**
 * Calls set/clear through FlatRegionBitmap on as many kernel instances as RegionBitmap's call
 * sites saw (each RegionBitmap has its own), so the engine's call sites are as polymorphic on both
 * sides. With one instance only, the peer ran 30-40% faster on Deno than RegionBitmap, and within
 * 4% of it when each ran alone: that measured the call sites, not the summary.
 */
function warmFlatApi(main: FlatRegionBitmap): void {
  for (const flat of [main, ...flatTwins]) {
    flat.set(1);
    flat.clear(1);
  }
}

/** SET_CLEAR_BITS positions that are clear in `s`: random, or in order from a random start. */
function setClearPositions(s: Subject, prng: Prng, sequential: boolean): Uint32Array {
  const taken = new Set(s.setBits);
  const positions = new Uint32Array(SET_CLEAR_BITS);
  let next = prng.below(s.bitCount - 2 * SET_CLEAR_BITS);
  for (let i = 0; i < positions.length; i++) {
    let bit = sequential ? next++ : prng.below(s.bitCount);
    while (taken.has(bit)) bit = sequential ? next++ : prng.below(s.bitCount);
    positions[i] = bit;
  }
  return positions;
}

function report<K extends string>(what: string, unit: string, results: Record<K, number[]>): Record<K, number> {
  const medians = {} as Record<K, number>;
  for (const name of Object.keys(results) as K[]) {
    const rates = results[name];
    medians[name] = median(rates);
    console.log(`bitmap ${what} ${name}: ${medians[name].toFixed(2)} ${unit}  (min ${Math.min(...rates).toFixed(2)}, max ${Math.max(...rates).toFixed(2)})`);
  }
  return medians;
}

async function measure<K extends string>(what: string, unit: string, contenders: Record<K, () => number>): Promise<Record<K, number>> {
  await interleave(1, contenders);
  return report(what, unit, await interleave(ROUNDS, contenders));
}

const big = await subject(BITMAP_BYTES, SET_BIT_SPACING_BYTES, SEED);
const small = await subject(SMALL_BITMAP_BYTES, SMALL_SET_BIT_SPACING_BYTES, SEED + 1);
const raw = await rawSummary(big.bitCount);
for (let i = 1; i < REGION_BITMAP_INSTANCES; i++) flatTwins.push(new FlatRegionBitmap(await FlatBitmap.create(64 * 1024)));

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

const find = await measure('find-next-set', 'GB/s', findContenders(big));
const pop = await measure('popcount', 'GB/s', {
  summary: () => sample(BITMAP_BYTES, GB, () => checkCount('popcount summary', big, big.summary.countSet(0, big.bitCount))),
  ts: () => sample(BITMAP_BYTES, GB, () => checkCount('popcount ts', big, tsPopcount(big.words))),
});
const copy = await measure('copy', 'GB/s', {
  facade: () => sample(COPY_BYTES, GB, () => kernels.copy(copyDst, 0, copySrc, 0, COPY_BYTES)),
  'Uint8Array.set': () => sample(COPY_BYTES, GB, () => jsDst.set(jsSrc)),
});
const findL2 = await measure('find-next-set-l2', 'GB/s', findContenders(small));
const prng = new Prng(SEED + 3);
const setClear = await measure('set-clear', 'Mops/s', setClearContenders(big, setClearPositions(big, prng, false), raw));
const setClearSeq = await measure('set-clear-seq', 'Mops/s', setClearContenders(big, setClearPositions(big, prng, true), raw));

if (kernels.crc32c(copyDst) !== kernels.crc32c(copySrc) || kernels.crc32c(jsDst) !== kernels.crc32c(copySrc)) throw new Error('copies differ');
walk(big, big.summary); // set-clear left the subjects as they were
walkFlat(big);
for (const s of [big, small]) {
  s.summary.release();
  s.scalar.release();
}
kernels.release();

const rt = adapter.name;
console.log(ratioLine(`find-next-set summary/ts (${rt})`, find.summary, find.ts));
console.log(ratioLine(`find-next-set summary/flat (${rt})`, find.summary, find.flat));
console.log(ratioLine(`find-next-set summary-scalar/ts (${rt})`, find['summary-scalar'], find.ts));
console.log(ratioLine(`set-clear summary/flat (${rt})`, setClear.summary, setClear.flat));
console.log(ratioLine(`set-clear-seq summary/flat (${rt})`, setClearSeq.summary, setClearSeq.flat));
console.log(ratioLine(`set-clear-kernel summary/flat (${rt})`, setClear['summary-kernel'], setClear['flat-kernel']));
console.log(ratioLine(`set-clear-seq-kernel summary/flat (${rt})`, setClearSeq['summary-kernel'], setClearSeq['flat-kernel']));
console.log(ratioLine(`popcount summary/ts (${rt})`, pop.summary, pop.ts));
console.log(ratioLine(`copy facade/Uint8Array.set (${rt})`, copy.facade, copy['Uint8Array.set']));
console.log(ratioLine(`find-next-set-l2 summary/ts (${rt})`, findL2.summary, findL2.ts));
console.log(ratioLine(`find-next-set-l2 summary/flat (${rt})`, findL2.summary, findL2.flat));
