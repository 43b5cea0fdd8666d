/**
 * The power-loss model (runtime/devices/power-loss-device.ts, power-domain.ts): the device suite
 * against it; exact cases for what a flush covers (a write in flight when flush() is called is not
 * covered), FUA, cuts armed at an event, failing I/O after a cut, torn writes at 512-byte sectors
 * over 4 KiB blocks; and a seeded fuzz of concurrent writes, FUA writes, discards, reads and
 * flushes on two devices of one domain, cut at a random event or a random moment, whose surviving
 * images are checked sector by sector against the caller-side model (test/support/durability-model.ts):
 * flushed data and FUA writes always there, unflushed writes present, absent or torn per sector,
 * never anything else. The fuzz must also see losses, tears and survivals, on each device
 * independently, or it proves nothing. Seeds: BLOCKCORE_SEED (else the clock).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { PowerDomain, type PowerCutReport } from '../runtime/devices/power-domain.ts';
import type { PowerLossDevice } from '../runtime/devices/power-loss-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { deviceConformance, type DeviceFactory } from './conformance/device-suite.ts';
import { SECTOR_BYTES, writeData } from './support/clone-crash-records.ts';
import { DurabilityTrace, judgeSector, type TracedOp } from './support/durability-model.ts';
import { expectCode } from './support/expect-code.ts';

const powerFactory = (timerDelayChance: number): DeviceFactory => async (options) => new PowerDomain({ seed: 7, timerDelayChance }).attach(new MemoryDevice(options));
deviceConformance('PowerLossDevice over MemoryDevice', powerFactory(0));
deviceConformance('PowerLossDevice over MemoryDevice, some timer turns', powerFactory(0.05));
deviceConformance('PowerLossDevice over MemoryDevice', powerFactory(0), { readOnly: 'only' });

const test = suite('PowerLossDevice and PowerDomain');
const BLOCK_BYTES = 512;
const SIZE_BYTES = 16 * 1024;

async function readAll(device: BlockDevice): Promise<Uint8Array> {
  const bytes = new Uint8Array(device.sizeBytes);
  await device.read(0, bytes);
  return bytes;
}

function setup(seed = 1, logicalBlockBytes = BLOCK_BYTES): { domain: PowerDomain; backing: MemoryDevice; device: PowerLossDevice } {
  const domain = new PowerDomain({ seed });
  const backing = new MemoryDevice({ sizeBytes: SIZE_BYTES, logicalBlockBytes });
  return { domain, backing, device: domain.attach(backing) };
}

const filled = (fill: number, bytes = BLOCK_BYTES) => new Uint8Array(bytes).fill(fill);

test('reads see cached writes; the backing holds them only once a flush resolves', async () => {
  const { backing, device } = setup();
  await device.write(0, filled(1));
  assert.equal((await readAll(device)).subarray(0, BLOCK_BYTES), filled(1));
  assert.equal((await readAll(backing)).subarray(0, BLOCK_BYTES), filled(0), 'not persisted before a flush');
  await device.flush();
  assert.equal((await readAll(backing)).subarray(0, BLOCK_BYTES), filled(1), 'persisted by the flush');
  await device.discard(0, BLOCK_BYTES);
  assert.equal((await readAll(device)).subarray(0, BLOCK_BYTES), filled(0), 'a discard reads as zeros at once');
  assert.equal((await readAll(backing)).subarray(0, BLOCK_BYTES), filled(1), 'and is cached like a write');
  await device.close();
});

test('a cut losing everything unflushed keeps exactly the flushed writes and completed FUA writes', async () => {
  const { domain, backing, device } = setup();
  await device.write(0, filled(1));
  await device.flush();
  await device.write(BLOCK_BYTES, filled(2));
  await device.write(2 * BLOCK_BYTES, filled(3), { fua: true });
  await device.write(0, filled(4)); // overwrites a flushed write, unflushed
  const report = await domain.cut({ unflushed: 'lose' });
  const image = await readAll(backing);
  assert.equal(image.subarray(0, BLOCK_BYTES), filled(1), 'the flushed write, not its unflushed overwrite');
  assert.equal(image.subarray(BLOCK_BYTES, 2 * BLOCK_BYTES), filled(0), 'the unflushed write is lost');
  assert.equal(image.subarray(2 * BLOCK_BYTES, 3 * BLOCK_BYTES), filled(3), 'the FUA write survives');
  assert.is(report.devices[0]!.backing, backing);
  assert.equal([report.devices[0]!.unflushed, report.devices[0]!.lost, report.devices[0]!.fua], [3, 2, 1]);
});

test('a write in flight when flush() is called is not covered by that flush, even if it completes first', async () => {
  for (let seed = 1; seed <= 40; seed++) {
    const { domain, backing, device } = setup(seed);
    const write = device.write(0, filled(5));
    const flush = device.flush();
    await Promise.all([write, flush]);
    await domain.cut({ unflushed: 'lose' });
    assert.equal((await readAll(backing)).subarray(0, BLOCK_BYTES), filled(0), `seed ${seed}: the write was not covered`);
  }
  const { domain, backing, device } = setup();
  await device.write(0, filled(5));
  await device.flush();
  await domain.cut({ unflushed: 'lose' });
  assert.equal((await readAll(backing)).subarray(0, BLOCK_BYTES), filled(5), 'a write that resolved before flush() was called is covered');
});

test('a flush cut before it resolves covers nothing; every unresolved operation and every later call fails with EIO', async () => {
  const { domain, backing, device } = setup();
  await device.write(0, filled(6));
  const flush = device.flush();
  const write = device.write(BLOCK_BYTES, filled(7));
  const read = device.read(0, new Uint8Array(BLOCK_BYTES));
  const cut = domain.cut({ unflushed: 'lose' });
  assert.ok(domain.isCut);
  await expectCode(flush, 'EIO');
  await expectCode(write, 'EIO');
  await expectCode(read, 'EIO');
  await expectCode(device.write(0, filled(8)), 'EIO');
  await expectCode(device.flush(), 'EIO');
  await expectCode(device.discard(0, BLOCK_BYTES), 'EIO');
  assert.is(await domain.cut(), await cut, 'a second cut() returns the first cut');
  assert.equal((await readAll(backing)).subarray(0, 2 * BLOCK_BYTES), filled(0, 2 * BLOCK_BYTES));
  await device.close(); // resolves, and leaves the backing to the caller
  assert.equal(await readAll(backing), new Uint8Array(SIZE_BYTES));
  await expectCode(device.read(0, new Uint8Array(BLOCK_BYTES)), 'EBADF');
});

test('a cut keeping everything persists cached and in-flight writes in order', async () => {
  const { domain, backing, device } = setup();
  await device.write(0, filled(1));
  await device.write(0, filled(2));
  const inFlight = device.write(BLOCK_BYTES, filled(3));
  const report = await domain.cut({ unflushed: 'keep' });
  await expectCode(inFlight, 'EIO');
  const image = await readAll(backing);
  assert.equal(image.subarray(0, BLOCK_BYTES), filled(2), 'the later cached write wins');
  assert.equal(image.subarray(BLOCK_BYTES, 2 * BLOCK_BYTES), filled(3), 'the in-flight write may land');
  assert.equal([report.devices[0]!.unflushed, report.devices[0]!.keptWhole], [3, 3]);
});

test('cutAtEvent: the power fails just before that event (submission or taking effect)', async () => {
  let { domain, backing, device } = setup();
  domain.cutAtEvent(1, { unflushed: 'keep' });
  await expectCode(device.write(0, filled(1)), 'EIO');
  let report = await domain.cut();
  assert.is(report.eventIndex, 0);
  assert.equal([report.devices[0]!.unflushed, report.devices[0]!.writesSubmitted], [0, 0], 'a write cut at its submission never started');
  ({ domain, backing, device } = setup());
  domain.cutAtEvent(2, { unflushed: 'keep' });
  await expectCode(device.write(0, filled(1)), 'EIO');
  report = await domain.cut();
  assert.is(report.eventIndex, 1);
  assert.equal([report.devices[0]!.unflushed, report.devices[0]!.writesSubmitted], [1, 1], 'a write cut before it took effect is in flight at the cut');
  assert.equal((await readAll(backing)).subarray(0, BLOCK_BYTES), filled(1));
});

test('cutAtEvent on one device counts only its events', async () => {
  const domain = new PowerDomain({ seed: 3 });
  const [first, second] = [domain.attach(new MemoryDevice({ sizeBytes: SIZE_BYTES })), domain.attach(new MemoryDevice({ sizeBytes: SIZE_BYTES }))];
  domain.cutAtEvent(3, { device: second, unflushed: 'keep' });
  for (let i = 0; i < 4; i++) await first.write(0, filled(i));
  await second.write(0, filled(9)); // its events 1 and 2
  assert.ok(!domain.isCut);
  await expectCode(second.flush(), 'EIO');
  const report = await domain.cut();
  assert.equal([first.events, second.events, report.eventIndex], [8, 2, 10]);
});

test('torn writes are cut at 512-byte sectors, also on a device of 4 KiB blocks', async () => {
  let tornSeen = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const { domain, backing, device } = setup(seed, 4096);
    const data = writeData(seed, 1, 0, 4 * 4096);
    await device.write(0, data);
    const report = await domain.cut({ seed });
    const image = (await readAll(backing)).subarray(0, data.length);
    let kept = 0;
    for (let sector = 0; sector < data.length / SECTOR_BYTES; sector++) {
      const bytes = image.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
      const want = data.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
      if (bytes.every((byte, i) => byte === want[i])) kept++;
      else assert.ok(bytes.every((byte) => byte === 0), `seed ${seed}: sector ${sector} is neither the write nor untouched`);
    }
    const { lost, keptWhole, torn } = report.devices[0]!;
    if (lost) assert.is(kept, 0, `seed ${seed}: lost`);
    if (keptWhole) assert.is(kept, 32, `seed ${seed}: kept whole`);
    if (torn && kept > 0 && kept < 32) tornSeen++;
  }
  assert.ok(tornSeen > 0, 'some write was torn part-way');
});

// ---- seeded fuzz against the caller-side model ----

const FUZZ_TRIALS = 300;

interface FuzzStats {
  cuts: number;
  lostUnflushed: number;
  keptUnflushed: number;
  tornPartly: number;
  failedAtCut: number;
  /** Cuts in which one device lost an unflushed write and the other kept one. */
  independent: number;
}

