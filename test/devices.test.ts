/**
 * The device conformance suite for every device here (FileDevice on both I/O paths, MemoryDevice,
 * FaultDevice with no faults), writable and again opened read-only (`readOnly: 'only'`), then what
 * only a file has: sparse 16 TiB files, real hole punching and its zero-writing fallback, read-only
 * opens that leave the file alone, open-time refusals, persistence across reopen, and short-I/O
 * loops.
 * Files live in a fresh directory under os.tmpdir(), removed at the end.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { FileDevice, ZERO_CHUNK_BYTES, type FileIoMode } from '../runtime/devices/file-device.ts';
import type { FileSyscalls } from '../runtime/devices/file-io.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { BlockError, type BlockErrorCode } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { deviceConformance, type DeviceFactory } from './conformance/device-suite.ts';
import { expectCode } from './support/expect-code.ts';

const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-devices-'));
let fileCount = 0;
const tempPath = (stem: string) => path.join(tempDir, `${stem}-${++fileCount}.img`);

/**
 * Creates a sparse file, writes `initial` (its all-zero 4 KiB blocks left as holes, so a read-only
 * open has holes to report), and reopens read-only when asked.
 */
function fileFactory(io: FileIoMode): DeviceFactory {
  return async ({ sizeBytes, logicalBlockBytes, readOnly, initial }) => {
    const filePath = tempPath(`conformance-${io}`);
    const created = await FileDevice.open(filePath, { create: { sizeBytes }, logicalBlockBytes, io });
    if (initial === undefined && !readOnly) return created;
    const image = initial ?? new Uint8Array(0);
    const chunkBytes = Math.max(4096, logicalBlockBytes);
    for (let atBytes = 0; atBytes < image.length; atBytes += chunkBytes) {
      const chunk = image.subarray(atBytes, atBytes + chunkBytes);
      if (chunk.some((byte) => byte !== 0)) await created.write(atBytes, chunk);
    }
    await created.close();
    return FileDevice.open(filePath, { readOnly, logicalBlockBytes, io });
  };
}

const memoryFactory: DeviceFactory = async (options) => new MemoryDevice(options);
const faultFactory: DeviceFactory = async (options) => new FaultDevice(new MemoryDevice(options), { seed: 1 });

deviceConformance('FileDevice io=sync', fileFactory('sync'));
deviceConformance('FileDevice io=async', fileFactory('async'));
deviceConformance('MemoryDevice', memoryFactory);
deviceConformance('FaultDevice over MemoryDevice, no faults', faultFactory);
// The same devices opened read-only over a seeded image: every read-side case.
deviceConformance('FileDevice io=sync', fileFactory('sync'), { readOnly: 'only' });
deviceConformance('FileDevice io=async', fileFactory('async'), { readOnly: 'only' });
deviceConformance('MemoryDevice', memoryFactory, { readOnly: 'only' });
deviceConformance('FaultDevice over MemoryDevice, no faults', faultFactory, { readOnly: 'only' });

const MiB = 1 << 20;

const memory = suite('MemoryDevice');

memory('a 16 TiB memory device is sparse: pages appear on write and go on discard', async () => {
  const device = new MemoryDevice({ sizeBytes: 2 ** 44, logicalBlockBytes: 4096 });
  assert.is(device.allocatedBytes, 0);
  const data = new Prng(8).fill(new Uint8Array(8192));
  await device.write(0, data);
  await device.write(2 ** 44 - data.length, data);
  assert.is(device.allocatedBytes, 2 * 64 * 1024);
  const back = new Uint8Array(data.length);
  await device.read(2 ** 44 - data.length, back);
  assert.equal(back, data);
  await device.read(2 ** 43, back);
  assert.ok(back.every((byte) => byte === 0));
  assert.is(await device.discard(0, 2 ** 44), 'punched');
  assert.is(device.allocatedBytes, 0, 'whole pages released');
  await device.close();
});

