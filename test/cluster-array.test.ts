/**
 * The clustered array (runtime/cluster/array-device.ts) with several nodes in one process on the
 * in-process lock manager, over real leg files: the device conformance suite (raid1 and raid10
 * near=2), nodes reading each other's writes, lazy bit clearing, a new array resynced by one node
 * while the next shows PENDING, a node dying with a mirror write half done (the survivor merges
 * its bits and resyncs), a leg failing (every node stops using it; mdadm sees it), and refusals
 * that write nothing; on raid1 and raid10 as clustermd_tests: a node stopping mid-resync
 * (switch-resync: another takes over), manage add / add-spare / remove / re-add, and the node
 * rebuilding a new leg stopping mid-way (switch-recovery).
 */
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterArray } from '../runtime/cluster/array-device.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import { readMdSuperblock } from '../runtime/cluster/leg-metadata.ts';
import { clusterMsg, MSG_TYPE } from '../runtime/cluster/cluster-msg.ts';
import { deviceConformance } from './conformance/device-suite.ts';
import { withDeadline } from './support/deadline.ts';
import { expectCode } from './support/expect-code.ts';
import { mdadmExamine } from './support/mdadm.ts';
import {
  assertLegsEqual, DATA_OFFSET_BYTES, findIn, GatedDevice, legData, legFiles, MIB, node, openLegs, pattern, recoveredFrom, removeTempDir, sleep, spec,
} from './support/cluster-nodes.ts';

deviceConformance('cluster array raid1 (2 legs)', async ({ sizeBytes, logicalBlockBytes, initial }) => {
  const legs = await openLegs(legFiles(2, sizeBytes), logicalBlockBytes);
  const array = await ClusterArray.create({ name: 'array:conf', legs, manager: new InProcessLockManager(), memberName: 'n1', ownsLegs: true }, spec({ nodes: 2 }));
  if (initial) await array.write(0, initial);
  return array;
}, { readOnly: false });

deviceConformance('cluster array raid10 near=2 (4 legs)', async ({ sizeBytes, logicalBlockBytes, initial }) => {
  const legs = await openLegs(legFiles(4, sizeBytes / 2), logicalBlockBytes);
  const array = await ClusterArray.create(
    { name: 'array:conf10', legs, manager: new InProcessLockManager(), memberName: 'n1', ownsLegs: true },
    spec({ level: 'raid10', raidDisks: 4, nearCopies: 2, raid10ChunkBytes: 16 * 1024, nodes: 2 }),
  );
  if (initial) await array.write(0, initial);
  return array;
}, { readOnly: false });

// ---- several nodes ----

const test = suite('cluster array: nodes');

/** mdadm's clustermd_tests run these on raid1 and on raid10 (near=2 over two legs). */
const LEVELS = ['raid1', 'raid10'] as const;
const shape = (level: (typeof LEVELS)[number]) => (level === 'raid10' ? { level, nearCopies: 2, raid10ChunkBytes: 64 * 1024 } : { level });

test('two nodes read each other\'s writes; bits set while writing are cleared after daemon_sleep', async () => {
  const files = legFiles(2, 4 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files, 'A', { create: spec(), daemonSleepMs: 40 });
  const b = await node(manager, files, 'B', { daemonSleepMs: 40 });
  try {
    assert.is(a.array.status().slot, 0);
    assert.is(b.array.status().slot, 1);
    await a.array.write(MIB, pattern(128 * 1024, 1));
    await b.array.write(2 * MIB + 4096, pattern(8192, 2));
    assert.ok(a.array.status().dirtyChunks >= 2, 'bits of A\'s write are set');
    const back = new Uint8Array(8192);
    await a.array.read(2 * MIB + 4096, back);
    assert.equal(back, pattern(8192, 2));
    const big = new Uint8Array(128 * 1024);
    await b.array.read(MIB, big);
    assert.equal(big, pattern(128 * 1024, 1));
    for (let i = 0; i < 100 && (a.array.status().dirtyChunks > 0 || b.array.status().dirtyChunks > 0); i++) await sleep(20);
    assert.is(a.array.status().dirtyChunks, 0, 'A cleared its bits lazily');
    assert.is(b.array.status().dirtyChunks, 0, 'B cleared its bits lazily');
    await a.array.flush();
    assertLegsEqual(files, 'after both nodes wrote');
  } finally {
    await a.array.close();
    await b.array.close();
  }
});