interface Disk {
  device: PowerLossDevice;
  backing: MemoryDevice;
  trace: DurabilityTrace;
  base: Uint8Array;
  contentSeed: number;
}

/** One trial: random concurrent I/O on two devices of one domain, a cut, and every sector judged. */
async function fuzzTrial(seed: number, stats: FuzzStats): Promise<string> {
  const prng = new Prng(seed);
  const domain = new PowerDomain({ seed: prng.nextU32(), maxDelayTurns: prng.range(0, 6), timerDelayChance: prng.chance(0.3) ? 0.05 : 0 });
  const disks: Disk[] = [512, 4096].map((logicalBlockBytes, index) => {
    const sizeBytes = prng.range(4, 16) * 4096;
    const base = prng.fill(new Uint8Array(sizeBytes));
    const backing = new MemoryDevice({ sizeBytes, logicalBlockBytes, initial: base });
    return { device: domain.attach(backing, `disk${index}`), backing, trace: new DurabilityTrace(sizeBytes / SECTOR_BYTES), base, contentSeed: (seed ^ (index + 1) * 0x9e37) >>> 0 };
  });
  const opCount = prng.range(1, 120);
  if (prng.chance(0.6)) domain.cutAtEvent(prng.range(1, 4 * opCount));
  const cutAtOp = prng.range(0, opCount);
  const inFlight = new Set<Promise<void>>();
  let nextId = 0;
  const started = (pending: Promise<void>) => {
    const tracked = pending.then(
      () => {},
      (error) => {
        if (!(error instanceof BlockError) || error.code !== 'EIO' || !domain.isCut) throw new Error(`seed ${seed}: an operation failed other than by the cut: ${error}`);
        stats.failedAtCut++;
      },
    );
    inFlight.add(tracked);
    void tracked.finally(() => inFlight.delete(tracked));
  };
  for (let step = 0; step < opCount && !domain.isCut; step++) {
    if (step === cutAtOp) void domain.cut();
    while (inFlight.size >= 4) await Promise.race(inFlight);
    if (domain.isCut) break;
    const disk = disks[prng.below(2)]!;
    const { device, trace } = disk;
    const blocks = device.sizeBytes / device.logicalBlockBytes;
    const first = prng.below(blocks);
    const lengthBytes = prng.range(1, Math.min(4, blocks - first)) * device.logicalBlockBytes;
    const offsetBytes = first * device.logicalBlockBytes;
    const roll = prng.next();
    if (roll < 0.5) {
      const id = nextId++;
      const fua = prng.chance(0.15);
      const op = trace.issue('write', id, offsetBytes, lengthBytes, fua);
      started(device.write(offsetBytes, writeData(disk.contentSeed, id, offsetBytes, lengthBytes), { fua }).then(() => trace.done(op)));
    } else if (roll < 0.65) {
      const op: TracedOp = trace.issue('zero', nextId++, offsetBytes, lengthBytes);
      started(device.discard(offsetBytes, lengthBytes).then(() => trace.done(op)));
    } else if (roll < 0.85) {
      const issueSeq = trace.flushIssued();
      started(device.flush().then(() => trace.flushDone(issueSeq)));
    } else {
      started(device.read(offsetBytes, new Uint8Array(lengthBytes)));
    }
    if (prng.chance(0.1)) await Promise.all(inFlight);
  }
  const report: PowerCutReport = await domain.cut();
  await Promise.all(inFlight);
  for (const disk of disks) await expectCode(disk.device.write(0, new Uint8Array(disk.device.logicalBlockBytes)), 'EIO');
  stats.cuts++;
  let lostSomewhere = false;
  let keptSomewhere = false;
  const scratch = new Uint8Array(SECTOR_BYTES);
  for (const [index, disk] of disks.entries()) {
    const image = await readAll(disk.backing);
    const deviceReport = report.devices[index]!;
    assert.is(deviceReport.backing, disk.backing);
    for (let sector = 0; sector < disk.trace.sectorCount; sector++) {
      const at = sector * SECTOR_BYTES;
      const reason = judgeSector(disk, sector, image.subarray(at, at + SECTOR_BYTES), disk.base.subarray(at, at + SECTOR_BYTES), scratch);
      if (reason !== null) throw new Error(`seed ${seed}, ${disk.device.name} (cut at event ${report.eventIndex}, cut seed ${report.seed}): ${reason}`);
    }
    stats.tornPartly += deviceReport.torn;
    const completedUnflushed = disk.trace.ops.filter((op) => op.doneSeq !== Infinity && !disk.trace.isDurable(op));
    if (deviceReport.lost > 0 && completedUnflushed.length > 0) {
      stats.lostUnflushed++;
      lostSomewhere = true;
    }
    if (deviceReport.keptWhole > deviceReport.fua) {
      stats.keptUnflushed++;
      keptSomewhere = true;
    }
    if (lostSomewhere && keptSomewhere && index === 1) stats.independent++;
  }
  return `${report.eventIndex}:${report.seed}:${report.devices.map((d) => `${d.unflushed}/${d.lost}/${d.keptWhole}/${d.torn}`).join(',')}`;
}

