/**
 * A discard marks the regions it covers whole hydrated only once no copy holds them, and with no
 * turn between its last look and the mark. It waited for copies in an async helper and marked after
 * the `await` of it: in that turn a partial write (or cache()) to a region of the discard found the
 * region unhydrated and idle and began copying it from the source. The discard then marked the
 * region hydrated under the running copy, a later write to the region went straight to the
 * destination, and the copy's source bytes landed over it; the next commit made that durable.
 * Found by test/clone-power-loss.test.ts (BLOCKCORE_SEED=1136966685: a flushed write read as the
 * source after a cut).
 *
 * Here the source holds its reads until the test lets them go, so a copy stays in flight while
 * the discard and a later whole-region write run (or wait for it, as they must); the request that
 * copies comes 0 to LAG_TURNS_MAX microtask turns after the discard, so it meets the discard before,
 * inside and after any such window.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CloneDevice } from '../runtime/clone/clone-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng } from '../runtime/prng.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';

const SECTOR_BYTES = 512;
const REGION_SECTORS = 8;
const REGION_BYTES = REGION_SECTORS * SECTOR_BYTES;
const REGION_COUNT = 4;
const SIZE_BYTES = REGION_COUNT * REGION_BYTES;
const REGION = 1;
/** No commits by the clock. */
const NEVER_MS = 3_600_000;

/** A device whose reads wait until release(): a clone's copy from it stays in flight meanwhile. */
class HeldReads extends PassThroughDevice {
  private released = false;
  private waiters: Array<() => void> = [];
  readsStarted = 0;

  override get name() { return `held(${this.inner.name})`; }

  override async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.readsStarted++;
    if (!this.released) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.inner.read(offsetBytes, target);
  }

  release(): void {
    this.released = true;
    for (const wake of this.waiters.splice(0)) wake();
  }

}

const test = suite('clone discard beside a copy of its region');

/** Microtask turns between the discard and the request that copies: the window lies among them. */
const LAG_TURNS_MAX = 12;

for (const copier of ['a partial write', 'cache()'] as const) {
  test(`discard and ${copier} to one unhydrated region at once: a whole-region write after the discard is not overwritten by the copy`, async () => {
    for (let lagTurns = 0; lagTurns <= LAG_TURNS_MAX; lagTurns++) {
      const image = new Prng(11 + lagTurns).fill(new Uint8Array(SIZE_BYTES));
      const source = new HeldReads(new MemoryDevice({ sizeBytes: SIZE_BYTES, readOnly: true, initial: image, name: 'source' }));
      const destination = new MemoryDevice({ sizeBytes: SIZE_BYTES, name: 'destination' });
      const clone = await CloneDevice.open({
        metadata: new MemoryDevice({ sizeBytes: 64 * 1024, name: 'metadata' }), destination, source,
        regionSectors: REGION_SECTORS, features: ['no_hydration', 'no_discard_passdown'], commitIntervalMs: NEVER_MS,
      });
      const regionStart = REGION * REGION_BYTES;
      // The discard covers the region whole; a few microtask turns later the partial write or
      // cache() may find the region unhydrated and idle, and copies it from the source first (the
      // copy then waits at the source). At 0 turns (the same turn) the old code lost the write.
      const discarding = clone.discard(regionStart, REGION_BYTES);
      for (let turn = 0; turn < lagTurns; turn++) await undefined; // one microtask turn each
      const partial = new Uint8Array(SECTOR_BYTES).fill(0x11);
      const copying = copier === 'cache()' ? clone.cache(regionStart + SECTOR_BYTES, SECTOR_BYTES) : clone.write(regionStart + SECTOR_BYTES, partial);
      // A write of the whole region once the discard is done: the region counts as hydrated then.
      const whole = new Uint8Array(REGION_BYTES).fill(0x22);
      const wholeWritten = discarding.then(() => clone.write(regionStart, whole));
      // Let go of the source once the whole write is done, or after a timer turn if it is waiting
      // (for the discard, which waits for the copy, which waits for the source).
      await Promise.race([wholeWritten, new Promise((resolve) => setTimeout(resolve, 0))]);
      const copied = source.readsStarted > 0;
      source.release();
      await Promise.all([discarding, copying, wholeWritten]);

      const back = new Uint8Array(REGION_BYTES);
      await clone.read(regionStart, back);
      await clone.close();
      for (let sector = 0; sector < REGION_SECTORS; sector++) {
        const bytes = back.subarray(sector * SECTOR_BYTES, (sector + 1) * SECTOR_BYTES);
        // The partial write and the whole one may overlap in time in sector 1: either may be last.
        const allowed = sector === 1 && copier === 'a partial write' ? [0x22, 0x11] : [0x22];
        const sourceBytes = image.subarray(regionStart + sector * SECTOR_BYTES, regionStart + (sector + 1) * SECTOR_BYTES);
        const what = bytes.every((byte, at) => byte === sourceBytes[at]) ? 'the source (the copy landed over the write)' : `bytes starting ${bytes[0]}`;
        assert.ok(allowed.some((fill) => bytes.every((byte) => byte === fill)), `${copier} ${lagTurns} turns after the discard (${copied ? 'a copy ran' : 'no copy'}): sector ${sector} of the region holds ${what}, not the write`);
      }
    }
  });
}

test.run();
