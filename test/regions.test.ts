/**
 * The shared region machinery (runtime/regions/) on its own, without a clone: RegionOps'
 * exclusion, the RegionWalker over a model engine (every pending region done exactly once, never
 * more than `threshold` regions in flight nor runs longer than `batchSize`, held back while user I/O
 * is in flight, stopped after N failures in a row, dropped copies not counted, both polarities),
 * the slotted bitmap under another engine's block kind, and the rate meter.
 */
import { setImmediate } from 'node:timers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { RegionBitmap } from '../runtime/bitmap.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { OpGate } from '../runtime/devices/op-gate.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import {
  BITMAP_HEADER_BYTES, bitmapBlockGeneration, BLOCK_BYTES, sealBitmapBlock, slottedBlocksFor, type BitmapBlockKind,
} from '../runtime/regions/bitmap-blocks.ts';
import { ByteRateLimit } from '../runtime/regions/rate-limit.ts';
import { RateMeter } from '../runtime/regions/rate-meter.ts';
import { RegionOps } from '../runtime/regions/region-ops.ts';
import { IDLE_COPIES, LOAD_HOLD_FACTOR, LOAD_HOLD_MAX_MS, LOAD_HOLD_MIN_MS, MAX_BATCH_BYTES, RegionPace } from '../runtime/regions/region-pace.ts';
import { RegionWalker, type CopyResult, type WalkerHost } from '../runtime/regions/region-walker.ts';
import { SlottedBitmap, type SlottedBitmapParams } from '../runtime/regions/slotted-bitmap.ts';
import { defaultKernels } from '../runtime/wasm/kernels.ts';

const ops = suite('regions: RegionOps');

ops('one operation per region; waiters learn how it ended', async () => {
  const regionOps = new RegionOps();
  const op = regionOps.begin(4, 8);
  assert.is(regionOps.size, 4);
  assert.is(regionOps.firstBusy(0, 5), 4);
  assert.is(regionOps.firstBusy(0, 4), -1);
  assert.is(regionOps.firstBusy(7, 100), 7, 'a wide range scans the held regions');
  assert.throws(() => regionOps.begin(7, 9), /already has an operation/);
  const settled = regionOps.anySettled();
  op.settle(true);
  await settled;
  assert.is(await op.done, true);
  assert.is(regionOps.size, 0);
  assert.throws(() => op.settle(true), /settled twice/);
  const failed = regionOps.begin(0, 1);
  failed.settle(false);
  assert.is(await failed.done, false);
});

ops('OpGate as a user-I/O counter: idle() resolves each time the count drains, the gate stays open', async () => {
  const gate = new OpGate();
  await gate.idle();
  let release!: () => void;
  const running = gate.track(() => new Promise<void>((resolve) => (release = resolve)));
  const held = gate.hold();
  let idle = false;
  const idlePromise = gate.idle().then(() => (idle = true));
  release();
  await running;
  await new Promise((resolve) => setImmediate(resolve));
  assert.not.ok(idle, 'a hold still counts');
  held();
  await idlePromise;
  assert.ok(gate.isOpen);
  assert.is(gate.inFlight, 0);
});

const walker = suite('regions: RegionWalker');

interface ModelOptions {
  regionCount: number;
  threshold: number;
  batchSize: number;
  pendingBit?: boolean;
  maxConsecutiveFailures?: number;
  /** Decides each copy's result (default done). */
  result?: (start: number, end: number) => CopyResult;
  /** The host asks the walker to hold back for this long at the start. */
  holdMs?: number;
  seed: number;
}

