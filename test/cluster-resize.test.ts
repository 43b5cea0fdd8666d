/**
 * Online resize of a clustered array (runtime/cluster/array-resize.ts) with several nodes in one
 * process: mdadm's clustermd_tests 01r1_Grow_resize and 01r10_Grow_resize (grow to max: only the
 * new part is resynced; shrink back: nothing to resync), every node taking the size while another
 * node writes, mdadm reading the new size, refusals that write nothing, the resizing node dying
 * half way (the others take the size on disk and write again), and a slot left with the old
 * sync_size by a crash (read all the same).
 */
import fs from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeBitmapSuperblock } from '../runtime/cluster/bitmap-superblock.ts';
import { bitmapAreaOffsetBytes, superblockOffsetBytes } from '../runtime/cluster/leg-layout.ts';
import { readMdSuperblock, writeMdSuperblock } from '../runtime/cluster/leg-metadata.ts';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import { expectCode } from './support/expect-code.ts';
import { mdadmExamine, mdadmExamineBitmap } from './support/mdadm.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';
import { assertLegsEqual, GatedDevice, legFiles, MIB, node, pattern, readBytes, removeTempDir, sleep, spec } from './support/cluster-nodes.ts';

const test = suite('cluster array: online resize');

const KIB = 1024;

for (const level of ['raid1', 'raid10'] as const) {
  test(`${level}: grow to max resyncs only the new part; shrink back resyncs nothing; every node takes each size (clustermd_tests 01${level === 'raid1' ? 'r1' : 'r10'}_Grow_resize)`, async () => {
    const files = legFiles(2, 8 * MIB);
    const manager = new InProcessLockManager();
    const create = spec({ level, sizeBytes: 2 * MIB, ...(level === 'raid10' ? { nearCopies: 2, raid10ChunkBytes: 64 * KIB } : {}) });
    const a = await node(manager, files, 'A', { create });
    const b = await node(manager, files, 'B');
    try {
      assert.is(a.array.sizeBytes, 2 * MIB);
      await b.array.write(MIB, pattern(MIB, 4));
      const grown = await a.array.resize({ sizeBytes: 'max' });
      assert.is(grown.oldSizeBytes, 2 * MIB);
      assert.is(grown.sizeBytes, 8 * MIB);
      assert.is(grown.resyncChunks, (6 * MIB) / (64 * KIB), 'the new part only');
      assert.is(b.array.sizeBytes, grown.sizeBytes, 'B took the new size');
      await a.array.quiet();
      await b.array.quiet();
      const resyncs = [a, b].map((n) => n.array.status().resync.totalChunks);
      assert.ok(resyncs.includes(grown.resyncChunks), `one node resynced the new part: ${resyncs.join(', ')}`);
      assert.is(a.array.superblock.resyncOffsetSectors, null, 'in sync again');
      assertLegsEqual(files, 'after the grow');
      // The new part is an ordinary part of the array on every node.
      await b.array.write(7 * MIB, pattern(64 * KIB, 7));
      const back = new Uint8Array(64 * KIB);
      await a.array.read(7 * MIB, back);
      assert.equal(back, pattern(64 * KIB, 7));
      const old = new Uint8Array(MIB);
      await a.array.read(MIB, old);
      assert.equal(old, pattern(MIB, 4), 'the old part kept its data');
      const examined = await mdadmExamine(files[0]!);
      assert.match(examined['Array Size'] ?? '', new RegExp(`^${(8 * MIB) / KIB} `), JSON.stringify(examined));

      const before = a.array.status().resync.totalChunks + b.array.status().resync.totalChunks;
      const shrunk = await a.array.resize({ sizeBytes: 2 * MIB });
      assert.equal([shrunk.sizeBytes, shrunk.resyncChunks], [2 * MIB, 0]);
      assert.is(b.array.sizeBytes, 2 * MIB);
      await a.array.quiet();
      await b.array.quiet();
      assert.is(a.array.status().resync.totalChunks + b.array.status().resync.totalChunks, before, 'nosync');
      await expectCode(b.array.write(7 * MIB, pattern(4 * KIB, 1)), 'ERANGE');
      await expectCode(a.array.write(2 * MIB, pattern(4 * KIB, 1)), 'ERANGE');
      assert.is((await mdadmExamine(files[1]!))['Array Size']?.split(' ')[0], String((2 * MIB) / KIB));
      const bitmap = await mdadmExamineBitmap(files[0]!);
      assert.is(bitmap.slots.length, 3);
      assert.is(bitmap.fields['Sync Size']?.split(' ')[0], String((2 * MIB) / KIB), JSON.stringify(bitmap.fields));
      for (const slot of bitmap.slots) assert.match(slot['Bitmap'] ?? '', new RegExp(`^${(2 * MIB) / (64 * KIB)} bits`), JSON.stringify(slot));
    } finally {
      await a.array.close();
      await b.array.close();
    }
  });
}

