/**
 * The BlockDevice contract (runtime/devices/block-device.ts) as one uvu suite, run against every
 * implementation (STYLE 14, after hono's `common.case.test.ts`): a test file calls
 * `deviceConformance(label, open)` with a factory, and the suite opens fresh devices through it.
 * Later layers (clone, remote, mirror) reuse it unchanged, so it knows devices only by the
 * interface and the factory options (device-checks.ts). Devices that are never writable (HttpDevice,
 * a read-only open) run it with `readOnly: 'only'`: then only the read-side cases run
 * (read-only-cases.ts), over a seeded image the factory opens the device on.
 *
 * Decisions the suite pins down for every device:
 *   - zero-length read/write/discard is an allowed no-op, after the same checks as any request
 *     (so offset === sizeBytes is fine for it, and a zero-length write to a read-only device is
 *     still EROFS);
 *   - every refusal happens before any byte moves: after it the whole device reads as before, and
 *     a refused read leaves its target untouched;
 *   - flush() on a read-only device resolves (there is nothing to make durable).
 *
 * Seeded tests take BLOCKCORE_SEED (else the clock) and name the seed in any failure.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import { Prng } from '../../runtime/prng.ts';
import {
  assertSame, BLOCK_BYTES, checkBadRequests, checkBlockStatus, checkClosed, checkReadOnlyRefusals, DISCARD_OUTCOMES,
  expectCode, FUZZ_GEOMETRIES, GEOMETRY, isZero, readAll, SIZE_BYTES, suiteContext, type DeviceFactory, type SuiteContext,
} from './device-checks.ts';
import { readOnlyCases } from './read-only-cases.ts';

export type { DeviceFactory, DeviceFactoryOptions } from './device-checks.ts';

const FUZZ_OPERATION_COUNT = 400;

export interface ConformanceOptions {
  /**
   * Which sides of the contract the device has, so which cases run:
   *   true (the default): writable, and read-only when the factory is asked (files, memory);
   *   false: never read-only (engines such as a clone): the read-only cases are skipped;
   *   'only': never writable (HttpDevice, a read-only open): only the read-side cases run, on
   *     devices the factory opens with `readOnly: true` over a seeded `initial` image.
   */
  readOnly?: boolean | 'only';
  /** Runs after the suite's last case: to stop what the factory started (servers, files). */
  after?: () => void | Promise<void>;
}

export function deviceConformance(label: string, open: DeviceFactory, options: ConformanceOptions = {}): void {
  const test = suite(`device conformance: ${label}${options.readOnly === 'only' ? ' (read-only)' : ''}`);
  const context = suiteContext(label, test, open);
  if (options.after) test.after(options.after);
  if (options.readOnly === 'only') readOnlyCases(context);
  else writableCases(context, options.readOnly ?? true);
  test.run();
}

