/**
 * The lock manager on etcd (runtime/locks/etcd) against a real etcd started here (Debian's
 * etcd-server on free ports), interleaved rounds (A B A B), medians.
 *
 *   lock       uncontended EX lock + unlock on one resource, vs the bare etcd round trip it is
 *              built on (one guarded txn): milliseconds of each (result lines) and their ratio.
 *   hand-off   two machines (a connection each) hold PR; one converts to EX and waits; the other
 *              unlocks: time from the unlock call to the conversion's grant (result, ms), vs the
 *              bare txn.
 *   seqwrite   SIZE of 1 MiB writes (QD 4) + a flush to a 2-leg clustered raid1 whose node holds
 *              its locks on etcd, vs the same array on the in-process lock manager (target >= 0.8:
 *              bitmap bits are set rarely, locks stay off the data path).
 *   death      a node's process stops (its lease is not renewed, nor revoked): time from then to
 *              the other node's recovery start (recoverSlot), with the lease TTL 1 s and 5 s
 *              (target <= 2x TTL): result lines, and the ratio TTL x 2 / measured.
 * Run: npm run bench -- cluster-etcd [--runtimes node]
 * Env: BLOCKCORE_BENCH_CLUSTER_MIB (default 256), BLOCKCORE_BENCH_ROUNDS (default 5).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClusterArray } from '../runtime/cluster/array-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import type { EtcdMember } from '../runtime/locks/etcd/etcd-member.ts';
import { EtcdLockManager } from '../runtime/locks/etcd/etcd-lock-manager.ts';
import { EtcdStore } from '../runtime/locks/etcd/etcd-store.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import type { LockManager } from '../runtime/locks/lock-manager.ts';
import { LockMode } from '../runtime/locks/modes.ts';
import { Prng } from '../runtime/prng.ts';
import { startEtcd } from '../test/support/etcd.ts';
import { pipelined } from './leg-writes.ts';
import { interleave, median, ratioLine } from './stats.ts';

const MIB = 1024 * 1024;
const SIZE_BYTES = Number(process.env.BLOCKCORE_BENCH_CLUSTER_MIB ?? 256) * MIB;
const ROUNDS = Number(process.env.BLOCKCORE_BENCH_ROUNDS ?? 5);
const LOCKS = 200;
const HANDOFFS = 60;
const DATA_OFFSET_BYTES = MIB;
const runtime = typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'bun' : typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined' ? 'deno' : 'node';

const etcd = await startEtcd();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-bench-etcd-'));
const stores: EtcdStore[] = [];
const connect = async () => {
  const store = await EtcdStore.connect({ urls: [etcd.url] });
  stores.push(store);
  return store;
};
let roots = 0;
const ms = (from: number) => performance.now() - from;

/** Median ms of a bare guarded txn (compare a key's version, put it): what every lock call costs at least. */
async function bareTxnMs(store: EtcdStore): Promise<number> {
  const samples: number[] = [];
  const key = `/bench/bare/${++roots}`;
  let revision = (await store.txn([], [{ put: { key, value: new Uint8Array(8) } }])).revision;
  for (let i = 0; i < LOCKS; i++) {
    const start = performance.now();
    const result = await store.txn([{ key, target: 'modRevision', op: '==', value: revision }], [{ put: { key, value: new Uint8Array(8) } }]);
    samples.push(ms(start));
    if (!result.succeeded) throw new Error('the bare txn lost its compare: something else wrote the key');
    revision = result.revision;
  }
  return median(samples.slice(LOCKS / 4));
}

async function lockMs(manager: EtcdLockManager): Promise<number> {
  const space = await manager.join(`lock${++roots}`, { memberName: 'a' });
  const samples: number[] = [];
  for (let i = 0; i < LOCKS; i++) {
    const start = performance.now();
    const lock = await space.lock('r', LockMode.EX);
    samples.push(ms(start));
    await lock.unlock();
  }
  await space.leave();
  return median(samples.slice(LOCKS / 4));
}

async function handoffMs(one: EtcdLockManager, two: EtcdLockManager): Promise<number> {
  const lockspace = `handoff${++roots}`;
  const a = await one.join(lockspace, { memberName: 'a' });
  const b = await two.join(lockspace, { memberName: 'b' });
  const samples: number[] = [];
  for (let i = 0; i < HANDOFFS; i++) {
    const aLock = await a.lock('r', LockMode.PR);
    const bLock = await b.lock('r', LockMode.PR);
    const granted = aLock.convert(LockMode.EX);
    await new Promise((resolve) => setTimeout(resolve, 5)); // queued
    const start = performance.now();
    await bLock.unlock();
    await granted;
    samples.push(ms(start));
    await aLock.unlock();
  }
  await a.leave();
  await b.leave();
  return median(samples.slice(HANDOFFS / 4));
}

