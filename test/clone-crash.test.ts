/**
 * Crash test for the clone (see test/support/clone-crash-trial.ts for what one trial does and
 * checks): a child hydrates while doing random writes and flushes and is killed with SIGKILL at a
 * seeded random moment; after each kill the metadata opens, every flushed write is there, every
 * hydrated region holds the source or written data, a torn write of the last commit point would
 * fall back to an earlier commit that opens, and the source is unchanged. Some trials crash twice.
 *
 * TRIALS trials per run on every runtime, seeds BLOCKCORE_SEED (or the clock) + 0, 1, 2...; a
 * failure names its seed, and BLOCKCORE_SEED=<that seed> replays it first. For thousands of
 * trials run scripts/clone-soak.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { detectRuntime } from '../runtime/adapter/index.ts';
import { seedFromEnv } from '../runtime/prng.ts';
import { runCrashTrials, type CrashTrialResult } from './support/clone-crash-trial.ts';

const TRIALS = 50;
/** Two trials at once: a trial is mostly a child starting up (CPU) or running before its kill. */
const JOBS = 2;

test(`clone survives SIGKILL: ${TRIALS} seeded crash trials (${detectRuntime()})`, async () => {
  const baseSeed = seedFromEnv();
  const startedMs = Date.now();
  const results = await runCrashTrials({ baseSeed, count: TRIALS, jobs: JOBS });
  assert.is(results.length, TRIALS, `seeds ${baseSeed}+: every trial ran`);
  const sum = (pick: (r: CrashTrialResult) => number) => results.reduce((total, r) => total + pick(r), 0);
  // The trials must have exercised something: writes completed, flushes resolved, regions hydrated
  // at the kill in some trials and not all in others.
  assert.ok(sum((r) => r.writesDone) > 0, `seeds ${baseSeed}+: no write completed in any trial`);
  assert.ok(sum((r) => r.flushesDone) > 0, `seeds ${baseSeed}+: no flush resolved in any trial`);
  assert.ok(results.some((r) => r.hydratedAtCrash > 0), `seeds ${baseSeed}+: no trial had committed hydration at the kill`);
  assert.ok(results.some((r) => r.hydratedAtCrash < r.regionCount), `seeds ${baseSeed}+: every trial was fully hydrated at the kill`);
  assert.ok(sum((r) => r.tornChecks) > 0, `seeds ${baseSeed}+: the torn-commit-point check never applied`);
  console.log(
    `  clone-crash (${detectRuntime()}): ${TRIALS} trials from seed ${baseSeed} in ${Date.now() - startedMs} ms; ` +
      `${sum((r) => r.crashes)} kills, ${sum((r) => r.writesIssued)} writes issued, ${sum((r) => r.writesDone)} completed, ` +
      `${sum((r) => r.flushesDone)} flushes, ${sum((r) => r.hydratedAtCrash)}/${sum((r) => r.regionCount)} regions hydrated at the last kills, ` +
      `${sum((r) => r.tornChecks)} torn-commit-point checks`,
  );
});

test.run();
