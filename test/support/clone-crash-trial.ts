/**
 * One clone crash trial, shared by test/clone-crash.test.ts (50 per run) and scripts/clone-soak.ts
 * (thousands). Everything is drawn from the trial's seed.
 *
 *  1. A fresh temp dir: a source file of 512-1024 regions of 4 KiB (sometimes a short last
 *     region) with seeded random bytes, a sparse destination of the same size, a sparse metadata
 *     file sized by metadataBlocksFor.
 *  2. The child (clone-crash-child.ts) runs under the same runtime as we do, hydrating the clone
 *     while it writes and flushes; 0-300 ms after its ready record it gets SIGKILL. In half the
 *     trials the child disables background hydration once 10-90% of the regions are hydrated, so
 *     some kills fall mid-hydration however fast this machine hydrates. In 20% of the
 *     trials a second child then restarts on the same files (from a state that may hold an
 *     aborted commit) and is killed too.
 *  3. From each child's records, the model: for each sector, the writes issued to it; a write is
 *     durable when it completed before the issue of a flush that resolved (or it is a FUA write
 *     that resolved, or it completed before such a FUA write was issued). After a kill a sector
 *     may hold
 *       - with a durable write to it: any write to it that had not completed before the last
 *         durable write to it was issued (later or concurrent writes may or may not have landed);
 *       - else: what the clone read there when this child started (the source at first), or any
 *         write this child issued to it.
 *  4. Checks after each kill: the metadata opens (read-only: checking writes nothing); every region
 *     it marks hydrated holds, sector by sector, the source or some write ever issued to that
 *     sector; every sector of the clone's view (hydrated regions from the destination, the rest
 *     from the source) is acceptable as above; a torn write of the last commit point would fall
 *     back to an openable earlier commit. After the last kill: the clone reopened with
 *     no_hydration reads exactly that view; it takes more writes (some partial in unhydrated
 *     regions), its first commit could be torn too, it hydrates to completion, and the clone, the
 *     destination file and the committed metadata agree with the expected image; the source's
 *     bytes and mtime are unchanged.
 * Every failure message starts with the seed; BLOCKCORE_SEED=<seed> makes it the first trial.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { detectRuntime } from '../../runtime/adapter/index.ts';
import type { CloneDevice } from '../../runtime/clone/clone-device.ts';
import { CloneMetadata } from '../../runtime/clone/metadata.ts';
import {
  bitmapBlockGeneration, bitmapSlotBlock, decodeSuperblock, invalidSuperblock, METADATA_BLOCK_BYTES, metadataBlocksFor, SUPERBLOCK_SLOTS,
} from '../../runtime/clone/metadata-format.ts';
import { openCloneFromTable } from '../../runtime/clone/open-table.ts';
import { FileStore } from '../../runtime/devices/file-store.ts';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { Prng } from '../../runtime/prng.ts';
import { defaultKernels } from '../../runtime/wasm/kernels.ts';
import { fillWriteSector, parseRecords, SECTOR_BYTES, taggedWriteIndex, writeData, type CrashRecord } from './clone-crash-records.ts';

export const REGION_SECTORS = 8;
export const REGION_BYTES = REGION_SECTORS * SECTOR_BYTES;
export const REGION_COUNT_MIN = 512;
export const REGION_COUNT_MAX = 1024;
export const KILL_DELAY_MS_MAX = 300;
/** Share of trials in which a second child restarts on the crashed files and is killed too. */
export const SECOND_CRASH_CHANCE = 0.2;
export const COMMIT_INTERVAL_MS = 20;
/** Share of trials whose children stop background hydration part way (Geometry.stopHydrationAt). */
export const STOP_HYDRATION_CHANCE = 0.5;
/** Startup of a child under a loaded 2-core box can be slow; past this the trial fails. */
export const READY_TIMEOUT_MS = 60_000;
export const HYDRATION_TIMEOUT_MS = 30_000;
/** Writes the parent does on the reopened clone before letting it hydrate. */
export const AFTER_CRASH_WRITES = 8;
/** Content seed of the parent's own writes after the crash (tags differ from the child's). */
const AFTER_CRASH_SALT = 0x5a5a_a5a5;
const SOURCE_SALT = 0x50c3_e11d;

