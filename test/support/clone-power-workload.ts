/**
 * The user of a clone between two power cuts, for the clone power-loss trial: seeded writes (whole
 * regions, inside one region, across region boundaries; some FUA), flushes, discards (whole
 * regions, or ranges the clone partly ignores), reads and status queries (which commit), 1-4 at a
 * time, with pauses of a timer turn so that background hydration (which waits while user I/O is in
 * flight, and yields a timer turn per copy it starts) gets its turns. Every call and resolution goes
 * into a DurabilityTrace, so that after the cut each sector can be judged.
 *
 * It runs until `opCount` operations were started or the power is cut; at `cutAtOp` it cuts the
 * power itself, while its operations are in flight (a cut at a moment rather than at an I/O event).
 * An operation may fail only because of the cut (EIO); anything else fails the trial.
 */
import type { CloneDevice } from '../../runtime/clone/clone-device.ts';
import type { PowerDomain } from '../../runtime/devices/power-domain.ts';
import { BlockError } from '../../runtime/errors.ts';
import type { Prng } from '../../runtime/prng.ts';
import { SECTOR_BYTES, writeData } from './clone-crash-records.ts';
import type { DurabilityTrace } from './durability-model.ts';
import { pickRange } from './io-ranges.ts';

export interface WorkloadPlan {
  opCount: number;
  /** Cut the power when this many operations were started (never when beyond opCount). */
  cutAtOp: number;
  contentSeed: number;
  /** Ids of this run's writes start here (unique within a trial). */
  firstWriteId: number;
}

export interface WorkloadCounts {
  writes: number;
  writesDone: number;
  flushes: number;
  discards: number;
  reads: number;
  statuses: number;
  failedByCut: number;
  /** Writes whose ids were used (the next run starts after them). */
  nextWriteId: number;
}

/** Writes and reads: whole regions, parts of one region, or runs across region boundaries. */
const IO_SHARES = { wholeRegions: 0.3, insideRegion: 0.35 };
/** Discards: mostly whole regions (which the clone forgets), the rest partly ignored. */
const DISCARD_SHARES = { wholeRegions: 0.7, insideRegion: 0.15 };

export async function runWorkload(clone: CloneDevice, domain: PowerDomain, trace: DurabilityTrace, prng: Prng, plan: WorkloadPlan, fail: (message: string) => never): Promise<WorkloadCounts> {
  const totalSectors = clone.sizeBytes / SECTOR_BYTES;
  const regionSectors = clone.regionBytes / SECTOR_BYTES;
  const counts: WorkloadCounts = { writes: 0, writesDone: 0, flushes: 0, discards: 0, reads: 0, statuses: 0, failedByCut: 0, nextWriteId: plan.firstWriteId };
  const inFlight = new Set<Promise<void>>();
  const start = (what: string, pending: Promise<unknown>) => {
    const tracked = pending.then(
      () => {},
      (error) => {
        if (error instanceof BlockError && error.code === 'EIO' && domain.isCut) counts.failedByCut++;
        else fail(`${what} failed before the power cut: ${(error as Error)?.stack ?? error}`);
      },
    );
    inFlight.add(tracked);
    void tracked.finally(() => inFlight.delete(tracked));
  };
  let depth = prng.range(1, 4);
  for (let step = 0; step < plan.opCount && !domain.isCut; step++) {
    if (step === plan.cutAtOp) {
      void domain.cut();
      break;
    }
    if (prng.chance(0.05)) depth = prng.range(1, 4);
    while (inFlight.size >= depth) await Promise.race(inFlight);
    if (domain.isCut) break;
    const roll = prng.next();
    if (roll < 0.55) {
      const [offsetBytes, lengthBytes] = pickRange(prng, totalSectors, regionSectors, IO_SHARES);
      const id = counts.nextWriteId++;
      const fua = prng.chance(0.1);
      const op = trace.issue('write', id, offsetBytes, lengthBytes, fua);
      counts.writes++;
      start(`write #${id} [${offsetBytes}+${lengthBytes}${fua ? ' fua' : ''}]`, clone.write(offsetBytes, writeData(plan.contentSeed, id, offsetBytes, lengthBytes), { fua }).then(() => {
        trace.done(op);
        counts.writesDone++;
      }));
    } else if (roll < 0.67) {
      const issueSeq = trace.flushIssued();
      counts.flushes++;
      start('flush', clone.flush().then(() => trace.flushDone(issueSeq)));
    } else if (roll < 0.75) {
      const [offsetBytes, lengthBytes] = pickRange(prng, totalSectors, regionSectors, DISCARD_SHARES);
      // The clone forgets only the regions a discard covers whole; the rest it leaves alone.
      const regionBytes = clone.regionBytes;
      const first = Math.ceil(offsetBytes / regionBytes);
      const endBytes = offsetBytes + lengthBytes;
      const end = endBytes === clone.sizeBytes ? clone.regionCount : Math.floor(endBytes / regionBytes);
      const op = first < end ? trace.issue('hint', counts.nextWriteId++, first * regionBytes, Math.min(clone.sizeBytes, end * regionBytes) - first * regionBytes) : null;
      counts.discards++;
      start(`discard [${offsetBytes}+${lengthBytes}]`, clone.discard(offsetBytes, lengthBytes).then(() => op && trace.done(op)));
    } else if (roll < 0.92) {
      const [offsetBytes, lengthBytes] = pickRange(prng, totalSectors, regionSectors, IO_SHARES);
      counts.reads++;
      start('read', clone.read(offsetBytes, new Uint8Array(lengthBytes)));
    } else if (roll < 0.96) {
      counts.statuses++;
      start('status', clone.status());
    } else {
      await Promise.all(inFlight);
      for (let turns = prng.range(1, 3); turns > 0; turns--) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }
  if (!domain.isCut) {
    // Past the last operation: let what is in flight, hydration and commits go on for a few turns.
    for (let turns = prng.range(0, 3); turns > 0 && !domain.isCut; turns--) await new Promise((resolve) => setTimeout(resolve, 0));
    void domain.cut();
  }
  await Promise.all(inFlight);
  return counts;
}
