/**
 * Clustered logs (runtime/dirty-log/clustered-log.ts) as cmirrord serves them: three log servers
 * in one process, each with its own client, one log uuid, ordered through the in-process ordering,
 * then the same cases ordered through etcd (a real one, started by the test).
 * Requests from all three at once: every member answers every region the same afterwards; a
 * region clears only when no member still has it marked; a member that leaves takes its marks
 * (those regions resync) and a new one joins through a checkpoint; a clustered-disk log is written
 * by the lowest member, whose FLUSH answers come once it is durable, and by the next one when it
 * leaves.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DISK_LOG_BITS_OFFSET } from '../runtime/dirty-log/disk-log-format.ts';
import { EtcdOrdering } from '../runtime/dirty-log/etcd-ordering.ts';
import { InProcessOrdering } from '../runtime/dirty-log/in-process-ordering.ts';
import type { Ordering } from '../runtime/dirty-log/ordering.ts';
import { EtcdStore } from '../runtime/locks/etcd/etcd-store.ts';
import { killEtcds, startEtcd, type TestEtcd } from './support/etcd.ts';
import { LogServer } from '../runtime/dirty-log/log-server.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { UlogClient } from '../runtime/ulog/ulog-client.ts';
import { localLink } from '../runtime/ulog/ulog-link.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-clustered-'));
const REGIONS = 64;

interface Member {
  server: LogServer;
  client: UlogClient;
}

async function member(ordering: Ordering, uuid: string, logArgs: string): Promise<Member> {
  const server = new LogServer({ ordering, openDevice: (name) => FileDevice.open(path.join(dir, name)) });
  const client = await UlogClient.open({ link: localLink(server), uuid, logArgs, targetSectors: 8 * REGIONS });
  await client.resume();
  return { server, client };
}

async function view(m: Member): Promise<string> {
  const out: string[] = [];
  for (let region = 0; region < REGIONS; region++) out.push(`${(await m.client.isClean(region)) ? 'c' : 'd'}${(await m.client.inSync(region)) ? 's' : 'o'}`);
  return out.join('');
}

async function stop(members: Member[]): Promise<void> {
  for (const m of members) {
    await m.client.destroy().catch(() => {});
    await m.server.close();
  }
}

interface OrderingHarness {
  make(): Promise<Ordering>;
  /** Resolves once every member has been delivered everything sent so far (replicas read locally agree). */
  settle(): Promise<void>;
  after?(): Promise<void>;
}

/** The cases, over one ordering implementation. */
function clusteredCases(label: string, harness: OrderingHarness): void {
  const test = suite(`dirty log: clustered (${label})`);
  test(`${label}: three members, requests from all at once: every member answers every region alike`, async () => {
    const ordering = await harness.make();
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await member(ordering, 'LVM-c1', 'clustered-core 8 nosync'));
    const prng = new Prng(seedFromEnv());
    try {
      await Promise.all(members.map(async (m, i) => {
        for (let step = 0; step < 60; step++) {
          const region = prng.below(REGIONS);
          const roll = prng.below(6);
          if (roll < 3) m.client.mark(region);
          else if (roll < 5) m.client.clear(region);
          else await m.client.setRegionSync(region, prng.chance(0.5));
          if (step % 5 === i) await m.client.flush();
        }
        await m.client.flush();
      }));
      const views = await Promise.all(members.map(view));
      assert.is(views[1], views[0]);
      assert.is(views[2], views[0]);
      assert.ok(/d/.test(views[0]!) || /o/.test(views[0]!), 'the workload left some region dirty or out of sync');
    } finally {
      await stop(members);
    }
  });

  test(`${label}: a region clears only when no member still has it marked, and it is in sync`, async () => {
    const ordering = await harness.make();
    const [a, b] = [await member(ordering, 'LVM-c2', 'clustered-core 8 nosync'), await member(ordering, 'LVM-c2', 'clustered-core 8 nosync')];
    try {
      a!.client.mark(5);
      await a!.client.flush();
      b!.client.mark(5);
      await b!.client.flush();
      a!.client.clear(5);
      await a!.client.flush();
      assert.not.ok(await a!.client.isClean(5), 'B still has it marked');
      await b!.client.setRegionSync(5, false);
      b!.client.clear(5);
      await b!.client.flush();
      assert.not.ok(await b!.client.isClean(5), 'out of sync: stays dirty');
      await b!.client.setRegionSync(5, true);
      b!.client.clear(5);
      await b!.client.flush();
      assert.ok(await a!.client.isClean(5));
    } finally {
      await stop([a!, b!]);
    }
  });

  test(`${label}: a member leaves with marks (its regions resync); a new member joins through a checkpoint and answers alike; resync work is one region at a time, waited-for regions first`, async () => {
    const ordering = await harness.make();
    const a = await member(ordering, 'LVM-c3', 'clustered-core 8 nosync');
    const b = await member(ordering, 'LVM-c3', 'clustered-core 8 nosync');
    try {
      b.client.mark(9);
      b.client.mark(40);
      await b.client.flush();
      await b.client.postsuspend(); // b leaves the group with 9 and 40 marked
      assert.not.ok(await a.client.isClean(9)); // ordered: after b's leave (IN_SYNC is answered from the replica as it is)
      assert.not.ok(await a.client.inSync(9), 'the departed member\'s regions are out of sync');
      const c = await member(ordering, 'LVM-c3', 'clustered-core 8 nosync');
      assert.is(await view(c), await view(a), 'the joiner holds what the others hold');
      // Regions someone waits to write go first; one region at a time across the cluster.
      assert.ok((await c.client.isRemoteRecovering(40)).recovering);
      assert.is(await a.client.resyncWork(), 40);
      assert.is(await c.client.resyncWork(), null, 'a recovers 40: nobody else gets work');
      await a.client.setRegionSync(40, true);
      assert.is(await c.client.resyncWork(), 9);
      await c.client.setRegionSync(9, true);
      await harness.settle(); // GET_SYNC_COUNT is answered from a's replica, which hears c's request in order
      assert.is(await a.client.syncCount(), REGIONS);
      await stop([c]);
    } finally {
      await stop([a, b]);
    }
  });

  test(`${label}: clustered-disk: the lowest member writes the log and its FLUSH answers come once it is durable; when it leaves, the next writes`, async () => {
    fs.writeFileSync(path.join(dir, 'cl.img'), '');
    fs.truncateSync(path.join(dir, 'cl.img'), 64 * 1024);
    const ordering = await harness.make();
    const a = await member(ordering, 'LVM-c4', 'clustered-disk cl.img 8 nosync');
    const b = await member(ordering, 'LVM-c4', 'clustered-disk cl.img 8 nosync');
    const dirtyOnDisk = () => {
      const bytes = fs.readFileSync(path.join(dir, 'cl.img'));
      const out: number[] = [];
      for (let region = 0; region < REGIONS; region++) if (!(bytes[DISK_LOG_BITS_OFFSET + (region >> 3)]! & (1 << (region & 7)))) out.push(region);
      return out;
    };
    try {
      assert.equal(dirtyOnDisk(), []);
      b.client.mark(17);
      await b.client.flush(); // b is not the server: answered after a's write
      assert.equal(dirtyOnDisk(), [17]);
      assert.match(await b.client.statusInfo(), /^3 clustered-disk cl\.img A$/);
      await a.client.postsuspend(); // the server leaves: b writes from now on
      b.client.mark(33);
      await b.client.flush();
      assert.equal(dirtyOnDisk(), [17, 33]);
      await stop([b]);
    } finally {
      await stop([a, b]);
    }
  });
  test.after(async () => {
    await harness.after?.();
  });
  test.run();
}

