/**
 * The mirror engine (runtime/mirror/): the device conformance suite over file legs with a core
 * and a disk log; then LVM's mirror scenarios (test/shell/lvconvert-mirror*, mirror-*-fault
 * style): nosync is in sync at once, a new mirror resyncs from its first leg, a leg fails with
 * policy remove (linear) or replace (the spare resynced), the log fails (core log), a leg or the
 * log fails while less than half synced with writes and flushes running, resync of an active
 * mirror, a leg added while another syncs. Afterwards every leg holds the same bytes; the status
 * lines are dm's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MirrorDevice, type MirrorOptions } from '../runtime/mirror/mirror-device.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { deviceConformance } from './conformance/device-suite.ts';
import { expectCode } from './support/expect-code.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-mirror-'));
const MIB = 1024 * 1024;
let serial = 0;

/** Files for legs (and a log) in a fresh folder; returns the folder. */
function files(sizes: Record<string, number>, fill: Record<string, number> = {}): string {
  const folder = path.join(dir, `m${++serial}`);
  fs.mkdirSync(folder);
  for (const [name, bytes] of Object.entries(sizes)) {
    fs.writeFileSync(path.join(folder, name), '');
    fs.truncateSync(path.join(folder, name), bytes);
    if (fill[name] !== undefined) fs.writeFileSync(path.join(folder, name), Buffer.alloc(bytes, fill[name]), { flag: 'r+' });
  }
  return folder;
}

/** Opens devices of `folder` by name; `faults` wraps the named ones in FaultDevices the test can crash. */
function opener(folder: string, faults: Map<string, FaultDevice> = new Map(), wrap: string[] = []) {
  return async (name: string): Promise<BlockDevice> => {
    const device = await FileDevice.open(path.join(folder, name));
    if (!wrap.includes(name)) return device;
    const fault = new FaultDevice(device, { seed: 1 });
    faults.set(name, fault);
    return fault;
  };
}

function mirrorOptions(folder: string, table: string, over: Partial<MirrorOptions> = {}, faults?: Map<string, FaultDevice>, wrap?: string[]): MirrorOptions {
  const open = opener(folder, faults, wrap);
  return { name: `m${serial}`, table, openLeg: open, openDevice: open, clearDelayMs: 20, ...over };
}

function legBytes(folder: string, name: string, sizeBytes: number, offsetBytes = 0): Buffer {
  return fs.readFileSync(path.join(folder, name)).subarray(offsetBytes, offsetBytes + sizeBytes);
}

function assertLegsEqual(folder: string, names: string[], sizeBytes: number, why: string): void {
  const first = legBytes(folder, names[0]!, sizeBytes);
  for (const name of names.slice(1)) {
    const other = legBytes(folder, name, sizeBytes);
    if (!first.equals(other)) assert.unreachable(`${why}: legs ${names[0]} and ${name} differ first at byte ${first.findIndex((byte, i) => byte !== other[i])}`);
  }
}

deviceConformance('mirror, core log nosync (2 file legs)', async ({ sizeBytes, logicalBlockBytes, initial }) => {
  const folder = files({ a: sizeBytes, b: sizeBytes });
  const open = async (name: string) => FileDevice.open(path.join(folder, name), { logicalBlockBytes });
  const mirror = await MirrorDevice.open({ name: 'conf', table: 'mirror core 2 8 nosync 2 a 0 b 0', openLeg: open, clearDelayMs: 5 });
  if (initial) await mirror.write(0, initial);
  return mirror;
}, { readOnly: false });

deviceConformance('mirror, disk log, resyncing while tested (2 file legs at offsets)', async ({ sizeBytes, logicalBlockBytes, initial }) => {
  const folder = files({ a: sizeBytes + 8192, b: sizeBytes + 4096, log: 64 * 1024 });
  const open = async (name: string) => FileDevice.open(path.join(folder, name), { logicalBlockBytes });
  const mirror = await MirrorDevice.open({ name: 'conf-disk', table: 'mirror disk 2 log 16 2 a 16 b 8 1 handle_errors', openLeg: open, openDevice: open, sizeBytes, clearDelayMs: 5 });
  if (initial) await mirror.write(0, initial);
  return mirror;
}, { readOnly: false });

