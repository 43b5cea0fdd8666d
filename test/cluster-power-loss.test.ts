/**
 * A node of a raid1 loses power mid-workload (the power-loss device model: unflushed writes lost
 * or torn at the cut, each leg on its own). Clustered: its lockspace membership dies and the other
 * node recovers it (merges the dead slot's bits and resyncs). Internal bitmap or none (one node
 * at a time): the array is assembled again after the reboot (its own bits, or with no bitmap the
 * dirty flag: everything, resynced). Then every leg must hold the same bytes (a chunk written to
 * one leg but not the other must have had its bit, or the dirty mark, durable first), and every
 * sector must be what the durability model allows: each acknowledged, flushed write there (or a
 * later one in flight). Now and then the node resizes the array (the cut may fall between its
 * superblock commit and its slot rewrite); what is judged is the array as the survivor sees it.
 * Seeded; a failing trial names its seed. Writing data before the dirty mark is durable fails the
 * none trials; clearing slot bits before the resize's superblock commit fails the clustered ones.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import { ClusterArray } from '../runtime/cluster/array-device.ts';
import type { BitmapMode } from '../runtime/cluster/leg-layout.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { PowerDomain } from '../runtime/devices/power-domain.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { writeData } from './support/clone-crash-records.ts';
import { withDeadline } from './support/deadline.ts';
import { batchesUntilCut } from './support/power-batches.ts';
import { DurabilityTrace, judgeSector } from './support/durability-model.ts';

const test = suite('cluster array power loss');
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-cluster-power-'));
const MIB = 1024 * 1024;
const DATA_BYTES = 2 * MIB;
const CHUNK_BYTES = 64 * 1024;
const TRIALS = Number(process.env.BLOCKCORE_CLUSTER_POWER_TRIALS ?? 40);
const OPS = 48;
/** A trial takes well under a second; one that has not settled in this long hangs. */
const TRIAL_TIMEOUT_MS = Number(process.env.BLOCKCORE_TRIAL_TIMEOUT_MS ?? 60_000);

