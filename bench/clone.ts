/**
 * Clone engine vs real peers, same process run, same data, same disk, interleaved, medians.
 *
 *   hydrate   copy a seeded-random source file (2 GiB; zeros would let sparse detection cheat)
 *             into a new file, counted until the copy is durable:
 *               ours      create sparse destination + metadata, openCloneFromTable, wait for
 *                         'hydration-complete', then `await clone.flush()` (commit: fdatasync of
 *                         destination, metadata writes, fdatasyncs). Three tables, all timed: the
 *                         default table (4 KiB regions, no core args: threshold and batch chosen
 *                         adaptively), and 4 KiB and 64 KiB regions each with
 *                         hydration_batch_size 1024 hydration_threshold 4096; the default table
 *                         gets its own ratio lines, the fixed ones use the faster, named in the line.
 *               cp        `cp src dst` (coreutils: copy_file_range), then fdatasync(dst) here
 *               qemu-img  `qemu-img convert -t writeback -f raw -O raw src dst`: cache mode
 *                         writeback makes qemu-img fdatasync dst before it exits (its default
 *                         for convert, `unsafe`, never syncs)
 *             One warm-up round (puts the source in the page cache for everyone and checks every
 *             copy with cmp), then ROUNDS rounds; the destination is deleted after every run.
 *   regions   per-region cost of the walker: a REGIONS_MIB clone of 4 KiB regions with
 *             hydration_threshold 1 hydration_batch_size 1 (one region per copy, the kernel's
 *             default table) over page-cache-resident data; regions hydrated per second, over
 *             the whole hydration or its first REGIONS_MAX_MS. No peer: a result line.
 *   read      4 KiB random reads of the fully hydrated clone vs the same reads on its destination
 *             file opened as a FileDevice (the floor: the clone reads through to it).
 *   latency   4 KiB random reads arriving open loop (one every ARRIVAL_INTERVAL_MS, latency from
 *             the arrival time, so time spent waiting behind a blocked event loop counts) on a
 *             clone while background hydration runs vs on the same clone with hydration disabled
 *             (message disable_hydration, then suspend/resume so no copy is left running).
 *             A fresh clone each round, so every busy phase sees hydration in progress. Tables:
 *             64 KiB regions default (adaptive) and fixed (batch 1024 threshold 4096), 4 KiB fixed.
 *             Ours against ours: printed as result lines (hydrating / idle latency, lower is
 *             better; targets p50 <= 1.5, p99 <= 2), not as ratio lines.
 *   commit    4 TiB clone (sparse files, 4 KiB regions = 2^30 regions, no_hydration): write one
 *             region, time `await clone.flush()`; no peer, reported in ms.
 * Prints per-contender medians, then `ratio <what> (<runtime>): <ours/peer>`, above 1 = ours
 * better, and the result lines.
 * Run: npx tsx bench/clone.ts | npx bun bench/clone.ts | npx deno run -A bench/clone.ts
 * Env: BLOCKCORE_BENCH_CLONE_MIB source size (default 2048), BLOCKCORE_BENCH_ROUNDS (default 5),
 * BLOCKCORE_BENCH_CLONE_SKIP comma list of parts to skip (hydrate,default,regions,read,latency,commit;
 * `default` skips the default-table contender, which takes minutes where the default is one
 * region per copy).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setImmediate as yieldMacrotask } from 'node:timers';
import { loadAdapter } from '../runtime/adapter/index.ts';
import type { CloneDevice } from '../runtime/clone/clone-device.ts';
import { METADATA_BLOCK_BYTES, metadataBlocksFor } from '../runtime/clone/metadata-format.ts';
import { openCloneFromTable } from '../runtime/clone/open-table.ts';
import { FileStore } from '../runtime/devices/file-store.ts';
import { SECTOR_BYTES } from '../runtime/clone/table.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';
import { interleave, median, ratioLine } from './stats.ts';

const MIB = 1024 * 1024;
const TIB = 1024 * 1024 * MIB;
const SOURCE_BYTES = Number(process.env.BLOCKCORE_BENCH_CLONE_MIB ?? 2048) * MIB;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 5);
const SKIP = new Set((process.env.BLOCKCORE_BENCH_CLONE_SKIP ?? '').split(',').filter(Boolean));
const FILL_CHUNK_BYTES = 4 * MIB;
const READ_BYTES = 4096;
const READ_COUNT = 30_000;
const READ_ROUNDS = 7;
const LATENCY_READS_PER_PHASE = 2000;
/** A busy phase cut shorter than this by the end of hydration is dropped. */
const LATENCY_READS_PER_PHASE_MIN = 500;
const ARRIVAL_INTERVAL_MS = 0.2;
const LATENCY_ROUNDS = 5;
const COMMIT_DEVICE_BYTES = 4 * TIB;
const COMMIT_REGION_SECTORS = 8;
const COMMIT_SAMPLES = 9;
const SOURCE_SEED = 0xc10e;
const OFFSET_SEED = 0xb10c;
const MB = 1e6;
const REGIONS_MIB = Number(process.env.BLOCKCORE_BENCH_CLONE_REGIONS_MIB ?? 512);
const REGIONS_MAX_MS = 10_000;
const REGIONS_ROUNDS = 3;
interface HydrateConfig {
  label: string;
  regionSectors: number;
  coreArgs: string;
}
const FIXED_ARGS = '4 hydration_batch_size 1024 hydration_threshold 4096';
/** The default table: no core args, so threshold and batch size are the clone's to choose. */
const DEFAULT_4K: HydrateConfig = { label: 'default-table-4KiB-regions', regionSectors: 8, coreArgs: '' };
/** The fixed tables timed for hydration: [label, region size in sectors, core args]. */
const HYDRATE_CONFIGS: HydrateConfig[] = [
  { label: '4KiB-regions', regionSectors: 8, coreArgs: FIXED_ARGS },
  { label: '64KiB-regions', regionSectors: 128, coreArgs: FIXED_ARGS },
];
const LATENCY_CONFIGS: HydrateConfig[] = [
  { label: 'default-table-64KiB-regions', regionSectors: 128, coreArgs: '' },
  { label: '64KiB-regions', regionSectors: 128, coreArgs: FIXED_ARGS },
  { label: '4KiB-regions', regionSectors: 8, coreArgs: FIXED_ARGS },
];

