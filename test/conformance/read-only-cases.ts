/**
 * The read side of the BlockDevice contract, for devices that are never writable (HttpDevice, a
 * read-only FileDevice or MemoryDevice): `deviceConformance(label, open, { readOnly: 'only' })`.
 * Every case opens its device through the factory with `readOnly: true` over a seeded image as
 * long as the device (seededImage: random bytes with zero pages and zero 4 KiB blocks in it), and
 * compares what it reads with that image:
 *   - reads around every boundary a device may split at (block, 4 KiB, 64 KiB, the middle, the
 *     end), of 1 to 129 blocks and the whole device, plus seeded random ones, in both geometries,
 *     into plain arrays and into views at an odd byte offset whose neighbours must stay untouched;
 *   - many reads in flight at once, overlapping, with flushes among them;
 *   - bad ranges and buffers refused with their codes before any byte moves, zero-length reads as
 *     no-ops, and every write and discard (zero-length ones too) refused with EROFS, changing nothing;
 *   - close waits for the reads in flight, then everything is EBADF;
 *   - blockStatus and fileSpan where the device has them.
 */
import * as assert from 'uvu/assert';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import { Prng } from '../../runtime/prng.ts';
import {
  assertSame, BLOCK_BYTES, checkBadRequests, checkBlockStatus, checkClosed, checkReadOnlyRefusals, expectCode,
  FUZZ_GEOMETRIES, GEOMETRY, readAll, SIZE_BYTES, type DeviceFactoryOptions, type SuiteContext,
} from './device-checks.ts';

/** Zero runs in a seeded image: every fourth 64 KiB page (a memory device keeps no page for it)... */
const ZERO_PAGE_BYTES = 64 * 1024;
/** ...and, elsewhere, 4 KiB blocks (a file block left as a hole) with this probability. */
const ZERO_CHUNK_BYTES = 4096;
const ZERO_CHUNK_PROBABILITY = 0.2;
/** Read lengths, in blocks, tried at every boundary offset. */
const BOUNDARY_READ_BLOCKS = [1, 2, 3, 7, 8, 9, 24, 129];
const RANDOM_READ_COUNT = 200;
const CONCURRENT_READ_COUNT = 48;
/** Where a view target starts in its buffer: odd, so no word alignment can be assumed. */
const VIEW_OFFSET_BYTES = 3;
const SENTINEL = 0xee;

