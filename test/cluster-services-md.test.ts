/**
 * mdadm's clustermd_tests with two blockcore services as the two nodes (separate processes and
 * data directories, the legs shared through a bind mount, locks on a real etcd), on raid1 and on
 * raid10 (near=2 over two legs) as the suite runs them: 00 Create (the second node shows PENDING
 * while the first resyncs), 01 Grow add / bitmap-switch / resize, 02 Manage add / add-spare /
 * re-add, 03 switch-recovery and switch-resync (the node doing the work stops; the other takes
 * over and finishes). As the suite slows md with speed_limit_max, the node that is to be caught
 * mid-way runs with a resync rate limit (resyncMaxBytesPerSecond) and lifts it to finish, as its
 * `check wait` does. A leg added on one node is found on the other by its uuid in the data
 * directory (blkid's job) and kept in its state file. Each scenario ends with the array stopped on both nodes and the legs zeroed
 * (the suite's mdadm --zero). mdadm --examine judges the legs.
 */
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mdadmExamine } from './support/mdadm.ts';
import { attachNbd } from './support/nbd-attach.ts';
import { ServicePair } from './support/service-pair.ts';

const test = suite('clustermd_tests across two services (etcd)');
const MIB = 1024 * 1024;
const LEG_BYTES = 12 * MIB;
/** Slow enough that a resync or recovery is caught mid-way: its first batch goes, the next waits minutes. */
const SLOW = 4096;
const LEVELS = ['raid1', 'raid10'] as const;
type Level = (typeof LEVELS)[number];
const tag = (level: Level) => (level === 'raid1' ? 'r1' : 'r10');
const shape = (level: Level) => (level === 'raid10' ? { level, layout: 'n2' } : { level });

let pair: ServicePair;
const legs = (...numbers: number[]) => numbers.map((n) => pair.shared.legs[n]!);
const legFile = (n: number) => join(pair.shared.folder, `leg${n}.img`);

test.before(async () => {
  pair = await ServicePair.start(4, LEG_BYTES);
  await Promise.all([pair.startNode(0), pair.startNode(1)]);
});
test.after(async () => {
  await pair?.close();
});
test.after.each(async () => {
  try {
    await pair.stopArray('md0');
  } finally {
    pair.shared.wipe(); // also after a failed stop: the next scenario starts from zeroed legs
  }
});

/** Creates md0 on node A (with `extra` fields) over legs `on`; node B assembles it. */
async function createBoth(level: Level, on: number[], extra: Record<string, unknown> = {}, assembleExtra: Record<string, unknown> = {}) {
  const created = await pair.ok(0, 'POST', '/v1/arrays', { name: 'md0', legs: legs(...on), ...shape(level), lock: 'etcd', bitmapChunkBytes: MIB, ...extra });
  const assembled = await pair.ok(1, 'POST', '/v1/arrays', { name: 'md0', legs: legs(...on), assemble: true, lock: 'etcd', ...assembleExtra });
  return { created, assembled };
}

const states = (info: any) => info.legs.map((leg: { slot: number; state: string }) => `${leg.slot}:${leg.state}`).join(' ');
const spares = (info: any) => info.legs.filter((leg: { state: string }) => leg.state === 'spare').length;

/** clustermd's `check all state UU` and `nosync`: both nodes settle with this picture and these spares. */
async function bothSettle(picture: string, spareCount = 0): Promise<any[]> {
  const infos = [];
  for (const node of [0, 1]) {
    await pair.settled(node, 'md0');
    infos.push(await pair.arrayOn(node, 'md0', (info) => info.picture === picture && spares(info) === spareCount, `picture ${picture} with ${spareCount} spares`));
  }
  return infos;
}

async function legsEqual(numbers: number[], why: string): Promise<void> {
  const [first, ...rest] = await pair.shared.dataAreas(numbers);
  for (const [i, other] of rest.entries()) assert.ok(first!.equals(other), `${why}: leg ${numbers[0]} and leg ${numbers[i + 1]} differ`);
}

async function examine(n: number) {
  return mdadmExamine(legFile(n));
}

