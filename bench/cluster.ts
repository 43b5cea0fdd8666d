/**
 * Clustered array (runtime/cluster) vs the physical limit of a mirror, same process, same files,
 * interleaved rounds (A B A B), medians.
 *
 *   seqwrite   SIZE of 1 MiB writes (QD 4) to a 2-leg clustered raid1, then one flush, vs the same
 *              writes issued to both leg files directly in parallel (FileDevice each), then a flush
 *              of both: same bytes, same durability. Bitmap chunk 64 MiB (mdadm's default).
 *   randwrite  4 KiB random writes (QD 1) with a flush every 32, same two contenders; also the
 *              bitmap writes the array paid per user write (page writes per leg, result line).
 *   message    token/message/ack round trip (send to all-acknowledged) with 2 and 4 nodes on the
 *              in-process lock manager: result lines, median microseconds.
 *   recovery   a node dies with dirty chunks: time from its death to the survivor's resync start
 *              (result), and the survivor's resync rate vs a plain copy of the same chunks from
 *              leg 0 to leg 1 (ratio).
 * Run: npm run bench -- cluster [--runtimes node]
 * Env: BLOCKCORE_BENCH_CLUSTER_MIB (default 512), BLOCKCORE_BENCH_ROUNDS (default 5).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClusterArray } from '../runtime/cluster/array-device.ts';
import { clusterMsg, MSG_TYPE } from '../runtime/cluster/cluster-msg.ts';
import { Messenger } from '../runtime/cluster/messenger.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import { Prng } from '../runtime/prng.ts';
import { pipelined, randomBothLegs, sequentialBothLegs } from './leg-writes.ts';
import { interleave, median, ratioLine } from './stats.ts';

const MIB = 1024 * 1024;
const SIZE_BYTES = Number(process.env.BLOCKCORE_BENCH_CLUSTER_MIB ?? 512) * MIB;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 5);
const WRITE_BYTES = MIB;
const QUEUE_DEPTH = 4;
const RANDOM_WRITES = 4096;
const FLUSH_EVERY = 32;
const MESSAGES = 400;
const DATA_OFFSET_BYTES = MIB; // what planLegLayout gives legs of this size
const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'bun' : typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined' ? 'deno' : 'node';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-cluster-'));
const legFiles = [0, 1].map((i) => path.join(dir, `leg${i}.img`));
for (const file of legFiles) {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, SIZE_BYTES + DATA_OFFSET_BYTES);
}
const data = new Prng(0xc1a5).fill(new Uint8Array(WRITE_BYTES));
let arrayNumber = 0;

async function openArray(): Promise<{ array: ClusterArray; legs: FileDevice[] }> {
  const legs = await Promise.all(legFiles.map((file) => FileDevice.open(file)));
  const options = { name: `array:bench${++arrayNumber}`, legs, manager: new InProcessLockManager(), memberName: 'bench', ownsLegs: true };
  const array = arrayNumber === 1
    ? await ClusterArray.create(options, {
      name: 'bench', level: 'raid1', raidDisks: 2, nodes: 2, clusterName: 'bench', bitmapChunkBytes: 64 * MIB, assumeClean: true,
      uuid: new Prng(7).fill(new Uint8Array(16)), nowSeconds: 1,
    })
    : await ClusterArray.assemble(options);
  return { array, legs };
}

async function seqOurs(): Promise<number> {
  const { array } = await openArray();
  const start = performance.now();
  await pipelined(SIZE_BYTES / WRITE_BYTES, QUEUE_DEPTH, (i) => array.write(i * WRITE_BYTES, data));
  await array.flush();
  const seconds = (performance.now() - start) / 1000;
  await array.close();
  return SIZE_BYTES / seconds;
}

function seqPeer(): Promise<number> {
  return sequentialBothLegs(legFiles, DATA_OFFSET_BYTES, SIZE_BYTES, data, QUEUE_DEPTH);
}

const small = data.subarray(0, 4096);
let bitmapWritesPerWrite = 0;

async function randomOurs(): Promise<number> {
  const { array } = await openArray();
  const prng = new Prng(0x4a4d);
  const commitsBefore = array.status().bitmapCommits;
  const start = performance.now();
  for (let i = 0; i < RANDOM_WRITES; i++) {
    await array.write(prng.below(SIZE_BYTES / 4096) * 4096, small);
    if ((i + 1) % FLUSH_EVERY === 0) await array.flush();
  }
  await array.flush();
  const seconds = (performance.now() - start) / 1000;
  bitmapWritesPerWrite = (array.status().bitmapCommits - commitsBefore) / RANDOM_WRITES;
  await array.close();
  return RANDOM_WRITES / seconds;
}

function randomPeer(): Promise<number> {
  return randomBothLegs(legFiles, DATA_OFFSET_BYTES, SIZE_BYTES, small, RANDOM_WRITES, FLUSH_EVERY, 0x4a4d);
}

async function messageRoundTrip(nodes: number): Promise<number> {
  const manager = new InProcessLockManager();
  const messengers: Messenger[] = [];
  for (let i = 0; i < nodes; i++) {
    const space = await manager.join('bench-msg', { memberName: `n${i}` });
    messengers.push(await Messenger.start(space, { onMessage: async () => {} }));
  }
  const samples: number[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const start = performance.now();
    await messengers[i % nodes]!.send(clusterMsg(MSG_TYPE.RESYNCING, { lowSectors: i, highSectors: i + 1 }));
    samples.push((performance.now() - start) * 1000);
  }
  for (const messenger of messengers) await messenger.stop();
  await manager.close();
  return median(samples.slice(MESSAGES / 4));
}

/** A dies after writing half the array (1 MiB chunks, all dirty); B recovers: time to resync start, resync rate vs a plain copy. */
async function recovery(): Promise<{ startMs: number; oursRate: number; copyRate: number }> {
  const files = [0, 1].map((i) => path.join(dir, `rec${i}.img`));
  for (const file of files) {
    fs.writeFileSync(file, '');
    fs.truncateSync(file, SIZE_BYTES + DATA_OFFSET_BYTES);
  }
  const manager = new InProcessLockManager();
  const base = { name: 'array:rec', manager, ownsLegs: true, daemonSleepMs: 600_000 };
  let resyncStartedAt = 0;
  const b = await ClusterArray.create({ ...base, legs: await Promise.all(files.map((f) => FileDevice.open(f))), memberName: 'B', onEvent: (e) => {
    if (e.type === 'resync-started') resyncStartedAt = performance.now();
  } }, {
    name: 'rec', level: 'raid1', raidDisks: 2, nodes: 2, clusterName: 'bench', bitmapChunkBytes: MIB, assumeClean: true, uuid: new Prng(9).fill(new Uint8Array(16)), nowSeconds: 1,
  });
  const a = await ClusterArray.assemble({ ...base, legs: await Promise.all(files.map((f) => FileDevice.open(f))), memberName: 'A' });
  const dirtyBytes = SIZE_BYTES / 2;
  await pipelined(dirtyBytes / WRITE_BYTES, QUEUE_DEPTH, (i) => a.write(i * WRITE_BYTES, data));
  await a.flush();
  a.abandon();
  const died = performance.now();
  manager.kill(a.cluster.lockspace);
  while (b.status().nodesSeen.includes(1)) await new Promise((resolve) => setTimeout(resolve, 1));
  await b.quiet();
  const done = performance.now();
  const startMs = resyncStartedAt - died;
  const oursRate = dirtyBytes / ((done - resyncStartedAt) / 1000);
  await b.close();
  // The plain copy of the same bytes, leg 0 to leg 1, flushed.
  const [from, to] = await Promise.all(files.map((f) => FileDevice.open(f)));
  const buffer = new Uint8Array(WRITE_BYTES);
  const copyStart = performance.now();
  for (let at = 0; at < dirtyBytes; at += WRITE_BYTES) {
    await from!.read(DATA_OFFSET_BYTES + at, buffer);
    await to!.write(DATA_OFFSET_BYTES + at, buffer);
  }
  await to!.flush();
  const copyRate = dirtyBytes / ((performance.now() - copyStart) / 1000);
  await from!.close();
  await to!.close();
  for (const file of files) fs.rmSync(file, { force: true });
  return { startMs, oursRate, copyRate };
}

