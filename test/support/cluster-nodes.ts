/**
 * Nodes of a clustered array in one process, over real leg files in a temp directory: what the
 * cluster tests share (creating legs, a node assembling or creating, legs compared byte for byte,
 * a device whose data reads wait at a gate, blkid's device finder, waiting for a node recovery).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as assert from 'uvu/assert';
import type { ArrayCreateSpec } from '../../runtime/cluster/array-format.ts';
import { ClusterArray, type ArrayEvent } from '../../runtime/cluster/array-device.ts';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import type { LockManager } from '../../runtime/locks/lock-manager.ts';
import { readMdSuperblock } from '../../runtime/cluster/leg-metadata.ts';
import { PassThroughDevice } from './pass-through-device.ts';

export const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-cluster-'));
export function removeTempDir(): void {
  fs.rmSync(tempDir, { recursive: true, force: true });
}
export const MIB = 1024 * 1024;
export const DATA_OFFSET_BYTES = MIB;
let fileCount = 0;

export function legFiles(count: number, dataBytes: number): string[] {
  fs.mkdirSync(tempDir, { recursive: true }); // again after another test file removed it
  return Array.from({ length: count }, () => {
    const file = path.join(tempDir, `leg-${++fileCount}.img`);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, DATA_OFFSET_BYTES + dataBytes);
    return file;
  });
}

export const openLegs = (files: string[], logicalBlockBytes = 512) => Promise.all(files.map((file) => FileDevice.open(file, { logicalBlockBytes })));
export const spec = (over: Partial<ArrayCreateSpec> = {}): ArrayCreateSpec => ({
  name: 'c1', level: 'raid1', raidDisks: 2, nodes: 3, clusterName: 'blockcore-test', bitmapChunkBytes: 64 * 1024,
  assumeClean: true, uuid: crypto.getRandomValues(new Uint8Array(16)), nowSeconds: 1764900000, ...over,
});

// ---- the device contract, single node ----

export interface Node {
  array: ClusterArray;
  legs: BlockDevice[];
  events: string[];
}

export async function node(
  manager: LockManager,
  files: string[],
  member: string,
  options: {
    create?: ArrayCreateSpec; wrap?: (legs: FileDevice[]) => BlockDevice[]; daemonSleepMs?: number; findDevice?: (uuid: Uint8Array) => Promise<BlockDevice | null>;
    resyncMaxBytesPerSecond?: number;
  } = {},
): Promise<Node> {
  const opened = await openLegs(files);
  const legs = options.wrap ? options.wrap(opened) : opened;
  const events: string[] = [];
  const assemble = {
    name: 'array:c1', legs, manager, memberName: member, daemonSleepMs: options.daemonSleepMs ?? 60_000, onEvent: (e: ArrayEvent) => events.push(e.message), ownsLegs: true,
    ...(options.findDevice ? { findDevice: options.findDevice } : {}),
    ...(options.resyncMaxBytesPerSecond ? { resyncMaxBytesPerSecond: options.resyncMaxBytesPerSecond } : {}),
  };
  const array = options.create ? await ClusterArray.create(assemble, options.create) : await ClusterArray.assemble(assemble);
  return { array, legs, events };
}

export function legData(file: string): Buffer {
  return fs.readFileSync(file).subarray(DATA_OFFSET_BYTES);
}

export function assertLegsEqual(files: string[], why: string): void {
  const first = legData(files[0]!);
  for (const file of files.slice(1)) assert.ok(first.equals(legData(file)), `${why}: legs differ`);
}

/** Reads of the data area wait at a gate (metadata reads pass): a resync held where a test wants it. */
export class GatedDevice extends PassThroughDevice {
  private allowance = 0;
  private opened = false;
  private waiters: (() => void)[] = [];
  allow(reads: number): void {
    this.allowance += reads;
    this.release();
  }
  openFully(): void {
    this.opened = true;
    this.release();
  }
  closeAgain(): void {
    this.opened = false;
    this.allowance = 0;
  }
  override async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    if (offsetBytes >= DATA_OFFSET_BYTES) {
      while (!this.opened && this.allowance <= 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
      if (!this.opened) this.allowance -= 1;
    }
    return super.read(offsetBytes, target);
  }
  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A node's device finder (blkid's job): opens the file among `files` whose superblock has that device uuid. */
export function findIn(files: string[]): (uuid: Uint8Array) => Promise<BlockDevice | null> {
  return async (uuid) => {
    for (const file of files) {
      const device = await FileDevice.open(file);
      const sb = await readMdSuperblock(device).catch(() => null);
      if (sb !== null && sb.deviceUuid.every((b, i) => b === uuid[i])) return device;
      await device.close();
    }
    return null;
  };
}

/** Waits until `survivor` has seen slot `deadSlot` leave and finished recovering it (and any resync). */
export async function recoveredFrom(survivor: ClusterArray, deadSlot: number): Promise<void> {
  for (let i = 0; i < 500 && survivor.status().nodesSeen.includes(deadSlot); i++) await sleep(2);
  assert.not.ok(survivor.status().nodesSeen.includes(deadSlot), `slot ${deadSlot} left`);
  await survivor.quiet();
}

export const pattern = (length: number, seed: number) => Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `lengthBytes` read from `array` at `offsetBytes`. */
export async function readBytes(array: ClusterArray, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(lengthBytes);
  await array.read(offsetBytes, bytes);
  return bytes;
}