const test = suite('mirror: LVM scenarios');

test('nosync: every region in sync at once, nothing copied; the status lines are dm\'s', async () => {
  const folder = files({ a: 4 * MIB, b: 4 * MIB });
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror core 2 1024 nosync 2 a 0 b 0'));
  try {
    assert.is(await mirror.statusInfo(), '2 a b 8/8 1 AA 1 core');
    assert.is(await mirror.statusTable(), 'core 2 1024 nosync 2 a 0 b 0');
    await mirror.quiet();
    assert.is(mirror.status().bytesResynced, 0);
  } finally {
    await mirror.close();
  }
});

test('a new mirror resyncs from its first leg while it is written; afterwards the legs agree and every write is there', async () => {
  const folder = files({ a: 4 * MIB, b: 4 * MIB, log: 64 * 1024 }, { a: 0x5a, b: 0x11 });
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror disk 2 log 64 2 a 0 b 0'));
  const prng = new Prng(seedFromEnv());
  const written = new Map<number, number>();
  try {
    assert.match(await mirror.statusInfo(), /^2 a b \d+\/128 1 AA 3 disk log A$/);
    for (let i = 0; i < 60; i++) {
      const block = prng.below(4 * MIB / 4096);
      const value = 1 + prng.below(250);
      await mirror.write(block * 4096, new Uint8Array(4096).fill(value));
      written.set(block, value);
      if (i % 16 === 0) await mirror.flush();
    }
    await mirror.quiet();
    assert.is(await mirror.statusInfo(), '2 a b 128/128 1 AA 3 disk log A');
    assertLegsEqual(folder, ['a', 'b'], 4 * MIB, 'after the resync');
    const a = legBytes(folder, 'a', 4 * MIB);
    for (const [block, value] of written) assert.is(a[block * 4096], value, `block ${block}`);
    assert.is(a[4 * MIB - 1], written.get(4 * MIB / 4096 - 1) ?? 0x5a, 'the first leg\'s bytes where nothing was written');
  } finally {
    await mirror.close();
  }
});

test('a leg fails, policy remove: the mirror drops it and goes on as one leg (linear)', async () => {
  const folder = files({ a: 2 * MIB, b: 2 * MIB });
  const faults = new Map<string, FaultDevice>();
  const events: string[] = [];
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror core 2 256 nosync 2 a 0 b 0 1 handle_errors', { onEvent: (e) => events.push(e.message) }, faults, ['b']));
  try {
    faults.get('b')!.crash();
    await mirror.write(0, new Uint8Array(8192).fill(3));
    assert.is(await mirror.statusTable(), 'core 2 256 nosync 1 a 0 1 handle_errors');
    assert.match(await mirror.statusInfo(), /^1 a 16\/16 1 A 1 core$/);
    assert.match(events.join('\n'), /leg b failed \(D\)[\s\S]*one leg left: linear/);
    await mirror.write(MIB, new Uint8Array(4096).fill(4));
    await mirror.flush();
    const back = new Uint8Array(4096);
    await mirror.read(MIB, back);
    assert.is(back[0], 4);
  } finally {
    await mirror.close();
  }
});