memory('initial contents are copied, and zero pages in them take no memory', async () => {
  const initial = new Uint8Array(256 * 1024);
  initial[100_000] = 1;
  const device = new MemoryDevice({ sizeBytes: 1 * MiB, initial });
  assert.is(device.allocatedBytes, 64 * 1024);
  initial[100_000] = 2;
  const back = new Uint8Array(512);
  await device.read(99_840, back);
  assert.is(back[160], 1, 'a copy, not a view');
  assert.throws(() => new MemoryDevice({ sizeBytes: 4096, initial: new Uint8Array(8192) }), (error: unknown) => error instanceof BlockError && error.code === 'EINVAL');
  assert.throws(() => new MemoryDevice({ sizeBytes: 1000 }), (error: unknown) => error instanceof BlockError && error.code === 'EINVAL');
  await device.close();
});

memory.run();

const test = suite('FileDevice');

test.after(() => fs.rmSync(tempDir, { recursive: true, force: true }));

test('a sparse 16 TiB file (or the filesystem maximum) takes I/O at both ends and little space', async () => {
  const filePath = tempPath('sparse');
  // ext4 with 4 KiB blocks caps a file at 2^32 - 1 blocks = 16 TiB - 4 KiB; other filesystems take 16 TiB.
  let device: FileDevice | undefined;
  for (const sizeBytes of [2 ** 44, 2 ** 44 - 4096]) {
    try {
      device = await FileDevice.open(filePath, { create: { sizeBytes }, logicalBlockBytes: 4096 });
      break;
    } catch (error) {
      if (!(error instanceof BlockError && error.code === 'ERANGE')) throw error;
      assert.not.ok(fs.existsSync(filePath), 'a refused create leaves no file behind');
    }
  }
  assert.ok(device, 'the filesystem holds a file of 16 TiB or 16 TiB - 4 KiB');
  const sizeBytes = device.sizeBytes;
  assert.is(fs.statSync(filePath).size, sizeBytes);
  const prng = new Prng(seedFromEnv());
  const head = prng.fill(new Uint8Array(64 * 1024));
  const tail = prng.fill(new Uint8Array(64 * 1024));
  await device.write(0, head);
  await device.write(sizeBytes - tail.length, tail, { fua: true });
  const middle = new Uint8Array(8192).fill(1);
  await device.read(2 ** 43, middle);
  assert.ok(middle.every((byte) => byte === 0), 'the middle reads as zeros');
  await expectCode(device.read(sizeBytes, new Uint8Array(4096)), 'ERANGE');
  await device.close();

  const reopened = await FileDevice.open(filePath, { readOnly: true });
  assert.is(reopened.sizeBytes, sizeBytes);
  const back = new Uint8Array(64 * 1024);
  await reopened.read(0, back);
  assert.equal(back, head);
  await reopened.read(sizeBytes - back.length, back);
  assert.equal(back, tail);
  await reopened.close();
  assert.ok(fs.statSync(filePath).blocks * 512 < MiB, `allocated ${fs.statSync(filePath).blocks * 512} bytes`);
  fs.rmSync(filePath);
});

test('discard punches a hole on this host: the range reads as zeros and space is released', async () => {
  const filePath = tempPath('punch');
  const device = await FileDevice.open(filePath, { create: { sizeBytes: 8 * MiB }, logicalBlockBytes: 4096 });
  const data = new Prng(3).fill(new Uint8Array(8 * MiB));
  await device.write(0, data);
  await device.flush();
  const blocksBefore = fs.statSync(filePath).blocks;
  assert.is(device.discardMode, undefined);
  assert.is(await device.discard(MiB, 4 * MiB), 'punched');
  assert.is(device.discardMode, 'punched');
  await device.flush();
  const releasedBytes = (blocksBefore - fs.statSync(filePath).blocks) * 512;
  assert.ok(releasedBytes >= 4 * MiB, `released ${releasedBytes} bytes`);
  const expected = data.slice();
  expected.fill(0, MiB, 5 * MiB);
  const back = new Uint8Array(8 * MiB);
  await device.read(0, back);
  assert.ok(sameBytes(back, expected), 'hole reads as zeros, the rest is intact');
  await device.close();
});

