/**
 * KvDevice (runtime/devices/kv-device.ts) over MemoryKv: the device conformance suite (writable,
 * and read-only over a seeded image), its storage layout frozen (manifest JSON, chunk keys, absent
 * chunks for zeros, a short last chunk), and removal.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { KvDevice, readKvManifest } from '../runtime/devices/kv-device.ts';
import { MemoryKv } from '../runtime/devices/memory-kv.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { expectCode } from './support/expect-code.ts';
import { deviceConformance } from './conformance/device-suite.ts';
import type { DeviceFactory } from './conformance/device-checks.ts';

const factory = (chunkBytes: number): DeviceFactory => async ({ sizeBytes, logicalBlockBytes, readOnly, initial }) => {
  const storage = new MemoryKv();
  await KvDevice.create(storage, 'd', { sizeBytes, logicalBlockBytes, chunkBytes: Math.max(chunkBytes, logicalBlockBytes) });
  if (initial !== undefined && initial.length > 0) {
    const writer = await KvDevice.open(storage, 'd');
    const padded = new Uint8Array(Math.ceil(initial.length / logicalBlockBytes) * logicalBlockBytes);
    padded.set(initial);
    await writer.write(0, padded);
    await writer.close();
  }
  return KvDevice.open(storage, 'd', { readOnly: readOnly === true });
};

deviceConformance('KvDevice over MemoryKv, 64 KiB chunks', factory(64 * 1024));
deviceConformance('KvDevice over MemoryKv, 3 KiB chunks (writes span many)', factory(3 * 1024));
deviceConformance('KvDevice over MemoryKv, 64 KiB chunks', factory(64 * 1024), { readOnly: 'only' });

const layout = suite('KvDevice layout');

layout('manifest and chunk keys are frozen; zeros are absent chunks; the last chunk is short', async () => {
  const storage = new MemoryKv();
  await KvDevice.create(storage, 'disk/a', { sizeBytes: 5 * 1024, chunkBytes: 2048 });
  assert.equal([...storage.entries.keys()], ['dev:disk/a:m']);
  assert.is(storage.entries.get('dev:disk/a:m'), '{"format":1,"sizeBytes":5120,"logicalBlockBytes":512,"chunkBytes":2048}');
  const device = await KvDevice.open(storage, 'disk/a');
  await device.write(4096, new Uint8Array(1024).fill(7));
  await device.write(512, new Uint8Array(512).fill(1));
  assert.equal([...storage.entries.keys()].sort(), ['dev:disk/a:c0', 'dev:disk/a:c2', 'dev:disk/a:m']);
  assert.is((storage.entries.get('dev:disk/a:c2') as Uint8Array).length, 1024, 'the last chunk holds only the device\'s last 1 KiB');
  const c0 = storage.entries.get('dev:disk/a:c0') as Uint8Array;
  assert.is(c0.length, 2048);
  assert.ok(c0.subarray(0, 512).every((byte) => byte === 0) && c0.subarray(512, 1024).every((byte) => byte === 1));
  assert.is(await device.discard(0, 2048), 'punched');
  assert.not.ok(storage.entries.has('dev:disk/a:c0'), 'a discarded whole chunk is deleted');
  await device.close();
});

layout('create refuses an existing name; remove deletes chunks and manifest; open of none is ENOENT', async () => {
  const storage = new MemoryKv();
  await KvDevice.create(storage, 'x', { sizeBytes: 8192 });
  await expectCode(KvDevice.create(storage, 'x', { sizeBytes: 8192 }), 'EEXIST');
  const device = await KvDevice.open(storage, 'x');
  await device.write(0, new Uint8Array(8192).fill(5));
  await device.close();
  await KvDevice.remove(storage, 'x');
  assert.is(storage.entries.size, 0);
  assert.is(await readKvManifest(storage, 'x'), null);
  await expectCode(KvDevice.open(storage, 'x'), 'ENOENT');
  storage.entries.set('dev:bad:m', '{"format":99}');
  await expectCode(KvDevice.open(storage, 'bad'), 'EIO');
});

layout('seeded fuzz of the stored manifest: garbage opens as EIO naming the device, never anything else', async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const fields = ['format', 'sizeBytes', 'logicalBlockBytes', 'chunkBytes', 'x'];
  const values = [1, 0, -1, 512, 4096, 1.5, 2 ** 60, 'a', null, true, [], {}];
  for (let i = 0; i < 2000; i++) {
    const storage = new MemoryKv();
    const manifest = Object.fromEntries(fields.filter(() => prng.chance(0.8)).map((field) => [field, values[prng.below(values.length)]]));
    const text = JSON.stringify(manifest);
    const stored = prng.chance(0.2) ? text.slice(0, prng.below(text.length)) : prng.chance(0.1) ? new Uint8Array(4) : text;
    storage.entries.set('dev:d:m', stored);
    try {
      const device = await KvDevice.open(storage, 'd');
      assert.ok(device.sizeBytes > 0 && device.sizeBytes % device.logicalBlockBytes === 0, `seed ${seed} #${i}: opened a device of a bad geometry from ${String(stored)}`);
      await device.close();
    } catch (error) {
      assert.instance(error, BlockError, `seed ${seed} #${i}: ${String(stored)} threw ${error}`);
      assert.is((error as BlockError).code, 'EIO', `seed ${seed} #${i}: ${String(stored)}`);
    }
  }
});

layout.run();