if (SOURCE_BYTES <= 0 || SOURCE_BYTES % (128 * SECTOR_BYTES) !== 0) throw new Error(`BLOCKCORE_BENCH_CLONE_MIB gives ${SOURCE_BYTES} bytes: must be a positive number of MiB`);

const adapter = await loadAdapter();
const rt = adapter.name;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-clone-'));
const at = (name: string) => path.join(dataDir, name);
const ratios: string[] = [];
/** Ours-against-ours results (no peer), printed after the ratios. */
const results: string[] = [];

function rm(...names: string[]): void {
  for (const name of names) fs.rmSync(at(name), { force: true });
}

/** A sparse file of `sizeBytes` (what a user creates before opening a clone). */
function createSparse(name: string, sizeBytes: number): void {
  const fd = fs.openSync(at(name), 'wx');
  try {
    fs.ftruncateSync(fd, sizeBytes);
  } finally {
    fs.closeSync(fd);
  }
}

function metadataBytesFor(sizeBytes: number, regionSectors: number): number {
  return metadataBlocksFor(Math.ceil(sizeBytes / (regionSectors * SECTOR_BYTES))) * METADATA_BLOCK_BYTES;
}

/** The seeded source: xorshift32 words (seeded by Prng per chunk; fast enough for GiBs). */
function writeSource(name: string, sizeBytes: number): void {
  const prng = new Prng(SOURCE_SEED);
  const chunk = new Uint8Array(FILL_CHUNK_BYTES);
  const words = new Uint32Array(chunk.buffer);
  const fd = fs.openSync(at(name), 'wx');
  try {
    for (let offsetBytes = 0; offsetBytes < sizeBytes; offsetBytes += chunk.length) {
      let x = prng.nextU32() | 1;
      for (let i = 0; i < words.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        words[i] = x;
      }
      const piece = chunk.subarray(0, Math.min(chunk.length, sizeBytes - offsetBytes));
      for (let done = 0; done < piece.length; ) done += fs.writeSync(fd, piece, done, piece.length - done, offsetBytes + done);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}`))));
  });
}

function fdatasyncFile(name: string): Promise<void> {
  const fd = fs.openSync(at(name), 'r+');
  return new Promise<void>((resolve, reject) => fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()))).finally(() => fs.closeSync(fd));
}

function sameFiles(a: string, b: string): boolean {
  return spawnSync('cmp', ['-s', at(a), at(b)]).status === 0;
}

function hydrateTable(regionSectors: number, coreArgs: string, features = '0'): string {
  return `clone meta dst.img src.img ${regionSectors} ${features} ${coreArgs}`.trimEnd();
}

/** Opens a clone over fresh sparse destination and metadata files. */
async function openFresh(table: string, sizeBytes: number, regionSectors: number): Promise<CloneDevice> {
  rm('dst.img', 'meta');
  createSparse('dst.img', sizeBytes);
  createSparse('meta', metadataBytesFor(sizeBytes, regionSectors));
  return openCloneFromTable(new FileStore(dataDir), table);
}

function report(what: string, unit: string, samples: number[], digits = 0): number {
  const value = median(samples);
  const fmt = (x: number) => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
  console.log(`clone ${what}: ${fmt(value)} ${unit}  (min ${fmt(Math.min(...samples))}, max ${fmt(Math.max(...samples))})`);
  return value;
}

// ---- hydrate: ours vs cp vs qemu-img, until durable ----

let verify = false;
/** Where the time of ours goes: until 'hydration-complete', then the durable flush. */
const phasesMs: Record<string, { hydrate: number[]; flush: number[] }> = {};
let hydratedConfig: HydrateConfig = HYDRATE_CONFIGS[1]!;

/** Times `copy` (src.img to dst.img); `after`, which it may return, runs once the clock stopped. */
async function timed(name: string, copy: () => Promise<(() => Promise<void>) | void>): Promise<number> {
  rm('dst.img', 'meta');
  const startMs = performance.now();
  const after = await copy();
  const elapsedMs = performance.now() - startMs;
  if (after) await after();
  if (verify && !sameFiles('src.img', 'dst.img')) throw new Error(`${name}: destination differs from the source`);
  rm('dst.img', 'meta');
  return SOURCE_BYTES / MB / (elapsedMs / 1000);
}

function oursContender(config: HydrateConfig) {
  return () =>
    timed(config.label, async () => {
      createSparse('dst.img', SOURCE_BYTES);
      createSparse('meta', metadataBytesFor(SOURCE_BYTES, config.regionSectors));
      const startMs = performance.now();
      const clone = await openCloneFromTable(new FileStore(dataDir), hydrateTable(config.regionSectors, config.coreArgs));
      await clone.whenHydrated();
      const hydratedMs = performance.now();
      await clone.flush();
      const phases = (phasesMs[config.label] ??= { hydrate: [], flush: [] });
      phases.hydrate.push(hydratedMs - startMs);
      phases.flush.push(performance.now() - hydratedMs);
      return () => clone.close();
    });
}

async function benchHydrate(): Promise<void> {
  const contenders: Record<string, () => Promise<number>> = {
    ...(SKIP.has('default') ? {} : { [`ours-${DEFAULT_4K.label}`]: oursContender(DEFAULT_4K) }),
    ...Object.fromEntries(HYDRATE_CONFIGS.map((config) => [`ours-${config.label}`, oursContender(config)])),
    cp: () => timed('cp', async () => {
      const startMs = performance.now();
      await run('cp', [at('src.img'), at('dst.img')]);
      const copiedMs = performance.now();
      await fdatasyncFile('dst.img');
      const phases = (phasesMs.cp ??= { hydrate: [], flush: [] });
      phases.hydrate.push(copiedMs - startMs);
      phases.flush.push(performance.now() - copiedMs);
    }),
    'qemu-img': () => timed('qemu-img', () => run('qemu-img', ['convert', '-t', 'writeback', '-f', 'raw', '-O', 'raw', at('src.img'), at('dst.img')])),
  };
  verify = true;
  await interleave(1, contenders);
  verify = false;
  for (const phases of Object.values(phasesMs)) phases.hydrate.length = phases.flush.length = 0;
  const results = await interleave(ROUNDS, contenders);
  const medians: Record<string, number> = {};
  for (const [name, rates] of Object.entries(results)) medians[name] = report(`hydrate ${SOURCE_BYTES / MIB} MiB ${name}`, 'MB/s', rates);
  for (const [name, phases] of Object.entries(phasesMs)) {
    console.log(`clone hydrate ${name} phases: copy ${median(phases.hydrate).toFixed(0)} ms, then durable flush ${median(phases.flush).toFixed(0)} ms (medians)`);
  }
  const best = HYDRATE_CONFIGS.reduce((a, b) => (medians[`ours-${b.label}`]! > medians[`ours-${a.label}`]! ? b : a));
  hydratedConfig = best;
  const ours = medians[`ours-${best.label}`]!;
  console.log(`clone hydrate: best table "${hydrateTable(best.regionSectors, best.coreArgs)}"`);
  const size = `${SOURCE_BYTES / MIB}MiB`;
  ratios.push(ratioLine(`clone-hydrate-${size}-until-durable/cp [${best.label} batch 1024 threshold 4096] (${rt})`, ours, medians.cp!));
  ratios.push(ratioLine(`clone-hydrate-${size}-until-durable/qemu-img-convert-t-writeback [${best.label} batch 1024 threshold 4096] (${rt})`, ours, medians['qemu-img']!));
  const ourDefault = medians[`ours-${DEFAULT_4K.label}`];
  if (ourDefault !== undefined) {
    ratios.push(ratioLine(`clone-hydrate-${size}-until-durable/cp [default table, 4KiB regions] (${rt})`, ourDefault, medians.cp!));
    ratios.push(ratioLine(`clone-hydrate-${size}-until-durable/qemu-img-convert-t-writeback [default table, 4KiB regions] (${rt})`, ourDefault, medians['qemu-img']!));
  }
}

// ---- read: hydrated clone vs its destination FileDevice ----

function randomOffsets(sizeBytes: number, count: number, seed: number): Float64Array {
  const prng = new Prng(seed);
  const offsets = new Float64Array(count);
  for (let i = 0; i < count; i++) offsets[i] = prng.below(sizeBytes / READ_BYTES) * READ_BYTES;
  return offsets;
}

async function benchHydratedRead(): Promise<void> {
  const config = hydratedConfig;
  const clone = await openFresh(hydrateTable(config.regionSectors, config.coreArgs), SOURCE_BYTES, config.regionSectors);
  await clone.whenHydrated();
  await clone.flush();
  const direct = await FileDevice.open(at('dst.img'), { readOnly: true });
  const offsets = randomOffsets(SOURCE_BYTES, READ_COUNT, OFFSET_SEED);
  const buffer = new Uint8Array(READ_BYTES);
  const checksums: Record<string, number> = {};
  const reader = (name: string, device: { read(offsetBytes: number, target: Uint8Array): Promise<void> }) => async () => {
    let checksum = 0;
    const startMs = performance.now();
    for (let i = 0; i < READ_COUNT; i++) {
      await device.read(offsets[i]!, buffer);
      checksum = (checksum + buffer[0]! + buffer[4095]!) | 0;
    }
    checksums[name] = checksum;
    return READ_COUNT / ((performance.now() - startMs) / 1000);
  };
  const contenders = { clone: reader('clone', clone), filedevice: reader('filedevice', direct) };
  await interleave(1, contenders);
  const results = await interleave(READ_ROUNDS, contenders);
  if (checksums.clone !== checksums.filedevice) throw new Error(`clone and destination read different bytes: ${JSON.stringify(checksums)}`);
  const ours = report(`read-4k hydrated clone`, 'op/s', results.clone);
  const peer = report(`read-4k destination FileDevice`, 'op/s', results.filedevice);
  ratios.push(ratioLine(`clone-read-4k-hydrated/destination-filedevice (${rt})`, ours, peer));
  await direct.close();
  await clone.close();
  rm('dst.img', 'meta');
}

// ---- latency: reads while hydrating vs idle, on the same clone ----

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/**
 * Open loop: read i arrives at start + i * interval; its latency runs from arrival to completion.
 * With `whileHydrating`, stops at the first read that completes after hydration finished.
 */
async function latencies(clone: CloneDevice, offsets: Float64Array, whileHydrating: boolean): Promise<Float64Array> {
  const buffer = new Uint8Array(READ_BYTES);
  const result = new Float64Array(offsets.length);
  const startMs = performance.now();
  let count = 0;
  for (; count < offsets.length; count++) {
    const arrivalMs = startMs + count * ARRIVAL_INTERVAL_MS;
    while (performance.now() < arrivalMs) await new Promise((resolve) => yieldMacrotask(resolve));
    await clone.read(offsets[count]!, buffer);
    if (whileHydrating && clone.isHydrated) break;
    result[count] = performance.now() - arrivalMs;
  }
  return result.subarray(0, count).sort();
}

async function benchLatency(config: HydrateConfig): Promise<void> {
  const table = hydrateTable(config.regionSectors, config.coreArgs);
  const p50 = { hydrating: [] as number[], idle: [] as number[] };
  const p99 = { hydrating: [] as number[], idle: [] as number[] };
  const hydratedAtEndPercent: number[] = [];
  for (let round = 0; round <= LATENCY_ROUNDS; round++) {
    const clone = await openFresh(table, SOURCE_BYTES, config.regionSectors);
    const offsets = randomOffsets(SOURCE_BYTES, LATENCY_READS_PER_PHASE, OFFSET_SEED + round);
    // Let hydration get going first (a copy has been launched and completed).
    while (clone.hydratedRegions === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    const busy = await latencies(clone, offsets, true);
    const hydratedPercent = (100 * clone.hydratedRegions) / clone.regionCount;
    if (busy.length < LATENCY_READS_PER_PHASE_MIN) {
      console.log(`clone latency ${config.label}: round ${round} dropped, hydration finished after ${busy.length} reads (a larger BLOCKCORE_BENCH_CLONE_MIB keeps it busy longer)`);
      await clone.close();
      continue;
    }
    clone.message('disable_hydration');
    await clone.suspend();
    clone.resume();
    const idle = await latencies(clone, offsets, false);
    await clone.close();
    if (round === 0) continue; // warm-up
    hydratedAtEndPercent.push(hydratedPercent);
    p50.hydrating.push(percentile(busy, 0.5));
    p99.hydrating.push(percentile(busy, 0.99));
    p50.idle.push(percentile(idle, 0.5));
    p99.idle.push(percentile(idle, 0.99));
  }
  rm('dst.img', 'meta');
  const what = `read-4k latency ${config.label}`;
  if (p50.hydrating.length === 0) {
    console.log(`clone ${what}: no round kept hydration busy for ${LATENCY_READS_PER_PHASE_MIN} reads; no ratio`);
    return;
  }
  console.log(`clone ${what}: ${LATENCY_READS_PER_PHASE} reads a phase, one every ${ARRIVAL_INTERVAL_MS} ms; ${p50.hydrating.length} rounds kept; busy phases ended with ${hydratedAtEndPercent.map((p) => p.toFixed(0)).join('/')} % hydrated`);
  const busyP50 = report(`${what} p50 hydrating`, 'ms', p50.hydrating, 3);
  const idleP50 = report(`${what} p50 idle`, 'ms', p50.idle, 3);
  const busyP99 = report(`${what} p99 hydrating`, 'ms', p99.hydrating, 3);
  const idleP99 = report(`${what} p99 idle`, 'ms', p99.idle, 3);
  // Ours against ours: hydrating latency / idle latency, lower is better (not a ratio line).
  for (const [p, busyMs, idleMs, target] of [['p50', busyP50, idleP50, 1.5], ['p99', busyP99, idleP99, 2]] as const) {
    results.push(`result clone-read-4k-latency-${p} hydrating/idle [${config.label}; lower is better, target <= ${target}] (${rt}): ${(busyMs / idleMs).toFixed(3)}`);
  }
}

// ---- regions: the walker's per-region cost at threshold 1, batch 1 ----

async function benchRegions(): Promise<void> {
  const sizeBytes = REGIONS_MIB * MIB;
  rm('src.img');
  writeSource('src.img', sizeBytes);
  const table = hydrateTable(8, '4 hydration_threshold 1 hydration_batch_size 1');
  const rates: number[] = [];
  for (let round = 0; round <= REGIONS_ROUNDS; round++) {
    const clone = await openFresh(table, sizeBytes, 8);
    const startMs = performance.now();
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, REGIONS_MAX_MS));
    await Promise.race([clone.whenHydrated(), deadline]);
    const elapsedMs = performance.now() - startMs;
    const regions = clone.hydratedRegions;
    await clone.close();
    if (round > 0) rates.push(regions / (elapsedMs / 1000)); // the first is a warm-up
  }
  rm('src.img', 'dst.img', 'meta');
  const value = report(`regions-per-second ${REGIONS_MIB} MiB, 4 KiB regions, threshold 1 batch 1`, 'regions/s', rates);
  results.push(`result clone-walker-regions-per-second [4KiB regions, threshold 1, batch 1, ${REGIONS_MIB}MiB page-cache-resident; target >= 25000] (${rt}): ${value.toFixed(0)}`);
}

// ---- commit: one changed region on a 4 TiB clone ----

async function benchCommit(): Promise<void> {
  rm('src.img', 'dst.img', 'meta');
  createSparse('src.img', COMMIT_DEVICE_BYTES);
  const openStartMs = performance.now();
  const clone = await openFresh(hydrateTable(COMMIT_REGION_SECTORS, '', '1 no_hydration'), COMMIT_DEVICE_BYTES, COMMIT_REGION_SECTORS);
  console.log(`clone commit setup: 4 TiB, ${clone.regionCount} regions, metadata ${(metadataBytesFor(COMMIT_DEVICE_BYTES, COMMIT_REGION_SECTORS) / MIB).toFixed(0)} MiB, open (format) took ${((performance.now() - openStartMs) / 1000).toFixed(1)} s`);
  const prng = new Prng(SOURCE_SEED + 1);
  const data = new Uint8Array(COMMIT_REGION_SECTORS * SECTOR_BYTES);
  const samplesMs: number[] = [];
  for (let i = 0; i <= COMMIT_SAMPLES; i++) {
    await clone.write(prng.below(clone.regionCount) * clone.regionBytes, prng.fill(data));
    const startMs = performance.now();
    await clone.flush();
    if (i > 0) samplesMs.push(performance.now() - startMs); // the first is a warm-up
  }
  await clone.close();
  rm('src.img', 'dst.img', 'meta');
  const ms = median(samplesMs);
  console.log(`clone commit-one-region 4TiB samples: ${samplesMs.map((x) => x.toFixed(2)).join(' ')} ms`);
  console.log(`clone commit-one-region 4TiB (${rt}): ${ms.toFixed(2)} ms`);
}

try {
  console.log(`clone bench on ${rt} ${adapter.version}: ${SOURCE_BYTES / MIB} MiB seeded source in ${dataDir}, ${ROUNDS} rounds (+1 warm-up), medians`);
  if (!SKIP.has('hydrate') || !SKIP.has('read') || !SKIP.has('latency')) {
    const fillStartMs = performance.now();
    writeSource('src.img', SOURCE_BYTES);
    console.log(`clone source written in ${((performance.now() - fillStartMs) / 1000).toFixed(1)} s`);
  }
  if (!SKIP.has('hydrate')) await benchHydrate();
  if (!SKIP.has('read')) await benchHydratedRead();
  if (!SKIP.has('latency')) for (const config of LATENCY_CONFIGS) await benchLatency(config);
  if (!SKIP.has('regions')) await benchRegions();
  if (!SKIP.has('commit')) await benchCommit();
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true });
}
for (const line of ratios) console.log(line);
for (const line of results) console.log(line);