test(`seeded fuzz: ${FUZZ_TRIALS} cuts of two devices in one domain match the model`, async () => {
  const baseSeed = seedFromEnv();
  const stats: FuzzStats = { cuts: 0, lostUnflushed: 0, keptUnflushed: 0, tornPartly: 0, failedAtCut: 0, independent: 0 };
  for (let trial = 0; trial < FUZZ_TRIALS; trial++) {
    const seed = (baseSeed + trial) >>> 0;
    try {
      await fuzzTrial(seed, stats);
    } catch (error) {
      if (error instanceof Error) error.message += ` [replay with BLOCKCORE_SEED=${seed}]`;
      throw error;
    }
  }
  assert.is(stats.cuts, FUZZ_TRIALS);
  console.log(`  power-loss fuzz: ${FUZZ_TRIALS} cuts from seed ${baseSeed}: ${JSON.stringify(stats)}`);
  // The model must bite: unflushed writes lost in some cuts, kept in others, torn in others,
  // operations failed by cuts, and the two devices faring differently in one cut.
  for (const [what, count] of Object.entries(stats)) assert.ok(count > 0, `seeds ${baseSeed}+: no ${what} in ${FUZZ_TRIALS} trials`);
});

test('a seed replays exactly: the same cut, the same fates', async () => {
  const seed = seedFromEnv();
  const quiet: FuzzStats = { cuts: 0, lostUnflushed: 0, keptUnflushed: 0, tornPartly: 0, failedAtCut: 0, independent: 0 };
  for (let trial = 0; trial < 5; trial++) {
    const first = await fuzzTrial(seed + trial, quiet);
    assert.is(await fuzzTrial(seed + trial, quiet), first, `seed ${seed + trial}`);
  }
});

test.run();