export function readOnlyCases({ test, open, withDevice, seeded }: SuiteContext): void {
  /** A fresh seeded image and a device over it. */
  function withImage(geometry: DeviceFactoryOptions, prng: Prng, body: (device: BlockDevice, image: Uint8Array) => Promise<void>): Promise<void> {
    const image = seededImage(prng, geometry.sizeBytes);
    return withDevice({ ...geometry, readOnly: true, initial: image }, (device) => body(device, image));
  }

  seeded('geometry and capabilities are as opened, and the device reads as its image', async (prng) => {
    for (const geometry of FUZZ_GEOMETRIES) {
      await withImage(geometry, prng, async (device, image) => {
        assert.is(device.sizeBytes, geometry.sizeBytes);
        assert.is(device.logicalBlockBytes, geometry.logicalBlockBytes);
        assert.is(device.canWrite, false);
        assert.is(device.canDiscard, false);
        assert.type(device.discardZeroes, 'boolean');
        assert.type(device.name, 'string');
        assertSame(await readAll(device), image, 'whole device');
      });
    }
  });

  for (const geometry of FUZZ_GEOMETRIES) {
    seeded(`reads of every alignment and size return the image (${geometry.logicalBlockBytes} B blocks)`, async (prng) => {
      await withImage(geometry, prng, async (device, image) => {
        const ranges = boundaryRanges(geometry.sizeBytes, geometry.logicalBlockBytes);
        const blockCount = geometry.sizeBytes / geometry.logicalBlockBytes;
        for (let i = 0; i < RANDOM_READ_COUNT; i++) {
          const startBlock = prng.below(blockCount);
          // Mostly short reads, like the model fuzz; every tenth as long as what is left.
          const spanBlocks = prng.range(1, i % 10 === 0 ? blockCount - startBlock : Math.min(24, blockCount - startBlock));
          ranges.push([startBlock * geometry.logicalBlockBytes, spanBlocks * geometry.logicalBlockBytes]);
        }
        for (const [i, [offsetBytes, lengthBytes]] of ranges.entries()) {
          await expectRead(device, image, offsetBytes, lengthBytes, i % 2 === 1);
        }
      });
    });
  }

  seeded('concurrent reads each get their own bytes', async (prng) => {
    await withImage(GEOMETRY, prng, async (device, image) => {
      const blockCount = SIZE_BYTES / BLOCK_BYTES;
      const reads: Promise<unknown>[] = [];
      for (let i = 0; i < CONCURRENT_READ_COUNT; i++) {
        const startBlock = prng.below(blockCount);
        const spanBlocks = prng.range(1, Math.min(160, blockCount - startBlock));
        reads.push(expectRead(device, image, startBlock * BLOCK_BYTES, spanBlocks * BLOCK_BYTES, i % 2 === 1));
        if (i % 16 === 0) reads.push(device.flush(), readAll(device).then((all) => assertSame(all, image, `whole device, among reads (${i})`)));
      }
      await Promise.all(reads);
    });
  });

  seeded('bad requests are refused with the right code before any byte moves', async (prng) => {
    await withImage(GEOMETRY, prng, (device, image) => checkBadRequests(device, image));
  });

  seeded('zero-length reads are no-ops; zero-length writes and discards are still EROFS', async (prng) => {
    await withImage(GEOMETRY, prng, async (device, image) => {
      for (const offsetBytes of [0, BLOCK_BYTES, SIZE_BYTES]) {
        const around = new Uint8Array(8).fill(SENTINEL);
        await device.read(offsetBytes, new Uint8Array(0));
        await device.read(offsetBytes, around.subarray(4, 4));
        assert.ok(around.every((byte) => byte === SENTINEL), `an empty view at ${offsetBytes}: its buffer untouched`);
        await expectCode(() => device.write(offsetBytes, new Uint8Array(0)), 'EROFS', device, `zero-length write at ${offsetBytes}`);
        await expectCode(() => device.write(offsetBytes, new Uint8Array(0), { fua: true }), 'EROFS', device, `zero-length FUA write at ${offsetBytes}`);
        await expectCode(() => device.discard(offsetBytes, 0), 'EROFS', device, `zero-length discard at ${offsetBytes}`);
      }
      await expectCode(() => device.read(SIZE_BYTES + BLOCK_BYTES, new Uint8Array(0)), 'ERANGE', device, 'zero-length read beyond the end');
      await expectCode(() => device.read(BLOCK_BYTES / 2, new Uint8Array(0)), 'EINVAL', device, 'zero-length read unaligned');
      await expectCode(() => device.write(BLOCK_BYTES / 2, new Uint8Array(0)), 'EINVAL', device, 'zero-length write unaligned');
      assertSame(await readAll(device), image, 'content after zero-length requests');
    });
  });

  seeded('writes and discards are refused with EROFS and change nothing; flush resolves', async (prng) => {
    await withImage(GEOMETRY, prng, async (device, image) => {
      await checkReadOnlyRefusals(device, image);
      const ranges: Array<[number, number]> = [[SIZE_BYTES - BLOCK_BYTES, BLOCK_BYTES], [ZERO_PAGE_BYTES - BLOCK_BYTES, 2 * BLOCK_BYTES], [0, SIZE_BYTES]];
      for (const [offsetBytes, lengthBytes] of ranges) {
        const data = prng.fill(new Uint8Array(lengthBytes));
        await expectCode(() => device.write(offsetBytes, data), 'EROFS', device, `write ${offsetBytes}+${lengthBytes}`);
        await expectCode(() => device.write(offsetBytes, data, { fua: true }), 'EROFS', device, `FUA write ${offsetBytes}+${lengthBytes}`);
        await expectCode(() => device.discard(offsetBytes, lengthBytes), 'EROFS', device, `discard ${offsetBytes}+${lengthBytes}`);
      }
      await Promise.all([device.flush(), device.flush()]);
      assertSame(await readAll(device), image, 'content after every refusal');
    });
  });

  seeded('close waits for reads in flight, then every call fails with EBADF; close twice is fine', async (prng) => {
    const image = seededImage(prng, SIZE_BYTES);
    const device = await open({ ...GEOMETRY, readOnly: true, initial: image });
    const ranges: Array<[number, number]> = [[0, SIZE_BYTES], [BLOCK_BYTES, 8 * BLOCK_BYTES], [SIZE_BYTES - BLOCK_BYTES, BLOCK_BYTES]];
    let settledCount = 0;
    const pending = ranges.map(async ([offsetBytes, lengthBytes]) => {
      const target = new Uint8Array(lengthBytes);
      await device.read(offsetBytes, target);
      settledCount++;
      assertSame(target, image.subarray(offsetBytes, offsetBytes + lengthBytes), `read ${offsetBytes}+${lengthBytes} issued before close()`);
    });
    await device.close();
    assert.is(settledCount, ranges.length, 'every read issued before close() settled first');
    await Promise.all(pending);
    await expectCode(() => device.write(0, new Uint8Array(0)), 'EBADF', device, 'zero-length write');
    await expectCode(() => device.discard(0, 0), 'EBADF', device, 'zero-length discard');
    if (device.blockStatus !== undefined) await expectCode(() => device.blockStatus!(0, BLOCK_BYTES), 'EBADF', device, 'blockStatus');
    await checkClosed(device);
  });

  for (const geometry of FUZZ_GEOMETRIES) {
    seeded(`blockStatus, where a device has it, never claims zeros the image does not have (${geometry.logicalBlockBytes} B blocks)`, async (prng) => {
      await withImage(geometry, prng, async (device, image) => {
        if (device.blockStatus !== undefined) await checkBlockStatus(device, image, prng);
      });
    });
  }

  seeded('fileSpan, where a device has it, reads the image and holds close() until released', async (prng) => {
    await withImage(GEOMETRY, prng, async (device, image) => {
      if (device.fileSpan === undefined) return;
      for (const [offsetBytes, lengthBytes] of [[0, SIZE_BYTES], [BLOCK_BYTES, 3 * BLOCK_BYTES], [SIZE_BYTES - BLOCK_BYTES, BLOCK_BYTES]]) {
        const span = device.fileSpan(offsetBytes, lengthBytes);
        if (span === null) continue;
        try {
          assert.is(span.lengthBytes, lengthBytes, `span ${offsetBytes}+${lengthBytes}: length`);
          const target = new Uint8Array(lengthBytes);
          await span.read(0, target);
          assertSame(target, image.subarray(offsetBytes, offsetBytes + lengthBytes), `span ${offsetBytes}+${lengthBytes}`);
        } finally {
          span.release();
        }
      }
      const held = device.fileSpan(0, BLOCK_BYTES);
      if (held === null) return;
      let closed = false;
      const closing = device.close().then(() => (closed = true));
      await new Promise((resolve) => setTimeout(resolve, 5));
      assert.not.ok(closed, 'close() waits for the span');
      const target = new Uint8Array(BLOCK_BYTES);
      await held.read(0, target);
      assertSame(target, image.subarray(0, BLOCK_BYTES), 'a held span reads while the device closes');
      held.release();
      await closing;
    });
  });
}