clusteredCases('in-process ordering', {
  make: async () => new InProcessOrdering(),
  // Every event is delivered a macrotask after the last: a few turns drain a test's queue.
  settle: () => new Promise((resolve) => setTimeout(resolve, 20)),
});

// The same cases with the group's order kept in a real etcd (runtime/dirty-log/etcd-ordering.ts).
let etcd: Promise<TestEtcd> | null = null;
const stores: EtcdStore[] = [];
const orderings: EtcdOrdering[] = [];
let roots = 0;
// A member whose etcd lease ends under it (its machine cut off past the TTL) is out of the group:
// its requests in flight are answered EAGAIN (the client sends them again), it joins again through
// a checkpoint and answers as the others do; the others saw it leave (its marks went out of sync).
const lostSuite = suite('dirty log: clustered (etcd ordering), a member that loses its lease');
lostSuite('the member joins again through a checkpoint and answers alike', async () => {
  etcd ??= startEtcd();
  // Two machines: a connection and an ordering each, on one group root.
  const sharedRoot = `/ordering-lost/${++roots}/`;
  const storeA = await EtcdStore.connect({ urls: [(await etcd).url] });
  const storeB = await EtcdStore.connect({ urls: [(await etcd).url] });
  stores.push(storeA, storeB);
  const orderingA = new EtcdOrdering(storeA, { root: sharedRoot, log: () => {} });
  const orderingB = new EtcdOrdering(storeB, { root: sharedRoot, log: () => {} });
  orderings.push(orderingA, orderingB);
  const a = await member(orderingA, 'LVM-lost', 'clustered-core 8 nosync');
  const b = await member(orderingB, 'LVM-lost', 'clustered-core 8 nosync');
  try {
    b.client.mark(5);
    await b.client.flush();
    a.client.mark(7);
    await a.client.flush();
    await orderingB.expireAll();
    // b's next requests go through once it is back in the group.
    b.client.mark(11);
    await b.client.flush();
    await orderingA.settle();
    await orderingB.settle();
    assert.not.ok(await a.client.inSync(5), 'a saw b\'s first membership leave with 5 marked');
    assert.is(await view(b), await view(a), 'b joined again and holds what a holds');
    assert.not.ok(await a.client.isClean(11), 'b\'s request after its return reached the group');
  } finally {
    await stop([a, b]);
  }
});
lostSuite.run();

clusteredCases('etcd ordering', {
  async make() {
    etcd ??= startEtcd();
    const store = await EtcdStore.connect({ urls: [(await etcd).url] });
    stores.push(store);
    const ordering = new EtcdOrdering(store, { root: `/ordering-test/${++roots}/` });
    orderings.push(ordering);
    return ordering;
  },
  async settle() {
    for (const ordering of orderings) await ordering.settle();
  },
  async after() {
    for (const ordering of orderings) await ordering.close().catch(() => {});
    for (const store of stores) store.close();
    await (await etcd)?.stop();
    killEtcds();
    fs.rmSync(dir, { recursive: true, force: true });
  },
});