/** A model engine: copies take a seeded number of macrotasks; user I/O comes and goes. */
async function modelWalk(options: ModelOptions) {
  const prng = new Prng(options.seed);
  const pendingBit = options.pendingBit ?? false;
  const bitmap = await RegionBitmap.create(options.regionCount);
  if (pendingBit) bitmap.setRange(0, options.regionCount);
  const regionOps = new RegionOps();
  const copies = new Uint32Array(options.regionCount);
  let inFlight = 0;
  let inFlightMax = 0;
  let userBusy = false;
  let copiesWhileBusy = 0;
  let runLengthMax = 0;
  let userIdleWaiters: Array<() => void> = [];
  let stopped: unknown = undefined;
  let completed = false;
  const tick = () => new Promise((resolve) => setImmediate(resolve));
  const holdUntilMs = performance.now() + (options.holdMs ?? 0);
  let copiesDuringHold = 0;
  const host: WalkerHost = {
    regionCount: options.regionCount,
    regionOps,
    bitmap: () => bitmap,
    canRun: () => true,
    threshold: () => options.threshold,
    batchSize: () => options.batchSize,
    holdBackMs: () => Math.max(0, holdUntilMs - performance.now()),
    userBusy: () => userBusy,
    userIdle: () => (userBusy ? new Promise((resolve) => userIdleWaiters.push(resolve)) : Promise.resolve()),
    copy: async (start, end) => {
      if (userBusy) copiesWhileBusy++;
      if (performance.now() < holdUntilMs) copiesDuringHold++;
      runLengthMax = Math.max(runLengthMax, end - start);
      inFlight += end - start;
      inFlightMax = Math.max(inFlightMax, inFlight);
      const op = regionOps.begin(start, end);
      for (let r = start; r < end; r++) assert.is(bitmap.get(r), pendingBit, `region ${r} was pending when copied`);
      for (let i = prng.below(3); i > 0; i--) await tick();
      const result = options.result?.(start, end) ?? 'done';
      if (result === 'done') {
        for (let r = start; r < end; r++) copies[r]!++;
        if (pendingBit) bitmap.clearRange(start, end);
        else bitmap.setRange(start, end);
      }
      inFlight -= end - start;
      op.settle(result === 'done');
      return result;
    },
    complete: () => (completed = true),
    stopped: (error) => (stopped = error),
  };
  const walk = new RegionWalker(host, options.maxConsecutiveFailures ?? 4, pendingBit);
  walk.kick();
  // User I/O bursts while the walk runs.
  for (let step = 0; step < 2000 && !completed && stopped === undefined; step++) {
    if (prng.chance(0.1)) {
      userBusy = !userBusy;
      if (!userBusy) {
        const waiters = userIdleWaiters;
        userIdleWaiters = [];
        for (const wake of waiters) wake();
      }
    }
    await tick();
  }
  userBusy = false;
  for (const wake of userIdleWaiters) wake();
  await walk.idle();
  const result = { copies, inFlightMax, runLengthMax, copiesWhileBusy, copiesDuringHold, stopped, completed, walk, bitmap };
  return result;
}

walker('every pending region is done exactly once, within threshold and batch (seeded)', async () => {
  const seed = seedFromEnv();
  for (const [threshold, batchSize, pendingBit, holdMs] of [[1, 1, false, 0], [8, 3, false, 20], [64, 64, true, 0], [5, 100, false, 0]] as const) {
    const label = `seed ${seed} threshold ${threshold} batch ${batchSize} pendingBit ${pendingBit}`;
    const r = await modelWalk({ regionCount: 300, threshold, batchSize, pendingBit, seed, holdMs });
    assert.is(r.copiesDuringHold, 0, `${label}: no copy while the host holds back`);
    assert.ok(r.completed, `${label}: complete`);
    assert.ok(r.copies.every((n) => n === 1), `${label}: each region copied once`);
    assert.ok(r.inFlightMax <= threshold, `${label}: ${r.inFlightMax} in flight`);
    assert.ok(r.runLengthMax <= batchSize, `${label}: a run of ${r.runLengthMax}`);
    assert.is(r.copiesWhileBusy, 0, `${label}: no copy started while user I/O was in flight`);
    r.bitmap.release();
  }
});

walker('stops after N failures in a row with the last error; dropped copies are not failures', async () => {
  const seed = seedFromEnv();
  const failing = await modelWalk({ regionCount: 50, threshold: 1, batchSize: 1, maxConsecutiveFailures: 3, seed, result: () => ({ error: new Error('disk on fire') }) });
  assert.not.ok(failing.completed);
  assert.is((failing.stopped as Error).message, 'disk on fire');
  assert.ok(failing.walk.failed);
  failing.bitmap.release();
  let drops = 0;
  const dropping = await modelWalk({
    regionCount: 50, threshold: 4, batchSize: 1, maxConsecutiveFailures: 3, seed,
    result: (start) => (start % 2 === 0 && drops++ < 20 ? 'dropped' : 'done'),
  });
  assert.is(dropping.stopped, undefined, 'dropped copies never stop the walk');
  assert.ok(dropping.completed);
  assert.ok(drops >= 20);
  dropping.bitmap.release();
});

walker("turns 'timer-per-copy': one copy per timer turn of a caller, whatever the machine's speed", async () => {
  const bitmap = await RegionBitmap.create(64);
  const regionOps = new RegionOps();
  let copiesThisTurn = 0;
  let mostInOneTurn = 0;
  let completed = false;
  const walk = new RegionWalker(
    {
      regionCount: 64, regionOps, bitmap: () => bitmap, canRun: () => true, threshold: () => 1, batchSize: () => 1,
      userBusy: () => false, userIdle: () => Promise.resolve(),
      copy: async (start, end) => {
        mostInOneTurn = Math.max(mostInOneTurn, ++copiesThisTurn);
        bitmap.setRange(start, end);
        return 'done';
      },
      complete: () => (completed = true), stopped: () => {},
    },
    4, false, 'timer-per-copy',
  );
  walk.kick(); // starts the first copy at once
  copiesThisTurn = 0;
  for (let turn = 0; turn < 1000 && !completed; turn++) {
    await new Promise((resolve) => setTimeout(resolve, 0));
    copiesThisTurn = 0;
  }
  await walk.idle();
  assert.ok(completed);
  assert.is(mostInOneTurn, 1);
  bitmap.release();
});

