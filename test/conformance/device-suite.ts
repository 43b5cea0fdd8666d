/**
 * The BlockDevice contract (runtime/devices/block-device.ts) as one uvu suite, run against every
 * implementation (STYLE 14, after hono's `common.case.test.ts`): a test file calls
 * `deviceConformance(label, open)` with a factory, and the suite opens fresh devices through it.
 * Later layers (clone, remote, mirror) reuse it unchanged, so it knows devices only by the
 * interface and the factory options below.
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
import { BlockError, type BlockErrorCode } from '../../runtime/errors.ts';
import { Prng, seedFromEnv } from '../../runtime/prng.ts';

export interface DeviceFactoryOptions {
  sizeBytes: number;
  logicalBlockBytes: number;
  readOnly?: boolean;
  /** Contents of the first `initial.length` bytes; the rest reads as zeros. */
  initial?: Uint8Array;
}
export type DeviceFactory = (options: DeviceFactoryOptions) => Promise<BlockDevice>;

const BLOCK_BYTES = 512;
const SIZE_BYTES = 256 * 1024;
const GEOMETRY: DeviceFactoryOptions = { sizeBytes: SIZE_BYTES, logicalBlockBytes: BLOCK_BYTES };
/** Model-fuzz geometries: small blocks, and 4 KiB blocks over 64 KiB memory-page boundaries. */
const FUZZ_GEOMETRIES: DeviceFactoryOptions[] = [GEOMETRY, { sizeBytes: 1 << 20, logicalBlockBytes: 4096 }];
const FUZZ_OPERATION_COUNT = 400;
const DISCARD_OUTCOMES: readonly string[] = ['punched', 'zeroed', 'ignored'];

export interface ConformanceOptions {
  /** False for devices that are never read-only (engines such as a clone): read-only cases are skipped. */
  readOnly?: boolean;
}

