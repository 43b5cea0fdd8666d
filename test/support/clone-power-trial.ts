/**
 * One clone power-loss trial, shared by test/clone-power-loss.test.ts and scripts/clone-power-soak.ts.
 * In process: the clone's metadata, destination and source devices are PowerLossDevices of one
 * PowerDomain over MemoryDevices (runtime/devices/power-domain.ts), so a cut hits the metadata and the
 * destination at one instant, each losing, keeping or tearing (at 512-byte sectors) its own unflushed
 * writes. Everything is drawn from the trial's seed; the whole trial is microtasks and timers of one
 * duration, so a seed replays exactly (BLOCKCORE_SEED=<seed>).
 *
 *  1. Geometry: 8-48 regions of 4 KiB (sometimes a short last one), random source bytes, a blank
 *     destination, a 16 KiB metadata device of 512 B or 4 KiB blocks; threshold, batch size and
 *     no_discard_passdown drawn.
 *  2. 1-4 runs, each: open the clone from the devices as the last cut left them (the first run
 *     formats the metadata), check it reads the view found after the last cut, then run the workload
 *     (clone-power-workload.ts) with hydration in the background, and cut the power at a random
 *     I/O event or at a random moment.
 *  3. After each cut ("reboot"), on the surviving images:
 *       - the source received no write and holds its bytes;
 *       - the metadata opens: a probe clone over copies of the metadata and destination images, with
 *         a marker source and no_hydration, tells which regions are hydrated (they read the
 *         destination, the rest read the marker);
 *       - no region hydrated at an earlier reboot has become unhydrated;
 *       - the clone's view (hydrated regions from the destination, the rest from the source) is, in
 *         every sector, what the durability model allows (test/support/durability-model.ts): every
 *         write acknowledged by a completed flush or FUA is there, unless overwritten by a later or
 *         concurrent write; other writes may be there, absent or torn per sector; a hydrated region
 *         holds the source or data written to it; a discarded region may read zeros or anything it
 *         ever held (the clone's discard is a hint); nothing else.
 *  4. In some trials, after the last cut: hydrate to completion, then flush, close and cut losing
 *     every unflushed write, or close without a flush and cut keeping the cache (a restart with no
 *     power loss): the clone must reopen fully hydrated with exactly the expected contents.
 * Every failure message starts with the seed.
 */
import { CloneDevice, type CloneOptions } from '../../runtime/clone/clone-device.ts';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import { MemoryDevice } from '../../runtime/devices/memory-device.ts';
import { PowerDomain, type PowerCutReport } from '../../runtime/devices/power-domain.ts';
import { Prng } from '../../runtime/prng.ts';
import { fillWriteSector, SECTOR_BYTES, taggedWriteIndex, writeData } from './clone-crash-records.ts';
import { runWorkload } from './clone-power-workload.ts';
import { DurabilityTrace, judgeSector, sameBytes } from './durability-model.ts';

export const REGION_SECTORS = 8;
export const REGION_BYTES = REGION_SECTORS * SECTOR_BYTES;
export const REGION_COUNT_MIN = 8;
export const REGION_COUNT_MAX = 48;
export const RUNS_MAX = 4;
/** Up to 2 bitmap blocks of 2 slots after 2 superblocks: 4 KiB blocks. */
export const METADATA_BYTES = 16 * 1024;
/** Longer than any trial: commits come from flushes, FUA writes, status() and hydration, never a timer. */
const COMMIT_INTERVAL_MS = 3_600_000;
const CLEAN_FINISH_CHANCE = 0.25;
const SETTLE_TIMEOUT_MS = 20_000;
const SOURCE_SALT = 0x50c3_e11d;
const PROBE_SALT = 0x7e0b_e5a1;