for (const level of LEVELS) {
  test(`${level}: a new array: the first node resyncs it, the second shows PENDING, then nothing is left to do (clustermd_tests 00${level === 'raid1' ? 'r1' : 'r10'}_Create)`, async () => {
    const files = legFiles(2, 4 * MIB);
    fs.writeFileSync(files[0]!, pattern(4 * MIB, 9), { flag: 'r+', encoding: null } as fs.WriteFileOptions);
    const manager = new InProcessLockManager();
    const gates: GatedDevice[] = [];
    const gated = (legs: FileDevice[]) => legs.map((leg) => (gates[gates.length] = new GatedDevice(leg)));
    const a = await node(manager, files, 'A', { create: spec({ ...shape(level), assumeClean: false }), wrap: gated });
    const b = await node(manager, files, 'B');
    try {
      assert.is(a.array.status().resync.state, 'running', 'A holds the resync lock; its copies wait at the gate');
      assert.is(b.array.status().resync.state, 'pending', 'the second node waits for the resync lock');
      assert.ok(b.array.status().suspended.length > 0, 'B keeps out of A\'s resync window');
      for (const gate of gates) gate.openFully();
      await a.array.resyncIdle();
      await b.array.resyncIdle();
      assert.is(a.array.status().resync.doneChunks, a.array.status().resync.totalChunks);
      assert.ok(a.array.status().resync.totalChunks > 0);
      assert.is(b.array.status().resync.totalChunks, 0, 'B found the array in sync when its turn came');
      assertLegsEqual(files, 'after the resync');
      const examined = await mdadmExamine(files[1]!);
      assert.is(examined['State'], 'clean');
    } finally {
      for (const gate of gates) gate.openFully();
      await a.array.close();
      await b.array.close();
    }
  });
}

test('a node dies with a mirror write half done: the survivor merges its bits and resyncs the chunk', async () => {
  const files = legFiles(2, 4 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files, 'A', { create: spec() });
  const b = await node(manager, files, 'B');
  try {
    await a.array.write(3 * MIB, pattern(64 * 1024, 3));
    await a.array.flush();
    assert.ok(a.array.status().dirtyChunks > 0);
    // A's last write reached leg 0 only before A's machine died.
    const fd = fs.openSync(files[1]!, 'r+');
    fs.writeSync(fd, pattern(64 * 1024, 99), 0, 64 * 1024, DATA_OFFSET_BYTES + 3 * MIB);
    fs.closeSync(fd);
    a.array.abandon();
    manager.kill(a.array.cluster.lockspace);
    await recoveredFrom(b.array, 0);
    assertLegsEqual(files, 'after recovery');
    assert.ok(b.events.some((e) => /resync of 1 chunks started/.test(e)), b.events.join('\n'));
    const back = new Uint8Array(64 * 1024);
    await b.array.read(3 * MIB, back);
    assert.equal(back, pattern(64 * 1024, 3), 'the source copy won');
  } finally {
    await b.array.close();
  }
});

test('a leg that fails a write is marked faulty in every superblock and every node stops using it', async () => {
  const files = legFiles(2, 4 * MIB);
  const manager = new InProcessLockManager();
  let broken: FaultDevice | null = null;
  const a = await node(manager, files, 'A', {
    create: spec(),
    wrap: (legs) => legs.map((leg, i) => (i === 1 ? (broken = new FaultDevice(leg, { seed: 1 })) : leg)),
  });
  const b = await node(manager, files, 'B');
  try {
    broken!.addRule({ op: 'write', probability: 1, action: 'fail' });
    await a.array.write(0, pattern(4096, 5));
    assert.is(a.array.status().picture, '[U_]');
    assert.is(b.array.status().picture, '[U_]', 'B learnt it from METADATA_UPDATED before A\'s write was acknowledged');
    assert.ok(a.events.some((e) => /leg .* \(role 1\) failed/.test(e)), a.events.join('\n'));
    const examined = await mdadmExamine(files[0]!);
    assert.match(examined['Array State']!, /^A\. /);
    await b.array.write(4096, pattern(4096, 6));
    const back = new Uint8Array(8192);
    await a.array.read(0, back);
    assert.equal(back.subarray(4096), pattern(4096, 6));
    await sleep(50);
    assert.ok(a.array.status().dirtyChunks > 0, 'degraded: bits stay set for the leg\'s return');
  } finally {
    await a.array.close();
    await b.array.close();
  }
});

