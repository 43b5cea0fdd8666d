/**
 * Cluster-on-etcd kill soak: test/cluster-services.test.ts's trial (node B of an array shared by two
 * services is SIGKILLed at a random moment while it writes; node A must recover it, the legs end
 * identical, every write B acknowledged is there; B starts again) run `count` times instead of the
 * test's 50, through the test command under the runtime running this script.
 *
 *   node --import tsx scripts/cluster-etcd-soak.ts [count] [--seed N]
 *   bun scripts/cluster-etcd-soak.ts [count] [--seed N]
 *   deno run -A scripts/cluster-etcd-soak.ts [count] [--seed N]
 *
 * count defaults to 500; the seed to BLOCKCORE_SEED, else the clock. A failure prints its seed
 * (BLOCKCORE_SEED=<seed> replays it) and exits 1.
 */
import { spawnSync } from 'node:child_process';
import { detectRuntime } from '../runtime/adapter/index.ts';
import { parseSoakArgs } from './soak-args.ts';

const { count, baseSeed } = parseSoakArgs(process.argv.slice(2), { count: 500, jobs: 1, usage: 'cluster-etcd-soak.ts [count] [--seed N]' });
const runtime = detectRuntime();
console.log(`cluster-on-etcd kill soak (${runtime}): ${count} kills from seed ${baseSeed}`);
const run = spawnSync('node', ['scripts/test.mjs', 'cluster-services'], {
  stdio: 'inherit',
  env: { ...process.env, BLOCKCORE_KILL_TRIALS: String(count), BLOCKCORE_SEED: String(baseSeed), BLOCKCORE_TEST_RUNTIMES: runtime, BLOCKCORE_TEST_SILENCE_MS: String(30 * 60_000) },
});
process.exit(run.status ?? 1);