const CHILD_PATH = fileURLToPath(new URL('./clone-crash-child.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DENO_PERMISSIONS = ['--allow-read', '--allow-write', '--allow-env', '--allow-ffi', '--allow-net', '--allow-sys'];

export interface CrashTrialResult {
  seed: number;
  regionCount: number;
  /** Children killed (1 or 2). */
  crashes: number;
  writesIssued: number;
  writesDone: number;
  flushesDone: number;
  /** Regions the committed metadata marked hydrated after the last kill. */
  hydratedAtCrash: number;
  /** Torn-commit-point checks that applied (0-3). */
  tornChecks: number;
  elapsedMs: number;
}

export interface CrashTrialOptions {
  /** Keep the temp dir of a failed trial (its path is in the message); default removes it. */
  keepFailedDir?: boolean;
}

export class CrashTrialFailure extends Error {
  override name = 'CrashTrialFailure';
  constructor(readonly seed: number, message: string, readonly dir?: string) {
    super(`seed ${seed}: ${message}${dir ? ` (files kept in ${dir})` : ''} — replay with BLOCKCORE_SEED=${seed}`);
  }
}

interface Geometry {
  regionCount: number;
  sizeBytes: number;
  totalSectors: number;
  hydrationBatchSize: number;
  hydrationThreshold: number;
  /** One per child, so also the number of crashes. */
  killDelaysMs: number[];
  /**
   * Hydrated regions at which the children disable background hydration (dm-clone's
   * disable_hydration message), or 0 for never. Half the trials stop short of the end, so the kill
   * falls mid-hydration by construction however fast hydration runs on this machine.
   */
  stopHydrationAt: number;
}

function drawGeometry(seed: number): Geometry {
  const prng = new Prng(seed);
  const regionCount = prng.range(REGION_COUNT_MIN, REGION_COUNT_MAX);
  const shortSectors = prng.chance(0.3) ? prng.range(1, REGION_SECTORS - 1) : 0;
  const totalSectors = regionCount * REGION_SECTORS - shortSectors;
  return {
    regionCount, totalSectors, sizeBytes: totalSectors * SECTOR_BYTES,
    hydrationBatchSize: prng.range(1, 8), hydrationThreshold: prng.range(1, 32),
    killDelaysMs: Array.from({ length: prng.chance(SECOND_CRASH_CHANCE) ? 2 : 1 }, () => prng.range(0, KILL_DELAY_MS_MAX)),
    stopHydrationAt: prng.chance(STOP_HYDRATION_CHANCE) ? Math.floor(regionCount * (0.1 + 0.8 * prng.next())) : 0,
  };
}

function childCommand(): [string, string[]] {
  switch (detectRuntime()) {
    case 'node':
      return [process.execPath, ['--import', 'tsx', CHILD_PATH]];
    case 'bun':
      return [process.execPath, [CHILD_PATH]];
    case 'deno': {
      const deno = (globalThis as unknown as { Deno: { execPath(): string } }).Deno;
      return [deno.execPath(), ['run', ...DENO_PERMISSIONS, CHILD_PATH]];
    }
  }
}

interface ChildRun {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: string | null;
  killed: boolean;
}

/** Runs the child and SIGKILLs it `killDelayMs` after its ready record. */
function runChild(dir: string, table: string, seed: number, writeIndexBase: number, killDelayMs: number, stopHydrationAt: number): Promise<ChildRun> {
  const [command, args] = childCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args, dir, table, String(seed), String(COMMIT_INTERVAL_MS), String(writeIndexBase), String(stopHydrationAt)], {
      cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    const kill = () => {
      if (killed) return;
      killed = true;
      child.kill('SIGKILL');
    };
    const readyTimer = setTimeout(kill, READY_TIMEOUT_MS);
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      stdout += chunk;
      // The first complete line is the ready record (or an E record, and the child exits).
      if (killTimer === undefined && stdout.includes('\n')) {
        clearTimeout(readyTimer);
        killTimer = setTimeout(kill, killDelayMs);
      }
    });
    child.stderr!.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(readyTimer);
      if (killTimer !== undefined) clearTimeout(killTimer);
      resolve({ stdout, stderr, code, signal, killed });
    });
  });
}

