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
import { CloneDevice } from '../runtime/clone/clone-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { PowerDomain } from '../runtime/devices/power-domain.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
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

test('close() right after hydration completes waits for the commit still running: the clone reopens fully hydrated', async () => {
  // Found by the clean finish of the trials: close() skipped its own commit when no bit was dirty
  // and a commit had been made before, even while the hydration-complete commit was still running,
  // then closed the devices under it; that commit failed unseen and a restart found regions
  // unhydrated again, and a completed write to one of them read as the source. Timer turns in the devices make
  // commits slow enough to meet close(), as fdatasync does.
  const baseSeed = seedFromEnv();
  const sizeBytes = 32 * 4096;
  for (let i = 0; i < 40; i++) {
    const seed = (baseSeed + i) >>> 0;
    const image = new Prng(seed).fill(new Uint8Array(sizeBytes));
    const domain = new PowerDomain({ seed, maxDelayTurns: 2, timerDelayChance: 0.5 });
    const clone = await CloneDevice.open({
      metadata: domain.attach(new MemoryDevice({ sizeBytes: 16384 })), destination: domain.attach(new MemoryDevice({ sizeBytes })),
      source: domain.attach(new MemoryDevice({ sizeBytes, initial: image })), regionSectors: 8, features: ['no_hydration'],
      hydrationThreshold: 64, hydrationBatchSize: 64, commitIntervalMs: 3_600_000,
    });
    const written = new Uint8Array(512).fill(0xc5);
    await clone.write(512, written);
    await clone.flush(); // the first commit
    clone.message('enable_hydration');
    await clone.whenHydrated();
    // A completed write to a region the background copy hydrated: its bit is in the running commit.
    const late = new Uint8Array(512).fill(0x3a);
    await clone.write(sizeBytes - 512, late);
    await clone.close();
    const report = await domain.cut({ unflushed: 'keep' }); // a restart: nothing lost
    const reopened = await CloneDevice.open({
      metadata: report.devices[0]!.backing, destination: report.devices[1]!.backing, source: report.devices[2]!.backing,
      regionSectors: 8, features: ['no_hydration'], commitIntervalMs: 3_600_000,
    });
    const hydratedRegions = reopened.hydratedRegions;
    const expected = image.slice();
    expected.set(written, 512);
    expected.set(late, sizeBytes - 512);
    const seen = new Uint8Array(sizeBytes);
    await reopened.read(0, seen);
    await reopened.close();
    assert.is(hydratedRegions, 32, `seed ${seed}: regions hydrated after close and restart`);
    assert.ok(seen.every((byte, at) => byte === expected[at]), `seed ${seed}: contents after close and restart`);
  }
});

test('a trial replays exactly from its seed', async () => {
  const baseSeed = seedFromEnv();
  for (let i = 0; i < 4; i++) {
    const seed = (baseSeed + i) >>> 0;
    assert.equal(await runPowerTrial(seed), await runPowerTrial(seed), `seed ${seed}`);
  }
});

test.run();
