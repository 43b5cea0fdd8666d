/**
 * Block status (BlockDevice.blockStatus) per device: extent alignment, a sparse FileDevice through
 * lseek SEEK_DATA / SEEK_HOLE (and its all-data fallback), MemoryDevice pages, FaultDevice
 * pass-through, and a clone (hydrated regions as the destination says, unhydrated as the source).
 * The contract every device shares is in the conformance suite.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CloneDevice } from '../runtime/clone/clone-device.ts';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { alignExtents, ExtentList } from '../runtime/devices/extents.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { expectCode } from './support/expect-code.ts';

const KiB = 1024;
const DATA = { hole: false, zero: false };
const HOLE = { hole: true, zero: true };
const run = (lengthBytes: number, flags: { hole: boolean; zero: boolean }) => ({ lengthBytes, ...flags });
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-block-status-'));
let fileCount = 0;
const tempPath = () => path.join(tempDir, `f${++fileCount}.img`);

const extents = suite('extent lists');

extents('ExtentList merges neighbours with the same flags and skips empty runs', () => {
  const list = new ExtentList();
  list.push(512, true, true);
  list.push(0, false, false);
  list.push(512, true, true);
  list.push(1024, false, false);
  list.pushAll([run(512, DATA), run(512, HOLE)]);
  assert.equal(list.extents, [run(1024, HOLE), run(1536, DATA), run(512, HOLE)]);
  assert.is(list.totalBytes, 3072);
});

extents('alignExtents: a straddling block takes the flags both sides share', () => {
  // 4096-byte blocks over runs cut at 1 KiB: [0,5K) hole, [5K,6K) data, [6K,16K) hole.
  const cut = [run(5 * KiB, HOLE), run(1 * KiB, DATA), run(10 * KiB, HOLE)];
  assert.equal(alignExtents(cut, 0, 4096), [run(4 * KiB, HOLE), run(4 * KiB, DATA), run(8 * KiB, HOLE)]);
  // hole-but-not-zero AND zero-but-not-hole is neither.
  assert.equal(alignExtents([run(2 * KiB, { hole: true, zero: false }), run(2 * KiB, { hole: false, zero: true })], 8192, 4096), [run(4 * KiB, DATA)]);
  // Already aligned: unchanged (merged).
  assert.equal(alignExtents([run(4 * KiB, DATA), run(4 * KiB, DATA), run(4 * KiB, HOLE)], 4096, 4096), [run(8 * KiB, DATA), run(4 * KiB, HOLE)]);
  // Many tiny runs inside one block.
  assert.equal(alignExtents([run(512, HOLE), run(512, HOLE), run(3 * KiB, HOLE)], 0, 4096), [run(4 * KiB, HOLE)]);
  assert.equal(alignExtents([], 0, 4096), []);
});

const devices = suite('block status per device');
devices.after(() => fs.rmSync(tempDir, { recursive: true, force: true }));

devices('FileDevice: holes and data of a sparse file, from SEEK_DATA / SEEK_HOLE', async () => {
  const device = await FileDevice.open(tempPath(), { create: { sizeBytes: 1024 * KiB } });
  await device.write(64 * KiB, new Uint8Array(64 * KiB).fill(1));
  await device.write(512 * KiB, new Uint8Array(4 * KiB).fill(2));
  await device.write(1020 * KiB, new Uint8Array(4 * KiB).fill(3));
  assert.equal(await device.blockStatus(0, 1024 * KiB), [
    run(64 * KiB, HOLE), run(64 * KiB, DATA), run(384 * KiB, HOLE), run(4 * KiB, DATA), run(504 * KiB, HOLE), run(4 * KiB, DATA),
  ]);
  // A window that starts inside data and ends inside a hole.
  assert.equal(await device.blockStatus(96 * KiB, 64 * KiB), [run(32 * KiB, DATA), run(32 * KiB, HOLE)]);
  // Punching makes a hole again; writing zeros is data (allocated).
  assert.is(await device.discard(64 * KiB, 64 * KiB), 'punched');
  await device.write(256 * KiB, new Uint8Array(8 * KiB));
  assert.equal(await device.blockStatus(0, 520 * KiB), [run(256 * KiB, HOLE), run(8 * KiB, DATA), run(248 * KiB, HOLE), run(4 * KiB, DATA), run(4 * KiB, HOLE)]);
  await device.close();
  await expectCode(device.blockStatus(0, 4096), 'EBADF');
});

devices('FileDevice: read-only devices answer; the range is checked; without SEEK_HOLE everything is data', async () => {
  const filePath = tempPath();
  const writer = await FileDevice.open(filePath, { create: { sizeBytes: 256 * KiB } });
  await writer.write(0, new Uint8Array(4 * KiB).fill(9));
  await writer.close();
  const reader = await FileDevice.open(filePath, { readOnly: true });
  assert.equal(await reader.blockStatus(0, 256 * KiB), [run(4 * KiB, DATA), run(252 * KiB, HOLE)]);
  await expectCode(reader.blockStatus(0, 257 * KiB), 'ERANGE');
  await expectCode(reader.blockStatus(100, 512), 'EINVAL', /unaligned/);
  assert.equal(await reader.blockStatus(256 * KiB, 0), []);
  await reader.close();
  const blind = await FileDevice.open(filePath, { readOnly: true, seek: { seekData: () => -1, seekHole: () => -1 } });
  assert.equal(await blind.blockStatus(0, 256 * KiB), [run(256 * KiB, DATA)]);
  await blind.close();
});

devices('FileDevice: boundaries are aligned to a logical block larger than the filesystem block', async () => {
  const device = await FileDevice.open(tempPath(), { create: { sizeBytes: 1024 * KiB }, logicalBlockBytes: 64 * KiB });
  // Data in the middle of the second 64 KiB block only: the whole block counts as data.
  const fd = fs.openSync(device.path, 'r+');
  fs.writeSync(fd, new Uint8Array(4 * KiB).fill(4), 0, 4 * KiB, 100 * KiB);
  fs.closeSync(fd);
  assert.equal(await device.blockStatus(0, 1024 * KiB), [run(64 * KiB, HOLE), run(64 * KiB, DATA), run(896 * KiB, HOLE)]);
  await device.close();
});

devices('MemoryDevice: absent pages are holes, written pages data', async () => {
  const device = new MemoryDevice({ sizeBytes: 1024 * KiB });
  assert.equal(await device.blockStatus(0, 1024 * KiB), [run(1024 * KiB, HOLE)]);
  await device.write(70 * KiB, new Uint8Array(512).fill(1)); // page 1: [64K, 128K)
  assert.equal(await device.blockStatus(0, 1024 * KiB), [run(64 * KiB, HOLE), run(64 * KiB, DATA), run(896 * KiB, HOLE)]);
  assert.equal(await device.blockStatus(96 * KiB, 64 * KiB), [run(32 * KiB, DATA), run(32 * KiB, HOLE)]);
  await device.discard(64 * KiB, 64 * KiB);
  assert.equal(await device.blockStatus(0, 1024 * KiB), [run(1024 * KiB, HOLE)]);
});

devices('FaultDevice passes through; a device without blockStatus is all data', async () => {
  const inner = new MemoryDevice({ sizeBytes: 256 * KiB });
  await inner.write(0, new Uint8Array(4096).fill(1));
  const fault = new FaultDevice(inner, { seed: 1 });
  assert.equal(await fault.blockStatus(0, 256 * KiB), [run(64 * KiB, DATA), run(192 * KiB, HOLE)]);
  const wrapped = new FaultDevice(withoutBlockStatus(inner), { seed: 1 });
  assert.equal(await wrapped.blockStatus(0, 256 * KiB), [run(256 * KiB, DATA)]);
  fault.crash();
  await expectCode(fault.blockStatus(0, 4096), 'EIO');
  await fault.close();
});

devices('CloneDevice: hydrated regions report the destination, unhydrated ones the source', async () => {
  const regionBytes = 64 * KiB;
  const sizeBytes = 16 * regionBytes;
  // Source: data in regions 0, 1 and 8 (pages are 64 KiB = one region); the rest holes.
  const image = new Uint8Array(sizeBytes);
  image.fill(5, 0, 2 * regionBytes);
  image.fill(6, 8 * regionBytes, 9 * regionBytes);
  const source = new MemoryDevice({ sizeBytes, readOnly: true, initial: image, name: 'source' });
  const destination = new MemoryDevice({ sizeBytes, name: 'destination' });
  const metadata = new MemoryDevice({ sizeBytes: 64 * KiB, name: 'metadata' });
  const clone = await CloneDevice.open({ metadata, destination, source, regionSectors: regionBytes / 512, features: ['no_hydration'] });
  assert.equal(await clone.blockStatus(0, sizeBytes), [run(2 * regionBytes, DATA), run(6 * regionBytes, HOLE), run(regionBytes, DATA), run(7 * regionBytes, HOLE)]);
  // Hydrate regions 0..3 (a hole region is copied as zeros: data on the destination) and write region 12.
  await clone.cache(0, 4 * regionBytes);
  await clone.write(12 * regionBytes, new Uint8Array(regionBytes).fill(7));
  assert.equal(await clone.blockStatus(0, sizeBytes), [
    run(4 * regionBytes, DATA), run(4 * regionBytes, HOLE), run(regionBytes, DATA), run(3 * regionBytes, HOLE), run(regionBytes, DATA), run(3 * regionBytes, HOLE),
  ]);
  // A whole-region discard marks region 14 hydrated without a copy: the destination's hole shows.
  await clone.discard(14 * regionBytes, regionBytes);
  assert.equal(await clone.blockStatus(13 * regionBytes, 3 * regionBytes), [run(3 * regionBytes, HOLE)]);
  await clone.close();
});

/** The same device seen through an object that has no blockStatus. */
function withoutBlockStatus(device: BlockDevice): BlockDevice {
  return {
    name: `bare(${device.name})`,
    sizeBytes: device.sizeBytes,
    logicalBlockBytes: device.logicalBlockBytes,
    canWrite: device.canWrite,
    canDiscard: device.canDiscard,
    discardZeroes: device.discardZeroes,
    read: (offsetBytes, target) => device.read(offsetBytes, target),
    write: (offsetBytes, data, options) => device.write(offsetBytes, data, options),
    flush: () => device.flush(),
    discard: (offsetBytes, lengthBytes) => device.discard(offsetBytes, lengthBytes),
    close: () => device.close(),
  };
}

extents.run();
devices.run();
