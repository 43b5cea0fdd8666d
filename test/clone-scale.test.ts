import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloneDevice } from '../runtime/clone/clone-device.ts';
import { METADATA_BLOCK_BYTES, metadataBlocksFor } from '../runtime/clone/metadata-format.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';

const TIB = 2 ** 40;
const SIZE_BYTES = 4 * TIB;
const REGION_BYTES = 4096;
const REGIONS = SIZE_BYTES / REGION_BYTES; // 2^30
const dir = mkdtempSync(join(tmpdir(), 'blockcore-scale-'));

test.after(() => rmSync(dir, { recursive: true, force: true }));

test('a 4 TiB sparse source with 4 KiB regions: opens, reads and writes at both ends, commits one region cheaply', async () => {
  const head = new Prng(1).fill(new Uint8Array(2 * REGION_BYTES));
  const tail = new Prng(2).fill(new Uint8Array(2 * REGION_BYTES));
  const source = await FileDevice.open(join(dir, 'source.img'), { create: { sizeBytes: SIZE_BYTES } });
  await source.write(0, head);
  await source.write(SIZE_BYTES - tail.length, tail);
  await source.close();
  const sourceMtimeMs = statSync(join(dir, 'source.img')).mtimeMs;
  await (await FileDevice.open(join(dir, 'dest.img'), { create: { sizeBytes: SIZE_BYTES } })).close();
  await (await FileDevice.open(join(dir, 'meta'), { create: { sizeBytes: metadataBlocksFor(REGIONS) * METADATA_BLOCK_BYTES } })).close();

  const open = async () => {
    const metadata = new FaultDevice(await FileDevice.open(join(dir, 'meta')), { seed: 1 });
    const clone = await CloneDevice.open({
      metadata,
      destination: await FileDevice.open(join(dir, 'dest.img')),
      source: await FileDevice.open(join(dir, 'source.img'), { readOnly: true }),
      regionSectors: REGION_BYTES / 512,
      features: ['no_hydration'],
    });
    return { clone, metadata };
  };
  const { clone, metadata } = await open();
  assert.is(clone.regionCount, REGIONS);
  const got = new Uint8Array(2 * REGION_BYTES);
  await clone.read(0, got);
  assert.equal(got, head);
  await clone.read(SIZE_BYTES - got.length, got);
  assert.equal(got, tail);

  // A partial write at each end hydrates its region first.
  await clone.write(512, new Uint8Array(512).fill(0xaa));
  await clone.write(SIZE_BYTES - 1024, new Uint8Array(512).fill(0xbb));
  let writes = metadata.seen.write;
  await clone.flush();
  assert.is(metadata.seen.write - writes, 3, 'two bitmap blocks (one per end) and the superblock');
  writes = metadata.seen.write;
  await clone.write(2 ** 41, new Uint8Array(REGION_BYTES).fill(0xcc));
  await clone.flush();
  assert.is(metadata.seen.write - writes, 2, 'one changed region: one bitmap block and the superblock');
  const status = await clone.status();
  assert.is(status.hydratedRegions, 3);
  assert.is(status.totalRegions, REGIONS);
  await clone.close();

  const again = await open();
  assert.is(again.clone.hydratedRegions, 3);
  const first = new Uint8Array(REGION_BYTES);
  await again.clone.read(0, first);
  const expected = head.slice(0, REGION_BYTES).fill(0xaa, 512, 1024);
  assert.equal(first, expected);
  await again.clone.close();
  assert.is(statSync(join(dir, 'source.img')).mtimeMs, sourceMtimeMs, 'the source was never written');
  assert.ok(statSync(join(dir, 'dest.img')).blocks * 512 < 64 * 1024 * 1024, 'the destination stays sparse');
});

test.run();
