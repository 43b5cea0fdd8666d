/**
 * Interoperability with real NBD clients (libnbd's nbdinfo and nbdcopy, qemu-img and qemu-io),
 * started from the test against our server on a free port (or a Unix socket) and killed by PID if
 * they hang. Covers export listing, allocation maps of a sparse file and of a partly hydrated
 * clone, whole-export copies (also of a clone while it hydrates), compares, pattern writes and
 * reads, several writers at once, read-only refusals. Missing tools fail with the apt-get line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CloneDevice } from '../runtime/clone/clone-device.ts';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng } from '../runtime/prng.ts';
import { NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF, NBD_CMD_READ } from '../server/nbd/constants.ts';
import type { NbdExport } from '../server/nbd/types.ts';
import { RawNbd } from './support/nbd-client.ts';
import { serve, type Served } from './support/nbd-fixtures.ts';
import { killRunningTools, mustRun, requireTools, runTool } from './support/tools.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const test = suite('nbd with real clients');

let tempDir = '';
let served: Served | undefined;
const devices: BlockDevice[] = [];

test.before.each(() => {
  requireTools(['nbdinfo', 'nbdcopy', 'qemu-img', 'qemu-io']);
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-nbd-clients-'));
});
test.after.each(async () => {
  killRunningTools();
  await served?.stop();
  served = undefined;
  for (const device of devices.splice(0)) await device.close();
  fs.rmSync(tempDir, { recursive: true, force: true });
});

const uri = (name: string) => `nbd://127.0.0.1:${served!.tcp.port}/${name}`;
const unixUri = (name: string) => `nbd+unix:///${name}?socket=${served!.unix.path}`;

/** A sparse file device with seeded data in `ranges`; returns it and the image it should hold. */
async function sparseFile(sizeBytes: number, ranges: Array<[number, number]>, seed = 1): Promise<{ device: FileDevice; image: Uint8Array; filePath: string }> {
  const filePath = path.join(tempDir, `sparse-${seed}.img`);
  const device = await FileDevice.open(filePath, { create: { sizeBytes } });
  devices.push(device);
  const image = new Uint8Array(sizeBytes);
  const prng = new Prng(seed);
  for (const [offsetBytes, lengthBytes] of ranges) {
    const data = prng.fill(new Uint8Array(lengthBytes));
    await device.write(offsetBytes, data);
    image.set(data, offsetBytes);
  }
  return { device, image, filePath };
}

async function start(exports: NbdExport[]): Promise<Served> {
  served = await serve(exports);
  return served;
}

async function map(target: string): Promise<Array<{ offset: number; length: number; type: number }>> {
  const entries = JSON.parse(await mustRun('nbdinfo', ['--map', '--json', target])) as Array<{ offset: number; length: number; type: number }>;
  return entries.map(({ offset, length, type }) => ({ offset, length, type }));
}

function sameBytes(a: Uint8Array, b: Uint8Array, what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  if (!Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) assert.unreachable(`${what}: bytes differ`);
}

async function readDevice(device: BlockDevice, offsetBytes = 0, lengthBytes = device.sizeBytes): Promise<Uint8Array> {
  const bytes = new Uint8Array(lengthBytes);
  await device.read(offsetBytes, bytes);
  return bytes;
}

