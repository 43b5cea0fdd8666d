/**
 * Seeded fuzzing of the NBD server over a device that misbehaves within its contract (STYLE 15):
 * the writable export sits on a FaultDevice that fails, tears and delays reads, writes, flushes
 * and discards at random. Clients of four kinds take turns on it, while a healthy client reads a
 * second, steady export the whole time:
 *   session    well-formed requests, valid and invalid mixed, pipelined; every one gets exactly
 *              one reply: a valid one succeeds or fails with EIO (the injected fault), an invalid
 *              one is refused; a successful read holds, block by block, what the model allows;
 *   malformed  a session whose stream turns to garbage mid-way, beside a bystander session on the
 *              same export: the malformed connection alone is closed, the bystander is answered;
 *   vanishing  a session that hangs up (reset) with requests in flight;
 *   garbage    random bytes from the first byte, or after the greeting.
 * The model: every 512-byte block of the faulty device holds its original bytes or a block some
 * client wrote (or zeroed) there, never anything else, also after torn writes. Afterwards the
 * process has seen no uncaught exception or unhandled rejection, only the healthy connection is
 * left, and faults were injected. BLOCKCORE_SEED replays a failure.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FaultDevice, type FaultRule } from '../runtime/devices/fault-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES, NBD_EIO, NBD_FLAG_SEND_FUA,
} from '../server/nbd/constants.ts';
import { RawNbd } from './support/nbd-client.ts';
import { serve, until, type Served } from './support/nbd-fixtures.ts';
import { watchProcessFaults } from './support/process-faults.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK_BYTES = 512;
const SIZE_BYTES = 2 * MiB;
const ROUNDS = 48;
const ZERO_BLOCK = new Uint8Array(BLOCK_BYTES);

const RULES: FaultRule[] = [
  { op: 'read', probability: 0.1, action: 'fail' },
  { op: 'read', probability: 0.1, action: 'tear' },
  { op: 'read', probability: 0.2, action: 'delay', delayMs: 3 },
  { op: 'write', probability: 0.1, action: 'fail' },
  { op: 'write', probability: 0.15, action: 'tear' },
  { op: 'write', probability: 0.2, action: 'delay', delayMs: 3 },
  { op: 'flush', probability: 0.25, action: 'fail' },
  { op: 'flush', probability: 0.25, action: 'delay', delayMs: 2 },
  { op: 'discard', probability: 0.15, action: 'tear' },
  { op: 'discard', probability: 0.1, action: 'fail' },
];

/** What each block of the faulty device may hold: its original bytes, or any block written or zeroed there. */
class BlockModel {
  private readonly allowed: Array<Set<string>> = [];

  constructor(image: Uint8Array) {
    for (let block = 0; block < image.length / BLOCK_BYTES; block++) this.allowed.push(new Set([key(image.subarray(block * BLOCK_BYTES, (block + 1) * BLOCK_BYTES))]));
  }

  wrote(offsetBytes: number, data: Uint8Array): void {
    for (let at = 0; at < data.length; at += BLOCK_BYTES) this.allowed[(offsetBytes + at) / BLOCK_BYTES]!.add(key(data.subarray(at, at + BLOCK_BYTES)));
  }

  zeroed(offsetBytes: number, lengthBytes: number): void {
    for (let at = 0; at < lengthBytes; at += BLOCK_BYTES) this.allowed[(offsetBytes + at) / BLOCK_BYTES]!.add(key(ZERO_BLOCK));
  }

  /** The first block of `data` (read at `offsetBytes`) that holds something never there, or -1. */
  firstStranger(offsetBytes: number, data: Uint8Array): number {
    for (let at = 0; at < data.length; at += BLOCK_BYTES) {
      if (!this.allowed[(offsetBytes + at) / BLOCK_BYTES]!.has(key(data.subarray(at, at + BLOCK_BYTES)))) return (offsetBytes + at) / BLOCK_BYTES;
    }
    return -1;
  }
}

/** `device` with a close() that leaves it open, so its bytes can be read once the FaultDevice over it has closed. */
function keptOpen<T extends MemoryDevice>(device: T): T {
  return new Proxy(device, { get: (target, name) => (name === 'close' ? async () => {} : Reflect.get(target, name, target)) });
}

function key(block: Uint8Array): string {
  return Buffer.from(block.buffer, block.byteOffset, block.byteLength).toString('base64');
}

interface Sent {
  handle: number;
  type: number;
  offsetBytes: number;
  valid: boolean;
}

