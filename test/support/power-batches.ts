/**
 * The workload loop of the array and mirror power trials: batches of 1 to 3 concurrent ops (each
 * `one()` picks and runs an op, swallowing the cut's errors) until `ops` ran or the power is cut.
 * The prng draws are the trial's own, in the same order, so a seed replays.
 */
import type { PowerDomain } from '../../runtime/devices/power-domain.ts';
import type { Prng } from '../../runtime/prng.ts';

export async function batchesUntilCut(prng: Prng, domain: PowerDomain, ops: number, one: () => Promise<void>): Promise<void> {
  for (let done = 0; done < ops && !domain.isCut; ) {
    const batch = prng.range(1, 4);
    await Promise.all(Array.from({ length: batch }, one));
    done += batch;
  }
}
