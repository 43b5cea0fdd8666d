/**
 * The clone's lifecycle edges: closing a suspended clone while I/O waits on it, cache() (NBD
 * CACHE) while suspended and its errors, and copies in flight when the clone switches to ro.
 * Each test here failed before its fix (issue 8, item 6).
 */
import { setImmediate } from 'node:timers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CloneDevice, type CloneEvent } from '../runtime/clone/clone-device.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng } from '../runtime/prng.ts';
import { expectCode } from './support/expect-code.ts';

const REGION_BYTES = 4096;
const REGIONS = 64;
const SIZE_BYTES = REGIONS * REGION_BYTES;
/** How long a test waits for something that must happen at once before calling it a hang. */
const HANG_MS = 5000;

function devices(seed = 1) {
  const image = new Prng(seed).fill(new Uint8Array(SIZE_BYTES));
  return {
    image,
    source: new MemoryDevice({ sizeBytes: SIZE_BYTES, readOnly: true, initial: image, name: 'source' }),
    destination: new MemoryDevice({ sizeBytes: SIZE_BYTES, name: 'destination' }),
    metadata: new MemoryDevice({ sizeBytes: 64 * 1024, name: 'metadata' }),
  };
}

/** Settles like `promise`, or rejects with "<what> hung" after HANG_MS. */
function withinHang<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} hung`)), HANG_MS)));
  return Promise.race([promise, hang]).finally(() => clearTimeout(timer));
}

/** Lets queued reactions and macrotasks run. */
async function turns(count = 20): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** The outcome of a promise that may still be pending. */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; error: unknown } = { settled: false, error: undefined };
  promise.then(
    () => (state.settled = true),
    (error) => {
      state.settled = true;
      state.error = error;
    },
  );
  return state;
}

const lifecycle = suite('clone lifecycle');

lifecycle('closing a suspended clone fails the I/O waiting on it and resolves', async () => {
  const c = await CloneDevice.open({ ...devices(), regionSectors: 8, features: ['no_hydration'] });
  await c.write(0, new Uint8Array(REGION_BYTES).fill(1));
  await c.suspend();
  const read = c.read(8 * REGION_BYTES, new Uint8Array(REGION_BYTES));
  const write = c.write(9 * REGION_BYTES, new Uint8Array(512));
  const flush = c.flush();
  const waiting = [read, write, flush].map(track);
  await turns();
  assert.ok(waiting.every((w) => !w.settled), 'I/O waits while suspended');
  await withinHang(c.close(), 'close of a suspended clone with waiting I/O');
  await turns();
  for (const [i, w] of waiting.entries()) {
    assert.ok(w.settled, `waiting request ${i} settled`);
    assert.is((w.error as { code?: string })?.code, 'EBADF', `waiting request ${i}: ${String(w.error)}`);
  }
});

lifecycle('cache() waits while suspended (no copy), hydrates after resume, and fails on close', async () => {
  const d = devices();
  const c = await CloneDevice.open({ ...d, regionSectors: 8, features: ['no_hydration'] });
  await c.suspend();
  const cached = track(c.cache(2 * REGION_BYTES, 2 * REGION_BYTES));
  await turns();
  assert.not.ok(cached.settled, 'cache waits for resume');
  assert.is(c.hydratedRegions, 0, 'nothing hydrated while suspended');
  assert.is(d.destination.allocatedBytes, 0, 'nothing written to the destination while suspended');
  c.resume();
  await withinHang(
    (async () => {
      while (!cached.settled) await turns(1);
    })(),
    'cache after resume',
  );
  assert.is(cached.error, undefined, String(cached.error));
  assert.is(c.hydratedRegions, 2);
  await c.suspend();
  const late = track(c.cache(10 * REGION_BYTES, REGION_BYTES));
  await withinHang(c.close(), 'close with a cache waiting');
  await turns();
  assert.is((late.error as { code?: string })?.code, 'EBADF', String(late.error));
});

lifecycle('cache() errors name cache, not discard', async () => {
  const c = await CloneDevice.open({ ...devices(), regionSectors: 8, features: ['no_hydration'] });
  for (const [offsetBytes, lengthBytes, code] of [[1, 512, 'EINVAL'], [0, 100, 'EINVAL'], [SIZE_BYTES, 512, 'ERANGE']] as const) {
    try {
      await c.cache(offsetBytes, lengthBytes);
      assert.unreachable(`cache(${offsetBytes}, ${lengthBytes}) accepted`);
    } catch (error) {
      assert.is((error as { code?: string }).code, code, String(error));
      assert.match(String(error), /\bcache\b/, String(error));
      assert.not.match(String(error), /discard/, String(error));
    }
  }
  await c.close();
  await expectCode(c.cache(0, 512), 'EBADF', /cache/);
});

lifecycle('copies in flight when the clone switches to ro are dropped, not failures', async () => {
  const d = devices();
  // Every source read takes a while, so many background copies are in flight at the switch.
  const source = new FaultDevice(d.source, { seed: 2, rules: [{ op: 'read', probability: 1, action: 'delay', delayMs: 100 }] });
  const destination = new FaultDevice(d.destination, { seed: 3 });
  const events: CloneEvent[] = [];
  const c = await CloneDevice.open({ ...d, source, destination, regionSectors: 8, hydrationThreshold: 16, hydrationBatchSize: 1, maxConsecutiveCopyFailures: 2 });
  c.events.on((event) => events.push(event));
  await withinHang(
    (async () => {
      while (c.statusNow().hydratingRegions < 4) await new Promise((resolve) => setTimeout(resolve, 1));
    })(),
    'background copies starting',
  );
  destination.addRule({ op: 'flush', nth: destination.seen.flush + 1, action: 'fail' });
  await expectCode(c.flush(), 'EIO');
  assert.is(c.mode, 'ro');
  await withinHang(
    (async () => {
      while (c.statusNow().hydratingRegions > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    })(),
    'copies finishing',
  );
  await turns();
  assert.equal(events.filter((e) => e.type === 'hydration-stopped'), [], 'no hydration-stopped event');
  assert.is(c.statusNow().hydrationError, null);
  assert.is(c.hydratedRegions, 0, 'a dropped copy marks nothing');
  await c.close();
});

lifecycle.run();