/**
 * Random bytes with zero runs in them: every fourth 64 KiB page from the second on, and elsewhere
 * 4 KiB blocks at random (what a sparse image holds, and what blockStatus may report as zeros).
 */
function seededImage(prng: Prng, sizeBytes: number): Uint8Array {
  const image = prng.fill(new Uint8Array(sizeBytes));
  for (let chunkBytes = 0; chunkBytes < sizeBytes; chunkBytes += ZERO_CHUNK_BYTES) {
    const zeroPage = Math.floor(chunkBytes / ZERO_PAGE_BYTES) % 4 === 1;
    if (zeroPage || prng.chance(ZERO_CHUNK_PROBABILITY)) image.fill(0, chunkBytes, chunkBytes + ZERO_CHUNK_BYTES);
  }
  return image;
}

/**
 * [offsetBytes, lengthBytes] of reads that start within two blocks of each boundary a device may
 * split a read at, of every length in BOUNDARY_READ_BLOCKS that fits; reads ending at the end; the
 * whole device.
 */
function boundaryRanges(sizeBytes: number, blockBytes: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [[0, sizeBytes]];
  for (const boundaryBytes of [0, ZERO_CHUNK_BYTES, ZERO_PAGE_BYTES, sizeBytes / 2, sizeBytes - ZERO_PAGE_BYTES, sizeBytes]) {
    for (let deltaBlocks = -2; deltaBlocks <= 2; deltaBlocks++) {
      const offsetBytes = boundaryBytes + deltaBlocks * blockBytes;
      for (const blocks of BOUNDARY_READ_BLOCKS) {
        if (offsetBytes >= 0 && offsetBytes + blocks * blockBytes <= sizeBytes) ranges.push([offsetBytes, blocks * blockBytes]);
      }
    }
  }
  for (const blocks of BOUNDARY_READ_BLOCKS) ranges.push([sizeBytes - blocks * blockBytes, blocks * blockBytes]);
  return ranges;
}

/**
 * Reads one range and checks it against the image. `intoView`: the target is a view at an odd offset
 * into a larger buffer, whose bytes around it must stay untouched; else a plain array, pre-filled so
 * a read that skips bytes shows.
 */
async function expectRead(device: BlockDevice, image: Uint8Array, offsetBytes: number, lengthBytes: number, intoView: boolean): Promise<void> {
  const where = `read ${offsetBytes}+${lengthBytes}${intoView ? ' into a view' : ''}`;
  const buffer = new Uint8Array(lengthBytes + (intoView ? 2 * VIEW_OFFSET_BYTES : 0)).fill(SENTINEL);
  const target = intoView ? buffer.subarray(VIEW_OFFSET_BYTES, VIEW_OFFSET_BYTES + lengthBytes) : buffer;
  await device.read(offsetBytes, target);
  assertSame(target, image.subarray(offsetBytes, offsetBytes + lengthBytes), where);
  if (intoView) {
    const outside = [...buffer.subarray(0, VIEW_OFFSET_BYTES), ...buffer.subarray(VIEW_OFFSET_BYTES + lengthBytes)];
    assert.ok(outside.every((byte) => byte === SENTINEL), `${where}: bytes around the view untouched`);
  }
}