for (const level of LEVELS) {
  test(`${level}: a node stopping mid-resync hands it over: another node finishes and the array ends clean`, async () => {
    const files = legFiles(2, 4 * MIB);
    const manager = new InProcessLockManager();
    const gates: GatedDevice[] = [];
    const gated = (legs: FileDevice[]) => legs.map((leg) => (gates[gates.length] = new GatedDevice(leg)));
    const a = await node(manager, files, 'A', { create: spec({ ...shape(level), assumeClean: false }), wrap: gated });
    const b = await node(manager, files, 'B');
    try {
      for (const gate of gates) gate.allow(level === 'raid10' ? 8 : 2); // raid10 reads a copy's chunks one raid chunk at a time
      for (let i = 0; i < 200 && a.array.status().resync.doneChunks === 0; i++) await sleep(5);
      assert.ok(a.array.status().resync.doneChunks > 0, 'A copied some chunks');
      const closing = a.array.close(); // sends RESYNCING 0..0 and BITMAP_NEEDS_SYNC
      for (const gate of gates) gate.openFully();
      await closing;
      await b.array.quiet();
      for (let i = 0; i < 200 && b.array.status().resync.state !== 'idle'; i++) await sleep(10);
      assertLegsEqual(files, 'after the takeover');
      assert.is((await mdadmExamine(files[0]!))['State'], 'clean');
    } finally {
      for (const gate of gates) gate.openFully();
      await b.array.close();
    }
  });
}

for (const level of LEVELS) {
  test(`${level}: add a spare (every node binds it), remove it; add to a degraded array: recovered in the vacant role`, async () => {
    const files = legFiles(3, 4 * MIB);
    const manager = new InProcessLockManager();
    const a = await node(manager, files.slice(0, 2), 'A', { create: spec(shape(level)), findDevice: findIn(files) });
    const b = await node(manager, files.slice(0, 2), 'B', { findDevice: findIn(files) });
    try {
      await a.array.write(0, pattern(256 * 1024, 4));
      const spare = await FileDevice.open(files[2]!);
      const number = await a.array.addLeg(spare, true);
      assert.is(number, 2);
      for (const n of [a, b]) assert.equal(n.array.status().legs.map((leg) => leg.state), ['active', 'active', 'spare'], 'both nodes see the spare');
      const removed = await a.array.removeLeg(2);
      await removed.close();
      for (const n of [a, b]) assert.is(n.array.status().legs.length, 2, 'both nodes dropped it');
      assert.ok(b.events.some((e) => /removed by another node/.test(e)));
      // Degraded: leg 1 fails, a new device takes its role and is recovered whole.
      await a.array.failByNumber(1);
      assert.is(b.array.status().picture, '[U_]');
      await a.array.write(MIB, pattern(64 * 1024, 5));
      const fresh = await FileDevice.open(files[2]!);
      await a.array.addLeg(fresh, false);
      await a.array.quiet();
      for (const n of [a, b]) assert.is(n.array.status().picture, '[UU]', 'in sync on every node');
      const l0 = legData(files[0]!);
      assert.ok(l0.equals(legData(files[2]!)), 'the new leg holds what leg 0 holds');
      const back = new Uint8Array(64 * 1024);
      await b.array.read(MIB, back);
      assert.equal(back, pattern(64 * 1024, 5));
      assert.match((await mdadmExamine(files[2]!))['Array State']!, /^AA /);
    } finally {
      await a.array.close();
      await b.array.close();
    }
  });
}

