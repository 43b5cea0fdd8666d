import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { CloneMetadata } from '../runtime/clone/metadata.ts';
import { BITS_PER_BITMAP_BLOCK, METADATA_BLOCK_BYTES, bitmapSlotBlock, metadataBlocksFor } from '../runtime/clone/metadata-format.ts';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { expectCode } from './support/expect-code.ts';

const meta = suite('clone metadata');
const noFlush = async () => {};
const GEOMETRY = { regionSectors: 8, targetSectors: 8 * 100_000 }; // 100k regions: 4 bitmap blocks

function memory(sizeBytes = metadataBlocksFor(100_000) * METADATA_BLOCK_BYTES): MemoryDevice {
  return new MemoryDevice({ sizeBytes, logicalBlockBytes: 512 });
}


async function snapshot(device: BlockDevice): Promise<Uint8Array> {
  const bytes = new Uint8Array(device.sizeBytes);
  await device.read(0, bytes);
  return bytes;
}

meta('formats an all-zero device, commits, and reopens with the same bits', async () => {
  const device = memory();
  const m = await CloneMetadata.open(device, GEOMETRY);
  assert.is(m.regionCount, 100_000);
  assert.is(m.hydratedCount, 0);
  assert.equal(m.usage, { usedBlocks: 2 + 2 * 4, totalBlocks: 10 });
  m.markHydrated(0, 10);
  m.markHydrated(99_990, 100_000);
  m.markHydrated(BITS_PER_BITMAP_BLOCK - 1, BITS_PER_BITMAP_BLOCK + 1);
  let flushed = 0;
  await m.commit(async () => void flushed++);
  assert.is(flushed, 1, 'the data flush runs before the metadata is written');
  m.close();
  const again = await CloneMetadata.open(device, GEOMETRY);
  assert.is(again.hydratedCount, 22);
  for (const region of [0, 9, 99_990, 99_999, BITS_PER_BITMAP_BLOCK - 1, BITS_PER_BITMAP_BLOCK]) assert.ok(again.isHydrated(region), `region ${region}`);
  assert.not.ok(again.isHydrated(10));
  again.close();
});

meta('a commit writes only the changed bitmap block and the superblock', async () => {
  const faults = new FaultDevice(memory(), { seed: 1 });
  const m = await CloneMetadata.open(faults, GEOMETRY);
  const before = faults.seen.write;
  m.markHydrated(70_000, 70_001);
  await m.commit(noFlush);
  assert.is(faults.seen.write - before, 2, 'one bitmap block + one superblock');
  assert.is(faults.seen.flush >= 2, true);
  const idle = faults.seen.write;
  await m.commit(noFlush);
  assert.is(faults.seen.write - idle, 1, 'a commit with nothing changed writes only the superblock');
  m.close();
});

meta('re-open with another region size or target size is refused, and nothing is written', async () => {
  const device = memory();
  (await CloneMetadata.open(device, GEOMETRY)).close();
  const bytes = await snapshot(device);
  await expectCode(CloneMetadata.open(device, { ...GEOMETRY, regionSectors: 16 }), 'EINVAL', /region size 8/);
  await expectCode(CloneMetadata.open(device, { ...GEOMETRY, targetSectors: GEOMETRY.targetSectors - 8 }), 'EINVAL', /target of/);
  assert.ok(Buffer.from(await snapshot(device)).equals(bytes));
});

meta('too small, foreign and corrupt metadata devices are refused without writes', async () => {
  await expectCode(CloneMetadata.open(memory(16 * 1024), GEOMETRY), 'EINVAL', /too small/);
  const foreign = memory();
  await foreign.write(0, new Prng(3).fill(new Uint8Array(4096)));
  const before = await snapshot(foreign);
  await expectCode(CloneMetadata.open(foreign, GEOMETRY), 'EINVAL', /not clone metadata or corrupt/);
  assert.ok(Buffer.from(await snapshot(foreign)).equals(before));
  // A formatted device whose committed bitmap block is damaged in both slots.
  const damaged = memory();
  const m = await CloneMetadata.open(damaged, GEOMETRY);
  m.markHydrated(5, 6);
  await m.commit(noFlush);
  m.close();
  const junk = new Uint8Array(512).fill(0xa5);
  await damaged.write(bitmapSlotBlock(0, 0) * METADATA_BLOCK_BYTES + 1024, junk);
  await damaged.write(bitmapSlotBlock(0, 1) * METADATA_BLOCK_BYTES + 1024, junk);
  await expectCode(CloneMetadata.open(damaged, GEOMETRY), 'EIO', /bitmap block 0/);
});

