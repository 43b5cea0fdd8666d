/**
 * Call cost of the kernels' component (dist/blockcore-core.wasm through its jco bindings,
 * test/support/core-component.ts) against the plain module through its facade
 * (runtime/wasm/kernels.ts, runtime/wasm/frame.ts), on this runtime. Both sides check every
 * argument (the facade in TypeScript, the component inside), run the same kernels (SIMD build)
 * and take JavaScript values in and out, so the difference is what the component model's
 * bindings add to a call: lowering and lifting through the canonical ABI, handle tables, and the
 * task bookkeeping jco 1.35 wraps around every export call.
 *   bitmap-get, -set, -next-set, -count-set, -set-range   one call on a 2^20-bit bitmap at a
 *                  rotating seeded position (next-set on a sparse bitmap, ranges of 4096 bits);
 *   is-zero-4k, crc32c-64, crc32c-4k, xxh64-4k            JavaScript bytes in (the facade copies
 *                  them into its scratch, the bindings into a block from cabi_realloc);
 *   copy-64        64 bytes: the facade between two of its buffers (no bytes cross), the
 *                  component between two lists, returning the new destination list;
 *   decode-32      32 NBD request headers: the facade's table (read back as bench/frame.ts
 *                  does) vs the component's list of records (two bigints each);
 *   encode-reply   one NBD simple reply header.
 * Contenders interleave A B A B for ROUNDS rounds after WARM_UP_ROUNDS; each sample repeats the
 * call for about SAMPLE_MS of this process's CPU time; medians. Prints `component <kernel>: ...`,
 * then `ratio component call <kernel> plain/component (<runtime>): <component rate / plain rate>`
 * (above 1 = component faster, so expect below 1) and `result component call <kernel> ...: N us`
 * per call for each side and their difference (the component's overhead).
 * Run: npm run bench -- component   (BLOCKCORE_BENCH_ROUNDS overrides the rounds, default 15)
 */
import { loadAdapter } from '../runtime/adapter/index.ts';
import { Prng } from '../runtime/prng.ts';
import { NbdLimits, NbdRequestBatch, RECORD_WORDS } from '../runtime/wasm/frame.ts';
import { Kernels } from '../runtime/wasm/kernels.ts';
import { componentBytes, instantiateCoreComponent } from '../test/support/core-component.ts';
import { cpuSampler, interleave, median, ratioLine } from './stats.ts';

const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 15);
const SAMPLE_MS = 20;
/** Bun's engine tiers a hot call up later than V8: three rounds before the measured ones. */
const WARM_UP_ROUNDS = 3;
const SEED = 0xc0de;
const BITMAP_BITS = 1 << 20;
const RANGE_BITS = 4096;
const POSITIONS = 1024;
const HEADERS = 32;
const KiB = 1024;

const adapter = await loadAdapter();
const rt = adapter.name;

const sampler = (op: () => void) => cpuSampler(op, SAMPLE_MS);

async function race(kernel: string, plain: () => void, component: () => void): Promise<void> {
  const samplers = { plain: sampler(plain), component: sampler(component) };
  await interleave(WARM_UP_ROUNDS, samplers);
  const rates = await interleave(ROUNDS, samplers);
  const plainRate = median(rates.plain);
  const componentRate = median(rates.component);
  const plainUs = 1e6 / plainRate;
  const componentUs = 1e6 / componentRate;
  console.log(`component ${kernel}: plain ${plainUs.toFixed(3)} us, component ${componentUs.toFixed(3)} us per call`);
  console.log(ratioLine(`component call ${kernel} plain/component (${rt})`, componentRate, plainRate));
  console.log(`result component call ${kernel} plain: ${plainUs.toFixed(3)} us`);
  console.log(`result component call ${kernel} component: ${componentUs.toFixed(3)} us`);
  console.log(`result component call ${kernel} overhead: ${(componentUs - plainUs).toFixed(3)} us`);
}

const prng = new Prng(SEED);
const kernels = await Kernels.create({ flavor: 'simd' });
const core = await instantiateCoreComponent();
console.log(`component bench on ${rt} ${adapter.version}: dist/blockcore-core.wasm ${await componentBytes()} bytes, ${ROUNDS} rounds (+${WARM_UP_ROUNDS} warm-up), medians`);

let sink = 0;
const positions = Array.from({ length: POSITIONS }, () => prng.below(BITMAP_BITS - RANGE_BITS));
let at = 0;
const next = () => positions[(at = (at + 1) & (POSITIONS - 1))]!;

