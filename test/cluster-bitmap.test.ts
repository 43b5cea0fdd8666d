/**
 * An array's bitmap kinds (runtime/cluster: clustered, internal, none) and switching between them
 * (runtime/cluster/array-bitmap-switch.ts): mdadm's clustermd_tests 01r1/01r10_Grow_bitmap-switch
 * (clustered -> none -> internal -> none -> clustered, mdadm --examine-bitmap finding a bitmap or
 * none each time, the other node assembling only a clustered one), a crash without a bitmap
 * resyncing everything and with an internal one only the dirty chunks, and refusals.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ClusterArray } from '../runtime/cluster/array-device.ts';
import { readMdSuperblock } from '../runtime/cluster/leg-metadata.ts';
import { MD_FEATURE } from '../runtime/cluster/md-superblock.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import { expectCode } from './support/expect-code.ts';
import { mdadmExamine, mdadmExamineBitmap } from './support/mdadm.ts';
import { assertLegsEqual, legFiles, MIB, node, pattern, readBytes, removeTempDir, spec } from './support/cluster-nodes.ts';

const test = suite('cluster array: bitmaps');
const KIB = 1024;

async function hasBitmap(file: string): Promise<boolean> {
  return mdadmExamineBitmap(file).then(() => true, () => false);
}

for (const level of ['raid1', 'raid10'] as const) {
  test(`${level}: clustered -> none -> internal -> none -> clustered; mdadm finds each bitmap; only a clustered one takes a second node (clustermd_tests 01${level === 'raid1' ? 'r1' : 'r10'}_Grow_bitmap-switch)`, async () => {
    const files = legFiles(2, 4 * MIB);
    const manager = new InProcessLockManager();
    const create = spec({ level, nodes: 2, ...(level === 'raid10' ? { nearCopies: 2, raid10ChunkBytes: 64 * KIB } : {}) });
    const a = await node(manager, files, 'A', { create });
    const b = await node(manager, files, 'B');
    let array = a.array;
    try {
      await array.write(0, pattern(256 * KIB, 1));
      await expectCode(array.switchBitmap({ bitmap: 'none' }), 'EBUSY'); // B has it
      assert.is(array.status().bitmap, 'clustered', 'nothing changed');
      await b.array.close();
      array = await array.switchBitmap({ bitmap: 'none' });
      assert.is(array.status().bitmap, 'none');
      for (const file of files) {
        assert.not.ok(await hasBitmap(file), 'mdadm --examine-bitmap finds no bitmap');
        assert.is((await mdadmExamine(file))['Internal Bitmap'], undefined);
      }
      await expectCode(ClusterArray.assemble({ name: 'array:c1', legs: await Promise.all(files.map((f) => FileDevice.open(f))), manager, memberName: 'B', ownsLegs: true }), 'EBUSY');
      await array.write(256 * KIB, pattern(64 * KIB, 2));
      assert.equal(await readBytes(array, 0, 256 * KIB), pattern(256 * KIB, 1), 'the data stayed');

      await expectCode(array.switchBitmap({ bitmap: 'none' }), 'EINVAL');
      array = await array.switchBitmap({ bitmap: 'internal', chunkBytes: 64 * KIB });
      assert.is(array.status().bitmap, 'internal');
      const internal = await mdadmExamineBitmap(files[1]!);
      assert.is(internal.fields['Version'], '4');
      assert.is(internal.slots.length, 0, 'one bitmap, no node slots');
      await expectCode(array.switchBitmap({ bitmap: 'clustered' }), 'EINVAL'); // through none, as mdadm
      await array.write(512 * KIB, pattern(64 * KIB, 3));

      array = await array.switchBitmap({ bitmap: 'none' });
      assert.not.ok(await hasBitmap(files[0]!));
      array = await array.switchBitmap({ bitmap: 'clustered', nodes: 3, chunkBytes: 64 * KIB, clusterName: 'again' });
      const c = await node(manager, files, 'C');
      try {
        for (const file of files) {
          const report = await mdadmExamineBitmap(file);
          assert.is(report.fields['Cluster name'], 'again');
          assert.is(report.slots.length, 3);
        }
        assert.is((await readMdSuperblock(c.legs[0]!)).featureMap & MD_FEATURE.CLUSTERED, MD_FEATURE.CLUSTERED);
        await c.array.write(768 * KIB, pattern(64 * KIB, 4));
        assert.equal(await readBytes(array, 768 * KIB, 64 * KIB), pattern(64 * KIB, 4));
        assert.equal(await readBytes(c.array, 256 * KIB, 64 * KIB), pattern(64 * KIB, 2));
        assert.equal(await readBytes(c.array, 512 * KIB, 64 * KIB), pattern(64 * KIB, 3));
      } finally {
        await c.array.close();
      }
      await array.flush();
      assertLegsEqual(files, 'after the switches');
    } finally {
      await array.close();
    }
  });
}

test('no bitmap: the superblocks say dirty while writing (resync_offset 0, mdadm: active) and clean once idle; a crash while dirty resyncs everything', async () => {
  const files = legFiles(2, 4 * MIB);
  const a = await node(new InProcessLockManager(), files, 'A', { create: spec({ bitmap: 'none', nodes: 2 }), daemonSleepMs: 60_000 });
  assert.match(a.array.status().bitmap, 'none');
  await a.array.write(MIB, pattern(64 * KIB, 5));
  assert.is((await mdadmExamine(files[0]!))['State'], 'active', 'dirty on disk (resync_offset 0)');
  assert.is(await a.array.clearIdleBits(0), 1, 'marked clean');
  assert.is((await mdadmExamine(files[0]!))['State'], 'clean');
  await a.array.write(2 * MIB, pattern(64 * KIB, 6));
  a.array.abandon(); // crash while dirty
  a.array.cluster.lockspace.leave().catch(() => {});
  for (const leg of a.legs) await leg.close();
  const b = await node(new InProcessLockManager(), files, 'B');
  try {
    await b.array.quiet();
    const resync = b.array.status().resync;
    assert.is(resync.totalChunks, b.array.chunkCount, 'the whole array');
    assertLegsEqual(files, 'after the resync');
    await b.array.close();
    assert.is((await mdadmExamine(files[1]!))['State'], 'clean');
  } finally {
    await b.array.close();
  }
});

test('internal bitmap: one node; a crash resyncs only the chunks its bits mark', async () => {
  const files = legFiles(2, 4 * MIB);
  const a = await node(new InProcessLockManager(), files, 'A', { create: spec({ bitmap: 'internal', nodes: 2 }), daemonSleepMs: 60_000 });
  assert.is((await mdadmExamineBitmap(files[0]!)).fields['Version'], '4');
  await a.array.write(MIB, pattern(128 * KIB, 7)); // two 64 KiB chunks
  a.array.abandon();
  a.array.cluster.lockspace.leave().catch(() => {});
  for (const leg of a.legs) await leg.close();
  const b = await node(new InProcessLockManager(), files, 'B');
  try {
    await b.array.quiet();
    assert.is(b.array.status().resync.totalChunks, 2);
    assertLegsEqual(files, 'after the resync');
  } finally {
    await b.array.close();
  }
});

test('refused, nothing changed: a degraded array, a node count that does not fit before data_offset', async () => {
  const files = legFiles(2, 1024 * MIB);
  const a = await node(new InProcessLockManager(), files, 'A', { create: spec({ bitmap: 'none', nodes: 2 }) });
  const array = a.array;
  try {
    const events = array.superblock.events;
    await expectCode(array.switchBitmap({ bitmap: 'clustered', nodes: 32, chunkBytes: 4096 }), 'EINVAL');
    await expectCode(array.switchBitmap({ bitmap: 'internal', chunkBytes: 3000 }), 'EINVAL');
    assert.is(array.superblock.events, events);
    await array.failByNumber(1);
    await expectCode(array.switchBitmap({ bitmap: 'internal' }), 'EBUSY');
    assert.is(array.status().bitmap, 'none');
  } finally {
    await array.close();
  }
});

test.after(removeTempDir);
test.run();