export interface PowerTrialResult {
  seed: number;
  regionCount: number;
  cuts: number;
  writes: number;
  writesDone: number;
  flushesDone: number;
  discards: number;
  failedByCut: number;
  /** Cuts after which no region, some, or every region was hydrated. */
  cutsNoneHydrated: number;
  cutsPartlyHydrated: number;
  cutsFullyHydrated: number;
  /** Unflushed writes on the metadata and destination devices at the cuts, and their fates. */
  unflushedLost: number;
  unflushedKept: number;
  unflushedTorn: number;
  /** Trials that ended with the clean finish (4.). */
  cleanFinishes: number;
}

export class PowerTrialFailure extends Error {
  override name = 'PowerTrialFailure';
  constructor(readonly seed: number, message: string) {
    super(`seed ${seed}: ${message} — replay with BLOCKCORE_SEED=${seed}`);
  }
}

interface Geometry {
  regionCount: number;
  totalSectors: number;
  sizeBytes: number;
  metadataBlockBytes: number;
  threshold: number;
  batchSize: number;
  passdown: boolean;
  runs: number;
  cleanFinish: boolean;
}

/** The number of cuts trial `seed` makes (its first draw), so a runner can plan a total. */
export function cutsOfTrial(seed: number): number {
  return new Prng(seed >>> 0).range(1, RUNS_MAX);
}

function drawGeometry(prng: Prng): Geometry {
  const runs = prng.range(1, RUNS_MAX);
  const regionCount = prng.range(REGION_COUNT_MIN, REGION_COUNT_MAX);
  const totalSectors = regionCount * REGION_SECTORS - (prng.chance(0.3) ? prng.range(1, REGION_SECTORS - 1) : 0);
  return {
    runs, regionCount, totalSectors, sizeBytes: totalSectors * SECTOR_BYTES,
    metadataBlockBytes: prng.chance(0.5) ? 512 : 4096,
    threshold: prng.range(1, 16), batchSize: prng.range(1, 8), passdown: !prng.chance(0.25),
    cleanFinish: prng.chance(CLEAN_FINISH_CHANCE),
  };
}

async function readAll(device: BlockDevice): Promise<Uint8Array> {
  const bytes = new Uint8Array(device.sizeBytes);
  await device.read(0, bytes);
  return bytes;
}

async function snapshot(device: BlockDevice): Promise<MemoryDevice> {
  return new MemoryDevice({ sizeBytes: device.sizeBytes, logicalBlockBytes: device.logicalBlockBytes, initial: await readAll(device) });
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : length;
}

