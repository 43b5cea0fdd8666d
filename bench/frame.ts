/**
 * Frames and digests: the WASM kernels against the best TypeScript we have, on this runtime.
 *   frame-decode      32 NBD request headers (the shape of fio at queue depth 32: 4 KiB reads,
 *                     with a few flushes, trims, zeroes, block status) in one receive chunk,
 *                     decoded and checked into a table: NbdRequestBatch (copy in, one call) vs a
 *                     DataView loop doing the same work (test/support/nbd-frame-model.ts);
 *   frame-decode-nbd  the same chunk through the NBD server's own decoders, as a connection
 *                     reads it (server/nbd/request-codec.ts: 'wasm' vs 'ts', each yielding a checked
 *                     request object per header): the line the adapters' nbdRequestDecoder follows;
 *   digest-*          CRC32C and XXH64 over 256 KiB and 4 KiB: the kernels on bytes in WASM memory
 *                     (default and scalar builds), the kernel on JS bytes (copied into WASM memory
 *                     in 64 KiB pieces, what a caller with a socket chunk pays), and the fastest
 *                     JavaScript CRC32C (slice-by-8, test/support/digests.ts); XXH64 through
 *                     xxh64Into (two u32 halves: a bigint result costs ~0.1-0.3 us on Node 20).
 * Contenders run interleaved A B A B for ROUNDS rounds after a warm-up round; each sample repeats
 * the operation for about SAMPLE_MS of this process's CPU time (process.cpuUsage, on all three
 * runtimes: the machine is shared, and wall time would count other processes' turns); medians. Prints `frame ...: N ns per 32 headers`, `digest
 * ...: N GB/s` (GB = 1e9 bytes), then `ratio <what> (<runtime>): <ours/peer>`, above 1 = WASM faster.
 * Run: npm run bench -- frame   (BLOCKCORE_BENCH_ROUNDS overrides the rounds, default 15)
 */
import { loadAdapter } from '../runtime/adapter/index.ts';
import { Prng } from '../runtime/prng.ts';
import { NbdLimits, NbdRequestBatch, RECORD_WORDS } from '../runtime/wasm/frame.ts';
import { Kernels } from '../runtime/wasm/kernels.ts';
import * as nbd from '../server/nbd/constants.ts';
import type { Session } from '../server/nbd/request-check.ts';
import { encodeRequest, loadRequestDecoders, type NbdRequest, type RequestDecoder } from '../server/nbd/request-codec.ts';
import { crc32cSliceBy8 } from '../test/support/digests.ts';
import { modelDecode } from '../test/support/nbd-frame-model.ts';
import { cpuSampler, interleave, median, ratioLine } from './stats.ts';

const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 15);
const SAMPLE_MS = 20;
const HEADERS = 32;
const SEED = 0xf4a;
const GB = 1e9;
const KiB = 1024;

const adapter = await loadAdapter();
const rt = adapter.name;

const sampler = (op: () => void) => cpuSampler(op, SAMPLE_MS);

async function measure<K extends string>(contenders: Record<K, () => void>): Promise<Record<K, number>> {
  const samplers = {} as Record<K, () => number>;
  for (const name of Object.keys(contenders) as K[]) samplers[name] = sampler(contenders[name]);
  await interleave(1, samplers);
  const results = await interleave(ROUNDS, samplers);
  const medians = {} as Record<K, number>;
  for (const name of Object.keys(results) as K[]) medians[name] = median(results[name]);
  return medians;
}

// ---- frames ----

const session: Session = {
  sizeBytes: 64 * 1024 * 1024 * KiB, minimumBlockBytes: 512,
  transmissionFlags: nbd.NBD_FLAG_HAS_FLAGS | nbd.NBD_FLAG_SEND_FLUSH | nbd.NBD_FLAG_SEND_FUA | nbd.NBD_FLAG_SEND_TRIM | nbd.NBD_FLAG_SEND_WRITE_ZEROES | nbd.NBD_FLAG_SEND_DF,
  structuredReplies: true, baseAllocation: true,
};
const limits = new NbdLimits(session.sizeBytes, session.minimumBlockBytes, session.transmissionFlags, true, true, nbd.MAX_BLOCK_BYTES);
const prng = new Prng(SEED);
const chunk = (() => {
  const pieces: Uint8Array[] = [];
  for (let i = 0; i < HEADERS; i++) {
    const type = i % 16 === 5 ? nbd.NBD_CMD_FLUSH : i % 16 === 9 ? nbd.NBD_CMD_TRIM : i % 16 === 13 ? nbd.NBD_CMD_WRITE_ZEROES : i === 30 ? nbd.NBD_CMD_BLOCK_STATUS : nbd.NBD_CMD_READ;
    const flush = type === nbd.NBD_CMD_FLUSH;
    pieces.push(encodeRequest({ flags: 0, type, handleHigh: 0, handleLow: prng.nextU32(), offsetBytes: flush ? 0 : 4096 * prng.below(1 << 24), lengthBytes: flush ? 0 : 4096 }));
  }
  return Uint8Array.from(Buffer.concat(pieces));
})();

const batch = await NbdRequestBatch.create({ capacityRecords: HEADERS });
const modelRecords = new Uint32Array(HEADERS * RECORD_WORDS);
let sink = 0;

/** Sum of lengths and verdicts: what a consumer reads from each record, so neither side skips work. */
function consume(records: Uint32Array, count: number): void {
  for (let i = 0; i < count; i++) sink += records[i * RECORD_WORDS + 7]! + records[i * RECORD_WORDS]!;
}

