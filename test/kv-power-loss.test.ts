/**
 * KvDevice against power loss: seeded trials of concurrent writes (some FUA, many covering parts
 * of chunks, so read-modify-write), flushes and discards over a PowerLossKv, cut at a random call
 * keeping a random prefix of what was not synced; the device reopened over what survived must hold,
 * in every sector, what the durability model allows (test/support/durability-model.ts): every write
 * a completed flush or a FUA covered, unless a later or concurrent one overwrote it. Reordering or
 * dropping the sync in flush or FUA makes this fail. BLOCKCORE_SEED replays; BLOCKCORE_KV_POWER_TRIALS
 * sets how many (default 200).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { KvDevice } from '../runtime/devices/kv-device.ts';
import { PowerLossKv } from '../runtime/devices/power-loss-kv.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { SECTOR_BYTES, writeData } from './support/clone-crash-records.ts';
import { DurabilityTrace, judgeSector } from './support/durability-model.ts';

const test = suite('KvDevice power loss');
const TRIALS = Number(process.env.BLOCKCORE_KV_POWER_TRIALS ?? 200);

async function trial(seed: number): Promise<{ durable: number; syncs: number }> {
  const prng = new Prng(seed);
  const chunkBytes = SECTOR_BYTES * prng.range(1, 8);
  const sizeBytes = SECTOR_BYTES * prng.range(16, 96);
  const sectorCount = sizeBytes / SECTOR_BYTES;
  const storage = new PowerLossKv();
  await KvDevice.create(storage, 'd', { sizeBytes, chunkBytes });
  await storage.sync();
  const device = await KvDevice.open(storage, 'd');
  const trace = new DurabilityTrace(sectorCount);
  const contentSeed = (seed ^ 0x6b76) >>> 0;
  const cutAfterCalls = prng.range(1, 60);
  let calls = 0;
  let cut: Map<string, unknown> | null = null;
  const inFlight = new Set<Promise<void>>();
  const track = (work: Promise<void>) => {
    const settled = work.catch(() => {}).finally(() => inFlight.delete(settled));
    inFlight.add(settled);
  };
  while (cut === null) {
    while (inFlight.size >= prng.range(1, 4)) await Promise.race(inFlight);
    if (calls++ === cutAfterCalls) {
      cut = storage.cut(prng.range(0, storage.unsyncedCalls));
      break;
    }
    const roll = prng.next();
    if (roll < 0.15) {
      const issued = trace.flushIssued();
      track(device.flush().then(() => trace.flushDone(issued)));
    } else {
      const first = prng.below(sectorCount);
      const length = prng.range(1, Math.min(sectorCount - first, 3 * chunkBytes / SECTOR_BYTES));
      const offsetBytes = first * SECTOR_BYTES;
      const lengthBytes = length * SECTOR_BYTES;
      if (roll < 0.25) {
        const op = trace.issue('zero', calls, offsetBytes, lengthBytes);
        track(device.discard(offsetBytes, lengthBytes).then(() => trace.done(op)));
      } else {
        const fua = prng.chance(0.1);
        const op = trace.issue('write', calls, offsetBytes, lengthBytes, fua);
        track(device.write(offsetBytes, writeData(contentSeed, calls, offsetBytes, lengthBytes), { fua }).then(() => trace.done(op)));
      }
    }
    if (prng.chance(0.3)) await Promise.resolve();
  }
  await Promise.allSettled([...inFlight]);
  // Reboot: the device over what survived.
  const after = await KvDevice.open(new PowerLossKv(cut), 'd');
  const image = new Uint8Array(sizeBytes);
  await after.read(0, image);
  const base = new Uint8Array(SECTOR_BYTES);
  for (let sector = 0; sector < sectorCount; sector++) {
    const why = judgeSector({ trace, contentSeed }, sector, image.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES), base);
    assert.is(why, null, `seed ${seed} (chunks of ${chunkBytes} bytes, cut after ${cutAfterCalls} calls): ${why}`);
  }
  return { durable: trace.ops.filter((op) => trace.isDurable(op)).length, syncs: storage.syncs };
}

test(`${TRIALS} seeded power cuts: every flushed or FUA write survives`, async () => {
  const seed = seedFromEnv();
  let durable = 0;
  for (let i = 0; i < TRIALS; i++) durable += (await trial((seed + i) >>> 0)).durable;
  assert.ok(durable > 0, `seeds ${seed}+: no write was ever durable at a cut, so nothing was checked`);
  console.log(`  kv power loss: ${TRIALS} trials from seed ${seed}, ${durable} durable writes checked after cuts`);
});

test.run();