for (const level of LEVELS) {
  test(`${level}: re-add a failed leg: only the chunks written while it was out are recovered`, async () => {
    const files = legFiles(2, 4 * MIB);
    const manager = new InProcessLockManager();
    const a = await node(manager, files, 'A', { create: spec({ ...shape(level), bitmapChunkBytes: 64 * 1024 }) });
    const b = await node(manager, files, 'B');
    try {
      await a.array.failByNumber(1);
      await a.array.write(0, pattern(64 * 1024, 6));
      await b.array.write(2 * MIB, pattern(128 * 1024, 7));
      await a.array.readdLeg(1);
      await a.array.quiet();
      const resync = a.array.status().resync;
      assert.is(resync.totalChunks, 3, 'one chunk of A\'s write and two of B\'s');
      assert.is(a.array.status().picture, '[UU]');
      assert.is(b.array.status().picture, '[UU]');
      assertLegsEqual(files, 'after the re-add');
    } finally {
      await a.array.close();
      await b.array.close();
    }
  });
}

for (const level of LEVELS) {
  test(`${level}: switch-recovery: the node rebuilding a new leg stops mid-way; another node finishes the recovery`, async () => {
    const files = legFiles(3, 4 * MIB);
    const manager = new InProcessLockManager();
    const finder = findIn([files[2]!]);
    const gates: GatedDevice[] = [];
    const gated = (legs: FileDevice[]) => legs.map((leg) => (gates[gates.length] = new GatedDevice(leg)));
    const a = await node(manager, files.slice(0, 2), 'A', { create: spec(shape(level)), wrap: gated, findDevice: finder });
    const b = await node(manager, files.slice(0, 2), 'B', { findDevice: finder });
    try {
      for (const gate of gates) gate.openFully();
      await a.array.write(0, pattern(4 * MIB, 8));
      await a.array.failByNumber(1);
      // A's reads of leg 0 (the recovery's source) now wait at the gate: its recovery stalls after two copies.
      const leg0Gate = gates[0]!;
      leg0Gate.closeAgain();
      leg0Gate.allow(level === 'raid10' ? 8 : 2);
      await a.array.addLeg(await FileDevice.open(files[2]!), false);
      for (let i = 0; i < 200 && a.array.status().resync.doneChunks === 0; i++) await sleep(5);
      assert.ok(a.array.status().resync.state === 'running', 'A is recovering the new leg');
      const closing = a.array.close();
      leg0Gate.openFully();
      await closing;
      await b.array.quiet();
      for (let i = 0; i < 300 && b.array.status().picture !== '[UU]'; i++) await sleep(10);
      assert.is(b.array.status().picture, '[UU]', 'B finished the recovery');
      assert.ok(legData(files[0]!).equals(legData(files[2]!)), 'the new leg holds everything');
    } finally {
      for (const gate of gates) gate.openFully();
      await b.array.close();
    }
  });
}

for (const level of LEVELS) {
  test(`${level}: a leg fails with a spare bound: the spare takes its role on every node and is recovered whole (md's remove_and_add_spares)`, async () => {
    const files = legFiles(3, 4 * MIB);
    const manager = new InProcessLockManager();
    const a = await node(manager, files, 'A', { create: spec({ ...shape(level), raidDisks: 2 }) });
    const b = await node(manager, files, 'B');
    try {
      for (const n of [a, b]) assert.equal(n.array.status().legs.map((leg) => leg.state), ['active', 'active', 'spare']);
      await a.array.write(0, pattern(2 * MIB, 9));
      await b.array.failByNumber(0);
      for (let i = 0; i < 300 && !(a.array.status().picture === '[UU]' && b.array.status().picture === '[UU]' && b.array.status().resync.state === 'idle'); i++) await sleep(10);
      for (const n of [a, b]) {
        assert.equal(n.array.status().legs.map((leg) => [leg.devNumber, leg.state, leg.role, leg.recovering]), [[0, 'faulty', null, false], [1, 'active', 1, false], [2, 'active', 0, false]]);
      }
      assert.ok(b.events.some((e) => /spare .* takes role 0: recovering/.test(e)), `B recorded the failure and gave its role to the spare: ${b.events.join('\n')}`);
      assert.ok(!a.events.some((e) => /takes role/.test(e)), 'A did not (only the node that recorded the failure)');
      assert.ok(legData(files[1]!).equals(legData(files[2]!)), 'the spare holds what leg 1 holds');
      assert.match((await mdadmExamine(files[2]!))['Array State']!, /^AA /);
    } finally {
      await a.array.close();
      await b.array.close();
    }
  });
}