const pace = suite('regions: RegionPace');

pace('starts at the kernel default, grows while the user is quiet, gives way when not', () => {
  const regionBytes = 64 * 1024;
  const maxBatch = MAX_BATCH_BYTES / regionBytes;
  const p = new RegionPace(regionBytes);
  assert.equal([p.threshold, p.batchSize], [1, 1]);
  for (let i = 0; i < 20; i++) p.copyEnded(p.copyStarted());
  assert.equal([p.threshold, p.batchSize], [IDLE_COPIES * maxBatch, maxBatch], 'full speed when idle');
  assert.is(p.holdBackMs(), 0, 'no holding back while quiet');
  const token = p.copyStarted(1000);
  p.userArrived();
  p.copyEnded(token, 1004);
  assert.equal([p.threshold, p.batchSize], [maxBatch / 2, maxBatch / 2], 'halved, one copy at a time');
  assert.is(p.holdBackMs(1004), LOAD_HOLD_FACTOR * 4, 'holds back a multiple of the copy time');
  assert.is(p.holdBackMs(1004 + LOAD_HOLD_FACTOR * 4), 0);
  const quick = p.copyStarted(2000);
  p.userArrived();
  p.copyEnded(quick, 2000);
  assert.is(p.holdBackMs(2000), LOAD_HOLD_MIN_MS, 'at least the minimum');
  const slow = p.copyStarted(3000);
  p.userArrived();
  p.copyEnded(slow, 4000);
  assert.is(p.holdBackMs(4000), LOAD_HOLD_MAX_MS, 'at most the maximum');
  for (let i = 0; i < 20; i++) {
    const t = p.copyStarted();
    p.userArrived();
    p.copyEnded(t);
  }
  assert.equal([p.threshold, p.batchSize], [1, 1], 'never below one region');
  const huge = new RegionPace(2 * MAX_BATCH_BYTES);
  huge.copyEnded(huge.copyStarted());
  assert.equal([huge.threshold, huge.batchSize], [IDLE_COPIES, 1], 'a region larger than the batch: one region a copy');
});

const slotted = suite('regions: SlottedBitmap and bitmap blocks');
const OTHER_KIND: BitmapBlockKind = { magic: 0x4b524944, checksumXor: 0x1234_5678 };

async function slottedParams(device: MemoryDevice, bitCount: number, kind = OTHER_KIND): Promise<SlottedBitmapParams> {
  const kernels = await defaultKernels();
  const crc32c = (bytes: Uint8Array) => kernels.crc32c(bytes);
  const uuid = new Uint8Array(16).fill(7);
  // A toy commit point: generation and set count in the first 16 bytes of the slot.
  return {
    device, crc32c, kind, uuid, bitCount,
    commitPoint: {
      encode(generation, setCount) {
        const block = new Uint8Array(BLOCK_BYTES);
        const view = new DataView(block.buffer);
        view.setFloat64(0, generation, true);
        view.setFloat64(8, setCount, true);
        return block;
      },
    },
  };
}

async function readCommitPoint(device: MemoryDevice) {
  const both = new Uint8Array(2 * BLOCK_BYTES);
  await device.read(0, both);
  const view = new DataView(both.buffer);
  const slots = [0, 1].map((slot) => ({ slot, generation: view.getFloat64(slot * BLOCK_BYTES, true), setCount: view.getFloat64(slot * BLOCK_BYTES + 8, true) }));
  return slots.reduce((a, b) => (b.generation > a.generation ? b : a));
}

slotted('format, commit and load round-trip under another engine kind; a foreign kind does not load', async () => {
  const bitCount = 70_000;
  const device = new MemoryDevice({ sizeBytes: slottedBlocksFor(bitCount) * BLOCK_BYTES });
  const params = await slottedParams(device, bitCount);
  const bits = await SlottedBitmap.format(params);
  bits.setRange(10, 20);
  bits.setRange(69_990, 70_000);
  let flushes = 0;
  await bits.commit(async () => void flushes++);
  assert.is(flushes, 1);
  bits.setRange(40_000, 40_001);
  await bits.commit(async () => {});
  bits.close();
  const point = await readCommitPoint(device);
  assert.is(point.setCount, 21);
  const again = await SlottedBitmap.load(params, point);
  assert.is(again.setCount, 21);
  assert.ok(again.get(40_000) && again.get(10) && !again.get(20));
  again.close();
  const foreign = await slottedParams(device, bitCount, { magic: OTHER_KIND.magic + 1, checksumXor: OTHER_KIND.checksumXor });
  try {
    await SlottedBitmap.load(foreign, point);
    assert.unreachable('a foreign kind loaded');
  } catch (error) {
    assert.match(String(error), /no valid committed copy/);
  }
});

