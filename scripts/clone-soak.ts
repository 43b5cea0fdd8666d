/**
 * Clone crash soak: the trial of test/clone-crash.test.ts (test/support/clone-crash-trial.ts: a
 * child hydrates a clone while writing and flushing, is SIGKILLed at a random moment, and the
 * parent checks the metadata, every flushed write, every hydrated region, a torn commit point and
 * the source) run thousands of times instead of 50.
 *
 *   node --import tsx scripts/clone-soak.ts [count] [--seed N] [--jobs N]
 *   bun scripts/clone-soak.ts [count] [--seed N] [--jobs N]
 *   deno run -A scripts/clone-soak.ts [count] [--seed N] [--jobs N]
 *
 * count defaults to 2000; trial i uses seed N + i (N defaults to BLOCKCORE_SEED, else the clock);
 * --jobs trials run at once (default 2). The children run under the runtime that runs this
 * script. It stops at the first failure, prints it with its seed (BLOCKCORE_SEED=<seed> replays it
 * as the first trial of the test or of this script), keeps that trial's files, and exits 1;
 * otherwise it prints a summary and exits 0.
 */
import { detectRuntime } from '../runtime/adapter/index.ts';
import { runCrashTrials, type CrashTrialResult } from '../test/support/clone-crash-trial.ts';
import { parseSoakArgs } from './soak-args.ts';

const DEFAULT_COUNT = 2000;
const DEFAULT_JOBS = 2;
const PROGRESS_EVERY = 100;

const { count, baseSeed, jobs } = parseSoakArgs(process.argv.slice(2), { count: DEFAULT_COUNT, jobs: DEFAULT_JOBS, usage: 'clone-soak.ts [count] [--seed N] [--jobs N]' });
const runtime = detectRuntime();
const startedMs = Date.now();
const results: CrashTrialResult[] = [];
console.log(`clone soak (${runtime}): ${count} trials from seed ${baseSeed}, ${jobs} at a time`);

function summary(): string {
  const sum = (pick: (r: CrashTrialResult) => number) => results.reduce((total, r) => total + pick(r), 0);
  const elapsedS = (Date.now() - startedMs) / 1000;
  const partlyHydrated = results.filter((r) => r.hydratedAtCrash > 0 && r.hydratedAtCrash < r.regionCount).length;
  return [
    `${results.length} trials passed in ${elapsedS.toFixed(1)} s (${(results.length / elapsedS).toFixed(2)}/s, ${runtime}), ${sum((r) => r.crashes)} kills`,
    `  writes: ${sum((r) => r.writesIssued)} issued, ${sum((r) => r.writesDone)} completed; flushes resolved: ${sum((r) => r.flushesDone)}`,
    `  hydrated at the last kill: ${sum((r) => r.hydratedAtCrash)}/${sum((r) => r.regionCount)} regions; ` +
      `${results.filter((r) => r.hydratedAtCrash === 0).length} trials none, ${partlyHydrated} partly, ` +
      `${results.filter((r) => r.hydratedAtCrash === r.regionCount).length} fully`,
    `  torn-commit-point checks applied: ${sum((r) => r.tornChecks)}`,
  ].join('\n');
}

try {
  await runCrashTrials({
    baseSeed, count, jobs, keepFailedDir: true,
    onResult: (result, finished) => {
      results.push(result);
      if (finished % PROGRESS_EVERY === 0) console.log(`  ${finished}/${count} (${((Date.now() - startedMs) / 1000).toFixed(0)} s)`);
    },
  });
} catch (error) {
  console.log(summary());
  console.error(`\nFAILED: ${(error as Error).message}`);
  const seed = (error as { seed?: number }).seed;
  if (seed !== undefined) console.error(`failing seed: ${seed}  (replay: BLOCKCORE_SEED=${seed} node --import tsx scripts/clone-soak.ts 1)`);
  process.exit(1);
}
console.log(summary());