test('writes of other nodes wait while the size changes and then go on; none is lost', async () => {
  const files = legFiles(2, 8 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files, 'A', { create: spec({ sizeBytes: 4 * MIB }) });
  const b = await node(manager, files, 'B');
  const c = await node(manager, files, 'C');
  try {
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 32; i++) {
      const writer = i % 2 === 0 ? b : c;
      writes.push(writer.array.write(i * 64 * KIB, pattern(64 * KIB, i)));
    }
    const resized = a.array.resize({ sizeBytes: 6 * MIB, assumeClean: true });
    for (let i = 32; i < 48; i++) writes.push(b.array.write(i * 64 * KIB, pattern(64 * KIB, i)));
    assert.is((await resized).resyncChunks, 0, 'assumeClean: nothing to resync');
    await Promise.all(writes);
    for (const n of [a, b, c]) assert.is(n.array.sizeBytes, 6 * MIB);
    for (let i = 0; i < 48; i++) {
      const back = new Uint8Array(64 * KIB);
      await a.array.read(i * 64 * KIB, back);
      assert.equal(back, pattern(64 * KIB, i), `write ${i}`);
    }
    await b.array.write(5 * MIB, pattern(64 * KIB, 99));
    for (const n of [a, b, c]) await n.array.flush();
    assertLegsEqual(files, 'after the writes');
  } finally {
    for (const n of [a, b, c]) await n.array.close();
  }
});

test('refused, nothing written: not a size of the layout, beyond the legs, more bitmap pages per slot, a resync running here or on another node', async () => {
  const files = legFiles(2, 200 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files, 'A', { create: spec({ sizeBytes: 8 * MIB, bitmapChunkBytes: 4 * KIB }) });
  const b = await node(manager, files, 'B');
  try {
    const events = a.array.superblock.events;
    await expectCode(a.array.resize({ sizeBytes: 8 * MIB + 512 }), 'EINVAL');
    await expectCode(a.array.resize({ sizeBytes: 0 }), 'EINVAL');
    await expectCode(a.array.resize({ sizeBytes: 300 * MIB }), 'ERANGE');
    // 4 KiB chunks: one 4 KiB slot page holds (4096 - 256) x 8 chunks, 120 MiB of array.
    const tooBig = await a.array.resize({ sizeBytes: 150 * MIB }).then(() => null, (error: unknown) => error as Error);
    assert.ok(tooBig !== null && /bitmap pages per node.*at most 125829120 bytes/.test(tooBig.message), String(tooBig));
    assert.is(a.array.superblock.events, events, 'no superblock written');
    assert.is((await readMdSuperblock(await FileDevice.open(files[0]!, { readOnly: true }).then(keep))).sizeSectors, (8 * MIB) / 512);
    const max = await b.array.resize({ sizeBytes: 'max', assumeClean: true });
    assert.is(max.sizeBytes, 120 * MIB, 'max: the most the slot areas hold');
    assert.is(a.array.sizeBytes, 120 * MIB);
  } finally {
    await a.array.close();
    await b.array.close();
  }

  const files2 = legFiles(2, 4 * MIB);
  const manager2 = new InProcessLockManager();
  const gates: GatedDevice[] = [];
  const gated = (legs: FileDevice[]) => legs.map((leg) => (gates[gates.length] = new GatedDevice(leg)));
  const c = await node(manager2, files2, 'C', { create: spec({ assumeClean: false, sizeBytes: 2 * MIB }), wrap: gated });
  const d = await node(manager2, files2, 'D');
  try {
    assert.is(c.array.status().resync.state, 'running');
    await expectCode(c.array.resize({ sizeBytes: 4 * MIB }), 'EBUSY');
    await expectCode(d.array.resize({ sizeBytes: 4 * MIB }), 'EBUSY'); // C holds the resync lock
    assert.is(d.array.sizeBytes, 2 * MIB);
  } finally {
    for (const gate of gates) gate.openFully();
    await c.array.close();
    await d.array.close();
  }
});