test('a FUA write goes through an O_DSYNC descriptor of its own: no fdatasync of the whole file; the bytes read back', async () => {
  const filePath = tempPath('fua');
  const writeFds: number[] = [];
  let datasyncs = 0;
  const device = await FileDevice.open(filePath, {
    create: { sizeBytes: MiB },
    syscalls: {
      write: (fd, data, lengthBytes, positionBytes) => (writeFds.push(fd), nodeWrite(fd, data, lengthBytes, positionBytes)),
      fdatasync: async () => void (datasyncs += 1),
    },
  });
  const data = new Prng(5).fill(new Uint8Array(8192));
  await device.write(4096, data, { fua: true });
  await device.write(65536, data, { fua: true });
  assert.is(datasyncs, 0, 'no whole-file sync');
  assert.is(writeFds.length, 2);
  assert.is(writeFds[0], writeFds[1], 'one O_DSYNC descriptor, opened once');
  const back = new Uint8Array(8192);
  await device.read(4096, back);
  assert.ok(sameBytes(back, data));
  await device.close();
  assert.ok(sameBytes(fs.readFileSync(filePath).subarray(65536, 65536 + 8192), data));
  await expectCode(device.write(0, data, { fua: true }), 'EBADF');
});

test('discard writes zeros in bounded chunks when the host cannot punch', async () => {
  const filePath = tempPath('zeroed');
  const writeLengths: number[] = [];
  let punchCalls = 0;
  const device = await FileDevice.open(filePath, {
    create: { sizeBytes: 8 * MiB },
    punchHole: () => (punchCalls++, false),
    syscalls: { write: (fd, data, lengthBytes, positionBytes) => (writeLengths.push(lengthBytes), nodeWrite(fd, data, lengthBytes, positionBytes)) },
  });
  const data = new Prng(4).fill(new Uint8Array(8 * MiB));
  await device.write(0, data);
  await device.flush();
  writeLengths.length = 0; // a write this large may go through the async path too; count only the discard's
  const blocksBefore = fs.statSync(filePath).blocks;
  const lengthBytes = 3 * MiB + 512;
  assert.is(await device.discard(512, lengthBytes), 'zeroed');
  assert.is(device.discardMode, 'zeroed');
  assert.is(punchCalls, 1);
  assert.equal(writeLengths, [MiB, MiB, MiB, 512], 'zeros go out in 1 MiB chunks');
  assert.ok(writeLengths.every((length) => length <= ZERO_CHUNK_BYTES));
  await device.flush();
  assert.ok(fs.statSync(filePath).blocks >= blocksBefore, 'no space released');
  const expected = data.slice();
  expected.fill(0, 512, 512 + lengthBytes);
  const back = new Uint8Array(8 * MiB);
  await device.read(0, back);
  assert.ok(sameBytes(back, expected), 'range reads as zeros, the rest is intact');
  await device.close();
});

test("io 'sync': small transfers run in the call, large ones (the adapter's poolTransferBytes) go through the thread pool", async () => {
  const poolTransferBytes = (await loadAdapter()).poolTransferBytes;
  const largeBytes = Number.isFinite(poolTransferBytes) ? poolTransferBytes : 256 * 1024;
  const used: string[] = [];
  const device = await FileDevice.open(tempPath('sync-threshold'), {
    create: { sizeBytes: 1 * MiB },
    syscalls: {
      readSync: (fd, target, lengthBytes, positionBytes) => (used.push(`readSync ${lengthBytes}`), fs.readSync(fd, target, 0, lengthBytes, positionBytes)),
      writeSync: (fd, data, lengthBytes, positionBytes) => (used.push(`writeSync ${lengthBytes}`), fs.writeSync(fd, data, 0, lengthBytes, positionBytes)),
      read: async (fd, target, lengthBytes, positionBytes) => (used.push(`read ${lengthBytes}`), fs.readSync(fd, target, 0, lengthBytes, positionBytes)),
      write: async (fd, data, lengthBytes, positionBytes) => (used.push(`write ${lengthBytes}`), fs.writeSync(fd, data, 0, lengthBytes, positionBytes)),
    },
  });
  const small = largeBytes - 512;
  await device.write(0, new Uint8Array(small).fill(1));
  await device.write(0, new Uint8Array(largeBytes).fill(2));
  await device.read(0, new Uint8Array(small));
  await device.read(0, new Uint8Array(largeBytes));
  // Where the pool does not pay (Deno: Infinity), everything stays synchronous.
  const large = Number.isFinite(poolTransferBytes) ? ['write', 'read'] : ['writeSync', 'readSync'];
  assert.equal(used, [`writeSync ${small}`, `${large[0]} ${largeBytes}`, `readSync ${small}`, `${large[1]} ${largeBytes}`]);
  await device.close();
});

