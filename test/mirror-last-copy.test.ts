/**
 * A spare still being copied (recovering) holds only the regions copied so far: it is no copy to
 * fall back on. Policy `replace`: leg b fails, spare c comes in and the resync copies a -> c;
 * then a's reads fail from region 3 on. a is the last copy of regions 3.. and must stay (dm-raid1
 * keeps a default mirror that fails while out of sync: "Reads may fail"): reads there fail with
 * EIO rather than return c's zeros, a write a refuses fails (EIO), failLeg(a) is refused, and
 * once a reads again the next resume copies the rest and c is in sync.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { WriteOptions } from '../runtime/devices/block-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { MirrorDevice } from '../runtime/mirror/mirror-device.ts';
import { expectCode } from './support/expect-code.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';

const test = suite('mirror: the last leg in sync while a spare is copied from it');
const REGION = 64 * 1024; // 128 sectors
const SIZE = 1024 * 1024; // 16 regions

/** Reads at or past `failReadsFrom` fail (EIO), and every write while `failWrites`. */
class FaultyLeg extends PassThroughDevice {
  failReadsFrom: number | null = null;
  failWrites = false;

  override async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    if (this.failReadsFrom !== null && offsetBytes + target.length > this.failReadsFrom) throw new BlockError('EIO', 'scripted read failure', { device: this.name, offsetBytes });
    return super.read(offsetBytes, target);
  }

  override async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    if (this.failWrites) throw new BlockError('EIO', 'scripted write failure', { device: this.name, offsetBytes });
    return super.write(offsetBytes, data, options);
  }
}

test('the copy source fails its reads while the spare is copied: it stays, reads there fail (EIO), never zeros from the spare', async () => {
  const backing = new Map(['a', 'b', 'c'].map((name) => [name, new MemoryDevice({ sizeBytes: SIZE, name })]));
  const legs = new Map<string, FaultyLeg>();
  const spares = ['c'];
  const mirror = await MirrorDevice.open({
    name: 'last-copy', table: 'mirror core 2 128 nosync 2 a 0 b 0 1 handle_errors', legFaultPolicy: 'replace', spare: () => spares.shift() ?? null, clearDelayMs: 60_000,
    openLeg: async (name) => {
      const leg = new FaultyLeg(backing.get(name)!);
      legs.set(name, leg);
      return leg;
    },
  });
  const read = async (region: number) => {
    const out = new Uint8Array(REGION);
    await mirror.read(region * REGION, out);
    return out;
  };
  const filled = (out: Uint8Array, byte: number) => out.every((value) => value === byte);
  try {
    for (let region = 0; region < SIZE / REGION; region++) await mirror.write(region * REGION, new Uint8Array(REGION).fill(region + 1));
    await mirror.flush(); // every region acknowledged and durable on a and b
    const a = legs.get('a')!;
    a.failReadsFrom = 3 * REGION;
    assert.ok(await mirror.failLeg('b')); // b out, spare c in: every region to copy a -> c
    assert.is(await mirror.statusTable(), 'core 2 128 sync 2 a 0 c 0 1 handle_errors');
    await mirror.quiet(); // regions 0-2 copied; 3.. fail on a's reads and stay out of sync

    // Region 5 is on a alone: its read fails rather than return c's zeros.
    await expectCode(read(5), 'EIO');
    assert.is(await mirror.statusTable(), 'core 2 128 sync 2 a 0 c 0 1 handle_errors', 'a stays in the table');
    assert.match(await mirror.statusInfo(), /^2 a c 3\/16 1 RA 1 core$/);
    const status = mirror.status().legs;
    assert.equal(status.map((leg) => [leg.device, leg.state, leg.isDefault]), [['a', 'in-sync', true], ['c', 'recovering', false]]);
    assert.ok(filled(await read(1), 2), 'region 1, copied, reads');
    await expectCode(mirror.failLeg('a'), 'EBUSY', /only leg in sync/);

    // A region in sync while a's reads fail: EIO (c, recovering, is not read), and no retry loop.
    a.failReadsFrom = 0;
    await expectCode(read(1), 'EIO', /only leg in sync/);
    a.failReadsFrom = 3 * REGION;

    // A write a refuses and c takes: not acknowledged (c would be copied over from a).
    a.failWrites = true;
    await expectCode(mirror.write(REGION, new Uint8Array(4096).fill(0x77)), 'EIO', /the write failed on a leg/);
    a.failWrites = false;
    assert.is(await mirror.statusTable(), 'core 2 128 sync 2 a 0 c 0 1 handle_errors', 'a stays in the table');

    // a reads again: the next resume copies what is left, and c is a copy.
    a.failReadsFrom = null;
    await mirror.suspend();
    await mirror.resume();
    await mirror.quiet();
    assert.match(await mirror.statusInfo(), /^2 a c 16\/16 /);
    assert.equal(mirror.status().legs.map((leg) => leg.state), ['in-sync', 'in-sync']);
    for (let region = 0; region < SIZE / REGION; region++) assert.ok(filled(await read(region), region + 1), `region ${region} holds its data`);
    const [onA, onC] = [new Uint8Array(SIZE), new Uint8Array(SIZE)];
    await backing.get('a')!.read(0, onA);
    await backing.get('c')!.read(0, onC);
    assert.ok(onA.every((byte, i) => byte === onC[i]), 'c holds what a holds');
  } finally {
    await mirror.close();
  }
});

// The table recorded once the spare came in names it with `sync`: opened again (a restart while
// c was being copied), c is no copy either until that resync is done.
test('reopened from the table recorded with the spare (sync): the spare is recovering, the copy source stays when its reads fail', async () => {
  const backing = new Map(['a', 'c'].map((name) => [name, new MemoryDevice({ sizeBytes: SIZE, name })]));
  await backing.get('a')!.write(0, new Uint8Array(SIZE).fill(0x5a));
  const a = new FaultyLeg(backing.get('a')!);
  a.failReadsFrom = 3 * REGION;
  const mirror = await MirrorDevice.open({
    name: 'last-copy-reopened', table: 'mirror core 2 128 sync 2 a 0 c 0 1 handle_errors', legFaultPolicy: 'replace', spare: () => null, clearDelayMs: 60_000,
    openLeg: async (name) => (name === 'a' ? a : new FaultyLeg(backing.get(name)!)),
  });
  try {
    await mirror.quiet();
    await expectCode(mirror.read(5 * REGION, new Uint8Array(4096)), 'EIO'); // not c's zeros
    assert.is(await mirror.statusTable(), 'core 2 128 sync 2 a 0 c 0 1 handle_errors', 'a stays in the table');
    assert.equal(mirror.status().legs.map((leg) => leg.state), ['in-sync', 'recovering']);
  } finally {
    await mirror.close();
  }
});

test.run();
