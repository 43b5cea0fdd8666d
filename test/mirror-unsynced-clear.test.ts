/**
 * A region out of sync must stay dirty in a disk log until the resync has copied it: only the
 * resync sets it in sync, and only a region in sync may be cleared (dm-region-hash keeps NOSYNC
 * regions off its clean list). Scripted: crash 1 leaves region R dirty with legs that differ
 * there; after the reopen, before the resync reaches R, a small write lands in R on both legs and
 * R goes idle; its clear must not reach the disk log, or after crash 2 the log says R in sync,
 * nothing resyncs it and reads alternate between legs that differ.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice, DiscardOutcome, WriteOptions } from '../runtime/devices/block-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { DISK_LOG_BITS_OFFSET } from '../runtime/dirty-log/disk-log-format.ts';
import { BlockError } from '../runtime/errors.ts';
import { MirrorDevice } from '../runtime/mirror/mirror-device.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';

const test = suite('mirror: a region out of sync is not cleared in the disk log');
const REGION = 64 * 1024; // 128 sectors
const SIZE = 1024 * 1024; // 16 regions
const R = 5;

/**
 * A device of one boot: `down` after its crash (every call EIO, nothing reaches the backing);
 * a read matching `holdRead` (once) waits for release(). close() leaves the backing alone: it
 * outlives every boot (a MemoryDevice drops its pages at close).
 */
class BootDevice extends PassThroughDevice {
  down = false;
  holdRead: ((offsetBytes: number) => boolean) | null = null;
  private held: (() => void) | null = null;

  get holding(): boolean {
    return this.held !== null;
  }

  release(): void {
    const held = this.held;
    this.held = null;
    held?.();
  }

  override async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    if (this.holdRead?.(offsetBytes)) {
      this.holdRead = null;
      await new Promise<void>((resolve) => (this.held = resolve));
    }
    this.check(offsetBytes);
    return super.read(offsetBytes, target);
  }

  override async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.check(offsetBytes);
    return super.write(offsetBytes, data, options);
  }

  override async flush(): Promise<void> {
    this.check();
    return super.flush();
  }

  override async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    this.check(offsetBytes);
    return super.discard(offsetBytes, lengthBytes);
  }

  override async close(): Promise<void> {}

  private check(offsetBytes?: number): void {
    if (this.down) throw new BlockError('EIO', 'crashed', { device: this.name, ...(offsetBytes !== undefined ? { offsetBytes } : {}) });
  }
}

function machine() {
  const backing = new Map<string, MemoryDevice>([
    ['a', new MemoryDevice({ sizeBytes: SIZE, name: 'a' })],
    ['b', new MemoryDevice({ sizeBytes: SIZE, name: 'b' })],
    ['log', new MemoryDevice({ sizeBytes: 64 * 1024, name: 'log' })],
  ]);
  const bytes = async (name: string, offsetBytes: number, lengthBytes: number) => {
    const out = new Uint8Array(lengthBytes);
    await backing.get(name)!.read(offsetBytes, out);
    return out;
  };
  /** Regions whose clean bit on the log device is 0 (what the next boot resyncs). */
  const dirtyOnDisk = async () => {
    const log = await bytes('log', 0, 4096);
    const dirty: number[] = [];
    for (let region = 0; region < SIZE / REGION; region++) if (!(log[DISK_LOG_BITS_OFFSET + (region >> 3)]! & (1 << (region & 7)))) dirty.push(region);
    return dirty;
  };
  const boot = async (table: string, holdRead: Partial<Record<string, (offsetBytes: number) => boolean>> = {}) => {
    const devices = new Map<string, BootDevice>();
    const open = async (name: string): Promise<BlockDevice> => {
      const device = new BootDevice(backing.get(name)!);
      device.holdRead = holdRead[name] ?? null;
      devices.set(name, device);
      return device;
    };
    // clearDelayMs long: the test clears idle regions itself (clearIdle), at the step it chooses.
    const mirror = await MirrorDevice.open({ name: 'unsynced', table, openLeg: open, openDevice: open, clearDelayMs: 60_000 });
    /** The power goes: nothing of this boot reaches the backings any more. */
    const crash = async () => {
      for (const device of devices.values()) {
        device.down = true;
        device.release();
      }
      await mirror.close().catch(() => {});
    };
    return { mirror, devices, crash };
  };
  return { backing, bytes, dirtyOnDisk, boot };
}

test('a write into a region still out of sync, then its idle clear: the disk log keeps it dirty; after a crash it resyncs and the legs agree', async () => {
  const m = machine();
  // Boot 1: regions 0 and R written, marked dirty on disk; the crash comes before their clear.
  let boot = await m.boot('mirror disk 3 log 128 nosync 2 a 0 b 0');
  await boot.mirror.write(0, new Uint8Array(4096).fill(1));
  await boot.mirror.write(R * REGION, new Uint8Array(4096).fill(1));
  await boot.crash();
  assert.equal(await m.dirtyOnDisk(), [0, R], 'crash 1: regions 0 and R dirty');
  // A write in flight at the crash reached b only (never acknowledged): the legs differ in R.
  await m.backing.get('b')!.write(R * REGION + 8192, new Uint8Array(4096).fill(0xee));

  // Boot 2: the log's own bits, so 0 and R are out of sync; the resync takes region 0 first and
  // its read of a is held there, so it does not reach R.
  boot = await m.boot('mirror disk 2 log 128 2 a 0 b 0', { a: (offsetBytes) => offsetBytes < REGION });
  for (let i = 0; i < 2000 && !boot.devices.get('a')!.holding; i++) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.ok(boot.devices.get('a')!.holding, 'the resync is held at region 0');
  assert.match(await boot.mirror.statusInfo(), / 14\/16 /, 'regions 0 and R out of sync');
  await boot.mirror.write(R * REGION, new Uint8Array(4096).fill(2)); // on both legs, acknowledged
  // R idle: what the clear timer does (legs flushed, R's clear sent, the log flushed).
  await boot.mirror.marks.clearIdle();
  assert.match(await boot.mirror.statusInfo(), / 14\/16 /, 'R still out of sync');
  assert.equal(await m.dirtyOnDisk(), [0, R], 'R, out of sync, stays dirty on disk');
  await boot.crash();

  // Boot 3: R resyncs (from a); the legs agree and hold the acknowledged write.
  boot = await m.boot('mirror disk 2 log 128 2 a 0 b 0');
  try {
    await boot.mirror.quiet();
    assert.match(await boot.mirror.statusInfo(), / 16\/16 /);
    assert.equal(await m.bytes('b', R * REGION, REGION), await m.bytes('a', R * REGION, REGION), 'legs a and b agree in R');
    const back = new Uint8Array(4096);
    await boot.mirror.read(R * REGION, back);
    assert.ok(back.every((byte) => byte === 2), 'the acknowledged write is there');
    assert.equal(await m.dirtyOnDisk(), [], 'resynced, then cleared');
  } finally {
    await boot.mirror.close();
  }
});

test.run();