test('nbdinfo --list shows every export, its size, description and flags', async () => {
  const { device } = await sparseFile(8 * MiB, []);
  await start([
    { name: 'disk', device, readOnly: false, description: 'a sparse file' },
    { name: 'ro', device, readOnly: true },
    { name: 'mem', device: new MemoryDevice({ sizeBytes: MiB }), readOnly: false },
  ]);
  const listed = JSON.parse(await mustRun('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${served!.tcp.port}`])) as {
    exports: Array<{ 'export-name': string; 'export-size': number; description?: string; is_read_only: boolean; can_multi_conn: boolean; can_fast_zero: boolean; can_cache: boolean; contexts: string[] }>;
  };
  const byName = Object.fromEntries(listed.exports.map((entry) => [entry['export-name'], entry]));
  assert.equal(Object.keys(byName).sort(), ['disk', 'mem', 'ro']);
  assert.is(byName.disk!['export-size'], 8 * MiB);
  assert.is(byName.disk!.description, 'a sparse file');
  assert.is(byName.disk!.is_read_only, false);
  assert.is(byName.ro!.is_read_only, true);
  assert.is(byName.mem!['export-size'], MiB);
  assert.ok(byName.disk!.can_multi_conn);
  assert.ok(byName.disk!.can_fast_zero);
  assert.ok(byName.disk!.can_cache);
  assert.is(byName.ro!.can_fast_zero, false);
  assert.equal(byName.disk!.contexts, ['base:allocation']);
});

test('nbdinfo --map shows the holes and data of a sparse FileDevice', async () => {
  const { device } = await sparseFile(8 * MiB, [[MiB, 64 * KiB], [4 * MiB, MiB], [8 * MiB - 4 * KiB, 4 * KiB]]);
  await start([{ name: 'disk', device, readOnly: true }]);
  assert.equal(await map(uri('disk')), [
    { offset: 0, length: MiB, type: 3 },
    { offset: MiB, length: 64 * KiB, type: 0 },
    { offset: MiB + 64 * KiB, length: 3 * MiB - 64 * KiB, type: 3 },
    { offset: 4 * MiB, length: MiB, type: 0 },
    { offset: 5 * MiB, length: 3 * MiB - 4 * KiB, type: 3 },
    { offset: 8 * MiB - 4 * KiB, length: 4 * KiB, type: 0 },
  ]);
});

test('READ over holes: OFFSET_HOLE chunks for the zeros, data chunks for the rest (one data chunk with DF); byte-exact for our client, nbdcopy and qemu-io', async () => {
  const { device, image } = await sparseFile(8 * MiB, [[MiB, 64 * KiB], [MiB + 68 * KiB, 4 * KiB], [4 * MiB, MiB]], 5);
  await start([{ name: 'disk', device, readOnly: false }]);
  const client = await RawNbd.connect(served!.tcp);
  try {
    await client.go('disk');
    client.request(NBD_CMD_READ, 0, 2 * MiB);
    const sparse = await client.reply();
    assert.is(sparse.error, 0, sparse.message);
    sameBytes(sparse.data!, image.subarray(0, 2 * MiB), 'the read with holes');
    assert.equal(sparse.holes, [
      { offsetBytes: 0, lengthBytes: MiB },
      { offsetBytes: MiB + 64 * KiB, lengthBytes: 4 * KiB },
      { offsetBytes: MiB + 72 * KiB, lengthBytes: MiB - 72 * KiB },
    ]);
    client.request(NBD_CMD_READ, 0, 2 * MiB, { flags: NBD_CMD_FLAG_DF });
    const whole = await client.reply();
    assert.is(whole.holes, undefined, 'DF: one data chunk');
    sameBytes(whole.data!, image.subarray(0, 2 * MiB), 'the read with DF');
    client.request(NBD_CMD_READ, 4 * MiB, MiB);
    assert.is((await client.reply()).holes, undefined, 'all data: no hole chunk');
  } finally {
    client.close();
  }
  const copy = path.join(tempDir, 'sparse-copy.img');
  await mustRun('nbdcopy', ['--request-size=2097152', '--no-extents', uri('disk'), copy]);
  sameBytes(new Uint8Array(fs.readFileSync(copy)), image, 'nbdcopy without extents (reads every byte: holes come as chunks)');
  await mustRun('qemu-io', ['-f', 'raw', '-c', `read -P 0 0 ${MiB}`, '-c', `read -P 0 ${2 * MiB} ${2 * MiB}`, uri('disk')]);
});

test('nbdcopy of an export (TCP and Unix socket, zero-copy sends and without) equals the source; qemu-img compare agrees', async () => {
  const { device, image } = await sparseFile(16 * MiB, [[0, 3 * MiB], [5 * MiB, 512 * KiB], [9 * MiB, 7 * MiB]]);
  for (const zeroCopy of [false, true]) {
    await served?.stop();
    served = await serve([{ name: 'disk', device, readOnly: true }], { zeroCopy });
    for (const [label, target] of [['tcp', uri('disk')], ['unix', unixUri('disk')]] as const) {
      const copy = path.join(tempDir, `copy-${label}.img`);
      await mustRun('nbdcopy', [target, copy]);
      sameBytes(new Uint8Array(fs.readFileSync(copy)), image, `nbdcopy over ${label}, zeroCopy ${zeroCopy}`);
      const compared = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', target, copy]);
      assert.is(compared.code, 0, compared.stdout + compared.stderr);
    }
  }
  const altered = path.join(tempDir, 'copy-tcp.img');
  const fd = fs.openSync(altered, 'r+');
  fs.writeSync(fd, new Uint8Array([0x42]), 0, 1, 10 * MiB);
  fs.closeSync(fd);
  const differs = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri('disk'), altered]);
  assert.is(differs.code, 1, `a changed byte is found: ${differs.stdout}`);
  assert.match(differs.stdout, /Content mismatch at offset 10485760/);
});