test('a resync under a rate limit holds no chunk while it waits: writes anywhere go through at once; lifted, it finishes', async () => {
  const files = legFiles(2, 4 * MIB);
  const manager = new InProcessLockManager();
  // 4 KiB/s: the first batch is copied at once, the next would wait minutes for the limit.
  const a = await node(manager, files, 'A', { create: spec({ assumeClean: false }), resyncMaxBytesPerSecond: 4096 });
  try {
    for (let i = 0; i < 200 && a.array.status().resync.doneChunks === 0; i++) await sleep(5);
    const { doneChunks, totalChunks } = a.array.status().resync;
    assert.ok(doneChunks > 0 && doneChunks < totalChunks, `one batch done: ${doneChunks}/${totalChunks}`);
    // Every chunk, those the waiting copy will take next included: none waits for the limit.
    for (let chunk = 0; chunk < totalChunks; chunk++) {
      await withDeadline(a.array.write(chunk * 64 * 1024, pattern(4096, chunk)), 10_000, `a write to chunk ${chunk} during the limited resync`);
    }
    a.array.setResyncRate(null);
    await a.array.quiet();
    assert.is(a.array.status().resync.state, 'idle');
    assertLegsEqual(files, 'after the resync');
  } finally {
    await a.array.close();
  }
});

test('raid10 near=2: a node dies with a write half done on one copy; the survivor resyncs it', async () => {
  const files = legFiles(4, 2 * MIB);
  const manager = new InProcessLockManager();
  const raid10 = spec({ level: 'raid10', raidDisks: 4, nearCopies: 2, raid10ChunkBytes: 64 * 1024 });
  const a = await node(manager, files, 'A', { create: raid10 });
  const b = await node(manager, files, 'B');
  try {
    await a.array.write(0, pattern(128 * 1024, 11)); // array chunks 0 and 1: legs 0+1, then 2+3
    await a.array.flush();
    const fd = fs.openSync(files[3]!, 'r+');
    fs.writeSync(fd, pattern(64 * 1024, 77), 0, 64 * 1024, DATA_OFFSET_BYTES);
    fs.closeSync(fd);
    a.array.abandon();
    manager.kill(a.array.cluster.lockspace);
    await recoveredFrom(b.array, 0);
    assert.ok(legData(files[2]!).equals(legData(files[3]!)), 'the copies of array chunk 1 agree again');
    const back = new Uint8Array(128 * 1024);
    await b.array.read(0, back);
    assert.equal(back, pattern(128 * 1024, 11));
  } finally {
    await b.array.close();
  }
});

test('grow add (raid1 2 -> 3 legs): every node writes the new leg, which is rebuilt; mdadm sees three devices', async () => {
  const files = legFiles(3, 4 * MIB);
  const manager = new InProcessLockManager();
  const finder = findIn([files[2]!]);
  const a = await node(manager, files.slice(0, 2), 'A', { create: spec(), findDevice: finder });
  const b = await node(manager, files.slice(0, 2), 'B', { findDevice: finder });
  try {
    await a.array.write(0, pattern(2 * MIB, 12));
    await a.array.growWith(await FileDevice.open(files[2]!));
    await b.array.write(3 * MIB, pattern(64 * 1024, 13)); // goes to all three legs
    await a.array.quiet();
    for (const n of [a, b]) assert.is(n.array.status().picture, '[UUU]');
    await b.array.flush();
    assert.ok(legData(files[0]!).equals(legData(files[2]!)), 'the new leg holds everything');
    assert.ok(legData(files[1]!).equals(legData(files[2]!)));
    const examined = await mdadmExamine(files[2]!);
    assert.is(examined['Raid Devices'], '3');
    assert.match(examined['Array State']!, /^AAA /);
  } finally {
    await a.array.close();
    await b.array.close();
  }
});