test('a leg fails, policy replace: a spare takes its place and is resynced whole', async () => {
  const folder = files({ a: 2 * MIB, b: 2 * MIB, spare: 2 * MIB, log: 64 * 1024 });
  const faults = new Map<string, FaultDevice>();
  const spares = ['spare'];
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror disk 3 log 128 nosync 2 a 0 b 0 1 handle_errors', { legFaultPolicy: 'replace', spare: () => spares.shift() ?? null }, faults, ['a']));
  try {
    await mirror.write(0, new Uint8Array(64 * 1024).fill(8));
    faults.get('a')!.crash();
    await mirror.write(MIB, new Uint8Array(64 * 1024).fill(9)); // fails on a: a out, the spare in
    await mirror.quiet();
    assert.is(await mirror.statusTable(), 'disk 3 log 128 sync 2 b 0 spare 0 1 handle_errors');
    assert.is(await mirror.statusInfo(), '2 b spare 32/32 1 AA 3 disk log A');
    assertLegsEqual(folder, ['b', 'spare'], 2 * MIB, 'the spare after its resync');
    assert.is(legBytes(folder, 'spare', 2 * MIB)[MIB], 9);
    assert.is(legBytes(folder, 'spare', 2 * MIB)[0], 8);
  } finally {
    await mirror.close();
  }
});

test('the log fails: the mirror goes on with a core log, the waiting writes marked there', async () => {
  const folder = files({ a: 2 * MIB, b: 2 * MIB, log: 64 * 1024 });
  const faults = new Map<string, FaultDevice>();
  const events: string[] = [];
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror disk 3 log 128 nosync 2 a 0 b 0 1 handle_errors', { onEvent: (e) => events.push(e.message) }, faults, ['log']));
  try {
    await mirror.write(0, new Uint8Array(4096).fill(1));
    faults.get('log')!.crash();
    await mirror.write(MIB, new Uint8Array(4096).fill(2)); // a new region: its mark needs the log
    assert.match(events.join('\n'), /the disk log failed: .*going on with a core log/);
    assert.is(await mirror.statusTable(), 'core 1 128 2 a 0 b 0 1 handle_errors');
    await mirror.quiet();
    assertLegsEqual(folder, ['a', 'b'], 2 * MIB, 'after the switch');
    assert.is(legBytes(folder, 'b', 2 * MIB)[MIB], 2);
  } finally {
    await mirror.close();
  }
});

for (const what of ['a leg', 'the log'] as const) {
  test(`${what} fails while less than half synced, with writes and flushes running: afterwards the legs agree and every acknowledged write is there`, async () => {
    const folder = files({ a: 8 * MIB, b: 8 * MIB, c: 8 * MIB, log: 64 * 1024 }, { a: 0x21 });
    const faults = new Map<string, FaultDevice>();
    const wrap = what === 'a leg' ? ['c'] : ['log'];
    const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror disk 2 log 32 3 a 0 b 0 c 0 1 handle_errors', {}, faults, wrap));
    const prng = new Prng(seedFromEnv() ^ (what === 'a leg' ? 1 : 2));
    const written = new Map<number, number>();
    try {
      const workload = (async () => {
        for (let i = 0; i < 120; i++) {
          const block = prng.below(8 * MIB / 4096);
          const value = 1 + prng.below(250);
          await mirror.write(block * 4096, new Uint8Array(4096).fill(value));
          written.set(block, value);
          if (i % 10 === 0) await mirror.flush();
          if (i === 20) faults.get(wrap[0]!)!.crash(); // early: well under half synced
        }
      })();
      await workload;
      await mirror.quiet();
      const legs = what === 'a leg' ? ['a', 'b'] : ['a', 'b', 'c'];
      assertLegsEqual(folder, legs, 8 * MIB, `after ${what} failed`);
      const b = legBytes(folder, 'b', 8 * MIB);
      for (const [block, value] of written) assert.is(b[block * 4096], value, `block ${block}`);
      assert.match(await mirror.statusInfo(), new RegExp(` ${mirror.regionCount}\/${mirror.regionCount} 1 `));
    } finally {
      await mirror.close();
    }
  });
}