for (const level of LEVELS) {
  test(`00${tag(level)}_Create: A resyncs a new array while B shows PENDING; both end in sync and read each other's writes over NBD`, async () => {
    await createBoth(level, [0, 1], { resyncMaxBytesPerSecond: SLOW });
    await pair.arrayOn(0, 'md0', (info) => info.resync.state === 'running' && /resync/.test(info.state), 'resync running');
    await pair.arrayOn(1, 'md0', (info) => info.resync.state === 'pending' && /PENDING/.test(info.state), 'PENDING');
    await pair.ok(0, 'POST', '/v1/arrays/md0/resync-speed', { maxBytesPerSecond: null }); // clustermd's `check wait`
    await bothSettle('[UU]');
    await legsEqual([0, 1], 'after the initial resync');
    for (const n of [0, 1]) {
      const fields = await examine(n);
      assert.is(fields['State'], 'clean', `leg ${n}`);
      assert.is(fields['Raid Level'], level);
      assert.match(fields['Name'] ?? '', /^md0\b/, 'the array name is in the superblock (mdadm --name)');
    }
    for (const node of [0, 1]) await pair.ok(node, 'POST', '/v1/exports', { name: 'md0', device: 'array:md0' });
    const a = await attachNbd(pair.nbdAddress(0), 'md0');
    const b = await attachNbd(pair.nbdAddress(1), 'md0');
    try {
      const one = new Uint8Array(65536).fill(0x5a);
      const two = new Uint8Array(65536).fill(0xa5);
      await a.write(0, one, true);
      assert.equal(await b.read(0, one.length), one, "B reads A's write");
      await b.write(5 * MIB, two, true);
      assert.equal(await a.read(5 * MIB, two.length), two, "A reads B's write");
    } finally {
      await a.close();
      await b.close();
      for (const node of [0, 1]) await pair.ok(node, 'DELETE', '/v1/exports/md0');
    }
  });
}

for (const level of LEVELS) {
  test(`03${tag(level)}_switch-resync: A stops mid-resync; B takes the resync over and finishes; A assembles again`, async () => {
    await createBoth(level, [0, 1], { resyncMaxBytesPerSecond: SLOW });
    const caught = await pair.arrayOn(0, 'md0', (info) => info.resync.state === 'running' && info.resync.doneChunks > 0, 'resync running, some chunks done');
    assert.ok(caught.resync.doneChunks < caught.resync.totalChunks, `A is mid-way: ${JSON.stringify(caught.resync)}`);
    await pair.arrayOn(1, 'md0', (info) => info.resync.state === 'pending', 'PENDING');
    await pair.ok(0, 'POST', '/v1/arrays/md0/stop');
    await pair.settled(1, 'md0');
    await pair.ok(0, 'POST', '/v1/arrays', { name: 'md0', legs: legs(0, 1), assemble: true, lock: 'etcd' });
    const [a] = await bothSettle('[UU]');
    assert.ok(!/resync|PENDING/.test(a.state), a.state);
    await legsEqual([0, 1], 'after the takeover');
    assert.is((await examine(0))['State'], 'clean');
  });
}

test('01r1_Grow_add: raid1 grows by a new leg, by one with a spare bound, and onto the spare itself: every node ends [UUU], mdadm sees three devices', async () => {
  await createBoth('raid1', [0, 1], { assumeClean: true });
  await bothSettle('[UU]');
  await pair.ok(0, 'POST', '/v1/arrays/md0/legs', { device: legs(2)[0], grow: true });
  await bothSettle('[UUU]');
  await legsEqual([0, 1, 2], 'after the grow');
  assert.is((await examine(2))['Raid Devices'], '3');
  await pair.stopArray('md0');
  pair.shared.wipe();
  // -x1: a spare stays a spare while the array grows onto another device.
  await createBoth('raid1', [0, 1, 2], { assumeClean: true, spares: 1 });
  await bothSettle('[UU]', 1);
  await pair.ok(1, 'POST', '/v1/arrays/md0/legs', { device: legs(3)[0], grow: true });
  await bothSettle('[UUU]', 1);
  await legsEqual([0, 1, 3], 'after the grow with a spare bound');
  assert.match((await examine(3))['Array State']!, /^AAA /);
  await pair.stopArray('md0');
  pair.shared.wipe();
  // --grow --raid-devices=3 with no new device: the bound spare becomes the third leg.
  await createBoth('raid1', [0, 1, 2], { assumeClean: true, spares: 1 });
  await bothSettle('[UU]', 1);
  const notSpare = await pair.api(0, 'POST', '/v1/arrays/md0/legs', { device: legs(0)[0], grow: true });
  assert.is(notSpare.status, 400, notSpare.text);
  await pair.ok(0, 'POST', '/v1/arrays/md0/legs', { device: legs(2)[0], grow: true });
  await bothSettle('[UUU]', 0);
  await legsEqual([0, 1, 2], 'after the grow onto the spare');
  assert.is((await examine(2))['Raid Devices'], '3');
});