// ---- sequential writes: the same array on either lock manager ----

const legFiles = [0, 1].map((i) => path.join(dir, `leg${i}.img`));
for (const file of legFiles) {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, SIZE_BYTES + DATA_OFFSET_BYTES);
}
const data = new Prng(0xe7cd).fill(new Uint8Array(MIB));
let formatted = false;

async function seqWrite(manager: LockManager): Promise<number> {
  const legs = await Promise.all(legFiles.map((file) => FileDevice.open(file)));
  const options = { name: 'array:bench', legs, manager, memberName: 'bench', ownsLegs: true };
  const array = formatted
    ? await ClusterArray.assemble(options)
    : await ClusterArray.create(options, {
      name: 'bench', level: 'raid1', raidDisks: 2, nodes: 2, clusterName: 'bench', bitmapChunkBytes: 64 * MIB, assumeClean: true,
      uuid: new Prng(11).fill(new Uint8Array(16)), nowSeconds: 1,
    });
  formatted = true;
  const start = performance.now();
  await pipelined(SIZE_BYTES / MIB, 4, (i) => array.write(i * MIB, data));
  await array.flush();
  const seconds = ms(start) / 1000;
  await array.close();
  return SIZE_BYTES / seconds;
}

// ---- node death to recovery start ----

async function deathToRecoveryMs(ttlSeconds: number): Promise<number> {
  const root = `/bench/death/${++roots}/`;
  const survivor = new EtcdLockManager(await connect(), { root, leaseTtlSeconds: ttlSeconds });
  const dying = new EtcdLockManager(await connect(), { root, leaseTtlSeconds: ttlSeconds });
  let recoveredAt = 0;
  await survivor.join('d', { memberName: 'a', callbacks: { recoverSlot: () => void (recoveredAt = performance.now()) } });
  const gone = (await dying.join('d', { memberName: 'b' })) as EtcdMember;
  await gone.lock('bitmap0002', LockMode.PW);
  // Its process stops: no renewal, no revoke; the lease runs out in etcd.
  const stoppedAt = performance.now();
  gone.lease.stop();
  gone.depart('bench: the process stopped');
  while (recoveredAt === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  await survivor.close();
  return recoveredAt - stoppedAt;
}

try {
  const store = await connect();
  const one = new EtcdLockManager(store, { root: '/bench/one/' });
  const two = new EtcdLockManager(await connect(), { root: '/bench/one/' });
  const lock = await interleave(ROUNDS, { bare: () => bareTxnMs(store), ours: () => lockMs(one) });
  const handoff = await interleave(ROUNDS, { bare: () => bareTxnMs(store), ours: () => handoffMs(one, two) });
  const inProcess = new InProcessLockManager();
  const writes = await interleave(ROUNDS, { inProcess: () => seqWrite(inProcess), etcd: () => seqWrite(one) });
  const deaths: Record<number, number[]> = { 1: [], 5: [] };
  for (let round = 0; round < 3; round++) for (const ttl of [1, 5]) deaths[ttl]!.push(await deathToRecoveryMs(ttl));
  await one.close();
  await two.close();
  const lockMedian = median(lock.ours);
  const handoffMedian = median(handoff.ours);
  console.log(`result etcd EX lock acquire, uncontended (${runtime}): ${lockMedian.toFixed(2)} ms (bare guarded txn ${median(lock.bare).toFixed(2)} ms)`);
  console.log(`result etcd PR->EX hand-off, two machines (${runtime}): ${handoffMedian.toFixed(2)} ms (bare guarded txn ${median(handoff.bare).toFixed(2)} ms)`);
  for (const ttl of [1, 5]) console.log(`result node death to recovery start, lease TTL ${ttl} s (${runtime}): ${Math.round(median(deaths[ttl]!))} ms`);
  console.log(ratioLine(`etcd EX lock acquire/bare etcd txn, latency (${runtime})`, 1 / lockMedian, 1 / median(lock.bare)));
  console.log(ratioLine(`etcd PR->EX hand-off/bare etcd txn, latency (${runtime})`, 1 / handoffMedian, 1 / median(handoff.bare)));
  console.log(ratioLine(`clustered raid1 seq 1 MiB writes, etcd/in-process lock manager (${runtime})`, median(writes.etcd), median(writes.inProcess)));
  for (const ttl of [1, 5]) console.log(ratioLine(`node death to recovery start, 2x TTL ${ttl} s/measured (${runtime})`, 1 / median(deaths[ttl]!), 1 / (2 * ttl * 1000)));
} finally {
  for (const store of stores) store.close();
  await etcd.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}
