import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CloneDevice, type CloneOptions } from '../runtime/clone/clone-device.ts';
import { metadataBlocksFor, METADATA_BLOCK_BYTES } from '../runtime/clone/metadata-format.ts';
import { parseStatusLine } from '../runtime/clone/status.ts';
import { TableError } from '../runtime/clone/table.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { deviceConformance, type DeviceFactoryOptions } from './conformance/device-suite.ts';
import { expectCode } from './support/expect-code.ts';

function cloneFactory(extra: Partial<CloneOptions>) {
  return async (options: DeviceFactoryOptions) => {
    const { sizeBytes, logicalBlockBytes, initial } = options;
    const source = new MemoryDevice({ sizeBytes, logicalBlockBytes, readOnly: true, initial, name: 'source' });
    const destination = new MemoryDevice({ sizeBytes, logicalBlockBytes, name: 'destination' });
    const regions = Math.ceil(sizeBytes / 4096);
    const metadata = new MemoryDevice({ sizeBytes: metadataBlocksFor(regions) * METADATA_BLOCK_BYTES, name: 'metadata' });
    return CloneDevice.open({ metadata, destination, source, regionSectors: 8, ...extra });
  };
}

deviceConformance('CloneDevice hydrating (defaults)', cloneFactory({}), { readOnly: false });
deviceConformance('CloneDevice no_hydration', cloneFactory({ features: ['no_hydration'] }), { readOnly: false });
deviceConformance('CloneDevice batch 8 threshold 32, no passdown', cloneFactory({ hydrationBatchSize: 8, hydrationThreshold: 32, features: ['no_discard_passdown'] }), { readOnly: false });

const clone = suite('clone device');
const REGION_BYTES = 4096;
const SIZE_BYTES = 256 * REGION_BYTES;

interface Rig {
  source: MemoryDevice;
  destination: MemoryDevice;
  metadata: MemoryDevice;
  image: Uint8Array;
}

function rig(seed = 1, sizeBytes = SIZE_BYTES): Rig {
  const image = new Prng(seed).fill(new Uint8Array(sizeBytes));
  return {
    image,
    source: new MemoryDevice({ sizeBytes, readOnly: true, initial: image, name: 'source' }),
    destination: new MemoryDevice({ sizeBytes, name: 'destination' }),
    metadata: new MemoryDevice({ sizeBytes: 64 * 1024, name: 'metadata' }),
  };
}

