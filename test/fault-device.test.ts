/**
 * FaultDevice: each action on the nth read/write/flush/discard, torn writes that leave a
 * block-granular prefix on the inner device, seeded random faults that replay with the same seed,
 * crash(), and that bad requests are refused (EINVAL/ERANGE) before any rule is consulted.
 * The inner device is a MemoryDevice, so its content can be checked directly.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FaultDevice, type FaultRule } from '../runtime/devices/fault-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { BlockError, type BlockErrorCode } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { expectCode } from './support/expect-code.ts';

const BLOCK_BYTES = 512;
const SIZE_BYTES = 64 * 1024;
const test = suite('FaultDevice');

function setup(rules: FaultRule[], seed = 1): { inner: MemoryDevice; device: FaultDevice; flushes: () => number } {
  const inner = new MemoryDevice({ sizeBytes: SIZE_BYTES, logicalBlockBytes: BLOCK_BYTES });
  let flushCount = 0;
  const innerFlush = inner.flush.bind(inner);
  inner.flush = () => (flushCount++, innerFlush());
  return { inner, device: new FaultDevice(inner, { seed, rules }), flushes: () => flushCount };
}

async function readInner(inner: BlockDevice, offsetBytes = 0, lengthBytes = SIZE_BYTES): Promise<Uint8Array> {
  const bytes = new Uint8Array(lengthBytes);
  await inner.read(offsetBytes, bytes);
  return bytes;
}

const block = (fill: number, blockCount = 1) => new Uint8Array(blockCount * BLOCK_BYTES).fill(fill);

test("'fail' on the nth write raises EIO and leaves the inner device alone", async () => {
  const { inner, device } = setup([{ op: 'write', nth: 3, action: 'fail' }]);
  await device.write(0, block(1));
  await device.write(BLOCK_BYTES, block(2));
  const error = await expectCode(device.write(2 * BLOCK_BYTES, block(3)), 'EIO');
  assert.is(error.offsetBytes, 2 * BLOCK_BYTES);
  assert.is(error.device, device.name);
  assert.equal(await readInner(inner, 2 * BLOCK_BYTES, BLOCK_BYTES), block(0), 'the failed write never reached the inner device');
  await device.write(3 * BLOCK_BYTES, block(4)); // the rule fires once
  assert.equal(await readInner(inner, 3 * BLOCK_BYTES, BLOCK_BYTES), block(4));
  assert.equal(device.seen, { read: 0, write: 4, flush: 0, discard: 0 });
  assert.equal(device.injected, { read: 0, write: 1, flush: 0, discard: 0 });
  await device.close();
});

test("'fail' on the nth read raises EIO and leaves the target alone", async () => {
  const { device } = setup([{ op: 'read', nth: 2, action: 'fail' }]);
  await device.write(0, block(9));
  const target = block(0x55);
  await device.read(0, target);
  assert.equal(target, block(9));
  const untouched = block(0x55);
  await expectCode(device.read(0, untouched), 'EIO');
  assert.equal(untouched, block(0x55));
  assert.is(device.injected.read, 1);
  await device.close();
});

test("'fail' and 'tear' on the nth flush raise EIO without flushing the inner device", async () => {
  for (const action of ['fail', 'tear'] as const) {
    const { device, flushes } = setup([{ op: 'flush', nth: 2, action }]);
    await device.flush();
    assert.is(flushes(), 1);
    await expectCode(device.flush(), 'EIO');
    assert.is(flushes(), 1, `${action}: inner flush not called`);
    await device.flush();
    assert.is(flushes(), 2);
    assert.equal(device.injected.flush, 1);
    await device.close();
  }
});

test("'fail' on the nth discard leaves the data in place", async () => {
  const { inner, device } = setup([{ op: 'discard', nth: 1, action: 'fail' }]);
  await device.write(0, block(7, 4));
  await expectCode(device.discard(0, 4 * BLOCK_BYTES), 'EIO');
  assert.equal(await readInner(inner, 0, 4 * BLOCK_BYTES), block(7, 4));
  assert.is(await device.discard(0, 4 * BLOCK_BYTES), 'punched');
  assert.equal(await readInner(inner, 0, 4 * BLOCK_BYTES), block(0, 4));
  await device.close();
});

test("'tear' on a write leaves a block-granular prefix of the new data, fewer than all blocks", async () => {
  const seed = seedFromEnv();
  const prefixBlockCounts = new Set<number>();
  const blockCount = 16;
  for (let run = 0; run < 40; run++) {
    const { inner, device } = setup([{ op: 'write', nth: 2, action: 'tear' }], seed + run);
    const old = new Prng(seed + run).fill(new Uint8Array(blockCount * BLOCK_BYTES));
    const fresh = new Prng(~(seed + run)).fill(new Uint8Array(blockCount * BLOCK_BYTES));
    await device.write(BLOCK_BYTES, old);
    const error = await expectCode(device.write(BLOCK_BYTES, fresh), 'EIO');
    assert.match(error.message, /torn write/);
    const landed = await readInner(inner, BLOCK_BYTES, old.length);
    let prefixBytes = 0;
    while (prefixBytes < landed.length && landed[prefixBytes] === fresh[prefixBytes]) prefixBytes++;
    const prefixBlocks = Math.floor(prefixBytes / BLOCK_BYTES);
    // Bytes can match by chance past the prefix; the block boundary is what the tear decided.
    assert.equal(landed.subarray(0, prefixBlocks * BLOCK_BYTES), fresh.subarray(0, prefixBlocks * BLOCK_BYTES), `seed ${seed + run}`);
    assert.equal(landed.subarray(prefixBlocks * BLOCK_BYTES), old.subarray(prefixBlocks * BLOCK_BYTES), `seed ${seed + run}: old data after the prefix`);
    assert.ok(prefixBlocks < blockCount, `seed ${seed + run}: fewer than all blocks`);
    prefixBlockCounts.add(prefixBlocks);
    assert.equal(await readInner(inner, 0, BLOCK_BYTES), block(0), 'nothing before the write');
    await device.close();
  }
  assert.ok(prefixBlockCounts.size > 3, `prefixes vary with the seed: ${[...prefixBlockCounts]}`);
});

test("'tear' on a one-block write writes nothing", async () => {
  const { inner, device } = setup([{ op: 'write', nth: 1, action: 'tear' }]);
  await expectCode(device.write(0, block(5)), 'EIO');
  assert.equal(await readInner(inner, 0, BLOCK_BYTES), block(0));
  await device.close();
});

test("'delay' waits delayMs, then the request goes through", async () => {
  const { inner, device } = setup([
    { op: 'write', nth: 1, action: 'delay', delayMs: 40 },
    { op: 'read', nth: 1, action: 'delay', delayMs: 40 },
  ]);
  let startMs = performance.now();
  await device.write(0, block(3));
  assert.ok(performance.now() - startMs >= 35, `write waited ${performance.now() - startMs} ms`);
  assert.equal(await readInner(inner, 0, BLOCK_BYTES), block(3));
  startMs = performance.now();
  const target = block(0);
  await device.read(0, target);
  assert.ok(performance.now() - startMs >= 35, 'read waited');
  assert.equal(target, block(3));
  assert.equal(device.injected, { read: 0, write: 0, flush: 0, discard: 0 }, 'delays are not faults');
  await device.close();
});

test('close waits for a delayed request; crash() fails it and everything after', async () => {
  const first = setup([{ op: 'write', nth: 1, action: 'delay', delayMs: 30 }]);
  let settled = false;
  const pending = first.device.write(0, block(6)).then(() => (settled = true));
  await first.device.close();
  assert.ok(settled, 'the delayed write finished before close resolved');
  await pending;
  await expectCode(first.device.write(0, block(6)), 'EBADF');
  await expectCode(first.inner.read(0, block(0)), 'EBADF');

  const second = setup([{ op: 'write', nth: 1, action: 'delay', delayMs: 30 }]);
  const delayed = second.device.write(0, block(8));
  second.device.crash();
  assert.ok(second.device.crashed);
  await expectCode(delayed, 'EIO');
  assert.equal(await readInner(second.inner, 0, BLOCK_BYTES), block(0), 'the delayed write never landed');
  await expectCode(second.device.read(0, block(0)), 'EIO');
  await expectCode(second.device.flush(), 'EIO');
  await expectCode(second.device.discard(0, BLOCK_BYTES), 'EIO');
  await second.device.close();
});

test('seeded random faults replay exactly with the same seed', async () => {
  const seed = seedFromEnv();
  const rules: FaultRule[] = [
    { op: 'write', probability: 0.2, action: 'tear' },
    { op: 'write', probability: 0.1, action: 'fail' },
    { op: 'read', probability: 0.1, action: 'fail' },
  ];
  const runOnce = async (runSeed: number) => {
    const { inner, device } = setup(rules, runSeed);
    const workload = new Prng(12345); // the same request sequence every time
    const outcomes: string[] = [];
    for (let step = 0; step < 200; step++) {
      const offsetBytes = workload.below(SIZE_BYTES / BLOCK_BYTES - 8) * BLOCK_BYTES;
      const buffer = workload.fill(new Uint8Array(workload.range(1, 8) * BLOCK_BYTES));
      const pending = workload.chance(0.7) ? device.write(offsetBytes, buffer) : device.read(offsetBytes, buffer);
      outcomes.push(await pending.then(() => 'ok', (error: BlockError) => error.message));
    }
    const result = { outcomes, content: await readInner(inner), injected: { ...device.injected } };
    await device.close();
    return result;
  };
  const a = await runOnce(seed);
  const b = await runOnce(seed);
  assert.equal(a.outcomes, b.outcomes, `seed ${seed}`);
  assert.equal(a.content, b.content, `seed ${seed}: same inner content`);
  assert.equal(a.injected, b.injected);
  assert.ok(a.injected.write > 10 && a.injected.read > 0, `faults were injected: ${JSON.stringify(a.injected)}`);
  const c = await runOnce(seed + 1);
  assert.not.equal(a.outcomes, c.outcomes, 'another seed, other faults');
});

test('bad requests are refused before any rule and do not count', async () => {
  const { device } = setup([{ op: 'write', nth: 1, action: 'fail' }, { op: 'read', probability: 1, action: 'fail' }]);
  await expectCode(device.write(1, block(1)), 'EINVAL');
  await expectCode(device.write(SIZE_BYTES, block(1)), 'ERANGE');
  await expectCode(device.read(-512, block(1)), 'EINVAL');
  assert.equal(device.seen, { read: 0, write: 0, flush: 0, discard: 0 });
  await expectCode(device.write(0, block(1)), 'EIO'); // the first valid write meets the rule
  const isEinval = (error: unknown) => error instanceof BlockError && error.code === 'EINVAL';
  assert.throws(() => device.addRule({ op: 'write', nth: 0, action: 'fail' }), isEinval);
  assert.throws(() => device.addRule({ op: 'write', probability: 2, action: 'fail' }), isEinval);
  assert.throws(() => device.addRule({ op: 'write', nth: 1, action: 'delay', delayMs: -1 }), isEinval);
  await device.close();
});

test('a read-only inner device stays read-only through the layer', async () => {
  const inner = new MemoryDevice({ sizeBytes: SIZE_BYTES, readOnly: true });
  const device = new FaultDevice(inner, { seed: 1 });
  assert.is(device.canWrite, false);
  assert.is(device.canDiscard, false);
  await expectCode(device.write(0, block(1)), 'EROFS');
  await device.close();
});

test.run();