/** Resolves `pending`, or fails the trial when it has not settled in SETTLE_TIMEOUT_MS (a hang). */
async function within<T>(pending: Promise<T>, what: string, fail: (message: string) => never): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), SETTLE_TIMEOUT_MS)));
  try {
    return await Promise.race([pending, timeout]);
  } catch (error) {
    if ((error as Error).message === 'timeout') fail(`${what} did not settle within ${SETTLE_TIMEOUT_MS} ms`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

export async function runPowerTrial(seed: number): Promise<PowerTrialResult> {
  seed >>>= 0;
  const fail: (message: string) => never = (message) => {
    throw new PowerTrialFailure(seed, message);
  };
  const prng = new Prng(seed);
  const geometry = drawGeometry(prng);
  const { regionCount, totalSectors, sizeBytes } = geometry;
  const contentSeed = (seed ^ 0x0c41_d5ed) >>> 0;
  const image = new Prng(seed ^ SOURCE_SALT).fill(new Uint8Array(sizeBytes));
  const probeImage = new Prng(seed ^ PROBE_SALT).fill(new Uint8Array(sizeBytes));
  let metadataBacking = new MemoryDevice({ sizeBytes: METADATA_BYTES, logicalBlockBytes: geometry.metadataBlockBytes, name: 'metadata' });
  let destinationBacking = new MemoryDevice({ sizeBytes, name: 'destination' });
  let sourceBacking = new MemoryDevice({ sizeBytes, initial: image, name: 'source' });
  const cloneOptions = (extra: Partial<CloneOptions>): Omit<CloneOptions, 'metadata' | 'destination' | 'source'> => ({
    regionSectors: REGION_SECTORS, targetSectors: totalSectors, commitIntervalMs: COMMIT_INTERVAL_MS, hydrationTurns: 'timer-per-copy',
    hydrationThreshold: geometry.threshold, hydrationBatchSize: geometry.batchSize,
    features: geometry.passdown ? [] : ['no_discard_passdown'], ...extra,
  });
  const result: PowerTrialResult = {
    seed, regionCount, cuts: 0, writes: 0, writesDone: 0, flushesDone: 0, discards: 0, failedByCut: 0,
    cutsNoneHydrated: 0, cutsPartlyHydrated: 0, cutsFullyHydrated: 0, unflushedLost: 0, unflushedKept: 0, unflushedTorn: 0, cleanFinishes: 0,
  };
  /** The clone's contents as found after the last cut (the source at first). */
  let view = image.slice();
  let bits = new Uint8Array(regionCount);
  /** Per sector, every write id ever issued to it (what a discarded region may show again). */
  const everWritten: Array<Set<number>> = Array.from({ length: totalSectors }, () => new Set());
  let nextWriteId = 0;
  const scratch = new Uint8Array(SECTOR_BYTES);

  /** Opens the clone over fresh power-loss devices on the backings; checks it reads `view`. */
  const openRun = async (domain: PowerDomain, extra: Partial<CloneOptions>, when: string): Promise<CloneDevice> => {
    const clone = await CloneDevice.open({
      metadata: domain.attach(metadataBacking, 'metadata'), destination: domain.attach(destinationBacking, 'destination'), source: domain.attach(sourceBacking, 'source'),
      ...cloneOptions(extra),
    }).catch((error) => fail(`${when}: the clone does not open: ${(error as Error).message}`));
    const seen = await readAll(clone);
    const differs = firstDifference(seen, view);
    if (differs >= 0) fail(`${when}: the clone reads byte ${differs} (region ${Math.floor(differs / REGION_BYTES)}) unlike the view found after the last cut`);
    return clone;
  };

  /** After a cut: takes the surviving backings and checks every invariant on them. */
  const reboot = async (report: PowerCutReport, trace: DurabilityTrace, when: string): Promise<void> => {
    const [metadataReport, destinationReport, sourceReport] = report.devices;
    metadataBacking = metadataReport!.backing as MemoryDevice;
    destinationBacking = destinationReport!.backing as MemoryDevice;
    sourceBacking = sourceReport!.backing as MemoryDevice;
    for (const device of [metadataReport!, destinationReport!]) {
      result.unflushedLost += device.lost;
      result.unflushedKept += device.keptWhole;
      result.unflushedTorn += device.torn;
    }
    // ---- the source is untouched ----
    if (sourceReport!.writesSubmitted !== 0) fail(`${when}: the clone wrote to its source ${sourceReport!.writesSubmitted} times`);
    if (!sameBytes(await readAll(sourceBacking), image)) fail(`${when}: the source changed`);
    // ---- the metadata opens; which regions it marks hydrated ----
    const probe = await CloneDevice.open({
      metadata: await snapshot(metadataBacking), destination: await snapshot(destinationBacking),
      source: new MemoryDevice({ sizeBytes, initial: probeImage, readOnly: true }), ...cloneOptions({ features: ['no_hydration'] }),
    }).catch((error) => fail(`${when}: the metadata does not open: ${(error as Error).message}`));
    const probeView = await readAll(probe);
    const hydratedCount = probe.hydratedRegions;
    await probe.close();
    const previousBits = bits;
    bits = new Uint8Array(regionCount);
    for (let region = 0; region < regionCount; region++) {
      const start = region * REGION_BYTES;
      const end = Math.min(sizeBytes, start + REGION_BYTES);
      bits[region] = sameBytes(probeView.subarray(start, end), probeImage.subarray(start, end)) ? 0 : 1;
    }
    const marked = bits.reduce((sum, bit) => sum + bit, 0);
    if (marked !== hydratedCount) fail(`${when}: the clone says ${hydratedCount} regions are hydrated, ${marked} read from the destination`);
    const lostBit = previousBits.findIndex((bit, region) => bit === 1 && bits[region] !== 1);
    if (lostBit >= 0) fail(`${when}: region ${lostBit}, hydrated at the last reboot, is not hydrated any more`);
    if (marked === 0) result.cutsNoneHydrated++;
    else if (marked === regionCount) result.cutsFullyHydrated++;
    else result.cutsPartlyHydrated++;
    // ---- every sector of the view is what the model allows ----
    const nextView = new Uint8Array(sizeBytes);
    for (let region = 0; region < regionCount; region++) {
      const start = region * REGION_BYTES;
      const end = Math.min(sizeBytes, start + REGION_BYTES);
      nextView.set((bits[region] ? probeView : image).subarray(start, end), start);
    }
    for (const op of trace.ops) {
      if (op.kind !== 'write') continue;
      for (let sector = op.offsetBytes / SECTOR_BYTES; sector < (op.offsetBytes + op.lengthBytes) / SECTOR_BYTES; sector++) everWritten[sector]!.add(op.id);
    }
    const alsoAllowed = (sector: number, bytes: Uint8Array) => {
      const at = sector * SECTOR_BYTES;
      if (sameBytes(bytes, image.subarray(at, at + SECTOR_BYTES)) || sameBytes(bytes, view.subarray(at, at + SECTOR_BYTES))) return true;
      const id = taggedWriteIndex(bytes, contentSeed, sector);
      return id >= 0 && everWritten[sector]!.has(id) && sameBytes(bytes, fillWriteSector(scratch, contentSeed, id, sector));
    };
    for (let sector = 0; sector < totalSectors; sector++) {
      const at = sector * SECTOR_BYTES;
      const reason = judgeSector({ trace, contentSeed, alsoAllowed }, sector, nextView.subarray(at, at + SECTOR_BYTES), view.subarray(at, at + SECTOR_BYTES));
      if (reason !== null) {
        const region = Math.floor(sector / REGION_SECTORS);
        fail(`${when}: region ${region} (${bits[region] ? 'hydrated' : 'unhydrated'}), ${reason}`);
      }
    }
    view = nextView;
  };

  for (let run = 0; run < geometry.runs; run++) {
    const when = `after cut ${run + 1} of ${geometry.runs}`;
    const domain = new PowerDomain({ seed: prng.nextU32(), maxDelayTurns: prng.range(0, 4), timerDelayChance: prng.chance(0.5) ? 0.03 : 0 });
    const clone = await openRun(domain, {}, `opening run ${run + 1}`);
    const opCount = prng.range(4, 60);
    // Where the cut falls: at a random event of the domain, of the metadata device (inside a
    // commit), of the destination, or at a random moment of the workload.
    const cutCounter = prng.below(4);
    const atEvent = cutCounter < 3;
    if (cutCounter === 0) domain.cutAtEvent(domain.events + prng.range(1, 8 * opCount));
    else if (cutCounter < 3) {
      const device = domain.devices[cutCounter - 1]!;
      domain.cutAtEvent(device.events + prng.range(1, cutCounter === 1 ? 24 : 4 * opCount), { device });
    }
    const trace = new DurabilityTrace(totalSectors);
    const counts = await within(
      runWorkload(clone, domain, trace, prng, { opCount, cutAtOp: atEvent ? -1 : prng.range(0, opCount), contentSeed, firstWriteId: nextWriteId }, fail),
      `${when}: the workload`, fail,
    );
    const report = await domain.cut();
    await within(clone.close().catch(() => {}), `${when}: closing the clone after the cut`, fail);
    nextWriteId = counts.nextWriteId;
    result.cuts++;
    result.writes += counts.writes;
    result.writesDone += counts.writesDone;
    result.flushesDone += trace.flushesDone;
    result.discards += counts.discards;
    result.failedByCut += counts.failedByCut;
    await reboot(report, trace, `${when} (at event ${report.eventIndex}, cut seed ${report.seed})`);
  }

  if (geometry.cleanFinish) {
    // ---- hydrate, write, then either flush, close and lose everything unflushed, or close without a
    // flush and keep the cache (a restart, no power loss): all of it must be there, fully hydrated.
    // Timer turns in the devices let close() meet a commit still running. ----
    const flushFirst = prng.chance(0.5);
    const domain = new PowerDomain({ seed: prng.nextU32(), maxDelayTurns: 2, timerDelayChance: 0.3 });
    const clone = await openRun(domain, { hydrationThreshold: 64, hydrationBatchSize: 64 }, 'opening for the clean finish');
    const expected = view.slice();
    for (let i = 0; i < 4; i++) {
      const offsetBytes = prng.below(totalSectors) * SECTOR_BYTES;
      const lengthBytes = Math.min(sizeBytes - offsetBytes, prng.range(1, 2 * REGION_SECTORS) * SECTOR_BYTES);
      const data = writeData(contentSeed, nextWriteId++, offsetBytes, lengthBytes);
      await clone.write(offsetBytes, data);
      expected.set(data, offsetBytes);
    }
    await clone.flush(); // a commit on this clone, so close() finds commits done and maybe one running
    await within(clone.whenHydrated(), 'the clean finish: hydration', fail);
    if (flushFirst) await clone.flush();
    await clone.close();
    const report = await domain.cut({ unflushed: flushFirst ? 'lose' : 'keep' });
    metadataBacking = report.devices[0]!.backing as MemoryDevice;
    destinationBacking = report.devices[1]!.backing as MemoryDevice;
    sourceBacking = report.devices[2]!.backing as MemoryDevice;
    view = expected;
    const how = flushFirst ? 'flush, close and a cut losing everything unflushed' : 'close (no flush) and a restart keeping the cache';
    const reopened = await openRun(new PowerDomain({ seed: prng.nextU32() }), { features: ['no_hydration'] }, `the clean finish: reopened after ${how}`);
    if (!reopened.isHydrated) fail(`the clean finish: after ${how}, ${reopened.hydratedRegions} of ${regionCount} regions are hydrated`);
    await reopened.close();
    result.cleanFinishes++;
  }
  return result;
}

export interface PowerTrialsOptions {
  /** Trials run with seeds baseSeed, baseSeed + 1, ... until they make at least `cuts` cuts. */
  baseSeed: number;
  cuts: number;
  /** Trials interleaved at once (each waits on timer turns); default 8. */
  jobs?: number;
  onResult?: (result: PowerTrialResult, finished: number) => void;
}

/** Runs trials, `jobs` at a time, in seed order; the failure with the lowest seed is thrown. */
export async function runPowerTrials(options: PowerTrialsOptions): Promise<PowerTrialResult[]> {
  const seeds: number[] = [];
  for (let planned = 0; planned < options.cuts; ) {
    const seed = (options.baseSeed + seeds.length) >>> 0;
    seeds.push(seed);
    planned += cutsOfTrial(seed);
  }
  const results: PowerTrialResult[] = [];
  const failures: Array<{ index: number; error: unknown }> = [];
  let next = 0;
  const worker = async () => {
    while (next < seeds.length && failures.length === 0) {
      const index = next++;
      try {
        const result = await runPowerTrial(seeds[index]!);
        results.push(result);
        options.onResult?.(result, results.length);
      } catch (error) {
        failures.push({ index, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.jobs ?? 8) }, worker));
  if (failures.length > 0) throw failures.reduce((a, b) => (b.index < a.index ? b : a)).error;
  return results;
}