/** The whole contract for a writable device; with `readOnlyCases`, also its read-only opens. */
function writableCases({ test, open, withDevice, seeded }: SuiteContext, readOnlyCases: boolean): void {
  test('geometry and capabilities are as opened', async () => {
    await withDevice(GEOMETRY, async (device) => {
      assert.is(device.sizeBytes, SIZE_BYTES);
      assert.is(device.logicalBlockBytes, BLOCK_BYTES);
      assert.is(device.canWrite, true);
      assert.type(device.canDiscard, 'boolean');
      assert.type(device.name, 'string');
    });
    if (readOnlyCases) await withDevice({ sizeBytes: 64 * 1024, logicalBlockBytes: 4096, readOnly: true }, async (device) => {
      assert.is(device.sizeBytes, 64 * 1024);
      assert.is(device.logicalBlockBytes, 4096);
      assert.is(device.canWrite, false);
      assert.is(device.canDiscard, false);
    });
  });

  test('a fresh device reads as zeros', async () => {
    await withDevice(GEOMETRY, async (device) => {
      assert.ok(isZero(await readAll(device)));
    });
  });

  seeded('written data reads back; never-written ranges stay zero', async (prng) => {
    await withDevice(GEOMETRY, async (device) => {
      const blockCount = SIZE_BYTES / BLOCK_BYTES;
      const model = new Uint8Array(SIZE_BYTES);
      // Disjoint writes to every fourth 8-block slot, so the gaps between them were never written.
      for (let slotBlocks = 0; slotBlocks < blockCount; slotBlocks += 32) {
        const offsetBytes = slotBlocks * BLOCK_BYTES;
        const data = prng.fill(new Uint8Array(prng.range(1, 8) * BLOCK_BYTES));
        await device.write(offsetBytes, data);
        model.set(data, offsetBytes);
        const back = new Uint8Array(data.length);
        await device.read(offsetBytes, back);
        assert.equal(back, data, `read back at ${offsetBytes}`);
      }
      assertSame(await readAll(device), model, 'whole device');
    });
  });

  test('writes at offset 0 and at the last block', async () => {
    await withDevice(GEOMETRY, async (device) => {
      const first = new Uint8Array(BLOCK_BYTES).fill(0xa1);
      const last = new Uint8Array(BLOCK_BYTES).fill(0xb2);
      const lastOffsetBytes = SIZE_BYTES - BLOCK_BYTES;
      await device.write(0, first);
      await device.write(lastOffsetBytes, last);
      const all = await readAll(device);
      assert.equal(all.subarray(0, BLOCK_BYTES), first);
      assert.equal(all.subarray(lastOffsetBytes), last);
      assert.ok(isZero(all.subarray(BLOCK_BYTES, lastOffsetBytes)), 'nothing between them');
      const whole = new Uint8Array(SIZE_BYTES).fill(0x3c);
      await device.write(0, whole);
      assertSame(await readAll(device), whole, 'a write of the whole device');
    });
  });

  for (const geometry of FUZZ_GEOMETRIES) {
    seeded(`random writes, reads, discards and flushes match a byte-array model (${geometry.logicalBlockBytes} B blocks)`, async (prng) => {
      await withDevice(geometry, async (device) => {
        await fuzzAgainstModel(device, prng);
      });
    });
  }

  test('zero-length requests are no-ops, at offset 0 and at the end', async () => {
    await withDevice(GEOMETRY, async (device) => {
      const before = await fillRandom(device, new Prng(1));
      for (const offsetBytes of [0, BLOCK_BYTES, SIZE_BYTES]) {
        await device.read(offsetBytes, new Uint8Array(0));
        await device.write(offsetBytes, new Uint8Array(0));
        await device.write(offsetBytes, new Uint8Array(0), { fua: true });
        assert.ok(DISCARD_OUTCOMES.includes(await device.discard(offsetBytes, 0)));
      }
      assertSame(await readAll(device), before, 'content after zero-length requests');
      await expectCode(() => device.read(SIZE_BYTES + BLOCK_BYTES, new Uint8Array(0)), 'ERANGE', device);
      await expectCode(() => device.write(BLOCK_BYTES / 2, new Uint8Array(0)), 'EINVAL', device);
    });
  });

  test('bad requests are refused with the right code before any byte moves', async () => {
    await withDevice(GEOMETRY, async (device) => {
      await checkBadRequests(device, await fillRandom(device, new Prng(2)));
    });
  });

  if (readOnlyCases) seeded('a read-only device reads its contents and refuses writes and discards', async (prng) => {
    const initial = prng.fill(new Uint8Array(SIZE_BYTES));
    await withDevice({ ...GEOMETRY, readOnly: true, initial }, async (device) => {
      assertSame(await readAll(device), initial, 'initial contents');
      await checkReadOnlyRefusals(device, initial);
    });
  });

  seeded('initial contents shorter than the device are followed by zeros', async (prng) => {
    const initial = prng.fill(new Uint8Array(3 * BLOCK_BYTES));
    await withDevice({ ...GEOMETRY, initial }, async (device) => {
      const all = await readAll(device);
      assert.equal(all.subarray(0, initial.length), initial);
      assert.ok(isZero(all.subarray(initial.length)));
    });
  });

  seeded('discard returns its outcome; the range reads as zeros (discardZeroes) and nothing else changes', async (prng) => {
    await withDevice(GEOMETRY, async (device) => {
      if (!device.canDiscard) {
        await expectCode(() => device.discard(0, BLOCK_BYTES), 'ENOTSUP', device, 'discard without canDiscard');
        return;
      }
      const model = await fillRandom(device, prng);
      const ranges: Array<[number, number]> = [[BLOCK_BYTES, 3 * BLOCK_BYTES], [0, BLOCK_BYTES], [SIZE_BYTES - 2 * BLOCK_BYTES, 2 * BLOCK_BYTES], [64 * 1024 - BLOCK_BYTES, 64 * 1024 + 2 * BLOCK_BYTES]];
      for (const [offsetBytes, lengthBytes] of ranges) {
        const outcome = await device.discard(offsetBytes, lengthBytes);
        assert.ok(DISCARD_OUTCOMES.includes(outcome), `outcome ${outcome}`);
        if (device.discardZeroes) {
          assert.ok(outcome !== 'ignored', 'a zeroing discard is never ignored');
          model.fill(0, offsetBytes, offsetBytes + lengthBytes);
        } else {
          // A hint: the range is unspecified now; everything else must be untouched.
          model.set((await readAll(device)).subarray(offsetBytes, offsetBytes + lengthBytes), offsetBytes);
        }
        assertSame(await readAll(device), model, `after discard ${offsetBytes}+${lengthBytes}`);
      }
      await device.discard(0, SIZE_BYTES);
      if (device.discardZeroes) assert.ok(isZero(await readAll(device)), 'after discarding everything');
    });
  });

  seeded('blockStatus, where a device has it: extents cover the range in order, aligned, and "zero" is true', async (prng) => {
    await withDevice(GEOMETRY, async (device) => {
      if (device.blockStatus === undefined) return;
      const blockCount = SIZE_BYTES / BLOCK_BYTES;
      for (let i = 0; i < 8; i++) {
        const offsetBytes = prng.below(blockCount) * BLOCK_BYTES;
        await device.write(offsetBytes, prng.fill(new Uint8Array(Math.min(prng.range(1, 64), blockCount - offsetBytes / BLOCK_BYTES) * BLOCK_BYTES)));
      }
      if (device.canDiscard) await device.discard(prng.below(blockCount / 2) * BLOCK_BYTES, 16 * BLOCK_BYTES);
      await checkBlockStatus(device, await readAll(device), prng);
    });
  });

  test('flush resolves, before and after writes', async () => {
    await withDevice(GEOMETRY, async (device) => {
      await device.flush();
      await device.write(0, new Uint8Array(BLOCK_BYTES).fill(9));
      await device.flush();
      await Promise.all([device.flush(), device.flush()]);
    });
  });

  seeded('a FUA write is readable at once', async (prng) => {
    await withDevice(GEOMETRY, async (device) => {
      const data = prng.fill(new Uint8Array(4 * BLOCK_BYTES));
      await device.write(8 * BLOCK_BYTES, data, { fua: true });
      const back = new Uint8Array(data.length);
      await device.read(8 * BLOCK_BYTES, back);
      assert.equal(back, data);
    });
  });

  test('close waits for a request in flight, then every call fails with EBADF; close twice is fine', async () => {
    const device = await open(GEOMETRY);
    let writeSettled = false;
    const pending = device.write(0, new Uint8Array(BLOCK_BYTES).fill(7)).then(() => {
      writeSettled = true;
    });
    await device.close();
    assert.ok(writeSettled, 'the write issued before close() settled first');
    await pending;
    await checkClosed(device);
  });

  if (readOnlyCases) test('a read-only device closes and then refuses with EBADF', async () => {
    const device = await open({ ...GEOMETRY, readOnly: true });
    await device.close();
    await expectCode(() => device.read(0, new Uint8Array(BLOCK_BYTES)), 'EBADF', device, 'read');
    await expectCode(() => device.flush(), 'EBADF', device, 'flush');
    await device.close();
  });
}

