/**
 * What the device conformance cases share (device-suite.ts for writable devices,
 * read-only-cases.ts for read-only ones): the factory types, the geometry every case uses, the
 * suite context cases are registered on, and checks that both kinds of device must pass the same.
 */
import * as assert from 'uvu/assert';
import type { Test } from 'uvu';
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

export const BLOCK_BYTES = 512;
export const SIZE_BYTES = 256 * 1024;
export const GEOMETRY: DeviceFactoryOptions = { sizeBytes: SIZE_BYTES, logicalBlockBytes: BLOCK_BYTES };
/** Model-fuzz geometries: small blocks, and 4 KiB blocks over 64 KiB memory-page boundaries. */
export const FUZZ_GEOMETRIES: DeviceFactoryOptions[] = [GEOMETRY, { sizeBytes: 1 << 20, logicalBlockBytes: 4096 }];
export const DISCARD_OUTCOMES: readonly string[] = ['punched', 'zeroed', 'ignored'];

/** One device suite being declared: its uvu suite and the ways its cases open devices. */
export interface SuiteContext {
  readonly test: Test;
  readonly open: DeviceFactory;
  /** Opens a device, runs `body`, always closes it. */
  withDevice(options: DeviceFactoryOptions, body: (device: BlockDevice) => Promise<void>): Promise<void>;
  /** A test whose randomness comes from one printed seed. */
  seeded(name: string, body: (prng: Prng) => Promise<void>): void;
}

export function suiteContext(label: string, test: Test, open: DeviceFactory): SuiteContext {
  return {
    test,
    open,
    async withDevice(options, body) {
      const device = await open(options);
      try {
        await body(device);
      } finally {
        await device.close();
      }
    },
    seeded(name, body) {
      test(name, async () => {
        const seed = seedFromEnv();
        try {
          await body(new Prng(seed));
        } catch (error) {
          if (error instanceof Error) error.message += ` [${label}: seed ${seed}; replay with BLOCKCORE_SEED=${seed}]`;
          throw error;
        }
      });
    },
  };
}

/**
 * Every bad range in badRanges() for read, write and discard, and buffers of the wrong type: each is
 * refused with its code and the message a reader needs, a refused read leaves its target alone, and
 * the device still reads as `before` afterwards. Range checks come before EROFS (validate.ts), so a
 * read-only device answers the same codes.
 */
export async function checkBadRequests(device: BlockDevice, before: Uint8Array): Promise<void> {
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
}

/** A read-only device (`contents` on it) refuses every write and discard with EROFS; flush resolves. */
export async function checkReadOnlyRefusals(device: BlockDevice, contents: Uint8Array): Promise<void> {
  assert.is(device.canWrite, false);
  assert.is(device.canDiscard, false);
  const data = new Uint8Array(device.logicalBlockBytes).fill(1);
  await expectCode(() => device.write(0, data), 'EROFS', device, 'write');
  await expectCode(() => device.write(0, data, { fua: true }), 'EROFS', device, 'FUA write');
  await expectCode(() => device.write(0, new Uint8Array(0)), 'EROFS', device, 'zero-length write');
  await expectCode(() => device.discard(0, device.logicalBlockBytes), 'EROFS', device, 'discard');
  await expectCode(() => device.discard(0, device.sizeBytes), 'EROFS', device, 'discard all');
  await device.flush();
  assertSame(await readAll(device), contents, 'contents after refusals');
}

/**
 * blockStatus at 16 seeded ranges of a device holding `contents`: extents cover each range exactly,
 * in order, non-empty and block-aligned, and every `zero: true` run reads as zeros; an empty range
 * at the end gives [], and bad ranges are refused like reads.
 */
export async function checkBlockStatus(device: BlockDevice, contents: Uint8Array, prng: Prng): Promise<void> {
  const blockStatus = device.blockStatus?.bind(device);
  assert.ok(blockStatus, 'the device has blockStatus');
  const blockBytes = device.logicalBlockBytes;
  const blockCount = device.sizeBytes / blockBytes;
  for (let i = 0; i < 16; i++) {
    const offsetBytes = prng.below(blockCount) * blockBytes;
    const lengthBytes = prng.range(1, blockCount - offsetBytes / blockBytes) * blockBytes;
    let atBytes = offsetBytes;
    for (const extent of await blockStatus(offsetBytes, lengthBytes)) {
      assert.ok(extent.lengthBytes > 0 && extent.lengthBytes % blockBytes === 0, `extent length ${extent.lengthBytes} at ${atBytes}`);
      if (extent.zero) assert.ok(isZero(contents.subarray(atBytes, atBytes + extent.lengthBytes)), `extent at ${atBytes} claims zeros`);
      atBytes += extent.lengthBytes;
    }
    assert.is(atBytes, offsetBytes + lengthBytes, `extents of ${offsetBytes}+${lengthBytes} cover it exactly`);
  }
  assert.equal(await blockStatus(device.sizeBytes, 0), []);
  await expectCode(() => blockStatus(device.sizeBytes - blockBytes, 2 * blockBytes), 'ERANGE', device, 'blockStatus past the end');
  await expectCode(() => blockStatus(1, blockBytes), 'EINVAL', device, 'blockStatus unaligned');
}

/** On a closed device every call fails with EBADF, whatever else is wrong with it; close again resolves. */
export async function checkClosed(device: BlockDevice): Promise<void> {
  const block = new Uint8Array(device.logicalBlockBytes);
  await expectCode(() => device.read(0, block), 'EBADF', device, 'read');
  await expectCode(() => device.write(0, block), 'EBADF', device, 'write');
  await expectCode(() => device.write(0, block, { fua: true }), 'EBADF', device, 'FUA write');
  await expectCode(() => device.flush(), 'EBADF', device, 'flush');
  await expectCode(() => device.discard(0, device.logicalBlockBytes), 'EBADF', device, 'discard');
  await expectCode(() => device.read(-1, block), 'EBADF', device, 'bad read on a closed device');
  await expectCode(() => device.read(0, new Uint8Array(0)), 'EBADF', device, 'zero-length read');
  await device.close();
  await Promise.all([device.close(), device.close()]);
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
export async function expectCode(call: () => Promise<unknown>, code: BlockErrorCode, device: BlockDevice, what = ''): Promise<BlockError> {
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

export async function readAll(device: BlockDevice): Promise<Uint8Array> {
  const all = new Uint8Array(device.sizeBytes);
  await device.read(0, all);
  return all;
}

export function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Byte equality with a short message (uvu's diff of two 256 KiB arrays is unreadable). */
export function assertSame(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) assert.unreachable(`${what}: first difference at byte ${i}: ${actual[i]} != ${expected[i]}`);
  }
}