async function readAll(device: { sizeBytes: number; read(o: number, t: Uint8Array): Promise<void> }): Promise<Uint8Array> {
  const bytes = new Uint8Array(device.sizeBytes);
  await device.read(0, bytes);
  return bytes;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** A MemoryDevice never closes its pages, so a reopened clone can reuse the same three devices. */
function reusable<T extends MemoryDevice>(device: T): T {
  return new Proxy(device, { get: (target, key) => (key === 'close' ? async () => {} : Reflect.get(target, key, target)) });
}

clone('status line matches dm-clone and parses back', async () => {
  const r = rig();
  const c = await CloneDevice.open({ ...r, regionSectors: 8, features: ['no_hydration'], hydrationThreshold: 4, hydrationBatchSize: 2 });
  const status = await c.status();
  assert.is(status.line, '8 4/16 8 0/256 0 1 no_hydration 4 hydration_threshold 4 hydration_batch_size 2 rw');
  const parsed = parseStatusLine(status.line);
  assert.equal(parsed, {
    metadataUsedBlocks: 4, metadataTotalBlocks: 16, regionSectors: 8, hydratedRegions: 0, totalRegions: 256, hydratingRegions: 0,
    features: ['no_hydration'], hydrationThreshold: 4, hydrationBatchSize: 2, mode: 'rw',
  });
  await c.close();
});

clone('creation refusals name the field and write nothing', async () => {
  const r = rig();
  const refusals: Array<[Partial<CloneOptions>, string]> = [
    [{ regionSectors: 12 }, 'region size'],
    [{ regionSectors: 4 }, 'region size'],
    [{ regionSectors: 4194304 }, 'region size'],
    [{ regionSectors: 8, targetSectors: SIZE_BYTES / 512 + 8 }, 'destination dev'],
    [{ regionSectors: 8, destination: new MemoryDevice({ sizeBytes: SIZE_BYTES / 2 }) }, 'destination dev'],
    [{ regionSectors: 8, source: new MemoryDevice({ sizeBytes: SIZE_BYTES / 2, readOnly: true }), targetSectors: SIZE_BYTES / 512 }, 'source dev'],
    [{ regionSectors: 8, destination: new MemoryDevice({ sizeBytes: SIZE_BYTES, readOnly: true }) }, 'destination dev'],
    [{ regionSectors: 8, hydrationBatchSize: 0 }, 'hydration_batch_size'],
  ];
  for (const [override, field] of refusals) {
    try {
      await CloneDevice.open({ ...r, regionSectors: 8, ...override });
      assert.unreachable(`accepted ${JSON.stringify(override)}`);
    } catch (error) {
      assert.instance(error, TableError, String(error));
      assert.is((error as TableError).field, field, String(error));
    }
  }
  assert.ok((await readAll(r.metadata)).every((b) => b === 0), 'metadata untouched');
  // Largest region accepted; metadata too small refused.
  const big = rig(2, 2 * 1024 * 1024 * 1024 / 1024);
  const bigClone = await CloneDevice.open({ ...big, regionSectors: 2097152, targetSectors: big.source.sizeBytes / 512 });
  assert.is(bigClone.regionCount, 1);
  await bigClone.close();
  await expectCode(CloneDevice.open({ ...rig(), metadata: new MemoryDevice({ sizeBytes: 8192 }), regionSectors: 8 }), 'EINVAL', /too small/);
});

clone('re-open with another region size or target size is refused', async () => {
  const r = rig();
  const keep = { ...r, metadata: reusable(r.metadata), source: reusable(r.source), destination: reusable(r.destination) };
  await (await CloneDevice.open({ ...keep, regionSectors: 8 })).close();
  await expectCode(CloneDevice.open({ ...keep, regionSectors: 16 }), 'EINVAL', /region size/);
  await expectCode(CloneDevice.open({ ...keep, regionSectors: 8, targetSectors: SIZE_BYTES / 512 - 8 }), 'EINVAL', /target/);
});

clone('pattern: the clone equals source-with-writes before, during and after hydration; the source never changes', async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const r = rig(seed);
  const sourceBefore = await readAll(r.source);
  const c = await CloneDevice.open({ ...r, regionSectors: 8, hydrationBatchSize: 4, hydrationThreshold: 8 });
  const model = r.image.slice();
  const check = async (when: string) => assert.ok(same(await readAll(c), model), `seed ${seed}: ${when}`);
  await check('before');
  for (let i = 0; i < 300; i++) {
    const offsetBytes = prng.below(SIZE_BYTES / 512) * 512;
    const lengthBytes = Math.min(SIZE_BYTES - offsetBytes, prng.range(1, 24) * 512);
    if (prng.chance(0.5)) {
      const data = prng.fill(new Uint8Array(lengthBytes));
      await c.write(offsetBytes, data);
      model.set(data, offsetBytes);
    } else {
      const target = new Uint8Array(lengthBytes);
      await c.read(offsetBytes, target);
      assert.ok(same(target, model.subarray(offsetBytes, offsetBytes + lengthBytes)), `seed ${seed}: read ${offsetBytes}+${lengthBytes}`);
    }
    if (i === 150) await check('during');
  }
  while (!c.isHydrated) await c.events.next((e) => e.type === 'hydration-complete' || e.type === 'commit');
  await check('after');
  assert.ok(same(await readAll(r.destination), model), 'destination alone equals the clone');
  assert.ok(same(await readAll(r.source), sourceBefore), 'source unchanged');
  const destination = await c.finalize();
  assert.ok(same(await readAll(destination), model), 'finalized destination');
  await expectCode(c.read(0, new Uint8Array(512)), 'EBADF');
});

clone('writes to unhydrated regions hydrate them first; whole-region writes skip the copy', async () => {
  const r = rig();
  const source = new FaultDevice(r.source, { seed: 3 });
  const c = await CloneDevice.open({ ...r, source, regionSectors: 8, features: ['no_hydration'] });
  await c.write(REGION_BYTES, new Uint8Array(REGION_BYTES).fill(1));
  assert.is(source.seen.read, 0, 'a whole-region write reads nothing from the source');
  await c.write(3 * REGION_BYTES + 512, new Uint8Array(512).fill(2));
  assert.is(source.seen.read, 1, 'a partial write copies its region once');
  const expected = r.image.slice(3 * REGION_BYTES, 4 * REGION_BYTES);
  expected.fill(2, 512, 1024);
  const got = new Uint8Array(REGION_BYTES);
  await r.destination.read(3 * REGION_BYTES, got);
  assert.ok(same(got, expected), 'the destination holds source + write');
  assert.is(c.hydratedRegions, 2);
  // Many concurrent partial writes to one region share a single copy.
  await Promise.all(Array.from({ length: 8 }, (_, i) => c.write(10 * REGION_BYTES + i * 512, new Uint8Array(512).fill(i + 10))));
  assert.is(source.seen.read, 2);
  await c.close();
});