test('nbdcopy into a writable export (large writes straddling socket reads, several connections), then qemu-img compare', async () => {
  const { image, filePath } = await sparseFile(24 * MiB, [[0, 10 * MiB], [12 * MiB, 12 * MiB]], 4);
  const target = await FileDevice.open(path.join(tempDir, 'target.img'), { create: { sizeBytes: 24 * MiB } });
  devices.push(target);
  await start([{ name: 'target', device: target, readOnly: false }]);
  await mustRun('nbdcopy', ['--flush', filePath, uri('target')], 60_000);
  sameBytes(await readDevice(target), image, 'after nbdcopy into the export');
  const compared = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri('target'), filePath]);
  assert.is(compared.code, 0, compared.stdout + compared.stderr);
  assert.is(served!.server.counters.errors, 0);
  assert.is(served!.events.filter((event) => event.type === 'protocol-error').length, 0);
});

test('qemu-io writes a pattern and reads it back; the device holds it', async () => {
  const { device } = await sparseFile(4 * MiB, []);
  await start([{ name: 'disk', device, readOnly: false }]);
  const output = await mustRun('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 64k', '-c', 'read -P 0xab 0 64k', uri('disk')]);
  assert.match(output, /wrote 65536\/65536 bytes at offset 0/);
  assert.match(output, /read 65536\/65536 bytes at offset 0/);
  assert.not.match(output, /Pattern verification failed/);
  sameBytes(await readDevice(device, 0, 64 * KiB), new Uint8Array(64 * KiB).fill(0xab), 'device after qemu-io');
  const failing = await runTool('qemu-io', ['-f', 'raw', '-c', 'read -P 0xcd 0 64k', uri('disk')]);
  assert.match(failing.stdout + failing.stderr, /Pattern verification failed/, 'a wrong pattern is noticed: the reads are real');
});

test('several clients at once, each writing its own range, all verified', async () => {
  const { device } = await sparseFile(16 * MiB, []);
  await start([{ name: 'disk', device, readOnly: false }]);
  const writers = [0, 1, 2, 3, 4, 5].map((i) => mustRun('qemu-io', [
    '-f', 'raw',
    '-c', `write -P 0x${(0x11 * (i + 1)).toString(16)} ${i * 2}M 2M`,
    '-c', `read -P 0x${(0x11 * (i + 1)).toString(16)} ${i * 2}M 2M`,
    i % 2 === 0 ? uri('disk') : unixUri('disk'),
  ]));
  const outputs = await Promise.all(writers);
  for (const output of outputs) assert.not.match(output, /Pattern verification failed/);
  for (let i = 0; i < 6; i++) {
    sameBytes(await readDevice(device, i * 2 * MiB, 2 * MiB), new Uint8Array(2 * MiB).fill(0x11 * (i + 1)), `range of writer ${i}`);
  }
  sameBytes(await readDevice(device, 12 * MiB, 4 * MiB), new Uint8Array(4 * MiB), 'nothing beyond the writers');
  assert.is(served!.server.counters.errors, 0);
});

test('a read-only export refuses writes: qemu-io cannot open it writable, nbdcopy into it fails, nothing changes', async () => {
  const { device, image } = await sparseFile(4 * MiB, [[0, MiB]]);
  await start([{ name: 'ro', device, readOnly: true }]);
  const qemu = await runTool('qemu-io', ['-f', 'raw', '-c', 'write -P 0x01 0 4k', uri('ro')]);
  assert.match(qemu.stdout + qemu.stderr, /Permission denied|read-only|Operation not permitted/i);
  const source = path.join(tempDir, 'other.img');
  fs.writeFileSync(source, new Uint8Array(4 * MiB).fill(7));
  const copy = await runTool('nbdcopy', [source, uri('ro')]);
  assert.ok(copy.code !== 0, `nbdcopy into a read-only export must fail: ${copy.stderr}`);
  const reading = await mustRun('qemu-io', ['-r', '-f', 'raw', '-c', 'read 0 64k', uri('ro')]);
  assert.match(reading, /read 65536\/65536/);
  sameBytes(await readDevice(device), image, 'the read-only device is unchanged');
});

