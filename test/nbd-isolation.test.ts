/**
 * One connection is the fault domain: a device that breaks its contract (test/support/
 * broken-device.ts), or a bug of ours it provokes, ends that one connection at worst, never the
 * process. For each breakage, a victim connection drives the broken export while a bystander
 * reads a good export; afterwards the process has seen no uncaught exception and no unhandled
 * rejection, the bystander still reads the right bytes, and a new connection works. A device error
 * the server can still answer (a rejection with an unprintable value) is answered (EIO) and the
 * victim's connection goes on; one it cannot (garbage from blockStatus, a span whose release
 * throws) closes the victim's connection with an 'internal error' event.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';
import { NBD_CMD_BLOCK_STATUS, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_EIO } from '../server/nbd/constants.ts';
import { BREAKAGES, BrokenDevice, type Breakage } from './support/broken-device.ts';
import { RawNbd } from './support/nbd-client.ts';
import { serve, until, type Served } from './support/nbd-fixtures.ts';
import { watchProcessFaults, type ProcessFaults } from './support/process-faults.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const adapter = await loadAdapter();
const test = suite('NBD: a broken device takes down one connection at most, never the process');

let tempDir = '';
let served: Served | undefined;
let watch: ProcessFaults | undefined;
const devices: BlockDevice[] = [];
const clients: RawNbd[] = [];

test.before.each(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-nbd-isolation-'));
  watch = watchProcessFaults();
});
test.after.each(async () => {
  for (const client of clients.splice(0)) client.close();
  await served?.stop();
  served = undefined;
  for (const device of devices.splice(0)) await device.close();
  watch?.dispose();
  fs.rmSync(tempDir, { recursive: true, force: true });
});

async function fileWith(name: string, sizeBytes: number, seed: number): Promise<{ device: FileDevice; image: Uint8Array }> {
  const image = new Prng(seed).fill(new Uint8Array(sizeBytes));
  const device = await FileDevice.open(path.join(tempDir, name), { create: { sizeBytes } });
  await device.write(0, image);
  devices.push(device);
  return { device, image };
}

async function connect(exportName: string): Promise<RawNbd> {
  const client = await RawNbd.connect(served!.tcp);
  clients.push(client);
  await client.go(exportName);
  return client;
}

async function readsRight(client: RawNbd, image: Uint8Array, offsetBytes: number, lengthBytes: number): Promise<void> {
  client.request(NBD_CMD_READ, offsetBytes, lengthBytes);
  const reply = await client.reply();
  assert.is(reply.error, 0);
  assert.ok(Buffer.from(reply.data!).equals(image.subarray(offsetBytes, offsetBytes + lengthBytes)), 'the bystander reads the right bytes');
}

/** What the victim does, and whether its connection must survive it. */
const SCENARIOS: Record<Breakage, { request: number; lengthBytes: number; survives: () => boolean }> = {
  'status-garbage': { request: NBD_CMD_BLOCK_STATUS, lengthBytes: 64 * KiB, survives: () => false },
  'reject-unprintable': { request: NBD_CMD_READ, lengthBytes: 4 * KiB, survives: () => true },
  'throw-unprintable': { request: NBD_CMD_READ, lengthBytes: 4 * KiB, survives: () => true },
  // Reads of 64 KiB and more go out as file frames only where the runtime has zero-copy sends.
  'span-release-throws': { request: NBD_CMD_READ, lengthBytes: 256 * KiB, survives: () => adapter.socketSend === null },
};

for (const breakage of BREAKAGES) {
  const scenario = SCENARIOS[breakage];
  test(`${breakage}: ${scenario.survives() ? 'answered, the connection goes on' : 'that connection closes'}; the process and the other connections go on`, async () => {
    const good = await fileWith('good.img', 4 * MiB, 1);
    const bad = await fileWith('bad.img', 4 * MiB, 2);
    const broken = new BrokenDevice(bad.device, breakage);
    served = await serve([
      { name: 'good', device: good.device, readOnly: false },
      { name: 'broken', device: broken, readOnly: false },
    ]);
    const bystander = await connect('good');
    await readsRight(bystander, good.image, 0, 256 * KiB);
    const victim = await connect('broken');
    for (let round = 0; round < 3; round++) {
      victim.request(scenario.request, round * MiB, scenario.lengthBytes);
      if (!scenario.survives()) break;
      const reply = await victim.reply();
      if (breakage === 'span-release-throws') {
        assert.is(reply.error, 0, 'without zero copy the read is an ordinary one');
        assert.ok(Buffer.from(reply.data!).equals(bad.image.subarray(round * MiB, round * MiB + scenario.lengthBytes)));
      } else {
        assert.is(reply.error, NBD_EIO, 'the device error is answered');
      }
      await readsRight(bystander, good.image, round * MiB, 64 * KiB);
    }
    if (scenario.survives()) {
      victim.request(NBD_CMD_FLUSH, 0, 0);
      assert.is((await victim.reply()).error, 0, 'the victim connection still works');
    } else {
      assert.is(await victim.waitClosed(), true, 'the victim connection is closed');
      await until(() => served!.events.some((event) => event.type === 'protocol-error' && /internal error/.test(event.message)), 'an internal-error event');
    }
    if (breakage !== 'span-release-throws' || adapter.socketSend !== null) assert.ok(broken.broke > 0, 'the breakage was acted out');
    await readsRight(bystander, good.image, 3 * MiB, 256 * KiB);
    const late = await connect('good');
    await readsRight(late, good.image, MiB, 64 * KiB);
    await new Promise((resolve) => setTimeout(resolve, 20)); // let anything that escaped reach the process
    assert.equal(watch!.faults, [], 'nothing reached the process');
    assert.is(served.server.connections().length, scenario.survives() ? 3 : 2);
  });
}

test.run();