clone('reads of unhydrated regions are hydrated first (hot regions)', async () => {
  const r = rig();
  const c = await CloneDevice.open({ ...r, regionSectors: 8, features: ['no_hydration'] });
  await c.read(200 * REGION_BYTES, new Uint8Array(REGION_BYTES));
  c.message('enable_hydration');
  while (!(await c.status()).hydratedRegions) await new Promise((resolve) => setTimeout(resolve, 1));
  const status = c.statusNow();
  assert.ok(status.hydratedRegions >= 1);
  assert.ok(r.destination.allocatedBytes > 0);
  const got = new Uint8Array(REGION_BYTES);
  await r.destination.read(200 * REGION_BYTES, got);
  assert.ok(same(got, r.image.subarray(200 * REGION_BYTES, 201 * REGION_BYTES)), 'the hot region was hydrated before region 0');
  await c.close();
});

clone('discard marks covered regions hydrated without copying and passes down', async () => {
  const r = rig();
  const source = new FaultDevice(r.source, { seed: 4 });
  const c = await CloneDevice.open({ ...r, source, regionSectors: 8, features: ['no_hydration'] });
  assert.is(await c.discard(512, 3 * REGION_BYTES), 'punched');
  assert.is(c.hydratedRegions, 2, 'only the two regions covered whole');
  assert.is(source.seen.read, 0);
  assert.is(await c.discard(512, 1024), 'ignored', 'nothing covered whole');
  await c.close();
});

clone('commit on flush and the periodic commit are visible in the metadata device', async () => {
  const r = rig();
  const metadata = new FaultDevice(r.metadata, { seed: 5 });
  const c = await CloneDevice.open({ ...r, metadata, regionSectors: 8, features: ['no_hydration'], commitIntervalMs: 50 });
  const writesAfterOpen = metadata.seen.write;
  await c.write(0, new Uint8Array(REGION_BYTES).fill(7));
  assert.is(metadata.seen.write, writesAfterOpen, 'a write alone commits nothing');
  await c.flush();
  assert.is(metadata.seen.write, writesAfterOpen + 2, 'flush commits: one bitmap block and the superblock');
  await c.flush();
  assert.is(metadata.seen.write, writesAfterOpen + 2, 'a flush with nothing changed commits nothing');
  await c.write(REGION_BYTES, new Uint8Array(REGION_BYTES).fill(8));
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.is(metadata.seen.write, writesAfterOpen + 4, 'the periodic commit wrote the change');
  await c.close();
});

clone('messages: validation and effect', async () => {
  const c = await CloneDevice.open({ ...rig(), regionSectors: 8, features: ['no_hydration'] });
  for (const bad of ['', 'speed_up', 'hydration_threshold', 'hydration_threshold x', 'hydration_threshold -1', 'hydration_batch_size 0', 'enable_hydration now', 'hydration_threshold 4294967296']) {
    assert.throws(() => c.message(bad), (e: Error) => (e as { code?: string }).code === 'EINVAL', bad);
  }
  c.message('hydration_threshold 16');
  c.message('hydration_batch_size 4');
  assert.match(c.statusNow().line, /hydration_threshold 16 hydration_batch_size 4/);
  const complete = c.events.next((e) => e.type === 'hydration-complete');
  c.message('enable_hydration');
  await complete;
  assert.is(c.statusNow().hydratedRegions, 256);
  await c.close();
});

