/**
 * The victim of test/clone-crash.test.ts: opens a hydrating clone and does seeded random I/O on it
 * until its parent kills it with SIGKILL. Runs unchanged under Node (tsx), Bun and Deno.
 *
 *   clone-crash-child.ts <dataDir> <tableLine> <seed> [commitIntervalMs] [writeIndexBase] [stopHydrationAt]
 *
 * With stopHydrationAt > 0 it sends the clone disable_hydration once that many regions are
 * hydrated (checked before every operation it issues and every millisecond), so its parent's kill falls mid-hydration.
 *
 * Its writes are numbered from writeIndexBase (so a second child on the same files, after a first
 * was killed, puts down content distinguishable from the first one's).
 * It announces every step on stdout as a line record (clone-crash-records.ts) written with a
 * synchronous write, so a record is out before the step it announces starts (W, f) or right after
 * the step resolved (D, F). Up to `depth` operations (1-4, re-drawn now and then) are in flight;
 * now and then it drains them and idles a few milliseconds so that background hydration (which
 * waits while user I/O is in flight) and the periodic commit get their turns. Writes are whole
 * regions, parts of one region or runs across region boundaries, some FUA; reads make regions
 * hot; there are no discards (they leave partial regions' contents unspecified).
 */
import fs from 'node:fs';
import { openCloneFromTable } from '../../runtime/clone/open-table.ts';
import { FileStore } from '../../runtime/devices/file-store.ts';
import { Prng } from '../../runtime/prng.ts';
import { formatRecord, SECTOR_BYTES, writeData, type CrashRecordBody } from './clone-crash-records.ts';
import { pickRange } from './io-ranges.ts';

/** The child gives up on its own if nobody killed it by then (an orphan must not run forever). */
const WATCHDOG_MS = 120_000;
const STDOUT_FD = 1;
/** Writes: whole regions, parts of one region, or runs across region boundaries. */
const WRITE_SHARES = { wholeRegions: 0.3, insideRegion: 0.4 };

const [dataDir, tableLine, seedText, commitIntervalText, writeIndexBaseText, stopHydrationAtText] = process.argv.slice(2);
if (dataDir === undefined || tableLine === undefined || seedText === undefined) {
  fs.writeSync(2, 'usage: clone-crash-child.ts <dataDir> <tableLine> <seed> [commitIntervalMs] [writeIndexBase]\n');
  process.exit(2);
}
const seed = Number(seedText) >>> 0;
const commitIntervalMs = Number(commitIntervalText ?? 20);
const writeIndexBase = Number(writeIndexBaseText ?? 0);
const stopHydrationAt = Number(stopHydrationAtText ?? 0);

/** Writes the whole record now; a full pipe (EAGAIN on a non-blocking fd) is retried. */
function emit(record: CrashRecordBody): void {
  const bytes = Buffer.from(formatRecord(record));
  let doneBytes = 0;
  while (doneBytes < bytes.length) {
    try {
      doneBytes += fs.writeSync(STDOUT_FD, bytes, doneBytes, bytes.length - doneBytes);
    } catch (error) {
      if ((error as { code?: string }).code !== 'EAGAIN') throw error;
    }
  }
}

function fail(error: unknown): never {
  try {
    emit({ kind: 'E', message: String((error as Error)?.stack ?? error) });
  } finally {
    process.exit(1);
  }
}

setTimeout(() => fail(new Error(`not killed within ${WATCHDOG_MS} ms`)), WATCHDOG_MS);
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

const clone = await openCloneFromTable(new FileStore(dataDir), tableLine, { commitIntervalMs }).catch(fail);
const sizeBytes = clone.sizeBytes;
const regionBytes = clone.regionBytes;
const totalSectors = sizeBytes / SECTOR_BYTES;
const regionSectors = regionBytes / SECTOR_BYTES;
emit({ kind: 'R', sizeBytes, regionBytes });

const prng = new Prng((seed ^ 0x0c41_d5ed) + writeIndexBase);
let nextWriteIndex = writeIndexBase;
let nextFlushIndex = 0;

async function writeOp(): Promise<void> {
  const writeIndex = nextWriteIndex++;
  const [offsetBytes, lengthBytes] = pickRange(prng, totalSectors, regionSectors, WRITE_SHARES);
  const fua = prng.chance(0.08);
  const data = writeData(seed, writeIndex, offsetBytes, lengthBytes);
  emit({ kind: 'W', writeIndex, offsetBytes, lengthBytes, fua });
  await clone.write(offsetBytes, data, { fua });
  emit({ kind: 'D', writeIndex });
}

async function flushOp(): Promise<void> {
  const flushIndex = nextFlushIndex++;
  emit({ kind: 'f', flushIndex });
  await clone.flush();
  emit({ kind: 'F', flushIndex });
}

async function readOp(): Promise<void> {
  const startSector = prng.below(totalSectors);
  const endSector = Math.min(totalSectors, startSector + prng.range(1, 4 * regionSectors));
  await clone.read(startSector * SECTOR_BYTES, new Uint8Array((endSector - startSector) * SECTOR_BYTES));
}

const inFlight = new Set<Promise<void>>();
let depth = prng.range(1, 4);
let hydrationStopped = false;
function stopHydrationIfDue(): void {
  if (stopHydrationAt > 0 && !hydrationStopped && clone.hydratedRegions >= stopHydrationAt) {
    hydrationStopped = true;
    clone.message('disable_hydration');
  }
}
if (stopHydrationAt > 0) setInterval(stopHydrationIfDue, 1);
for (;;) {
  stopHydrationIfDue();
  if (prng.chance(0.02)) depth = prng.range(1, 4);
  while (inFlight.size >= depth) await Promise.race(inFlight);
  const roll = prng.next();
  const op = (roll < 0.1 ? flushOp() : roll < 0.18 ? readOp() : writeOp()).catch(fail);
  inFlight.add(op);
  void op.then(() => inFlight.delete(op));
  if (prng.chance(0.12)) {
    await Promise.all(inFlight);
    await new Promise((resolve) => setTimeout(resolve, prng.range(0, 3)));
  }
}