interface WriteRecord {
  writeIndex: number;
  offsetBytes: number;
  lengthBytes: number;
  fua: boolean;
  issueSeq: number;
  /** Infinity while not completed. */
  doneSeq: number;
}

/** One child's writes, and per sector the issue seq of its last durable write to it (-1: none). */
interface RunModel {
  /** By writeIndex - writeIndexBase. */
  writes: WriteRecord[];
  writesBySector: WriteRecord[][];
  lastDurableIssueSeq: Int32Array;
  flushesDone: number;
}

function buildModel(records: CrashRecord[], totalSectors: number, writeIndexBase: number, fail: (message: string) => never): RunModel {
  const writes: WriteRecord[] = [];
  const flushIssueSeq = new Map<number, number>();
  let durableBeforeSeq = -1; // writes completed before this seq are durable
  let flushesDone = 0;
  for (const record of records) {
    switch (record.kind) {
      case 'W':
        if (record.writeIndex !== writeIndexBase + writes.length) fail(`write record ${record.writeIndex} out of order`);
        writes.push({ ...record, issueSeq: record.seq, doneSeq: Infinity });
        break;
      case 'D': {
        const write = writes[record.writeIndex - writeIndexBase] ?? fail(`completion of unknown write ${record.writeIndex}`);
        write.doneSeq = record.seq;
        if (write.fua) durableBeforeSeq = Math.max(durableBeforeSeq, write.issueSeq);
        break;
      }
      case 'f':
        flushIssueSeq.set(record.flushIndex, record.seq);
        break;
      case 'F':
        durableBeforeSeq = Math.max(durableBeforeSeq, flushIssueSeq.get(record.flushIndex) ?? fail(`completion of unknown flush ${record.flushIndex}`));
        flushesDone++;
        break;
      case 'E':
        return fail(`the child failed: ${record.message}`);
      case 'R':
        break;
    }
  }
  const writesBySector: WriteRecord[][] = Array.from({ length: totalSectors }, () => []);
  const lastDurableIssueSeq = new Int32Array(totalSectors).fill(-1);
  for (const write of writes) {
    const durable = write.doneSeq < durableBeforeSeq || (write.fua && write.doneSeq !== Infinity);
    const first = write.offsetBytes / SECTOR_BYTES;
    const end = first + write.lengthBytes / SECTOR_BYTES;
    if (!Number.isInteger(first) || !Number.isInteger(end) || end > totalSectors || end <= first) fail(`write ${write.writeIndex} has a bad range`);
    for (let sector = first; sector < end; sector++) {
      writesBySector[sector]!.push(write);
      if (durable && write.issueSeq > lastDurableIssueSeq[sector]!) lastDurableIssueSeq[sector] = write.issueSeq;
    }
  }
  return { writes, writesBySector, lastDurableIssueSeq, flushesDone };
}