test('a read-only open leaves bytes and mtime alone after reads and refused writes', async () => {
  const filePath = tempPath('readonly');
  const contents = new Prng(5).fill(new Uint8Array(64 * 1024));
  fs.writeFileSync(filePath, contents);
  const past = new Date(Date.UTC(2020, 0, 1));
  fs.utimesSync(filePath, past, past);
  const mtimeMsBefore = fs.statSync(filePath).mtimeMs;
  for (const io of ['sync', 'async'] as const) {
    const device = await FileDevice.open(filePath, { readOnly: true, io });
    assert.is(device.canWrite, false);
    const back = new Uint8Array(contents.length);
    await device.read(0, back);
    assert.equal(back, contents);
    await expectCode(device.write(0, new Uint8Array(512)), 'EROFS');
    await expectCode(device.write(0, new Uint8Array(512), { fua: true }), 'EROFS');
    await expectCode(device.discard(0, 4096), 'EROFS');
    await device.flush();
    await device.close();
  }
  assert.equal(new Uint8Array(fs.readFileSync(filePath)), contents);
  assert.is(fs.statSync(filePath).mtimeMs, mtimeMsBefore);
});

test('open refuses what is not a device file, naming the path', async () => {
  const missing = path.join(tempDir, 'missing.img');
  const error = await expectCode(FileDevice.open(missing), 'ENOENT');
  assert.ok(error.message.includes(missing), error.message);
  await expectCode(FileDevice.open(missing, { readOnly: true }), 'ENOENT');

  for (const readOnly of [false, true]) {
    const dirError = await expectCode(FileDevice.open(tempDir, { readOnly }), 'EINVAL');
    assert.ok(dirError.message.includes(tempDir) && dirError.message.includes('directory'), dirError.message);
  }

  const odd = tempPath('odd');
  fs.writeFileSync(odd, new Uint8Array(1000));
  const oddError = await expectCode(FileDevice.open(odd), 'EINVAL');
  assert.ok(oddError.message.includes(odd) && oddError.message.includes('1000'), oddError.message);
  fs.writeFileSync(odd, new Uint8Array(3 * 512));
  await expectCode(FileDevice.open(odd, { logicalBlockBytes: 4096 }), 'EINVAL');
  await (await FileDevice.open(odd)).close();

  await expectCode(FileDevice.open(odd, { logicalBlockBytes: 3 }), 'EINVAL');
  await expectCode(FileDevice.open(odd, { io: 'fast' as FileIoMode }), 'EINVAL');
  await expectCode(FileDevice.open(tempPath('ro-create'), { create: { sizeBytes: 4096 }, readOnly: true }), 'EINVAL');
  await expectCode(FileDevice.open(tempPath('unaligned-create'), { create: { sizeBytes: 1000 } }), 'EINVAL');

  const tooBig = tempPath('too-big');
  await expectCode(FileDevice.open(tooBig, { create: { sizeBytes: 2 ** 52 } }), 'ERANGE');
  assert.not.ok(fs.existsSync(tooBig), 'a refused create leaves no file behind');
});

test('create refuses an existing file unless told to overwrite', async () => {
  const filePath = tempPath('exists');
  fs.writeFileSync(filePath, new Uint8Array(4096).fill(8));
  await expectCode(FileDevice.open(filePath, { create: { sizeBytes: 8192 } }), 'EEXIST');
  assert.equal(new Uint8Array(fs.readFileSync(filePath)), new Uint8Array(4096).fill(8), 'the existing file is untouched');
  const device = await FileDevice.open(filePath, { create: { sizeBytes: 8192, overwrite: true } });
  assert.is(device.sizeBytes, 8192);
  const back = new Uint8Array(8192).fill(1);
  await device.read(0, back);
  assert.ok(back.every((byte) => byte === 0), 'overwritten file starts as zeros');
  await device.close();
});