/** clustered: B, another node, recovers A while running; internal and none: B assembles after A's crash (one node at a time). */
async function trial(seed: number, bitmap: BitmapMode): Promise<void> {
  const prng = new Prng(seed);
  const files = [0, 1].map((i) => path.join(tempDir, `s${seed}-leg${i}.img`));
  for (const file of files) {
    fs.writeFileSync(file, '');
    fs.truncateSync(file, MIB + DATA_BYTES);
  }
  const manager = new InProcessLockManager();
  const uuid = new Prng(seed ^ 0x5a5a).fill(new Uint8Array(16));
  const events: string[] = [];
  const base = { name: 'array:p', manager };
  const log = (who: string) => (event: { message: string }) => events.push(`${who} ${event.message}`);
  // B: another machine (plain files, no power to lose), which will recover A.
  const bOptions = async (over: { manager?: InProcessLockManager } = {}) => ({
    ...base, ...over, legs: await Promise.all(files.map((file) => FileDevice.open(file))), memberName: 'B', ownsLegs: true, daemonSleepMs: 60_000, onEvent: log('B'),
  });
  let b = await ClusterArray.create(await bOptions(), {
    name: 'p', level: 'raid1', raidDisks: 2, nodes: 2, clusterName: 'power', bitmapChunkBytes: CHUNK_BYTES, assumeClean: true, uuid, nowSeconds: 1, bitmap,
  });
  if (bitmap !== 'clustered') await b.close();
  // A: its legs behind one power domain.
  const domain = new PowerDomain({ seed, maxDelayTurns: 3, timerDelayChance: 0.05 });
  const aBacking = await Promise.all(files.map((file) => FileDevice.open(file)));
  const aLegs = aBacking.map((leg, i) => domain.attach(leg, `A-leg${i}`));
  // The bitmap daemon runs at seeded points of the workload (clearIdleBits), not on a timer: a trial replays.
  const a = await ClusterArray.assemble({ ...base, legs: aLegs, memberName: 'A', daemonSleepMs: 60_000, onEvent: log('A') });
  domain.cutAtEvent(prng.range(20, 1500));

  const contentSeed = seed >>> 0;
  const trace = new DurabilityTrace(DATA_BYTES / 512);
  let id = 0;
  const write = async (offset: number, sectors: number, fua: boolean): Promise<void> => {
    const index = ++id;
    const op = trace.issue('write', index, offset, sectors * 512, fua);
    await a.write(offset, writeData(contentSeed, index, offset, sectors * 512), { fua });
    trace.done(op);
  };
  const one = async (): Promise<void> => {
    const roll = prng.below(10);
    try {
      if (roll < 2) {
        const issued = trace.flushIssued();
        await a.flush();
        trace.flushDone(issued);
        return;
      }
      if (roll === 8 && prng.chance(0.5)) {
        // Shrink or grow (the regrown part resynced from the old end), B pausing meanwhile. A
        // shrink often follows an unflushed write past its new end, and the cut often falls in
        // it: the bits of such a write must stay until the superblocks no longer hold its chunk.
        const target = MIB + prng.below(MIB / 4096 + 1) * 4096;
        if (target < a.sizeBytes - 64 * 512 && prng.chance(0.5)) await write(target + prng.below((a.sizeBytes - target) / 512 - 64) * 512, 64, false);
        if (prng.chance(0.4)) domain.cutAtEvent(domain.events + prng.range(1, 16));
        await a.resize({ sizeBytes: target });
        return;
      }
      if (roll === 9) {
        // Now and then the cut falls inside the bitmap daemon's flush-then-clear.
        if (prng.chance(0.25)) domain.cutAtEvent(domain.events + prng.range(1, 12));
        // After bits were cleared (no bitmap: the array marked clean), the next write must set them
        // (mark it dirty) durably before its data: the cut often comes right then.
        if ((await a.clearIdleBits(0)) > 0 && prng.chance(0.5)) domain.cutAtEvent(domain.events + prng.range(2, 14));
        return;
      }
      const sectors = prng.range(1, 128);
      // Now and then the cut falls inside a write: in its bitmap commit or dirty mark, or its data.
      if (prng.chance(0.1)) domain.cutAtEvent(domain.events + prng.range(1, 10));
      await write(prng.below(a.sizeBytes / 512 - sectors) * 512, sectors, roll === 2);
    } catch {
      // the power went: this op is not acknowledged
    }
  };
  await batchesUntilCut(prng, domain, OPS, one);
  await domain.cut();
  a.abandon();
  manager.kill(a.cluster.lockspace);
  if (bitmap === 'clustered') {
    // Recovery starts when B hears that A's slot left (recoverSlot comes before recoverDone).
    for (let i = 0; i < 1000 && b.status().nodesSeen.includes(1); i++) await new Promise((resolve) => setTimeout(resolve, 1));
    if (b.status().nodesSeen.includes(1)) throw new Error('B never saw A leave');
  } else {
    b = await ClusterArray.assemble(await bOptions({ manager: new InProcessLockManager() })); // after A's reboot
  }
  await b.quiet();

  const legBytes = files.map((file) => fs.readFileSync(file).subarray(MIB, MIB + b.sizeBytes));
  if (!legBytes[0]!.equals(legBytes[1]!)) {
    const first = legBytes[0]!.findIndex((byte, i) => byte !== legBytes[1]![i]);
    throw new Error(`legs differ after recovery, first at data byte ${first} (chunk ${Math.floor(first / CHUNK_BYTES)}); B: ${b.status().resync.doneChunks} chunks resynced; events:\n${events.join('\n')}`);
  }
  const zero = new Uint8Array(512);
  const sector = new Uint8Array(512);
  for (let s = 0; s < b.sizeBytes / 512; s++) {
    await b.read(s * 512, sector);
    const why = judgeSector({ trace, contentSeed }, s, sector, zero);
    if (why !== null) throw new Error(`${why}; B: ${b.status().resync.doneChunks} chunks resynced; events:\n${events.join('\n')}`);
  }
  await b.close();
  await Promise.all(aBacking.map((leg) => leg.close()));
  for (const file of files) fs.rmSync(file, { force: true });
}

/** BLOCKCORE_CLUSTER_POWER_BITMAPS=none,internal runs only those. */
const BITMAPS = (process.env.BLOCKCORE_CLUSTER_POWER_BITMAPS ?? 'clustered,internal,none').split(',');
for (const [bitmap, trials] of [['clustered', TRIALS], ['internal', Math.ceil(TRIALS / 2)], ['none', TRIALS * 2]] as const) {
  if (!BITMAPS.includes(bitmap)) continue;
  test(`bitmap ${bitmap}: a node's power is cut mid-workload (${trials} seeded trials): legs identical after recovery, every flushed write there`, async () => {
    const first = seedFromEnv();
    for (let t = 0; t < trials; t++) {
      const seed = (first + t) >>> 0;
      try {
        await withDeadline(trial(seed, bitmap), TRIAL_TIMEOUT_MS, 'the trial');
      } catch (error) {
        if (error instanceof Error) error.message += ` [bitmap ${bitmap}, trial seed ${seed}; replay with BLOCKCORE_SEED=${seed}]`;
        throw error;
      }
    }
  });
}

test.after(() => fs.rmSync(tempDir, { recursive: true, force: true }));
test.run();