slotted('a damaged bitmap block never passes as valid (seeded fuzz)', async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const kernels = await defaultKernels();
  const crc32c = (bytes: Uint8Array) => kernels.crc32c(bytes);
  const uuid = prng.fill(new Uint8Array(16));
  for (let trial = 0; trial < 300; trial++) {
    const block = new Uint8Array(BLOCK_BYTES);
    prng.fill(block.subarray(BITMAP_HEADER_BYTES));
    const index = prng.below(1000);
    const generation = prng.below(1 << 30);
    sealBitmapBlock(block, { index, generation, uuid }, OTHER_KIND, crc32c);
    assert.is(bitmapBlockGeneration(block, index, uuid, OTHER_KIND, crc32c), generation, `seed ${seed} trial ${trial}: intact`);
    const damaged = block.slice();
    const flips = prng.range(1, 4);
    for (let i = 0; i < flips; i++) damaged[prng.below(BLOCK_BYTES)] ^= 1 << prng.below(8);
    const changed = damaged.some((b, i) => b !== block[i]);
    const got = bitmapBlockGeneration(damaged, index, uuid, OTHER_KIND, crc32c);
    if (changed) assert.is(got, null, `seed ${seed} trial ${trial}: damaged block accepted`);
    assert.is(bitmapBlockGeneration(block, index + 1, uuid, OTHER_KIND, crc32c), null, 'another index');
  }
});

const rate = suite('regions: RateMeter');

rate('bytes per second over the window, at least 250 ms of span', () => {
  const meter = new RateMeter(1000);
  assert.is(meter.bytesPerSecond(0), 0);
  meter.add(1000, 0);
  assert.is(meter.bytesPerSecond(100), 4000, 'one early sample: 1000 bytes over 250 ms');
  meter.add(1000, 500);
  assert.is(meter.bytesPerSecond(1000), 2000);
  assert.ok(Math.abs(meter.bytesPerSecond(1400) - 1000 / 0.9) < 1e-6, 'the first sample left the window');
  assert.is(meter.bytesPerSecond(5000), 0);
  // Many samples in one bucket: one entry, the same total.
  const busy = new RateMeter(1000);
  for (let i = 0; i < 10_000; i++) busy.add(4096, 2000 + i * 0.001);
  assert.ok(Math.abs(busy.bytesPerSecond(2500) - (10_000 * 4096) / 0.5) < 1e-3);
});

ops.run();
walker.run();
pace.run();
slotted.run();
rate.run();

const limit = suite('regions: ByteRateLimit');

limit('no limit: every copy starts at once; a limit spaces copies by bytes / rate, back to back, with no credit for idle time', () => {
  const l = new ByteRateLimit();
  assert.is(l.reserve(1 << 20, 0), 0);
  l.bytesPerSecond = 1 << 20; // 1 MiB/s
  assert.is(l.reserve(1 << 20, 1000), 0, 'the first copy goes at once');
  assert.is(l.reserve(512 << 10, 1000), 1000, 'the next waits for the first one\'s second');
  assert.is(l.reserve(4096, 1200), 1300, 'and the one after for both');
  assert.is(l.reserve(4096, 60_000), 0, 'after an idle stretch: at once...');
  assert.ok(Math.abs(l.reserve(4096, 60_000) - 3.90625) < 1e-9, '...but no burst: the next waits for the first');
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => (l.bytesPerSecond = bad), /EINVAL/);
});

limit('a new limit wakes copies waiting under the old one; a stop ends a wait with EBUSY', async () => {
  const l = new ByteRateLimit(4096);
  await l.take(4096); // at once
  let started = false;
  const waiting = l.take(4096).then(() => (started = true)); // would wait a second
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.is(started, false);
  l.bytesPerSecond = null;
  await waiting;
  assert.is(started, true, 'lifting the limit let it go');
  l.bytesPerSecond = 4096;
  await l.take(4096);
  const stop = new AbortController();
  const stopped = l.take(4096, stop.signal).then(() => 'started', (error: Error) => error.message);
  stop.abort();
  assert.match(await stopped, /^EBUSY: the copy was stopped/);
});

limit.run();
