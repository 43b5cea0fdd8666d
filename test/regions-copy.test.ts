/**
 * RangeCopier and FileDevice.copyFromSpan: file to file in the kernel (copy_file_range through the
 * runtime adapter, small copies in the calling turn and large ones off the event loop), the
 * fallback through memory when the kernel path declines (and that the pair is then not asked
 * again), and a source that is not a file. Every copy is checked byte for byte (seeded).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import type { FileRangeCopy } from '../runtime/adapter/types.ts';
import { COPY_IN_TURN_MAX_BYTES, FileDevice } from '../runtime/devices/file-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { COPY_PIECE_BYTES, MEMORY_PIECE_BYTES, RangeCopier } from '../runtime/regions/range-copy.ts';
import { expectCode } from './support/expect-code.ts';

const SIZE_BYTES = 3 * COPY_PIECE_BYTES + 64 * 1024;
const copy = suite('regions: RangeCopier and copyFromSpan');
let dir: string;
let image: Uint8Array;

copy.before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-range-copy-'));
  image = new Prng(seedFromEnv()).fill(new Uint8Array(SIZE_BYTES));
  fs.writeFileSync(path.join(dir, 'src.img'), image);
});
copy.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Counts calls into a FileRangeCopy (or fails them all). */
function counting(inner: FileRangeCopy | null, fail = false) {
  const calls = { sync: 0, offLoop: 0 };
  const rangeCopy: FileRangeCopy = {
    copySync: (...args) => (calls.sync++, fail || !inner ? -1 : inner.copySync(...args)),
    copy: (...args) => (calls.offLoop++, fail || !inner ? Promise.resolve(-1) : inner.copy(...args)),
  };
  return { calls, rangeCopy };
}

async function destinationFile(name: string, rangeCopy: FileRangeCopy | null) {
  return FileDevice.open(path.join(dir, name), { create: { sizeBytes: SIZE_BYTES, overwrite: true }, rangeCopy });
}

function fileBytes(name: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(dir, name)));
}

function sameRange(actual: Uint8Array, offsetBytes: number, lengthBytes: number, label: string): void {
  for (let at = offsetBytes; at < offsetBytes + lengthBytes; at++) {
    if (actual[at] !== image[at]) assert.unreachable(`${label}: byte ${at} differs`);
  }
}

copy('file to file copies in the kernel: small ranges in the calling turn, large ones off the event loop (seeded)', async () => {
  const adapter = await loadAdapter();
  if (adapter.fileRangeCopy === null) {
    console.log(`  (no copy_file_range on ${adapter.name} here: skipped)`);
    return;
  }
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const source = await FileDevice.open(path.join(dir, 'src.img'), { readOnly: true });
  const { calls, rangeCopy } = counting(adapter.fileRangeCopy);
  const destination = await destinationFile('dst-kernel.img', rangeCopy);
  const copier = new RangeCopier(source, destination);
  const ranges: Array<[number, number]> = [[0, 4096], [8192, COPY_IN_TURN_MAX_BYTES], [SIZE_BYTES - 2 * COPY_PIECE_BYTES - 512, 2 * COPY_PIECE_BYTES + 512]];
  for (let i = 0; i < 20; i++) {
    const lengthBytes = prng.range(1, 64) * 512;
    ranges.push([prng.below((SIZE_BYTES - lengthBytes) / 512) * 512, lengthBytes]);
  }
  await Promise.all(ranges.map(([offsetBytes, lengthBytes]) => copier.copy(offsetBytes, lengthBytes)));
  const bytes = fileBytes('dst-kernel.img');
  for (const [offsetBytes, lengthBytes] of ranges) sameRange(bytes, offsetBytes, lengthBytes, `seed ${seed}: ${offsetBytes}+${lengthBytes}`);
  assert.ok(calls.sync > 0, 'small copies ran in the calling turn');
  assert.ok(calls.offLoop > 0, 'large copies ran off the event loop');
  await destination.close();
  await source.close();
});

copy('a pair the kernel declines copies through memory, and is not asked again', async () => {
  const source = await FileDevice.open(path.join(dir, 'src.img'), { readOnly: true });
  const { calls, rangeCopy } = counting(null, true);
  const destination = await destinationFile('dst-declined.img', rangeCopy);
  const copier = new RangeCopier(source, destination);
  await copier.copy(0, 2 * COPY_PIECE_BYTES);
  const askedAfterFirst = calls.sync + calls.offLoop;
  assert.is(askedAfterFirst, 1, 'declined once');
  await copier.copy(2 * COPY_PIECE_BYTES, SIZE_BYTES - 2 * COPY_PIECE_BYTES);
  assert.is(calls.sync + calls.offLoop, askedAfterFirst, 'not asked again');
  sameRange(fileBytes('dst-declined.img'), 0, SIZE_BYTES, 'declined pair');
  await destination.close();
  await source.close();
});

copy('a source that is not a file copies through memory; copyFromSpan checks its range', async () => {
  const adapter = await loadAdapter();
  const source = new MemoryDevice({ sizeBytes: SIZE_BYTES, readOnly: true, initial: image });
  const { calls, rangeCopy } = counting(adapter.fileRangeCopy);
  const destination = await destinationFile('dst-memory.img', rangeCopy);
  await new RangeCopier(source, destination).copy(4096, COPY_PIECE_BYTES + 4096);
  sameRange(fileBytes('dst-memory.img'), 4096, COPY_PIECE_BYTES + 4096, 'memory source');
  assert.is(calls.sync + calls.offLoop, 0);
  const file = await FileDevice.open(path.join(dir, 'src.img'), { readOnly: true });
  const span = file.fileSpan(0, 4096)!;
  await expectCode(destination.copyFromSpan(1, span), 'EINVAL', /copy/);
  await expectCode(destination.copyFromSpan(SIZE_BYTES, span), 'ERANGE', /copy/);
  await expectCode(file.copyFromSpan(0, span), 'EROFS', /copy/);
  span.release();
  await destination.close();
  const late = file.fileSpan(0, 512)!;
  await expectCode(destination.copyFromSpan(0, late), 'EBADF');
  late.release();
  await file.close();
});

copy('through memory: pieces of MEMORY_PIECE_BYTES, whatever the range', async () => {
  const inner = new MemoryDevice({ sizeBytes: SIZE_BYTES, readOnly: true, initial: image });
  const readLengths: number[] = [];
  const counted: BlockDevice = Object.assign(Object.create(inner) as MemoryDevice, {
    read(offsetBytes: number, target: Uint8Array) {
      readLengths.push(target.length);
      return inner.read(offsetBytes, target);
    },
  });
  const destination = new MemoryDevice({ sizeBytes: SIZE_BYTES });
  const lengthBytes = 2 * COPY_PIECE_BYTES + 3 * 512;
  await new RangeCopier(counted, destination).copy(512, lengthBytes);
  assert.ok(readLengths.every((length) => length <= MEMORY_PIECE_BYTES));
  assert.is(readLengths.reduce((a, b) => a + b, 0), lengthBytes);
  assert.is(readLengths.length, 2 * (COPY_PIECE_BYTES / MEMORY_PIECE_BYTES) + 1);
  const copied = new Uint8Array(SIZE_BYTES);
  await destination.read(0, copied);
  sameRange(copied, 512, lengthBytes, 'memory pieces');
});

copy.run();