clone('a failed commit puts the clone in ro mode, a failed reload in Fail mode', async () => {
  const r = rig();
  const metadata = new FaultDevice(r.metadata, { seed: 6 });
  const c = await CloneDevice.open({ ...r, metadata, regionSectors: 8, features: ['no_hydration'] });
  const modes: string[] = [];
  c.events.on((e) => e.type === 'mode' && modes.push(e.mode));
  await c.write(0, new Uint8Array(REGION_BYTES).fill(1));
  await c.flush();
  await c.write(REGION_BYTES, new Uint8Array(REGION_BYTES).fill(2));
  metadata.addRule({ op: 'write', nth: metadata.seen.write + 1, action: 'fail' });
  await expectCode(c.flush(), 'EIO', /commit failed/);
  assert.equal(modes, ['ro']);
  assert.is(c.statusNow().mode, 'ro');
  assert.is(c.hydratedRegions, 1, 'the in-core bitmap is back at the last commit');
  await expectCode(c.write(5 * REGION_BYTES, new Uint8Array(512)), 'EIO', /ro mode/);
  await c.write(0, new Uint8Array(512).fill(3)); // a hydrated region still takes writes
  const back = new Uint8Array(512);
  await c.read(0, back);
  assert.is(back[0], 3);
  await c.close();

  const r2 = rig();
  const metadata2 = new FaultDevice(r2.metadata, { seed: 7 });
  const c2 = await CloneDevice.open({ ...r2, metadata: metadata2, regionSectors: 8, features: ['no_hydration'] });
  await c2.write(0, new Uint8Array(REGION_BYTES));
  metadata2.addRule({ op: 'flush', probability: 1, action: 'fail' });
  metadata2.addRule({ op: 'read', probability: 1, action: 'fail' });
  await expectCode(c2.flush(), 'EIO');
  assert.is(c2.statusNow().line, 'Fail');
  await expectCode(c2.read(0, new Uint8Array(512)), 'EIO', /Fail mode/);
  await c2.close();
});

clone('source read errors fail the deferred write, and background hydration stops after N failures', async () => {
  const r = rig();
  const source = new FaultDevice(r.source, { seed: 8, rules: [{ op: 'read', probability: 1, action: 'fail' }] });
  const c = await CloneDevice.open({ ...r, source, regionSectors: 8, features: ['no_hydration'], maxConsecutiveCopyFailures: 3 });
  await expectCode(c.write(512, new Uint8Array(512)), 'EIO', /hydration of region 0 failed/);
  assert.is(c.hydratedRegions, 0, 'the region stays unhydrated');
  const stopped = c.events.next((e) => e.type === 'hydration-stopped');
  c.message('enable_hydration');
  await stopped;
  assert.match(c.statusNow().hydrationError ?? '', /injected read failure/);
  assert.is(c.statusNow().mode, 'rw');
  await c.close();
});

clone('destination write errors fail that I/O only; a destination flush error puts the clone in ro mode', async () => {
  const r = rig();
  const destination = new FaultDevice(r.destination, { seed: 9 });
  const c = await CloneDevice.open({ ...r, destination, regionSectors: 8, features: ['no_hydration'] });
  destination.addRule({ op: 'write', nth: 1, action: 'fail' });
  await expectCode(c.write(512, new Uint8Array(512)), 'EIO', /hydration of region 0 failed/);
  assert.is(c.hydratedRegions, 0, 'a failed copy leaves the region unhydrated');
  destination.addRule({ op: 'write', nth: 2, action: 'tear' });
  await expectCode(c.write(0, new Uint8Array(2 * REGION_BYTES)), 'EIO');
  assert.is(c.hydratedRegions, 0, 'a torn whole-region write marks nothing');
  await c.write(0, new Uint8Array(2 * REGION_BYTES).fill(4));
  assert.is(c.hydratedRegions, 2);
  assert.is(c.mode, 'rw');
  destination.addRule({ op: 'flush', nth: destination.seen.flush + 1, action: 'fail' });
  await expectCode(c.flush(), 'EIO');
  assert.is(c.mode, 'ro');
  assert.is(c.hydratedRegions, 0, 'back to the last commit');
  const back = new Uint8Array(512);
  await c.read(0, back);
  assert.equal(back, r.image.subarray(0, 512), 'uncommitted regions read from the source again');
  await c.close();
});

clone('the in-core bitmap is released once hydration completes', async () => {
  const c = await CloneDevice.open({ ...rig(), regionSectors: 8 });
  await c.events.next((e) => e.type === 'commit' && e.hydratedRegions === 256);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.is((c as unknown as { metadata: { bitmap: unknown } }).metadata.bitmap, null);
  const back = new Uint8Array(REGION_BYTES);
  await c.read(0, back);
  await c.close();
});

clone.run();