for (const io of ['sync', 'async'] as const) {
  test(`data survives close and reopen (io=${io})`, async () => {
    const filePath = tempPath(`persist-${io}`);
    const data = new Prng(6).fill(new Uint8Array(128 * 1024));
    const device = await FileDevice.open(filePath, { create: { sizeBytes: 1 * MiB }, io });
    assert.is(device.io, io);
    await device.write(64 * 1024, data);
    await device.flush();
    await device.close();
    const reopened = await FileDevice.open(filePath, { io });
    const back = new Uint8Array(data.length);
    await reopened.read(64 * 1024, back);
    assert.equal(back, data);
    await reopened.close();
  });

  test(`short reads and writes are looped until done (io=${io})`, async () => {
    const filePath = tempPath(`short-${io}`);
    const callLengths: number[] = [];
    const capBytes = 1000; // deliberately not a block multiple
    const syscalls: Partial<FileSyscalls> = {
      readSync: (fd, target, lengthBytes, positionBytes) => (callLengths.push(lengthBytes), fs.readSync(fd, target, 0, Math.min(lengthBytes, capBytes), positionBytes)),
      writeSync: (fd, data, lengthBytes, positionBytes) => (callLengths.push(lengthBytes), fs.writeSync(fd, data, 0, Math.min(lengthBytes, capBytes), positionBytes)),
      read: async (fd, target, lengthBytes, positionBytes) => (callLengths.push(lengthBytes), fs.readSync(fd, target, 0, Math.min(lengthBytes, capBytes), positionBytes)),
      write: async (fd, data, lengthBytes, positionBytes) => (callLengths.push(lengthBytes), fs.writeSync(fd, data, 0, Math.min(lengthBytes, capBytes), positionBytes)),
    };
    const device = await FileDevice.open(filePath, { create: { sizeBytes: 1 * MiB }, io, syscalls });
    const data = new Prng(7).fill(new Uint8Array(64 * 1024));
    await device.write(4096, data);
    const writeCalls = callLengths.length;
    assert.is(writeCalls, Math.ceil(data.length / capBytes));
    const back = new Uint8Array(data.length);
    await device.read(4096, back);
    assert.is(callLengths.length - writeCalls, Math.ceil(data.length / capBytes));
    assert.equal(back, data);
    await device.close();
    assert.equal(new Uint8Array(fs.readFileSync(filePath)).subarray(4096, 4096 + data.length), data);
  });

  test(`a file that shrinks under the device gives EIO, not a short read (io=${io})`, async () => {
    const filePath = tempPath(`shrink-${io}`);
    const device = await FileDevice.open(filePath, { create: { sizeBytes: 64 * 1024 }, io });
    fs.truncateSync(filePath, 32 * 1024);
    const target = new Uint8Array(32 * 1024);
    const error = await expectCode(device.read(16 * 1024, target), 'EIO');
    assert.match(error.message, /end of file/);
    await device.close();
  });

  test(`OS errors become EIO naming the errno (io=${io})`, async () => {
    const filePath = tempPath(`oserror-${io}`);
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const device = await FileDevice.open(filePath, {
      create: { sizeBytes: 64 * 1024 },
      io,
      syscalls: {
        writeSync: () => { throw enospc; },
        write: async () => { throw enospc; },
        fdatasync: async () => { throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }); },
      },
    });
    const error = await expectCode(device.write(4096, new Uint8Array(4096)), 'EIO');
    assert.match(error.message, /ENOSPC/);
    assert.is(error.offsetBytes, 4096);
    assert.is(error.cause, enospc);
    await expectCode(device.flush(), 'EIO');
    await device.close();
  });
}

test('close waits for many async requests in flight', async () => {
  const filePath = tempPath('inflight');
  const device = await FileDevice.open(filePath, { create: { sizeBytes: 1 * MiB }, io: 'async' });
  const settled: string[] = [];
  const requests: Promise<unknown>[] = [];
  for (let i = 0; i < 32; i++) {
    requests.push(device.write(i * 4096, new Uint8Array(4096).fill(i)).then(() => settled.push('write')));
    requests.push(device.read(i * 4096, new Uint8Array(4096)).then(() => settled.push('read')));
  }
  requests.push(device.flush().then(() => settled.push('flush')));
  await device.close();
  assert.is(settled.length, 65, 'every request settled before close resolved');
  await Promise.all(requests);
  await expectCode(device.read(0, new Uint8Array(4096)), 'EBADF');
});

test.run();


function nodeWrite(fd: number, data: Uint8Array, lengthBytes: number, positionBytes: number): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, data, 0, lengthBytes, positionBytes, (error, written) => (error ? reject(error) : resolve(written))));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
