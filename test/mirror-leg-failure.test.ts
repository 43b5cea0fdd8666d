/**
 * A mirror leg that fails (handle_errors) while writes are in flight, scripted step by step: no
 * write or flush may be acknowledged unless a leg the recorded table still names holds it.
 * - The table without the failed leg could not be saved (`tableChanged` rejects): after a crash
 *   the saved table names the leg as a copy (maybe the default, the one the resync copies from),
 *   so a write that skipped it would be lost; from then on nothing is acknowledged (EIO).
 * - A leg failed by another path (failLeg, a flush) while a write or flush was in flight on it:
 *   its copy is out of the table, and the leg kept as the last one may be one that missed it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice, WriteOptions } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { MirrorDevice, type MirrorOptions } from '../runtime/mirror/mirror-device.ts';
import { expectCode } from './support/expect-code.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';

const test = suite('mirror: a leg failing while writes are in flight');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-mirror-leg-'));
const MIB = 1024 * 1024;
let serial = 0;

/**
 * 'pass'; 'fail' (refused, nothing written); 'hold' (written, the reply held until release()).
 * One step per write (or flush), 'pass' once the script runs out.
 */
type Step = 'pass' | 'fail' | 'hold';

class ScriptedLeg extends PassThroughDevice {
  writeSteps: Step[] = [];
  flushSteps: Step[] = [];
  private held: (() => void) | null = null;

  get holding(): boolean {
    return this.held !== null;
  }

  release(): void {
    const held = this.held;
    assert.ok(held !== null, 'a reply is held');
    this.held = null;
    held();
  }

  override async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    await this.step(this.writeSteps.shift() ?? 'pass', () => super.write(offsetBytes, data, options), offsetBytes);
  }

  override async flush(): Promise<void> {
    await this.step(this.flushSteps.shift() ?? 'pass', () => super.flush());
  }

  private async step(step: Step, run: () => Promise<void>, offsetBytes?: number): Promise<void> {
    if (step === 'fail') throw new BlockError('EIO', 'scripted failure', { device: this.name, ...(offsetBytes !== undefined ? { offsetBytes } : {}) });
    await run();
    if (step === 'hold') await new Promise<void>((resolve) => (this.held = resolve));
  }
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.ok(check(), `waited for ${what}`);
}

/** Leg files a and b (and a disk log's file) in a fresh folder; legs a and b scripted. */
async function scriptedMirror(table: string, over: Partial<MirrorOptions> = {}) {
  const folder = path.join(dir, `m${++serial}`);
  fs.mkdirSync(folder);
  for (const name of ['a', 'b', 'log']) {
    fs.writeFileSync(path.join(folder, name), '');
    fs.truncateSync(path.join(folder, name), name === 'log' ? 64 * 1024 : 2 * MIB);
  }
  const legs = new Map<string, ScriptedLeg>();
  const openDevice = async (name: string): Promise<BlockDevice> => FileDevice.open(path.join(folder, name));
  const openLeg = async (name: string): Promise<BlockDevice> => {
    const leg = new ScriptedLeg(await openDevice(name));
    legs.set(name, leg);
    return leg;
  };
  // clearDelayMs long: no clear's leg flush runs into the script.
  const mirror = await MirrorDevice.open({ name: `leg-failure-${serial}`, table, openLeg, openDevice, clearDelayMs: 60_000, ...over });
  const fileByte = (name: string, offsetBytes: number) => fs.readFileSync(path.join(folder, name))[offsetBytes];
  return { mirror, a: legs.get('a')!, b: legs.get('b')!, fileByte };
}

test('the table without the failed leg could not be saved: no later write or flush is acknowledged', async () => {
  const { mirror, a } = await scriptedMirror('mirror disk 3 log 128 nosync 2 a 0 b 0 1 handle_errors', {
    tableChanged: () => Promise.reject(new Error('the state file could not be saved')),
  });
  try {
    a.writeSteps = ['fail'];
    await expectCode(mirror.write(0, new Uint8Array(4096).fill(1)), 'EIO', /could not be recorded/);
    // The saved table still names a (the resync source after a crash): a write on b alone would be
    // erased by that resync, so it is refused, FUA or not, and so is a flush.
    await expectCode(mirror.write(MIB, new Uint8Array(4096).fill(2), { fua: true }), 'EIO', /could not be recorded/);
    await expectCode(mirror.write(8192, new Uint8Array(4096).fill(3)), 'EIO', /could not be recorded/);
    await expectCode(mirror.flush(), 'EIO', /could not be recorded/);
  } finally {
    await mirror.close();
  }
});

// The data landed on a, but a left the mirror (its removal recorded) before the write was
// acknowledged: the table names b alone, and b refused the write. Reads come from b and see the
// old bytes, and a resync would copy b over anything later added, so the write is not in the
// mirror: EIO is the only true answer (handle_errors keeps b as the last leg, it does not make b
// hold the write).
test('a leg failed by request while it holds a write the other leg refused: the write fails (EIO), the old bytes stay', async () => {
  const { mirror, a, b, fileByte } = await scriptedMirror('mirror core 2 128 nosync 2 a 0 b 0 1 handle_errors');
  try {
    a.writeSteps = ['hold'];
    b.writeSteps = ['fail'];
    const write = mirror.write(0, new Uint8Array(4096).fill(7), { fua: true });
    await until(() => a.holding, 'the copy on a');
    assert.ok(await mirror.failLeg('a'));
    assert.is(await mirror.statusTable(), 'core 2 128 nosync 1 b 0 1 handle_errors', 'a is out, recorded');
    a.release();
    await expectCode(write, 'EIO', /no leg still in the mirror took the write/);
    assert.is(fileByte('a', 0), 7, 'the copy landed on a, which the table no longer names');
    const back = new Uint8Array(4096);
    await mirror.read(0, back);
    assert.is(back[0], 0, 'the mirror (leg b) holds the old bytes');
    assert.is(await mirror.statusTable(), 'core 2 128 nosync 1 b 0 1 handle_errors', 'b stays, the last leg');
  } finally {
    await mirror.close();
  }
});

test('a leg failed by request while its flush is in flight and the other leg\'s flush fails: the flush fails (EIO)', async () => {
  const { mirror, a, b } = await scriptedMirror('mirror core 2 128 nosync 2 a 0 b 0 1 handle_errors');
  try {
    await mirror.write(0, new Uint8Array(4096).fill(9));
    a.flushSteps = ['hold'];
    b.flushSteps = ['fail'];
    const flush = mirror.flush();
    await until(() => a.holding, 'the flush of a');
    assert.ok(await mirror.failLeg('a'));
    a.release();
    await expectCode(flush, 'EIO', /no leg still in the mirror was flushed/);
  } finally {
    await mirror.close();
  }
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