meta('a commit that dies at any write leaves the previous commit intact (seeded)', async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  for (let trial = 0; trial < 40; trial++) {
    const inner = memory();
    const base = await CloneMetadata.open(inner, GEOMETRY);
    const committed: Array<[number, number]> = [];
    for (let i = 0; i < 3; i++) {
      const start = prng.below(100_000 - 50);
      committed.push([start, start + prng.range(1, 50)]);
      base.markHydrated(...committed[i]!);
    }
    await base.commit(noFlush);
    const committedCount = base.hydratedCount;
    base.close();
    // Reopen through a device that tears or fails one of the next commit's writes or flushes.
    const faults = new FaultDevice(inner, { seed: prng.nextU32() });
    const m = await CloneMetadata.open(faults, GEOMETRY);
    const writes = faults.seen.write;
    const flushes = faults.seen.flush;
    const op = prng.chance(0.7) ? 'write' : 'flush';
    faults.addRule({ op, nth: (op === 'write' ? writes : flushes) + prng.range(1, 3), action: prng.chance(0.5) ? 'tear' : 'fail' });
    for (let i = 0; i < 40; i++) {
      const start = prng.below(100_000 - 500);
      m.markHydrated(start, start + prng.range(1, 500));
    }
    const wanted = m.hydratedCount;
    let failed = false;
    try {
      await m.commit(noFlush);
    } catch {
      failed = true;
    }
    m.close();
    const reopened = await CloneMetadata.open(inner, GEOMETRY);
    const label = `seed ${seed} trial ${trial} (${op} ${failed ? 'failed' : 'passed'})`;
    // A failed commit may still have reached its commit point (e.g. only the last flush failed):
    // the state is then one of the two, never a mixture.
    if (failed) assert.ok([committedCount, wanted].includes(reopened.hydratedCount), `${label}: ${reopened.hydratedCount}`);
    else assert.is(reopened.hydratedCount, wanted, label);
    for (const [start, end] of committed) for (let r = start; r < end; r++) assert.ok(reopened.isHydrated(r), `${label}: region ${r}`);
    // The next commit after an aborted one must make everything durable and reopen cleanly.
    reopened.markHydrated(0, 1);
    await reopened.commit(noFlush);
    const count = reopened.hydratedCount;
    reopened.close();
    assert.is((await CloneMetadata.open(inner, GEOMETRY)).hydratedCount, count, label);
  }
});

meta('concurrent commit requests share commits and all resolve durable', async () => {
  const faults = new FaultDevice(memory(), { seed: 2, rules: [{ op: 'flush', probability: 1, action: 'delay', delayMs: 2 }] });
  const m = await CloneMetadata.open(faults, GEOMETRY);
  const waits: Promise<void>[] = [];
  for (let i = 0; i < 10; i++) {
    m.markHydrated(i * 1000, i * 1000 + 1);
    waits.push(m.commit(noFlush));
  }
  await Promise.all(waits);
  assert.ok(m.commitCount <= 3, `10 requests took ${m.commitCount} commits`);
  m.close();
  assert.is((await CloneMetadata.open(faults, GEOMETRY)).hydratedCount, 10);
});

meta('the in-core bitmap is released once complete and committed', async () => {
  const m = await CloneMetadata.open(memory(), GEOMETRY);
  m.markHydrated(0, 100_000);
  assert.not.ok(m.releaseIfComplete(), 'not before the commit');
  await m.commit(noFlush);
  assert.ok(m.releaseIfComplete());
  assert.is(m.bitmap, null);
  assert.ok(m.isHydrated(12345));
  assert.is(m.hydratedCount, 100_000);
  m.close();
});

meta('the v1 on-disk fixture still opens with its bits', async () => {
  const bytes = new Uint8Array(readFileSync(new URL('./fixtures/clone-metadata-v1.bin', import.meta.url)));
  const device = new MemoryDevice({ sizeBytes: bytes.length, logicalBlockBytes: 512, initial: bytes, readOnly: true });
  const m = await CloneMetadata.open(device, { regionSectors: 8, targetSectors: 8 * 40_000 });
  assert.is(m.hydratedCount, 3 + 100 + 1);
  for (const region of [0, 1, 2, 32255, 32256, 39_999]) assert.ok(m.isHydrated(region), `region ${region}`);
  assert.not.ok(m.isHydrated(3));
  m.close();
});

meta.run();