for (const level of LEVELS) {
  test(`01${tag(level)}_Grow_bitmap-switch: B stops; A switches clustered -> none -> internal -> none -> clustered; B assembles again`, async () => {
    await createBoth(level, [0, 1], { assumeClean: true });
    await bothSettle('[UU]');
    const refused = await pair.api(0, 'POST', '/v1/arrays/md0/bitmap', { bitmap: 'none' });
    assert.is(refused.status, 409, `refused while B has it: ${refused.text}`);
    await pair.ok(1, 'POST', '/v1/arrays/md0/stop');
    for (const [bitmap, featureMap] of [['none', '0x0'], ['internal', '0x1'], ['none', '0x0'], ['clustered', '0x101']] as const) {
      const switched = await pair.ok(0, 'POST', '/v1/arrays/md0/bitmap', { bitmap, ...(bitmap === 'none' ? {} : { bitmapChunkBytes: MIB }) });
      assert.is(switched.bitmap, bitmap);
      for (const n of [0, 1]) assert.is((await examine(n))['Feature Map'], featureMap, `leg ${n} after switching to ${bitmap}`);
    }
    assert.ok((await examine(1))['Cluster Name'] !== undefined, 'a clustered bitmap names its cluster');
    await pair.ok(1, 'POST', '/v1/arrays', { name: 'md0', legs: legs(0, 1), assemble: true, lock: 'etcd' });
    const infos = await bothSettle('[UU]');
    for (const info of infos) assert.is(info.bitmap, 'clustered');
  });
}

for (const level of LEVELS) {
  test(`01${tag(level)}_Grow_resize: A grows a small array to max (only the new part resyncs, on A) and back; every node takes each size`, async () => {
    const small = 4 * MIB;
    await createBoth(level, [0, 1], { assumeClean: true, sizeBytes: small });
    await bothSettle('[UU]');
    const grown = await pair.ok(0, 'POST', '/v1/arrays/md0/resize', { sizeBytes: 'max' });
    assert.ok(grown.sizeBytes > small, `grown: ${grown.sizeBytes}`);
    const [a, b] = await bothSettle('[UU]');
    assert.is(b.sizeBytes, grown.sizeBytes, 'B took the size');
    assert.is(a.resync.totalChunks, (grown.sizeBytes - small) / MIB, 'A resynced the new part only');
    await legsEqual([0, 1], 'after the grow');
    const shrunk = await pair.ok(1, 'POST', '/v1/arrays/md0/resize', { sizeBytes: small });
    assert.is(shrunk.sizeBytes, small);
    const after = await bothSettle('[UU]');
    for (const info of after) assert.is(info.sizeBytes, small);
    assert.is(after[1].resync.totalChunks, 0, 'a shrink resyncs nothing');
  });
}

for (const level of LEVELS) {
  test(`02${tag(level)}_Manage_add: fail and remove a leg, add a new device: A recovers it, both [UU]; added to a whole array it is a spare on both`, async () => {
    await createBoth(level, [0, 1], { assumeClean: true });
    await bothSettle('[UU]');
    await pair.ok(0, 'POST', '/v1/arrays/md0/legs/0/fail');
    await pair.arrayOn(1, 'md0', (info) => info.picture === '[_U]', 'B sees the leg failed');
    await pair.ok(0, 'DELETE', '/v1/arrays/md0/legs/0');
    await pair.arrayOn(1, 'md0', (info) => !info.legs.some((leg: { slot: number }) => leg.slot === 0), 'B dropped the removed leg');
    const added = await pair.ok(0, 'POST', '/v1/arrays/md0/legs', { device: legs(2)[0] });
    assert.ok(added.legs.some((leg: { device: string; recovering: boolean }) => leg.device === legs(2)[0] && leg.recovering), states(added));
    await bothSettle('[UU]');
    await legsEqual([1, 2], 'after the recovery');
    // B bound the new leg by its uuid (blkid's job) and keeps it by name; the removed one is gone
    // from its state file too: restarted, B assembles the array as it is now.
    const names = (info: any) => info.legs.map((leg: { device: string }) => leg.device).sort();
    assert.equal(names(await pair.ok(1, 'GET', '/v1/arrays/md0')), legs(1, 2));
    pair.service(1).signal('SIGTERM');
    await pair.service(1).exited;
    await pair.startNode(1);
    const [, restarted] = await bothSettle('[UU]');
    assert.equal(names(restarted), legs(1, 2));
    await pair.stopArray('md0');
    pair.shared.wipe();
    await createBoth(level, [0, 1], { assumeClean: true });
    await pair.ok(0, 'POST', '/v1/arrays/md0/legs', { device: legs(2)[0] });
    await bothSettle('[UU]', 1);
  });
}