/** A random request on the faulty export: valid (and then entered in the model) or invalid in one way. */
function sendRequest(prng: Prng, nbd: RawNbd, model: BlockModel, fua: boolean): Sent {
  const blocks = SIZE_BYTES / BLOCK_BYTES;
  const lengthBlocks = prng.range(1, 128);
  const offsetBytes = prng.below(blocks - lengthBlocks + 1) * BLOCK_BYTES;
  const lengthBytes = lengthBlocks * BLOCK_BYTES;
  const fuaFlag = fua && prng.chance(0.3) ? NBD_CMD_FLAG_FUA : 0;
  if (prng.chance(0.2)) {
    // Invalid: refused before the device. A WRITE carries its payload, so the stream stays in step.
    const invalid = prng.below(4);
    const type = invalid === 0 ? 12 + prng.below(100) : [NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_TRIM][prng.below(3)]!;
    const badOffset = invalid === 1 ? offsetBytes + prng.range(1, BLOCK_BYTES - 1) : invalid === 2 ? SIZE_BYTES + BLOCK_BYTES * prng.below(8) : offsetBytes;
    const flags = invalid === 3 ? 0x100 << prng.below(8) : 0;
    const data = type === NBD_CMD_WRITE ? prng.fill(new Uint8Array(lengthBytes)) : undefined;
    return { handle: nbd.request(type, badOffset, lengthBytes, { flags, data }), type, offsetBytes: badOffset, valid: false };
  }
  const type = [NBD_CMD_READ, NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_WRITE, NBD_CMD_FLUSH, NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES, NBD_CMD_CACHE, NBD_CMD_BLOCK_STATUS][prng.below(9)]!;
  switch (type) {
    case NBD_CMD_WRITE: {
      const data = prng.fill(new Uint8Array(lengthBytes));
      model.wrote(offsetBytes, data);
      return { handle: nbd.request(type, offsetBytes, lengthBytes, { flags: fuaFlag, data }), type, offsetBytes, valid: true };
    }
    case NBD_CMD_FLUSH:
      return { handle: nbd.request(type, 0, 0), type, offsetBytes: 0, valid: true };
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
      model.zeroed(offsetBytes, lengthBytes);
      return { handle: nbd.request(type, offsetBytes, lengthBytes, { flags: fuaFlag | (type === NBD_CMD_WRITE_ZEROES && prng.chance(0.5) ? NBD_CMD_FLAG_NO_HOLE : 0) }), type, offsetBytes, valid: true };
    default:
      return { handle: nbd.request(type, offsetBytes, lengthBytes), type, offsetBytes, valid: true };
  }
}

/** Reads every reply of `sent` and checks it against the request and the model. */
async function checkReplies(nbd: RawNbd, sent: Sent[], model: BlockModel, what: string): Promise<void> {
  const byHandle = new Map(sent.map((request) => [request.handle, request]));
  for (let i = 0; i < sent.length; i++) {
    const reply = await nbd.reply();
    const request = byHandle.get(reply.handle);
    assert.ok(request !== undefined, `${what}: one reply per request (handle ${reply.handle})`);
    byHandle.delete(reply.handle);
    if (!request.valid) {
      assert.ok(reply.error !== 0, `${what}: invalid request (type ${request.type} at ${request.offsetBytes}) refused`);
      continue;
    }
    assert.ok(reply.error === 0 || reply.error === NBD_EIO, `${what}: valid request type ${request.type}: error ${reply.error} (${reply.message})`);
    if (request.type === NBD_CMD_READ && reply.error === 0) {
      const stranger = model.firstStranger(request.offsetBytes, reply.data!);
      assert.is(stranger, -1, `${what}: block ${stranger} read back holds bytes nobody wrote there`);
    }
  }
}

async function connect(served: Served, exportName: string, prng: Prng): Promise<{ nbd: RawNbd; fua: boolean }> {
  const nbd = await RawNbd.connect(prng.chance(0.5) ? served.tcp : served.unix);
  const { flags } = await nbd.go(exportName);
  return { nbd, fua: (flags & NBD_FLAG_SEND_FUA) !== 0 };
}

const test = suite('nbd fault fuzz');