test('two nodes resize at once: one goes through, the other gets EBUSY and its writes wait for the winner; every node ends at the winner\'s size', async () => {
  const files = legFiles(2, 8 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files, 'A', { create: spec({ sizeBytes: 4 * MIB }) });
  const b = await node(manager, files, 'B');
  try {
    const results = await Promise.allSettled([a.array.resize({ sizeBytes: 6 * MIB, assumeClean: true }), b.array.resize({ sizeBytes: 5 * MIB, assumeClean: true })]);
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.is(won.length, 1, JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : r.value))));
    const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
    assert.match(String(lost.reason), /EBUSY/);
    const size = (won[0] as PromiseFulfilledResult<{ sizeBytes: number }>).value.sizeBytes;
    assert.is(a.array.sizeBytes, size);
    assert.is(b.array.sizeBytes, size);
    await b.array.write(0, pattern(64 * KIB, 1)); // both write again
    await a.array.write(64 * KIB, pattern(64 * KIB, 2));
    await a.array.flush();
    await b.array.flush();
    assertLegsEqual(files, 'after both resizes');
  } finally {
    await a.array.close();
    await b.array.close();
  }
});

test('a shrink whose bitmap needs fewer pages per node slot is refused too (it would move the slots), naming the smallest size', async () => {
  const files = legFiles(2, 200 * MIB);
  const a = await node(new InProcessLockManager(), files, 'A', { create: spec({ sizeBytes: 160 * MIB, bitmapChunkBytes: 4 * KIB }), daemonSleepMs: 60_000 });
  try {
    const refused = await a.array.resize({ sizeBytes: 100 * MIB }).then(() => null, (error: unknown) => error as Error);
    assert.ok(refused !== null && /fewer bitmap pages per node.*at least 125833216 bytes/.test(refused.message), String(refused));
    assert.is((await a.array.resize({ sizeBytes: 125833216 })).sizeBytes, 125833216);
  } finally {
    await a.array.close();
  }
});

test('no bitmap: grow and shrink (nothing to move; the dirty flag stays right)', async () => {
  const files = legFiles(2, 8 * MIB);
  const a = await node(new InProcessLockManager(), files, 'A', { create: spec({ bitmap: 'none', sizeBytes: 4 * MIB }), daemonSleepMs: 60_000 });
  try {
    await a.array.write(0, pattern(64 * KIB, 3));
    const grown = await a.array.resize({ sizeBytes: 'max' });
    assert.equal([grown.sizeBytes, grown.resyncChunks], [8 * MIB, 4]);
    await a.array.quiet();
    assertLegsEqual(files, 'after the grow');
    assert.is((await a.array.resize({ sizeBytes: 2 * MIB })).sizeBytes, 2 * MIB);
    assert.equal(await readBytes(a.array, 0, 64 * KIB), pattern(64 * KIB, 3));
  } finally {
    await a.array.close();
  }
});

test('every leg failed (power gone): a resize is refused with EIO at once (it used to search for a size forever)', async () => {
  const files = legFiles(2, 4 * MIB);
  let faults: FaultDevice[] = [];
  const a = await node(new InProcessLockManager(), files, 'A', {
    create: spec({ bitmap: 'none', sizeBytes: 2 * MIB }), daemonSleepMs: 60_000,
    wrap: (legs) => (faults = legs.map((leg) => new FaultDevice(leg, { seed: 1 }))),
  });
  try {
    for (const fault of faults) fault.crash();
    await a.array.write(0, pattern(4096, 1)).catch(() => {});
    assert.ok(a.array.status().legs.every((leg) => leg.state === 'faulty'), JSON.stringify(a.array.status().legs));
    const refused = await expectCode(a.array.resize({ sizeBytes: 'max' }), 'EIO');
    assert.match(refused.message, /every leg has failed/);
  } finally {
    a.array.abandon();
    await Promise.all(faults.map((fault) => fault.close()));
  }
});