test('a Unix socket export (nbd+unix:///name?socket=PATH)', async () => {
  const { device, image } = await sparseFile(2 * MiB, [[512 * KiB, MiB]]);
  await start([{ name: 'sock', device, readOnly: false }]);
  assert.is((await mustRun('nbdinfo', ['--size', unixUri('sock')])).trim(), String(2 * MiB));
  assert.equal(await map(unixUri('sock')), [
    { offset: 0, length: 512 * KiB, type: 3 },
    { offset: 512 * KiB, length: MiB, type: 0 },
    { offset: 1536 * KiB, length: 512 * KiB, type: 3 },
  ]);
  await mustRun('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5c 0 4k', unixUri('sock')]);
  image.fill(0x5c, 0, 4 * KiB);
  sameBytes(await readDevice(device), image, 'after a write over the Unix socket');
});

test('nbdinfo --map of a partly hydrated clone: hydrated regions as the destination, the rest as the source', async () => {
  const regionBytes = 64 * KiB;
  const { device: source } = await sparseFile(16 * regionBytes, [[0, 2 * regionBytes], [8 * regionBytes, regionBytes]], 2);
  const destination = await FileDevice.open(path.join(tempDir, 'destination.img'), { create: { sizeBytes: 16 * regionBytes } });
  const clone = await CloneDevice.open({
    metadata: new MemoryDevice({ sizeBytes: 64 * KiB }), destination, source, regionSectors: regionBytes / 512, features: ['no_hydration'],
  });
  devices.splice(devices.indexOf(source), 1); // the clone owns its devices now
  devices.push(clone);
  await start([{ name: 'clone', device: clone, readOnly: false }]);
  assert.equal(await map(uri('clone')), [
    { offset: 0, length: 2 * regionBytes, type: 0 },
    { offset: 2 * regionBytes, length: 6 * regionBytes, type: 3 },
    { offset: 8 * regionBytes, length: regionBytes, type: 0 },
    { offset: 9 * regionBytes, length: 7 * regionBytes, type: 3 },
  ]);
  // NBD CACHE hydrates regions 2..3 (holes of the source, copied: data on the destination);
  // a write hydrates region 12.
  await mustRun('qemu-io', ['-f', 'raw', '-c', `write -P 0x77 ${12 * regionBytes} ${regionBytes}`, uri('clone')]);
  await clone.cache(2 * regionBytes, 2 * regionBytes);
  assert.equal(await map(uri('clone')), [
    { offset: 0, length: 4 * regionBytes, type: 0 },
    { offset: 4 * regionBytes, length: 4 * regionBytes, type: 3 },
    { offset: 8 * regionBytes, length: regionBytes, type: 0 },
    { offset: 9 * regionBytes, length: 3 * regionBytes, type: 3 },
    { offset: 12 * regionBytes, length: regionBytes, type: 0 },
    { offset: 13 * regionBytes, length: 3 * regionBytes, type: 3 },
  ]);
});

