/**
 * Clone power-loss soak: the trials of test/clone-power-loss.test.ts (test/support/clone-power-trial.ts:
 * a clone over power-loss devices is cut at random I/O events and moments while it writes, flushes,
 * discards, reads and hydrates; after every cut it reopens from the surviving images and every
 * invariant is checked) run for 100k cuts instead of 2000.
 *
 *   node --import tsx scripts/clone-power-soak.ts [cuts] [--seed N] [--jobs N]
 *   bun scripts/clone-power-soak.ts [cuts] [--seed N] [--jobs N]
 *   deno run -A scripts/clone-power-soak.ts [cuts] [--seed N] [--jobs N]
 *
 * cuts defaults to 100000; trial i uses seed N + i (N defaults to BLOCKCORE_SEED, else the clock,
 * and is printed first); --jobs trials are interleaved at once (default 8). It stops at the first
 * failure, prints it with its seed (BLOCKCORE_SEED=<seed> replays that trial exactly, as the first
 * trial of the test or of this script with `1`), and exits 1; otherwise it prints a summary and exits 0.
 */
import { detectRuntime } from '../runtime/adapter/index.ts';
import { runPowerTrials, type PowerTrialResult } from '../test/support/clone-power-trial.ts';
import { parseSoakArgs } from './soak-args.ts';

const DEFAULT_CUTS = 100_000;
const DEFAULT_JOBS = 8;
const PROGRESS_EVERY_CUTS = 5000;

const { count: cuts, baseSeed, jobs } = parseSoakArgs(process.argv.slice(2), { count: DEFAULT_CUTS, jobs: DEFAULT_JOBS, usage: 'clone-power-soak.ts [cuts] [--seed N] [--jobs N]' });
const runtime = detectRuntime();
const startedMs = Date.now();
const results: PowerTrialResult[] = [];
let cutsDone = 0;
let nextProgress = PROGRESS_EVERY_CUTS;
console.log(`clone power soak (${runtime}): ${cuts} cuts from seed ${baseSeed} (BLOCKCORE_SEED=${baseSeed}), ${jobs} trials at a time`);

function summary(): string {
  const sum = (pick: (r: PowerTrialResult) => number) => results.reduce((total, r) => total + pick(r), 0);
  const elapsedS = (Date.now() - startedMs) / 1000;
  return [
    `${sum((r) => r.cuts)} cuts in ${results.length} trials passed in ${elapsedS.toFixed(1)} s (${(sum((r) => r.cuts) / elapsedS).toFixed(0)} cuts/s, ${runtime})`,
    `  writes: ${sum((r) => r.writes)} issued, ${sum((r) => r.writesDone)} completed; flushes resolved: ${sum((r) => r.flushesDone)}; discards: ${sum((r) => r.discards)}; operations failed by cuts: ${sum((r) => r.failedByCut)}`,
    `  hydrated after cuts: ${sum((r) => r.cutsNoneHydrated)} none, ${sum((r) => r.cutsPartlyHydrated)} partly, ${sum((r) => r.cutsFullyHydrated)} fully`,
    `  unflushed metadata and destination writes at cuts: ${sum((r) => r.unflushedLost)} lost, ${sum((r) => r.unflushedKept)} kept, ${sum((r) => r.unflushedTorn)} torn; clean finishes: ${sum((r) => r.cleanFinishes)}`,
  ].join('\n');
}

try {
  await runPowerTrials({
    baseSeed, cuts, jobs,
    onResult: (result) => {
      results.push(result);
      cutsDone += result.cuts;
      if (cutsDone >= nextProgress) {
        nextProgress += PROGRESS_EVERY_CUTS;
        console.log(`  ${cutsDone}/${cuts} cuts (${((Date.now() - startedMs) / 1000).toFixed(0)} s)`);
      }
    },
  });
} catch (error) {
  console.log(summary());
  console.error(`\nFAILED: ${(error as Error).message}`);
  const seed = (error as { seed?: number }).seed;
  if (seed !== undefined) console.error(`failing seed: ${seed}  (replay: BLOCKCORE_SEED=${seed} node --import tsx scripts/clone-power-soak.ts 1)`);
  process.exit(1);
}
console.log(summary());