try {
  const seq = await interleave(ROUNDS, { ours: seqOurs, peer: seqPeer });
  console.log(`seqwrite ${SIZE_BYTES / MIB} MiB: ours ${(median(seq.ours) / MIB).toFixed(1)} MiB/s, both legs directly ${(median(seq.peer) / MIB).toFixed(1)} MiB/s`);
  const random = await interleave(ROUNDS, { ours: randomOurs, peer: randomPeer });
  console.log(`randwrite 4 KiB, flush every ${FLUSH_EVERY}: ours ${median(random.ours).toFixed(0)} IOPS, both legs directly ${median(random.peer).toFixed(0)} IOPS; ${bitmapWritesPerWrite.toFixed(3)} bitmap commits per write`);
  const rtt2 = await messageRoundTrip(2);
  const rtt4 = await messageRoundTrip(4);
  const rec = await recovery();
  console.log(`recovery: resync started ${rec.startMs.toFixed(1)} ms after the death; resync ${(rec.oursRate / MIB).toFixed(1)} MiB/s, plain copy ${(rec.copyRate / MIB).toFixed(1)} MiB/s`);
  console.log(ratioLine(`cluster seq 1 MiB writes, 2-leg raid1/both legs directly (${runtime})`, median(seq.ours), median(seq.peer)));
  console.log(ratioLine(`cluster 4 KiB random writes flush/32, raid1/both legs directly (${runtime})`, median(random.ours), median(random.peer)));
  console.log(ratioLine(`cluster resync/plain copy (${runtime})`, rec.oursRate, rec.copyRate));
  console.log(`result cluster bitmap commits per 4 KiB random write: ${bitmapWritesPerWrite.toFixed(3)}`);
  console.log(`result cluster message round trip 2 nodes: ${rtt2.toFixed(0)} us`);
  console.log(`result cluster message round trip 4 nodes: ${rtt4.toFixed(0)} us`);
  console.log(`result cluster node death to resync start: ${rec.startMs.toFixed(1)} ms`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