test("a clone's hydrated map as qemu:dirty-bitmap:hydrated: nbdinfo --map, qemu-img map with x-dirty-bitmap, and both contexts in one BLOCK_STATUS", async () => {
  const regionBytes = 64 * KiB;
  const { device: source } = await sparseFile(16 * regionBytes, [[0, 2 * regionBytes], [8 * regionBytes, regionBytes]], 4);
  const destination = await FileDevice.open(path.join(tempDir, 'destination.img'), { create: { sizeBytes: 16 * regionBytes } });
  const clone = await CloneDevice.open({
    metadata: new MemoryDevice({ sizeBytes: 64 * KiB }), destination, source, regionSectors: regionBytes / 512, features: ['no_hydration'],
  });
  devices.splice(devices.indexOf(source), 1);
  devices.push(clone);
  await start([{ name: 'clone', device: clone, readOnly: false }]);
  const bitmap = async () =>
    (JSON.parse(await mustRun('nbdinfo', ['--map=qemu:dirty-bitmap:hydrated', '--json', uri('clone')])) as Array<{ offset: number; length: number; type: number }>)
      .map(({ offset, length, type }) => ({ offset, length, type }));
  assert.equal(await bitmap(), [{ offset: 0, length: 16 * regionBytes, type: 0 }], 'nothing hydrated yet');
  await mustRun('qemu-io', ['-f', 'raw', '-c', `write -P 0x77 ${12 * regionBytes} ${regionBytes}`, uri('clone')]);
  await clone.cache(2 * regionBytes, 2 * regionBytes);
  const expected = [
    { offset: 0, length: 2 * regionBytes, type: 0 },
    { offset: 2 * regionBytes, length: 2 * regionBytes, type: 1 },
    { offset: 4 * regionBytes, length: 8 * regionBytes, type: 0 },
    { offset: 12 * regionBytes, length: regionBytes, type: 1 },
    { offset: 13 * regionBytes, length: 3 * regionBytes, type: 0 },
  ];
  assert.equal(await bitmap(), expected, 'regions 2-3 (cached) and 12 (written) hydrated');

  // qemu reads a dirty-bitmap context in place of base:allocation: a set (dirty) bit shows as a hole.
  const opts = `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${served!.tcp.port},export=clone,x-dirty-bitmap=qemu:dirty-bitmap:hydrated`;
  const qemuMap = (JSON.parse(await mustRun('qemu-img', ['map', '--output=json', '--image-opts', opts])) as Array<{ start: number; length: number; data: boolean }>)
    .map(({ start, length, data }) => ({ offset: start, length, type: data ? 0 : 1 }));
  assert.equal(qemuMap, expected, 'qemu-img map with x-dirty-bitmap');

  const contexts = await mustRun('nbdinfo', ['--list', '--json', uri('clone')]);
  assert.match(contexts, 'qemu:dirty-bitmap:hydrated');

  // Both contexts selected: one chunk each (ids 1 and 2), the last flagged DONE.
  const client = await RawNbd.connect(served!.tcp);
  try {
    await client.go('clone', { meta: ['base:allocation', 'qemu:dirty-bitmap:hydrated'] });
    client.request(NBD_CMD_BLOCK_STATUS, regionBytes, 2 * regionBytes);
    const reply = await client.reply();
    assert.is(reply.error, 0, reply.message);
    // Region 1 is the source's data, region 2 the destination's (copied): data in both.
    assert.equal(reply.contexts, [
      { contextId: 1, extents: [{ lengthBytes: 2 * regionBytes, flags: 0 }] },
      { contextId: 2, extents: [{ lengthBytes: regionBytes, flags: 0 }, { lengthBytes: regionBytes, flags: 1 }] },
    ]);
  } finally {
    client.close();
  }
});

test('nbdcopy of a clone while it hydrates equals the source', async () => {
  const sizeBytes = 32 * MiB;
  const { device: source, image } = await sparseFile(sizeBytes, [[0, 12 * MiB], [16 * MiB, 4 * MiB], [24 * MiB, 8 * MiB]], 3);
  const destination = await FileDevice.open(path.join(tempDir, 'destination.img'), { create: { sizeBytes } });
  const clone = await CloneDevice.open({
    metadata: new MemoryDevice({ sizeBytes: 64 * KiB }), destination, source, regionSectors: (64 * KiB) / 512, hydrationThreshold: 2, hydrationBatchSize: 4,
  });
  devices.splice(devices.indexOf(source), 1);
  devices.push(clone);
  await start([{ name: 'clone', device: clone, readOnly: false }]);
  assert.ok(clone.hydratedRegions < clone.regionCount, 'hydration has not finished before the copy starts');
  const copy = path.join(tempDir, 'clone-copy.img');
  await mustRun('nbdcopy', [uri('clone'), copy], 60_000);
  sameBytes(new Uint8Array(fs.readFileSync(copy)), image, 'nbdcopy of the hydrating clone');
  await clone.whenHydrated();
  const compared = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', uri('clone'), copy]);
  assert.is(compared.code, 0, compared.stdout + compared.stderr);
});

test.run();
