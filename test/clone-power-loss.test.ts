/**
 * Power-loss crash test for the clone (see test/support/clone-power-trial.ts for what one trial does
 * and checks): in process, the clone's metadata and destination are power-loss devices of one domain
 * (runtime/devices/power-domain.ts), cut at random I/O events or moments while a seeded workload
 * writes, flushes, discards and reads with hydration in the background; after each cut the clone
 * reopens from the surviving images and every invariant is checked: the metadata opens, every
 * flushed or FUA write is there, every hydrated region holds the source or data written to it,
 * hydration never goes back, the source is unchanged.
 *
 * CUTS cuts per run on every runtime, trials seeded BLOCKCORE_SEED (or the clock) + 0, 1, 2...; a
 * failure names its seed, and BLOCKCORE_SEED=<that seed> replays it exactly as the first trial. For
 * 100k cuts run scripts/clone-power-soak.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { detectRuntime } from '../runtime/adapter/index.ts';
import { seedFromEnv } from '../runtime/prng.ts';
import { runPowerTrial, runPowerTrials, type PowerTrialResult } from './support/clone-power-trial.ts';

const CUTS = 2000;

test(`clone survives power loss: ${CUTS} seeded cuts (${detectRuntime()})`, async () => {
  const baseSeed = seedFromEnv();
  const startedMs = Date.now();
  const results = await runPowerTrials({ baseSeed, cuts: CUTS });
  const sum = (pick: (r: PowerTrialResult) => number) => results.reduce((total, r) => total + pick(r), 0);
  assert.ok(sum((r) => r.cuts) >= CUTS, `seeds ${baseSeed}+: every planned cut ran`);
  // The cuts must have met every state that matters: none, some and all regions hydrated; writes
  // acknowledged by flushes; unflushed writes lost, kept and torn; operations failed by the cut.
  for (const field of ['writesDone', 'flushesDone', 'discards', 'failedByCut', 'cutsNoneHydrated', 'cutsPartlyHydrated', 'cutsFullyHydrated', 'unflushedLost', 'unflushedKept', 'unflushedTorn', 'cleanFinishes'] as const) {
    assert.ok(sum((r) => r[field]) > 0, `seeds ${baseSeed}+: no ${field} in ${results.length} trials`);
  }
  console.log(
    `  clone-power-loss (${detectRuntime()}): ${sum((r) => r.cuts)} cuts in ${results.length} trials from seed ${baseSeed} in ${Date.now() - startedMs} ms; ` +
      `${sum((r) => r.writes)} writes (${sum((r) => r.writesDone)} done), ${sum((r) => r.flushesDone)} flushes, ${sum((r) => r.discards)} discards, ${sum((r) => r.failedByCut)} failed by cuts; ` +
      `hydrated after cuts: ${sum((r) => r.cutsNoneHydrated)} none, ${sum((r) => r.cutsPartlyHydrated)} partly, ${sum((r) => r.cutsFullyHydrated)} fully; ` +
      `unflushed writes lost ${sum((r) => r.unflushedLost)}, kept ${sum((r) => r.unflushedKept)}, torn ${sum((r) => r.unflushedTorn)}; ${sum((r) => r.cleanFinishes)} clean finishes`,
  );
});

test('a trial replays exactly from its seed', async () => {
  const baseSeed = seedFromEnv();
  for (let i = 0; i < 4; i++) {
    const seed = (baseSeed + i) >>> 0;
    assert.equal(await runPowerTrial(seed), await runPowerTrial(seed), `seed ${seed}`);
  }
});

test.run();