// ---- bitmap (sparse: one set bit per ~4096) ----
const plainBitmap = kernels.allocBitmap(BITMAP_BITS);
const componentBitmap = core.bitmap.Bitmap.create(BITMAP_BITS);
for (let i = 0; i < BITMAP_BITS / 4096; i++) {
  const bit = prng.below(BITMAP_BITS);
  kernels.bitSet(plainBitmap, bit);
  componentBitmap.set(bit);
}
const last = BITMAP_BITS - 1;
await race('bitmap-get', () => { sink += kernels.bitGet(plainBitmap, next()) ? 1 : 0; }, () => { sink += componentBitmap.get(next()) ? 1 : 0; });
await race('bitmap-set', () => { sink += kernels.bitSet(plainBitmap, next()) ? 1 : 0; }, () => { sink += componentBitmap.set(next()) ? 1 : 0; });
// Undo the sets (both sides set the same bits) so next-set still walks a sparse bitmap.
kernels.bitClearRange(plainBitmap, 0, last);
componentBitmap.clearRange(0, last);
for (let i = 0; i < BITMAP_BITS / 4096; i++) {
  const bit = prng.below(BITMAP_BITS);
  kernels.bitSet(plainBitmap, bit);
  componentBitmap.set(bit);
}
await race('bitmap-next-set', () => { sink += kernels.bitNextSet(plainBitmap, next(), last); }, () => { sink += componentBitmap.nextSet(next(), last) ?? -1; });
await race('bitmap-count-set', () => {
  const first = next();
  sink += kernels.bitCountSet(plainBitmap, first, first + RANGE_BITS - 1);
}, () => {
  const first = next();
  sink += componentBitmap.countSet(first, first + RANGE_BITS - 1);
});
await race('bitmap-set-range', () => {
  const first = next();
  sink += kernels.bitSetRange(plainBitmap, first, first + RANGE_BITS - 1) + kernels.bitClearRange(plainBitmap, first, first + RANGE_BITS - 1);
}, () => {
  const first = next();
  sink += componentBitmap.setRange(first, first + RANGE_BITS - 1) + componentBitmap.clearRange(first, first + RANGE_BITS - 1);
});
console.log('(bitmap-set-range times a set-range and a clear-range: two calls)');

// ---- bytes and digests (JavaScript bytes) ----
const zeros4k = new Uint8Array(4 * KiB);
const bytes64 = prng.fill(new Uint8Array(64));
const bytes4k = prng.fill(new Uint8Array(4 * KiB));
await race('is-zero-4k', () => { sink += kernels.isZero(zeros4k) ? 1 : 0; }, () => { sink += core.bytes.isZero(zeros4k) ? 1 : 0; });
await race('crc32c-64', () => { sink += kernels.crc32c(bytes64); }, () => { sink += core.digest.crc32c(0, bytes64); });
await race('crc32c-4k', () => { sink += kernels.crc32c(bytes4k); }, () => { sink += core.digest.crc32c(0, bytes4k); });
await race('xxh64-4k', () => { sink += Number(kernels.xxh64(bytes4k) & 1n); }, () => { sink += Number(core.digest.xxh64(0n, bytes4k) & 1n); });
const plainDst = kernels.alloc(64);
const plainSrc = kernels.alloc(64);
const dst64 = new Uint8Array(64);
await race('copy-64', () => { kernels.copy(plainDst, 0, plainSrc, 0, 64); }, () => { sink += core.bytes.copy(dst64, 0, bytes64, 0, 64).length; });

// ---- frames ----
const limits = new NbdLimits(64 * 1024 * 1024 * KiB, 512, 1 | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 6), true, true, 32 * 1024 * 1024);
const componentLimits = {
  sizeBytes: BigInt(limits.sizeBytes), minimumBlockBytes: limits.minimumBlockBytes, transmissionFlags: limits.transmissionFlags,
  structuredReplies: true, baseAllocation: true, maxBlockBytes: limits.maxBlockBytes,
};
const batch = await NbdRequestBatch.create({ capacityRecords: HEADERS });
const chunk = new Uint8Array(HEADERS * 28);
for (let i = 0; i < HEADERS; i++) {
  const header = batch.encodeRequest(0, i % 8 === 5 ? 3 : 0, 0, prng.nextU32(), i % 8 === 5 ? 0 : 4096 * prng.below(1 << 20), i % 8 === 5 ? 0 : 4096);
  chunk.set(header, i * 28);
}
if (batch.decode(chunk, 0, limits) !== HEADERS || core.frame.decodeNbdRequests(chunk, componentLimits, HEADERS).requests.length !== HEADERS) {
  throw new Error('the bench chunk does not decode to 32 requests');
}
await race('decode-32', () => {
  const count = batch.decode(chunk, 0, limits);
  const records = batch.records;
  for (let i = 0; i < count; i++) sink += records[i * RECORD_WORDS + 7]! + records[i * RECORD_WORDS]!;
}, () => {
  const { requests } = core.frame.decodeNbdRequests(chunk, componentLimits, HEADERS);
  for (const request of requests) sink += request.lengthBytes + (request.verdict === 'ok' ? 0 : 1);
});
await race('encode-reply', () => { sink += batch.encodeSimpleReply(0, 1, prng.nextU32()).length; }, () => {
  sink += core.frame.encodeNbdSimpleReply(0, (1n << 32n) | BigInt(prng.nextU32())).length;
});

if (sink === 0.5) console.log('unreachable: keeps the results alive');