async function fuzzAgainstModel(device: BlockDevice, prng: Prng): Promise<void> {
  const blockBytes = device.logicalBlockBytes;
  const blockCount = device.sizeBytes / blockBytes;
  const model = new Uint8Array(device.sizeBytes);
  for (let step = 0; step < FUZZ_OPERATION_COUNT; step++) {
    const roll = prng.below(100);
    const startBlock = prng.below(blockCount);
    const spanBlocks = prng.range(1, Math.min(24, blockCount - startBlock));
    const offsetBytes = startBlock * blockBytes;
    const lengthBytes = spanBlocks * blockBytes;
    const where = `step ${step} at ${offsetBytes}+${lengthBytes}`;
    if (roll < 45) {
      const data = prng.fill(new Uint8Array(lengthBytes));
      await device.write(offsetBytes, data, { fua: prng.chance(0.05) });
      model.set(data, offsetBytes);
    } else if (roll < 85) {
      const target = new Uint8Array(lengthBytes).fill(0xee);
      await device.read(offsetBytes, target);
      assertSame(target, model.subarray(offsetBytes, offsetBytes + lengthBytes), `read ${where}`);
    } else if (roll < 95) {
      if (!device.canDiscard) continue;
      const outcome = await device.discard(offsetBytes, lengthBytes);
      assert.ok(DISCARD_OUTCOMES.includes(outcome), `discard ${where}: outcome ${outcome}`);
      if (device.discardZeroes) {
        model.fill(0, offsetBytes, offsetBytes + lengthBytes);
      } else {
        // Contents are unspecified after a hint: overwrite them so the model knows them again.
        const data = prng.fill(new Uint8Array(lengthBytes));
        await device.write(offsetBytes, data);
        model.set(data, offsetBytes);
      }
    } else {
      await device.flush();
    }
  }
  assertSame(await readAll(device), model, 'whole device at the end');
}

/** Fills the whole device with seeded bytes and returns them (the model). */
async function fillRandom(device: BlockDevice, prng: Prng): Promise<Uint8Array> {
  const data = prng.fill(new Uint8Array(device.sizeBytes));
  await device.write(0, data);
  return data;
}