/** Holds superblock writes (the resize's commit) once armed. */
class HeldSuperblock extends PassThroughDevice {
  armed = false;
  held = 0;
  override async write(offsetBytes: number, data: Uint8Array, options?: Parameters<BlockDevice['write']>[2]): Promise<void> {
    if (this.armed && offsetBytes === superblockOffsetBytes()) {
      this.held += 1;
      await new Promise<void>(() => {}); // the node dies before this write lands
    }
    return super.write(offsetBytes, data, options);
  }
}

test('the resizing node dies before its commit: the others take the size on disk and write again; a later resize works', async () => {
  const files = legFiles(2, 8 * MIB);
  const manager = new InProcessLockManager();
  const held: HeldSuperblock[] = [];
  const a = await node(manager, files, 'A', { create: spec({ sizeBytes: 4 * MIB }), wrap: (legs) => legs.map((leg) => (held[held.length] = new HeldSuperblock(leg))) });
  const b = await node(manager, files, 'B');
  for (const h of held) h.armed = true;
  void a.array.resize({ sizeBytes: 6 * MIB }).catch(() => {});
  for (let i = 0; i < 500 && held.every((h) => h.held === 0); i++) await sleep(2);
  assert.ok(held.some((h) => h.held > 0), 'A reached its commit');
  let written = false;
  const write = b.array.write(0, pattern(64 * KIB, 5)).then(() => (written = true));
  await sleep(20);
  assert.not.ok(written, 'B waits while A resizes');
  a.array.abandon();
  manager.kill(a.array.cluster.lockspace);
  await write;
  assert.is(b.array.sizeBytes, 4 * MIB, 'the size on disk');
  assert.ok(b.events.some((e) => /resizing the array \(slot 0\) died/.test(e)), b.events.join('\n'));
  try {
    await b.array.quiet();
    const grown = await b.array.resize({ sizeBytes: 6 * MIB });
    assert.is(grown.sizeBytes, 6 * MIB);
    await b.array.quiet();
    assertLegsEqual(files, 'after B\'s resize');
  } finally {
    await b.array.close();
  }
});

test('a crash between the superblock and the slots (a slot with the old sync_size, same area length) assembles and reads its bits', async () => {
  const files = legFiles(2, 8 * MIB);
  const manager = new InProcessLockManager();
  const a = await node(manager, files, 'A', { create: spec({ sizeBytes: 4 * MIB }), daemonSleepMs: 60_000 });
  await a.array.write(3 * MIB, pattern(64 * KIB, 1)); // a bit set in slot 0...
  const layout = a.array.layout;
  a.array.abandon(); // ...and left set: A crashed
  manager.kill(a.array.cluster.lockspace);
  for (const leg of a.legs) await leg.close();
  // The superblocks say 6 MiB; slot 0 still says 4 MiB (the crash came before step 4).
  for (const file of files) {
    const leg = await FileDevice.open(file);
    const md = await readMdSuperblock(leg);
    await writeMdSuperblock(leg, { ...md, sizeSectors: (6 * MIB) / 512, events: md.events + 1 });
    const head = new Uint8Array(4096);
    await leg.read(bitmapAreaOffsetBytes(layout, 0), head);
    assert.is((decodeBitmapSuperblock(head) as { syncSizeSectors: number }).syncSizeSectors, (4 * MIB) / 512);
    await leg.close();
  }
  const b = await node(new InProcessLockManager(), files, 'B');
  try {
    assert.is(b.array.sizeBytes, 6 * MIB);
    await b.array.quiet();
    assert.ok(b.events.some((e) => /resync of 1 chunks started/.test(e)), `slot 0's bit was read: ${b.events.join('\n')}`);
    assertLegsEqual(files, 'after the resync');
  } finally {
    await b.array.close();
  }
});

const opened: BlockDevice[] = [];
function keep(device: FileDevice): FileDevice {
  opened.push(device);
  return device;
}

test.after(async () => {
  for (const device of opened) await device.close().catch(() => {});
  removeTempDir();
});
test.run();