test('an add some node cannot see is refused (ENOENT): METADATA_UPDATED makes the nodes that saw it drop it; nothing changes', async () => {
  const files = legFiles(3, 4 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files.slice(0, 2), 'A', { create: spec(), findDevice: findIn(files) });
  const b = await node(manager, files.slice(0, 2), 'B', { findDevice: findIn(files) });
  const c = await node(manager, files.slice(0, 2), 'C'); // no findDevice: sees no new disk
  try {
    const events = a.array.status().events;
    const device = await FileDevice.open(files[2]!);
    await expectCode(a.array.addLeg(device, true), 'ENOENT', /cannot see/);
    await device.close();
    for (const n of [a, b, c]) assert.is(n.array.status().legs.length, 2, 'no node keeps the disk');
    assert.ok(b.events.some((e) => /was not added .*dropped/.test(e)), b.events.join('\n'));
    assert.is(a.array.status().events, events, 'no superblock change');
    await a.array.write(0, pattern(4096, 1)); // the channel is free again
    // B took no-new-dev CR again: a later add that every node can see goes through.
    await c.array.close();
    const again = await FileDevice.open(files[2]!);
    assert.is(await a.array.addLeg(again, true), 2);
    assert.equal(b.array.status().legs.map((leg) => leg.state), ['active', 'active', 'spare']);
  } finally {
    await a.array.close();
    await b.array.close();
  }
});

test('a node stops while it waits to recover a slot whose node has not left yet: the wait is cancelled, the stop ends', async () => {
  const files = legFiles(2, 4 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files, 'A', { create: spec() });
  const b = await node(manager, files, 'B');
  try {
    // B asks for its bits to be taken over but stays: A's recovery waits for B's bitmap lock.
    await (b.array.cluster as unknown as { messenger: { send(msg: unknown): Promise<void> } }).messenger.send(clusterMsg(MSG_TYPE.BITMAP_NEEDS_SYNC));
    for (let i = 0; i < 200 && !a.array.cluster.recoveryRunning; i++) await sleep(2);
    assert.ok(a.array.cluster.recoveryRunning, 'A waits to recover B\'s slot');
    const stopped = await Promise.race([a.array.close().then(() => true), sleep(2000).then(() => false)]);
    assert.ok(stopped, 'A stopped');
  } finally {
    await b.array.close();
  }
});

test('refused: legs of another array, a slot above nodes, a bad checksum; nothing is written', async () => {
  const manager = new InProcessLockManager();
  const one = legFiles(2, 2 * MIB);
  const other = legFiles(2, 2 * MIB);
  const a = await node(manager, one, 'A', { create: spec({ nodes: 1 }) });
  const stranger = await node(new InProcessLockManager(), other, 'X', { create: spec({ nodes: 1 }) });
  await stranger.array.close();
  const otherBefore = fs.readFileSync(other[0]!);
  try {
    const mixed = await openLegs([one[0]!, other[0]!]);
    await expectCode(ClusterArray.assemble({ name: 'array:mix', legs: mixed, manager, memberName: 'M' }), 'EINVAL', /another array/);
    await Promise.all(mixed.map((leg) => leg.close()));
    const second = await openLegs(one);
    await expectCode(ClusterArray.assemble({ name: 'array:c1', legs: second, manager, memberName: 'B' }), 'ERANGE', /above the array's 1 nodes/);
    await Promise.all(second.map((leg) => leg.close()));
  } finally {
    await a.array.close();
  }
  assert.ok(fs.readFileSync(other[0]!).equals(otherBefore), 'the refused assembly wrote nothing to the stranger leg');
  const bad = Buffer.from(fs.readFileSync(one[1]!));
  bad[4096 + 100]! ^= 1;
  fs.writeFileSync(one[1]!, bad);
  const before = one.map((file) => fs.readFileSync(file));
  const corrupt = await openLegs(one);
  await expectCode(ClusterArray.assemble({ name: 'array:c1', legs: corrupt, manager, memberName: 'C' }), 'EINVAL', /checksum/);
  await Promise.all(corrupt.map((leg) => leg.close()));
  one.forEach((file, i) => assert.ok(fs.readFileSync(file).equals(before[i]!), `leg ${i} untouched by the refused assembly`));
});

test.after(removeTempDir);
test.run();