function checkTables(): void {
  const count = batch.decode(chunk, 0, limits);
  const model = modelDecode(chunk, 0, batch.windowBytes, HEADERS, limits, modelRecords);
  if (count !== HEADERS || model.count !== HEADERS) throw new Error(`decoded ${count} and ${model.count} of ${HEADERS} headers`);
  for (let i = 0; i < HEADERS * RECORD_WORDS; i++) if (batch.records[i] !== modelRecords[i]) throw new Error(`records differ at word ${i}`);
  for (let i = 0; i < count; i++) if (batch.verdict(i) !== 'ok') throw new Error(`header ${i} refused: ${batch.verdict(i)}`);
}
checkTables();

const decoders = { wasm: (await loadRequestDecoders('wasm'))(), ts: (await loadRequestDecoders('ts'))() };
/** Where a connection's requests go (dispatched, held by the device): they outlive the read. */
const dispatched: NbdRequest[] = new Array(HEADERS);
/**
 * A connection's reading: one decode (and check) per header, walking the chunk, keeping each
 * request. One copy of the loop per decoder (a server uses one kind, so its call sites see one).
 */
function readAllWasm(): void {
  const decoder: RequestDecoder = decoders.wasm;
  for (let i = 0, at = 0; i < HEADERS; i++, at += nbd.REQUEST_HEADER_BYTES) {
    const request = decoder.decode(chunk, at, session) as NbdRequest;
    if (decoder.check(request, session) !== null) throw new Error('refused');
    dispatched[i] = request;
  }
  sink += dispatched[HEADERS - 1]!.lengthBytes;
}
function readAllTs(): void {
  const decoder: RequestDecoder = decoders.ts;
  for (let i = 0, at = 0; i < HEADERS; i++, at += nbd.REQUEST_HEADER_BYTES) {
    const request = decoder.decode(chunk, at, session) as NbdRequest;
    if (decoder.check(request, session) !== null) throw new Error('refused');
    dispatched[i] = request;
  }
  sink += dispatched[HEADERS - 1]!.lengthBytes;
}

const simd = await Kernels.create();
const scalar = await Kernels.create({ flavor: 'scalar' });
console.log(`frame bench on ${rt} ${adapter.version} (kernels: ${simd.flavor}), ${ROUNDS} rounds (+1 warm-up), medians`);

const decode = await measure({
  wasm: () => consume(batch.records, batch.decode(chunk, 0, limits)),
  ts: () => consume(modelRecords, modelDecode(chunk, 0, batch.windowBytes, HEADERS, limits, modelRecords).count),
});
const decodeNbd = await measure({ wasm: readAllWasm, ts: readAllTs });
for (const [what, rates] of [['frame-decode', decode], ['frame-decode-nbd', decodeNbd]] as const) {
  for (const [name, rate] of Object.entries(rates)) console.log(`frame ${what} ${name}: ${(1e9 / rate).toFixed(0)} ns per ${HEADERS} headers (CPU)`);
}

// ---- digests ----

const digestRates: Record<string, Record<string, number>> = {};
const halves = new Uint32Array(2);
for (const sizeBytes of [256 * KiB, 4 * KiB]) {
  const js = new Prng(SEED + sizeBytes).fill(new Uint8Array(sizeBytes));
  const inSimd = simd.alloc(sizeBytes);
  const inScalar = scalar.alloc(sizeBytes);
  inSimd.view().set(js);
  inScalar.view().set(js);
  const expected = crc32cSliceBy8(js);
  if (simd.crc32c(inSimd) !== expected || scalar.crc32c(inScalar) !== expected || simd.crc32c(js) !== expected) throw new Error('crc32c results differ');
  if (simd.xxh64(inSimd) !== scalar.xxh64(inScalar)) throw new Error('xxh64 results differ');
  const rates = await measure({
    [`crc32c wasm ${simd.flavor}`]: () => { sink += simd.crc32c(inSimd); },
    'crc32c wasm scalar': () => { sink += scalar.crc32c(inScalar); },
    'crc32c wasm (js bytes)': () => { sink += simd.crc32c(js); },
    'crc32c js slice-by-8': () => { sink += crc32cSliceBy8(js); },
    [`xxh64 wasm ${simd.flavor}`]: () => { simd.xxh64Into(halves, inSimd); sink += halves[1]!; },
    'xxh64 wasm scalar': () => { scalar.xxh64Into(halves, inScalar); sink += halves[1]!; },
  });
  const label = `${sizeBytes / KiB}KiB`;
  digestRates[label] = rates;
  for (const [name, rate] of Object.entries(rates)) console.log(`digest ${name} ${label}: ${(rate * sizeBytes / GB).toFixed(2)} GB/s`);
  inSimd.free();
  inScalar.free();
}
if (sink === 0) throw new Error('nothing was computed');

const big = digestRates['256KiB']!;
const small = digestRates['4KiB']!;
const kernelName = `crc32c wasm ${simd.flavor}`;
console.log(ratioLine(`frame-decode wasm/ts (${rt})`, decode.wasm, decode.ts));
console.log(ratioLine(`frame-decode-nbd wasm/ts (${rt})`, decodeNbd.wasm, decodeNbd.ts));
console.log(ratioLine(`digest-crc32c wasm/js (${rt})`, big[kernelName]!, big['crc32c js slice-by-8']!));
console.log(ratioLine(`digest-crc32c-js-bytes wasm/js (${rt})`, big['crc32c wasm (js bytes)']!, big['crc32c js slice-by-8']!));
console.log(ratioLine(`digest-crc32c-4k wasm/js (${rt})`, small[kernelName]!, small['crc32c js slice-by-8']!));