export function deviceConformance(label: string, open: DeviceFactory, options: ConformanceOptions = {}): void {
  const test = suite(`device conformance: ${label}`);
  const readOnlyCases = options.readOnly ?? true;

  /** Opens a device, runs `body`, always closes it. */
  async function withDevice(options: DeviceFactoryOptions, body: (device: BlockDevice) => Promise<void>): Promise<void> {
    const device = await open(options);
    try {
      await body(device);
    } finally {
      await device.close();
    }
  }

  /** A test whose randomness comes from one printed seed. */
  function seeded(name: string, body: (prng: Prng) => Promise<void>): void {
    test(name, async () => {
      const seed = seedFromEnv();
      try {
        await body(new Prng(seed));
      } catch (error) {
        if (error instanceof Error) error.message += ` [${label}: seed ${seed}; replay with BLOCKCORE_SEED=${seed}]`;
        throw error;
      }
    });
  }

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
      const before = await fillRandom(device, new Prng(2));
      for (const [what, offsetBytes, lengthBytes, code] of badRanges()) {
        for (const op of ['read', 'write', 'discard'] as const) {
          if (op !== 'discard' && !isBufferLength(lengthBytes)) continue;
          const buffer = op === 'discard' ? undefined : new Uint8Array(lengthBytes as number).fill(0x5a);
          const error = await expectCode(() => request(device, op, offsetBytes, buffer ?? lengthBytes), code, device, `${op} ${what}`);
          if (what.startsWith('unaligned')) assert.match(error.message, /unaligned/, `${op} ${what}: message`);
          if (buffer) assert.ok(buffer.every((byte) => byte === 0x5a), `${op} ${what}: buffer untouched`);
          assertSame(await readAll(device), before, `content after refused ${op} ${what}`);
        }
      }
      await expectCode(() => device.read(0, [0, 0] as unknown as Uint8Array), 'EINVAL', device, 'read into an array');
      await expectCode(() => device.write(0, 'data' as unknown as Uint8Array), 'EINVAL', device, 'write a string');
      assertSame(await readAll(device), before, 'content after refused buffers');
    });
  });

  if (readOnlyCases) seeded('a read-only device reads its contents and refuses writes and discards', async (prng) => {
    const initial = prng.fill(new Uint8Array(SIZE_BYTES));
    await withDevice({ ...GEOMETRY, readOnly: true, initial }, async (device) => {
      assert.is(device.canWrite, false);
      assert.is(device.canDiscard, false);
      assertSame(await readAll(device), initial, 'initial contents');
      const data = new Uint8Array(BLOCK_BYTES).fill(1);
      await expectCode(() => device.write(0, data), 'EROFS', device, 'write');
      await expectCode(() => device.write(0, data, { fua: true }), 'EROFS', device, 'FUA write');
      await expectCode(() => device.write(0, new Uint8Array(0)), 'EROFS', device, 'zero-length write');
      await expectCode(() => device.discard(0, BLOCK_BYTES), 'EROFS', device, 'discard');
      await expectCode(() => device.discard(0, SIZE_BYTES), 'EROFS', device, 'discard all');
      await device.flush();
      assertSame(await readAll(device), initial, 'contents after refusals');
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
      const all = await readAll(device);
      for (let i = 0; i < 16; i++) {
        const offsetBytes = prng.below(blockCount) * BLOCK_BYTES;
        const lengthBytes = prng.range(1, blockCount - offsetBytes / BLOCK_BYTES) * BLOCK_BYTES;
        let atBytes = offsetBytes;
        for (const extent of await device.blockStatus(offsetBytes, lengthBytes)) {
          assert.ok(extent.lengthBytes > 0 && extent.lengthBytes % BLOCK_BYTES === 0, `extent length ${extent.lengthBytes} at ${atBytes}`);
          if (extent.zero) assert.ok(isZero(all.subarray(atBytes, atBytes + extent.lengthBytes)), `extent at ${atBytes} claims zeros`);
          atBytes += extent.lengthBytes;
        }
        assert.is(atBytes, offsetBytes + lengthBytes, `extents of ${offsetBytes}+${lengthBytes} cover it exactly`);
      }
      assert.equal(await device.blockStatus(SIZE_BYTES, 0), []);
      const blockStatus = device.blockStatus.bind(device);
      await expectCode(() => blockStatus(SIZE_BYTES - BLOCK_BYTES, 2 * BLOCK_BYTES), 'ERANGE', device, 'blockStatus past the end');
      await expectCode(() => blockStatus(1, BLOCK_BYTES), 'EINVAL', device, 'blockStatus unaligned');
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
    const block = new Uint8Array(BLOCK_BYTES);
    await expectCode(() => device.read(0, block), 'EBADF', device, 'read');
    await expectCode(() => device.write(0, block), 'EBADF', device, 'write');
    await expectCode(() => device.write(0, block, { fua: true }), 'EBADF', device, 'FUA write');
    await expectCode(() => device.flush(), 'EBADF', device, 'flush');
    await expectCode(() => device.discard(0, BLOCK_BYTES), 'EBADF', device, 'discard');
    await expectCode(() => device.read(-1, block), 'EBADF', device, 'bad read on a closed device');
    await expectCode(() => device.read(0, new Uint8Array(0)), 'EBADF', device, 'zero-length read');
    await device.close();
    await Promise.all([device.close(), device.close()]);
  });

  if (readOnlyCases) test('a read-only device closes and then refuses with EBADF', async () => {
    const device = await open({ ...GEOMETRY, readOnly: true });
    await device.close();
    await expectCode(() => device.read(0, new Uint8Array(BLOCK_BYTES)), 'EBADF', device, 'read');
    await expectCode(() => device.flush(), 'EBADF', device, 'flush');
    await device.close();
  });

  test.run();
}

/** [what, offsetBytes, lengthBytes, code] for a 256 KiB device of 512-byte blocks. */
function badRanges(): Array<[string, unknown, unknown, BlockErrorCode]> {
  return [
    ['reading past the end', SIZE_BYTES - BLOCK_BYTES, 2 * BLOCK_BYTES, 'ERANGE'],
    ['at offset sizeBytes', SIZE_BYTES, BLOCK_BYTES, 'ERANGE'],
    ['beyond the size', SIZE_BYTES + BLOCK_BYTES, BLOCK_BYTES, 'ERANGE'],
    ['far beyond the size', 2 ** 52, BLOCK_BYTES, 'ERANGE'],
    ['longer than the device', 0, SIZE_BYTES + BLOCK_BYTES, 'ERANGE'],
    ['negative offset', -BLOCK_BYTES, BLOCK_BYTES, 'EINVAL'],
    ['fractional offset', 1.5, BLOCK_BYTES, 'EINVAL'],
    ['NaN offset', Number.NaN, BLOCK_BYTES, 'EINVAL'],
    ['infinite offset', Number.POSITIVE_INFINITY, BLOCK_BYTES, 'EINVAL'],
    ['unsafe offset', 2 ** 53, BLOCK_BYTES, 'EINVAL'],
    ['string offset', '0', BLOCK_BYTES, 'EINVAL'],
    ['bigint offset', 0n, BLOCK_BYTES, 'EINVAL'],
    ['unaligned offset', BLOCK_BYTES / 2, BLOCK_BYTES, 'EINVAL'],
    ['unaligned offset near the end', SIZE_BYTES - 1, 1, 'EINVAL'],
    ['unaligned length', 0, BLOCK_BYTES + 1, 'EINVAL'],
    ['negative length', 0, -BLOCK_BYTES, 'EINVAL'],
    ['NaN length', 0, Number.NaN, 'EINVAL'],
    ['fractional length', 0, 0.5, 'EINVAL'],
  ];
}

function isBufferLength(lengthBytes: unknown): boolean {
  return typeof lengthBytes === 'number' && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0;
}

function request(device: BlockDevice, op: 'read' | 'write' | 'discard', offsetBytes: unknown, bufferOrLength: unknown): Promise<unknown> {
  const offset = offsetBytes as number;
  if (op === 'read') return device.read(offset, bufferOrLength as Uint8Array);
  if (op === 'write') return device.write(offset, bufferOrLength as Uint8Array);
  return device.discard(offset, bufferOrLength as number);
}

/** Awaits a call that must reject (not throw synchronously) with a BlockError of `code`. */
async function expectCode(call: () => Promise<unknown>, code: BlockErrorCode, device: BlockDevice, what = ''): Promise<BlockError> {
  let pending: Promise<unknown>;
  try {
    pending = call();
  } catch (error) {
    assert.unreachable(`${what}: threw synchronously instead of rejecting: ${String(error)}`);
    throw error;
  }
  try {
    await pending;
  } catch (error) {
    assert.instance(error, BlockError, `${what}: not a BlockError: ${String(error)}`);
    const blockError = error as BlockError;
    assert.is(blockError.code, code, `${what}: ${blockError.message}`);
    assert.is(blockError.device, device.name, `${what}: error names the device`);
    return blockError;
  }
  assert.unreachable(`${what}: resolved, expected ${code}`);
  throw new Error('unreachable');
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

async function readAll(device: BlockDevice): Promise<Uint8Array> {
  const all = new Uint8Array(device.sizeBytes);
  await device.read(0, all);
  return all;
}

/** Fills the whole device with seeded bytes and returns them (the model). */
async function fillRandom(device: BlockDevice, prng: Prng): Promise<Uint8Array> {
  const data = prng.fill(new Uint8Array(device.sizeBytes));
  await device.write(0, data);
  return data;
}

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Byte equality with a short message (uvu's diff of two 256 KiB arrays is unreadable). */
function assertSame(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) assert.unreachable(`${what}: first difference at byte ${i}: ${actual[i]} != ${expected[i]}`);
  }
}