for (const level of LEVELS) {
  test(`02${tag(level)}_Manage_add-spare: a spare added on one node is a spare on both (then a second next to one created with the array)`, async () => {
    await createBoth(level, [0, 1], { assumeClean: true });
    await pair.ok(1, 'POST', '/v1/arrays/md0/legs', { device: legs(2)[0], spare: true });
    await bothSettle('[UU]', 1);
    await pair.stopArray('md0');
    pair.shared.wipe();
    await createBoth(level, [0, 1, 2], { assumeClean: true, spares: 1 });
    await bothSettle('[UU]', 1);
    await pair.ok(0, 'POST', '/v1/arrays/md0/legs', { device: legs(3)[0], spare: true });
    await bothSettle('[UU]', 2);
  });
}

for (const level of LEVELS) {
  test(`02${tag(level)}_Manage_re-add: a leg failed from one node, written meanwhile, re-added from the other: only what it missed is recovered`, async () => {
    await createBoth(level, [0, 1], { assumeClean: true });
    await bothSettle('[UU]');
    await pair.ok(1, 'POST', '/v1/arrays/md0/legs/1/fail');
    await pair.arrayOn(0, 'md0', (info) => info.picture === '[U_]', 'A sees the leg failed');
    await pair.ok(0, 'POST', '/v1/exports', { name: 'md0', device: 'array:md0' });
    const a = await attachNbd(pair.nbdAddress(0), 'md0');
    try {
      await a.write(2 * MIB, new Uint8Array(65536).fill(7), true); // one bitmap chunk written while degraded
    } finally {
      await a.close();
      await pair.ok(0, 'DELETE', '/v1/exports/md0');
    }
    await pair.ok(0, 'POST', '/v1/arrays/md0/legs/1/re-add');
    const [first] = await bothSettle('[UU]');
    assert.is(first.resync.totalChunks, 1, 'only the chunk written while it was out');
    await legsEqual([0, 1], 'after the re-add');
  });
}

for (const level of LEVELS) {
  test(`03${tag(level)}_switch-recovery: a leg fails on A, its spare takes the role and A recovers it; A stops mid-way; B finishes`, async () => {
    await createBoth(level, [0, 1, 2], { assumeClean: true, spares: 1, resyncMaxBytesPerSecond: SLOW });
    await bothSettle('[UU]', 1);
    await pair.ok(0, 'POST', '/v1/arrays/md0/legs/0/fail');
    // clustermd's `check recovery-remote`: A recovers, B sees the leg recovering.
    const caught = await pair.arrayOn(0, 'md0', (info) => info.resync.state === 'running' && info.resync.doneChunks > 0, 'recovery running, some chunks done');
    assert.ok(caught.resync.doneChunks < caught.resync.totalChunks, `A is mid-way: ${JSON.stringify(caught.resync)}`);
    await pair.arrayOn(1, 'md0', (info) => info.legs.some((leg: { slot: number; recovering: boolean }) => leg.slot === 2 && leg.recovering), 'B sees the spare recovering');
    await pair.ok(0, 'POST', '/v1/arrays/md0/stop');
    const b = await pair.arrayOn(1, 'md0', (info) => info.picture === '[UU]' && !info.legs.some((leg: { recovering: boolean }) => leg.recovering), 'B finished the recovery', 30_000);
    assert.is(states(b), '0:faulty 1:active 2:active');
    await pair.settled(1, 'md0');
    await legsEqual([1, 2], 'after the takeover');
    assert.match((await examine(2))['Array State']!, /^AA /);
  });
}

test.run();