test('a leg added while the mirror resyncs: the new leg is copied whole, the writes meanwhile on every leg', async () => {
  const folder = files({ a: 4 * MIB, b: 4 * MIB, c: 4 * MIB }, { a: 0x44 });
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror core 1 16 2 a 0 b 0'));
  try {
    await mirror.write(3 * MIB, new Uint8Array(4096).fill(7));
    await mirror.addLeg('c');
    await mirror.write(MIB, new Uint8Array(4096).fill(6));
    await mirror.quiet();
    assert.is(await mirror.statusInfo(), `3 a b c 512/512 1 AAA 1 core`);
    assert.is(await mirror.statusTable(), 'core 2 16 sync 3 a 0 b 0 c 0');
    assertLegsEqual(folder, ['a', 'b', 'c'], 4 * MIB, 'after the add');
    const c = legBytes(folder, 'c', 4 * MIB);
    assert.equal([c[0], c[MIB], c[3 * MIB]], [0x44, 6, 7]);
  } finally {
    await mirror.close();
  }
});

test('without handle_errors a failing leg only counts errors (D): the write that missed it fails (EIO) and its region resyncs', async () => {
  const folder = files({ a: 2 * MIB, b: 2 * MIB });
  const faults = new Map<string, FaultDevice>();
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror core 2 128 nosync 2 a 0 b 0', {}, faults, ['b']));
  try {
    faults.get('b')!.addRule({ op: 'write', action: 'fail', nth: 1 });
    await expectCode(mirror.write(0, new Uint8Array(4096).fill(5)), 'EIO');
    await mirror.write(8192, new Uint8Array(4096).fill(6)); // the leg takes writes again
    assert.match(await mirror.statusInfo(), /^2 a b \d+\/32 1 AD 1 core$/);
    await mirror.quiet(); // the region written while b failed is resynced from a
    assertLegsEqual(folder, ['a', 'b'], 2 * MIB, 'after the resync of the failed region');
  } finally {
    await mirror.close();
  }
});

test('writes overlapping one another while their regions resync: afterwards the legs agree and hold the last write', async () => {
  const folder = files({ a: 2 * MIB, b: 2 * MIB }, { a: 0x10 });
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror core 1 16 2 a 0 b 0'));
  const prng = new Prng(seedFromEnv() ^ 0x77);
  try {
    for (let round = 0; round < 20; round++) {
      const base = prng.below(2 * MIB / 8192 - 2) * 8192;
      await Promise.all(Array.from({ length: 4 }, (_, i) => mirror.write(base + (i % 2) * 4096, new Uint8Array(8192).fill(20 + round * 4 + i))));
    }
    await mirror.quiet();
    assertLegsEqual(folder, ['a', 'b'], 2 * MIB, 'after overlapping writes during the resync');
  } finally {
    await mirror.close();
  }
});

test('the last leg is never failed away: by request EBUSY; by an error it stays in the table', async () => {
  const folder = files({ a: 2 * MIB, b: 2 * MIB });
  const faults = new Map<string, FaultDevice>();
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror core 2 128 nosync 2 a 0 b 0 1 handle_errors', {}, faults, ['a', 'b']));
  try {
    assert.ok(await mirror.failLeg('b'));
    await expectCode(mirror.failLeg('a'), 'EBUSY');
    faults.get('a')!.crash();
    await expectCode(mirror.write(0, new Uint8Array(4096)), 'EIO');
    assert.is(await mirror.statusTable(), 'core 2 128 nosync 1 a 0 1 handle_errors');
  } finally {
    await mirror.close();
  }
});

test('a region whose copy keeps failing is left out of sync, and the resync ends (no spin); the leg shows S', async () => {
  const folder = files({ a: MIB, b: MIB });
  const faults = new Map<string, FaultDevice>();
  const mirror = await MirrorDevice.open(mirrorOptions(folder, 'mirror core 1 64 2 a 0 b 0', {}, faults, ['b']));
  faults.get('b')!.addRule({ op: 'write', action: 'fail', probability: 1 });
  try {
    await mirror.quiet(); // every copy to b fails: each region once, then the resync is done
    assert.match(await mirror.statusInfo(), /^2 a b 0\/32 1 AS 1 core$/);
  } finally {
    await mirror.close();
  }
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