test('clients of every kind over an export whose device fails, tears and delays: replies as the model allows, the malformed connection alone closes, the process goes on', async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const watch = watchProcessFaults();
  const image = new Prng(prng.nextU32()).fill(new Uint8Array(SIZE_BYTES));
  const steadyImage = new Prng(prng.nextU32()).fill(new Uint8Array(SIZE_BYTES));
  const inner = new MemoryDevice({ sizeBytes: SIZE_BYTES, initial: image, name: 'faulty-inner' });
  const faulty = new FaultDevice(keptOpen(inner), { seed: prng.nextU32(), rules: RULES });
  const steady = new MemoryDevice({ sizeBytes: SIZE_BYTES, initial: steadyImage, name: 'steady' });
  const served = await serve([
    { name: 'faulty', device: faulty, readOnly: false },
    { name: 'steady', device: steady, readOnly: true },
  ]);
  const model = new BlockModel(image);
  const healthy = await RawNbd.connect(served.tcp);
  await healthy.go('steady');
  let healthyReads = 0;
  let stopHealthy = false;
  const healthyLoop = (async () => {
    const reader = new Prng(prng.nextU32());
    while (!stopHealthy) {
      const offsetBytes = reader.below(SIZE_BYTES / 4096) * 4096;
      healthy.request(NBD_CMD_READ, offsetBytes, 4096);
      const reply = await healthy.reply();
      assert.is(reply.error, 0);
      assert.ok(Buffer.from(reply.data!).equals(steadyImage.subarray(offsetBytes, offsetBytes + 4096)), `healthy read at ${offsetBytes}`);
      healthyReads++;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  })();
  const kinds = { session: 0, malformed: 0, vanishing: 0, garbage: 0 };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const what = `seed ${seed} (replay with BLOCKCORE_SEED=${seed}), round ${round}`;
      const kind = (['session', 'malformed', 'vanishing', 'garbage'] as const)[prng.below(4)]!;
      kinds[kind]++;
      if (kind === 'garbage') {
        const nbd = await RawNbd.connect(served.tcp);
        if (prng.chance(0.5)) await nbd.greet();
        nbd.send(prng.fill(new Uint8Array(prng.range(1, 300))));
        nbd.socket.end();
        assert.ok(await nbd.waitClosed(5000), `${what}: garbage connection ended`);
        nbd.close();
        continue;
      }
      const { nbd, fua } = await connect(served, 'faulty', prng);
      const sent: Sent[] = [];
      const count = prng.range(1, 32);
      for (let i = 0; i < count; i++) sent.push(sendRequest(prng, nbd, model, fua));
      if (kind === 'session') {
        await checkReplies(nbd, sent, model, `${what} session`);
        nbd.socket.end();
        assert.ok(await nbd.waitClosed(5000), `${what}: session ended after its end`);
      } else if (kind === 'vanishing') {
        nbd.close();
      } else {
        const bystander = await connect(served, 'faulty', prng);
        const bystanderSent: Sent[] = [];
        for (let i = 0; i < prng.range(1, 16); i++) bystanderSent.push(sendRequest(prng, bystander.nbd, model, bystander.fua));
        const garbage = prng.fill(new Uint8Array(28));
        garbage[0] = 0; // never the request magic
        nbd.send(garbage);
        assert.ok(await nbd.waitClosed(5000), `${what}: the malformed connection is closed`);
        await checkReplies(bystander.nbd, bystanderSent, model, `${what} bystander`);
        bystander.nbd.request(NBD_CMD_FLUSH, 0, 0);
        const flushed = await bystander.nbd.reply();
        assert.ok(flushed.error === 0 || flushed.error === NBD_EIO, `${what}: the bystander still works`);
        bystander.nbd.close();
      }
    }
    await until(() => served.server.connections().length === 1, 'only the healthy connection left');
    assert.ok(healthyReads > 0, 'the healthy client kept reading');
  } finally {
    stopHealthy = true;
    await healthyLoop;
    healthy.close();
    await served.stop();
    watch.dispose();
  }
  // Requests of vanished connections may still be delayed: close() waits for them (and leaves
  // the inner device open, see keptOpen).
  await faulty.close();
  const after = new Uint8Array(SIZE_BYTES);
  await inner.read(0, after);
  await inner.close();
  assert.is(model.firstStranger(0, after), -1, `seed ${seed}: the device holds only bytes someone wrote there`);
  assert.equal(watch.faults, [], `seed ${seed}: nothing reached the process`);
  const injected = Object.values(faulty.injected).reduce((sum, n) => sum + n, 0);
  assert.ok(injected > 0, 'faults were injected');
  assert.ok(Object.values(kinds).every((n) => n > 0), `every kind of client ran: ${JSON.stringify(kinds)}`);
});

test.run();