function createSparse(filePath: string, sizeBytes: number): void {
  const fd = fs.openSync(filePath, 'w');
  try {
    fs.ftruncateSync(fd, sizeBytes);
  } finally {
    fs.closeSync(fd);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : length;
}

/** The write (any child's) whose tag a sector carries and whose every byte matches, or -1. */
function writeIn(bytes: Uint8Array, seed: number, sector: number, scratch: Uint8Array): number {
  const writeIndex = taggedWriteIndex(bytes, seed, sector);
  if (writeIndex < 0) return -1;
  return sameBytes(bytes, fillWriteSector(scratch, seed, writeIndex, sector)) ? writeIndex : -1;
}

function sectorOf(bytes: Uint8Array, sector: number): Uint8Array {
  return bytes.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
}

async function readMetadataBits(metadataPath: string, geometry: Geometry): Promise<Uint8Array> {
  const device = await FileDevice.open(metadataPath, { readOnly: true });
  try {
    const metadata = await CloneMetadata.open(device, { regionSectors: REGION_SECTORS, targetSectors: geometry.totalSectors });
    const bits = new Uint8Array(geometry.regionCount);
    for (let region = 0; region < geometry.regionCount; region++) bits[region] = metadata.isHydrated(region) ? 1 : 0;
    metadata.close();
    return bits;
  } finally {
    await device.close();
  }
}

/**
 * A torn commit point: a power failure in the middle of the superblock write of the last commit.
 * Only the last metadata write can be torn, so this applies when the newest superblock is it (no
 * bitmap slot carries a later generation, as an aborted commit's would). A copy of the metadata
 * with that superblock damaged must still open, from the other slot, and mark hydrated a subset of
 * what the newest commit marks. Returns whether the check applied.
 */
async function checkTornCommitPoint(dir: string, metadataPath: string, geometry: Geometry, bits: Uint8Array, when: string, fail: (message: string) => never): Promise<boolean> {
  const kernels = await defaultKernels();
  const crc32c = (bytes: Uint8Array) => kernels.crc32c(bytes);
  const original = new Uint8Array(fs.readFileSync(metadataPath));
  const block = (index: number) => original.subarray(index * METADATA_BLOCK_BYTES, (index + 1) * METADATA_BLOCK_BYTES);
  const superblocks = [0, 1].flatMap((slot) => (invalidSuperblock(block(slot), slot, crc32c) === null ? [decodeSuperblock(block(slot))] : []));
  if (superblocks.length < SUPERBLOCK_SLOTS) return false; // one commit only: nothing to fall back to
  const newest = superblocks.reduce((a, b) => (b.generation > a.generation ? b : a));
  for (let index = 0; index < newest.bitmapBlockCount; index++) {
    for (let slot = 0; slot < 2; slot++) {
      const generation = bitmapBlockGeneration(block(bitmapSlotBlock(index, slot)), index, newest.uuid, crc32c);
      if (generation !== null && generation > newest.generation) return false;
    }
  }
  const torn = original.slice();
  torn[newest.blockNumber * METADATA_BLOCK_BYTES + METADATA_BLOCK_BYTES / 2] ^= 0xff;
  const tornPath = path.join(dir, 'metadata-torn');
  fs.writeFileSync(tornPath, torn);
  let fallback: Uint8Array;
  try {
    fallback = await readMetadataBits(tornPath, geometry);
  } catch (error) {
    return fail(`${when}, with the newest superblock (generation ${newest.generation}, slot ${newest.blockNumber}) torn the metadata does not open: ${(error as Error).message}`);
  } finally {
    fs.rmSync(tornPath, { force: true });
  }
  const extra = fallback.findIndex((bit, region) => bit === 1 && bits[region] !== 1);
  if (extra >= 0) fail(`${when}, with the newest superblock torn region ${extra} is hydrated, but not in the newest commit`);
  return true;
}

async function readAll(clone: CloneDevice): Promise<Uint8Array> {
  const bytes = new Uint8Array(clone.sizeBytes);
  await clone.read(0, bytes);
  return bytes;
}

async function waitHydrated(clone: CloneDevice, fail: (message: string) => never): Promise<void> {
  const deadline = Date.now() + HYDRATION_TIMEOUT_MS;
  while (!clone.isHydrated) {
    if (Date.now() > deadline) fail(`hydration did not complete within ${HYDRATION_TIMEOUT_MS} ms (${clone.hydratedRegions}/${clone.regionCount}): ${clone.statusNow().line}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

export async function runCrashTrial(seed: number, options: CrashTrialOptions = {}): Promise<CrashTrialResult> {
  seed >>>= 0;
  const startedMs = Date.now();
  const geometry = drawGeometry(seed);
  const { regionCount, sizeBytes, totalSectors } = geometry;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-crash-'));
  let keep = false;
  const fail: (message: string) => never = (message) => {
    keep = options.keepFailedDir === true;
    throw new CrashTrialFailure(seed, message, keep ? dir : undefined);
  };
  try {
    const sourcePath = path.join(dir, 'source');
    const destinationPath = path.join(dir, 'destination');
    const metadataPath = path.join(dir, 'metadata');
    const image = new Prng(seed ^ SOURCE_SALT).fill(new Uint8Array(sizeBytes));
    fs.writeFileSync(sourcePath, image);
    createSparse(destinationPath, sizeBytes);
    createSparse(metadataPath, metadataBlocksFor(regionCount) * METADATA_BLOCK_BYTES);
    const sourceMtimeMs = fs.statSync(sourcePath).mtimeMs;
    const core = `4 hydration_threshold ${geometry.hydrationThreshold} hydration_batch_size ${geometry.hydrationBatchSize}`;
    const childTable = `clone metadata destination source ${REGION_SECTORS} 0 ${core}`;

    // ---- the crashes ----
    let base: Uint8Array = image; // what the clone read when the current child started
    let bits: Uint8Array = new Uint8Array(regionCount);
    let writeIndexBase = 0;
    let tornChecks = 0;
    let flushesDone = 0;
    let writesDone = 0;
    const everWritten: number[][] = Array.from({ length: totalSectors }, () => []);
    const scratch = new Uint8Array(SECTOR_BYTES);
    for (const [crash, killDelayMs] of geometry.killDelaysMs.entries()) {
      const after = `after kill ${crash + 1} of ${geometry.killDelaysMs.length} (${killDelayMs} ms past ready)`;
      const run = await runChild(dir, childTable, seed, writeIndexBase, killDelayMs, geometry.stopHydrationAt);
      const tail = () => `\nstdout tail: ${run.stdout.slice(-3000)}\nstderr tail: ${run.stderr.slice(-2000)}`;
      if (!run.killed) fail(`${after}: the child exited on its own (code ${run.code}, signal ${run.signal})${tail()}`);
      if (run.signal !== 'SIGKILL' && run.code !== 137) fail(`${after}: the child ended with code ${run.code}, signal ${run.signal}, not SIGKILL${tail()}`);
      let records: CrashRecord[];
      try {
        records = parseRecords(run.stdout);
      } catch (error) {
        return fail(`${after}: unreadable child records: ${(error as Error).message}`);
      }
      if (records[0]?.kind !== 'R') fail(`${after}: the child was killed before it was ready (no R record within ${READY_TIMEOUT_MS} ms)${tail()}`);
      const ready = records[0] as Extract<CrashRecord, { kind: 'R' }>;
      if (ready.sizeBytes !== sizeBytes || ready.regionBytes !== REGION_BYTES) fail(`${after}: child geometry ${ready.sizeBytes}/${ready.regionBytes} differs`);
      const model = buildModel(records, totalSectors, writeIndexBase, (message) => fail(`${after}: ${message}`));

      // ---- (a) the metadata opens, keeps every bit it had, and survives a torn commit point ----
      const previousBits = bits;
      try {
        bits = await readMetadataBits(metadataPath, geometry);
      } catch (error) {
        return fail(`${after}: the metadata does not open: ${(error as Error).message}`);
      }
      const lostBit = previousBits.findIndex((bit, region) => bit === 1 && bits[region] !== 1);
      if (lostBit >= 0) fail(`${after}: region ${lostBit}, hydrated at the kill before, is not hydrated any more`);
      if (await checkTornCommitPoint(dir, metadataPath, geometry, bits, after, fail)) tornChecks++;

      // ---- (b) every flushed write is there; (c) hydrated regions hold the source or written data ----
      const destination = new Uint8Array(fs.readFileSync(destinationPath));
      if (destination.length !== sizeBytes) fail(`${after}: the destination is ${destination.length} bytes, not ${sizeBytes}`);
      const view = new Uint8Array(sizeBytes);
      for (let sector = 0; sector < totalSectors; sector++) {
        const region = Math.floor(sector / REGION_SECTORS);
        const hydrated = bits[region] === 1;
        const bytes = sectorOf(hydrated ? destination : image, sector);
        view.set(bytes, sector * SECTOR_BYTES);
        const runWrites = model.writesBySector[sector]!;
        for (const write of runWrites) everWritten[sector]!.push(write.writeIndex);
        const isSource = sameBytes(bytes, sectorOf(image, sector));
        const writeIndex = isSource ? -1 : writeIn(bytes, seed, sector, scratch);
        const lastDurable = model.lastDurableIssueSeq[sector]!;
        const where = () => {
          const shown = runWrites.slice(-8).map((w) => `#${w.writeIndex} [${w.offsetBytes}+${w.lengthBytes}${w.fua ? ' fua' : ''}] issued ${w.issueSeq} done ${w.doneSeq}`);
          return `${after}: sector ${sector} (byte ${sector * SECTOR_BYTES}, region ${region}, ${hydrated ? 'hydrated' : 'unhydrated'}; ` +
            `this child's writes to it: ${shown.join(', ') || 'none'}; last durable one issued at record ${lastDurable})`;
        };
        if (!isSource && (writeIndex < 0 || !everWritten[sector]!.includes(writeIndex))) {
          fail(`${where()} holds neither the source nor any write issued to it${writeIndex >= 0 ? ` (write #${writeIndex}, never issued there)` : ''}`);
        }
        const runWrite = writeIndex < 0 ? undefined : runWrites.find((write) => write.writeIndex === writeIndex);
        if (lastDurable >= 0) {
          if (runWrite === undefined) fail(`${where()} holds ${isSource ? 'the source' : `write #${writeIndex}`}: a flushed write was lost`);
          if (runWrite.doneSeq < lastDurable) fail(`${where()} holds write #${writeIndex}, older than a flushed write to it`);
        } else if (runWrite === undefined && !sameBytes(bytes, sectorOf(base, sector))) {
          fail(`${where()} holds ${isSource ? 'the source' : `write #${writeIndex}`}: neither what it held when this child started nor a write of this child`);
        }
      }
      base = view;
      writeIndexBase += model.writes.length;
      flushesDone += model.flushesDone;
      writesDone += model.writes.filter((write) => write.doneSeq !== Infinity).length;
    }
    const view = base;
    const hydratedAtCrash = bits.reduce((sum, bit) => sum + bit, 0);

    // ---- the clone reopened reads that view exactly ----
    const noHydrationTable = `clone metadata destination source ${REGION_SECTORS} 1 no_hydration ${core}`;
    const expected = view.slice();
    const clone = await openCloneFromTable(new FileStore(dir), noHydrationTable, { commitIntervalMs: COMMIT_INTERVAL_MS });
    let closed = false;
    try {
      if (clone.hydratedRegions !== hydratedAtCrash) fail(`the reopened clone has ${clone.hydratedRegions} regions hydrated, the metadata ${hydratedAtCrash}`);
      const seen = await readAll(clone);
      const differs = firstDifference(seen, view);
      if (differs >= 0) fail(`the reopened clone reads byte ${differs} (region ${Math.floor(differs / REGION_BYTES)}) differently from its metadata and devices`);

      // ---- it takes writes, hydrates to completion and ends equal to the expected image ----
      const prng = new Prng(seed ^ AFTER_CRASH_SALT);
      for (let i = 0; i < AFTER_CRASH_WRITES; i++) {
        const region = prng.below(regionCount);
        const regionEnd = Math.min(totalSectors, (region + 1) * REGION_SECTORS);
        const startSector = prng.chance(0.5) ? region * REGION_SECTORS : prng.range(region * REGION_SECTORS, regionEnd - 1);
        const endSector = Math.min(totalSectors, prng.range(startSector + 1, regionEnd + REGION_SECTORS));
        const data = writeData(seed ^ AFTER_CRASH_SALT, i, startSector * SECTOR_BYTES, (endSector - startSector) * SECTOR_BYTES);
        await clone.write(startSector * SECTOR_BYTES, data);
        expected.set(data, startSector * SECTOR_BYTES);
        if (i === 0) {
          // The first commit after the restart (it rewrites any block an aborted commit left).
          await clone.flush();
          const committed = await readMetadataBits(metadataPath, geometry);
          if (await checkTornCommitPoint(dir, metadataPath, geometry, committed, 'after the first commit past the last kill', fail)) tornChecks++;
        }
      }
      clone.message('hydration_batch_size 64');
      clone.message('hydration_threshold 256');
      clone.message('enable_hydration');
      await waitHydrated(clone, fail);
      await clone.flush();
      const after = await readAll(clone);
      const afterDiffers = firstDifference(after, expected);
      if (afterDiffers >= 0) fail(`after hydration the clone reads byte ${afterDiffers} wrong`);
      closed = true;
      await clone.close();
    } finally {
      if (!closed) await clone.close().catch(() => {});
    }
    const finalDestination = new Uint8Array(fs.readFileSync(destinationPath));
    const destinationDiffers = firstDifference(finalDestination, expected);
    if (destinationDiffers >= 0) fail(`after hydration the destination file differs at byte ${destinationDiffers}`);
    const finalBits = await readMetadataBits(metadataPath, geometry);
    if (finalBits.some((bit) => bit !== 1)) fail(`after hydration and close the committed metadata still has unhydrated regions`);

    // ---- (d) the source is untouched ----
    if (!sameBytes(new Uint8Array(fs.readFileSync(sourcePath)), image)) fail('the source file changed');
    if (fs.statSync(sourcePath).mtimeMs !== sourceMtimeMs) fail('the source file mtime changed');

    return {
      seed, regionCount, crashes: geometry.killDelaysMs.length, writesIssued: writeIndexBase, writesDone, flushesDone,
      hydratedAtCrash, tornChecks, elapsedMs: Date.now() - startedMs,
    };
  } finally {
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface CrashTrialsOptions extends CrashTrialOptions {
  /** Trial i runs with seed baseSeed + i. */
  baseSeed: number;
  count: number;
  /** Trials running at once (each is mostly a child starting up, then idle verification). */
  jobs?: number;
  onResult?: (result: CrashTrialResult, finished: number) => void;
}

/**
 * Runs `count` trials, `jobs` at a time, in seed order. At the first failure no new trial starts;
 * the running ones finish and the failure with the lowest seed is thrown.
 */
export async function runCrashTrials(options: CrashTrialsOptions): Promise<CrashTrialResult[]> {
  const { baseSeed, count } = options;
  const jobs = Math.max(1, Math.min(options.jobs ?? 1, count));
  const results: CrashTrialResult[] = [];
  const failures: Array<{ index: number; error: unknown }> = [];
  let next = 0;
  const worker = async () => {
    while (next < count && failures.length === 0) {
      const index = next++;
      try {
        const result = await runCrashTrial((baseSeed + index) >>> 0, options);
        results.push(result);
        options.onResult?.(result, results.length);
      } catch (error) {
        failures.push({ index, error });
      }
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  if (failures.length > 0) throw failures.reduce((a, b) => (b.index < a.index ? b : a)).error;
  return results;
}
