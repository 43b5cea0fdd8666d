/**
 * A clone whose state-file record says "suspended" is reopened and then suspended; when that
 * suspend fails (here: the destination's flush fails, so the commit it needs cannot be made), the
 * entry fails and the clone it opened must be closed, not leaked behind it with its files and
 * commit timer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { openCloneEntry } from '../server/clone/entry.ts';
import { EventHub } from '../server/event-hub.ts';
import { writeImage } from './support/blockcore-server.ts';
import { FileStore } from '../runtime/devices/file-store.ts';

test('a restored clone whose suspend fails is closed, not leaked', async () => {
  const root = mkdtempSync(join(tmpdir(), 'blockcore-entry-'));
  try {
    writeImage(root, 'src.img', 1 << 20);
    for (const [name, size] of [['dst.img', 1 << 20], ['meta', 64 * 1024]] as const) await (await FileDevice.open(join(root, name), { create: { sizeBytes: size } })).close();
    const layers: BlockDevice[] = [];
    const layer = (role: string, device: BlockDevice): BlockDevice => {
      // Every flush of the destination fails: the suspend's commit (hydration ran since the open) cannot be made.
      const wrapped = role === 'destination dev' ? new FaultDevice(device, { seed: 1, rules: [{ op: 'flush', probability: 1, action: 'fail' }] }) : device;
      layers.push(wrapped);
      return wrapped;
    };
    const lines: string[] = [];
    const context = { dataDir: root, store: new FileStore(root), events: new EventHub(), log: (line: string) => lines.push(line), holds: () => [], saveApplied: async () => {}, saveOrUndo: async () => {} };
    const record = { name: 'c1', table: 'clone meta dst.img src.img 8', suspended: true };
    let failure: unknown = null;
    await openCloneEntry(context, record, false, layer).catch((error) => (failure = error));
    assert.ok(failure, 'the suspend failed');
    assert.is(layers.length, 3);
    for (const device of layers) {
      const closed = await device.read(0, new Uint8Array(512)).then(() => null, (error) => error);
      assert.ok(closed instanceof BlockError && closed.code === 'EBADF', `${device.name} was closed`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test.run();
