/**
 * Seeded fuzzing of the NBD decoders (STYLE 15): random and mutated frames, first straight into
 * the decoders and option negotiation (they must return a value or a reason, never throw), then
 * over live connections to a running server: garbage from the first byte, mutated options after a
 * good greeting, mutated requests after a good GO. Each fuzzing connection must end once the
 * client hangs up (no hang), the exported device must be unchanged (the fuzzed export is read-only,
 * so even a well-formed WRITE is refused), and a healthy client on another connection must keep
 * reading the right bytes throughout. BLOCKCORE_SEED replays a failure.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import {
  NBD_CMD_READ, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY,
} from '../server/nbd/constants.ts';
import { InputBuffer } from '../runtime/net/input-buffer.ts';
import { Negotiation } from '../server/nbd/negotiation.ts';
import { decodeGoRequest, decodeMetaContextRequest, decodeOptionHeader, encodeGoRequest, encodeMetaContextRequest, encodeOptionHeader } from '../server/nbd/option-codec.ts';
import { decodeReplyHeader, decodeRequest, encodeRequest } from '../server/nbd/request-codec.ts';
import type { NbdExport } from '../server/nbd/types.ts';
import { RawNbd } from './support/nbd-client.ts';
import { mutateBytes } from './support/mutate-message.ts';
import { serve, until } from './support/nbd-fixtures.ts';

const MiB = 1024 * 1024;
const OPTIONS = [NBD_OPT_EXPORT_NAME, NBD_OPT_ABORT, NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_GO, NBD_OPT_STRUCTURED_REPLY, NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT, 5, 0, 0xffffffff];
const VALID_OPTIONS = [
  () => encodeOptionHeader(NBD_OPT_STRUCTURED_REPLY, new Uint8Array(0)),
  () => encodeOptionHeader(NBD_OPT_LIST, new Uint8Array(0)),
  () => encodeOptionHeader(NBD_OPT_INFO, encodeGoRequest({ name: 'target', infoTypes: [0, 1, 2, 3] })),
  () => encodeOptionHeader(NBD_OPT_SET_META_CONTEXT, encodeMetaContextRequest({ name: 'target', queries: ['base:allocation', 'base:'] })),
  () => encodeOptionHeader(NBD_OPT_LIST_META_CONTEXT, encodeMetaContextRequest({ name: 'target', queries: [] })),
  () => encodeOptionHeader(NBD_OPT_GO, encodeGoRequest({ name: 'target', infoTypes: [3] })),
];

function seeded(name: string, test: ReturnType<typeof suite>, body: (prng: Prng) => Promise<void> | void): void {
  test(name, async () => {
    const seed = seedFromEnv();
    try {
      await body(new Prng(seed));
    } catch (error) {
      if (error instanceof Error) error.message += ` [seed ${seed}; replay with BLOCKCORE_SEED=${seed}]`;
      throw error;
    }
  });
}

function randomBytes(prng: Prng, maxBytes: number): Uint8Array {
  return prng.fill(new Uint8Array(prng.below(maxBytes + 1)));
}

/** Flips, overwrites, truncates or extends a valid frame; sometimes blows up a length field. */
function mutate(prng: Prng, frame: Uint8Array): Uint8Array {
  // A length field blown up: 32-bit words at 12 (option) or 24 (request), big-endian, set to something odd.
  return mutateBytes(prng, frame, 16, [
    (p, out) => { if (out.length >= 28) new DataView(out.buffer, out.byteOffset).setUint32(p.chance(0.5) ? 12 : 24, [0, 1, 511, 0x2000000, 0xffffffff][p.below(5)]!); },
  ]);
}

/** A request frame: mostly well-formed headers with random fields, sometimes mutated. */
function randomRequest(prng: Prng, sizeBytes: number): Uint8Array {
  const type = prng.chance(0.8) ? prng.below(8) : prng.below(65536);
  const flags = prng.chance(0.7) ? [0, 1, 2, 4, 8, 16][prng.below(6)]! : prng.below(65536);
  const offsetBytes = prng.chance(0.7) ? prng.below(sizeBytes / 512) * 512 : prng.chance(0.5) ? prng.below(2 ** 53) : prng.below(sizeBytes);
  const lengthBytes = prng.chance(0.7) ? prng.range(0, 64) * 512 : prng.chance(0.5) ? prng.below(2 ** 32) : prng.below(1 << 20);
  const handle = { handleHigh: prng.nextU32(), handleLow: prng.nextU32() };
  const withPayload = type === 1 && lengthBytes <= 1 << 20 && prng.chance(0.7);
  const frame = encodeRequest({ flags, type: type === 2 ? NBD_CMD_READ : type, ...handle, offsetBytes, lengthBytes }, withPayload ? prng.fill(new Uint8Array(lengthBytes)) : undefined);
  return prng.chance(0.2) ? mutate(prng, frame) : frame;
}

const decoders = suite('nbd fuzz: decoders');

seeded('random and mutated frames never throw out of a decoder', decoders, (prng) => {
  const catalogue = {
    lookup: (name: string) => (name === 'target' ? { name, device: new MemoryDevice({ sizeBytes: MiB }), readOnly: true } : undefined),
    list: () => [],
  };
  for (let i = 0; i < 5000; i++) {
    const random = randomBytes(prng, 96);
    const padded = new Uint8Array(Math.max(28, random.length));
    padded.set(random);
    for (const result of [decodeRequest(padded, 0), decodeOptionHeader(padded, 0), decodeReplyHeader(padded, 0), decodeGoRequest(random), decodeMetaContextRequest(random)]) {
      assert.ok(typeof result === 'string' || (typeof result === 'object' && result !== null));
    }
    const valid = VALID_OPTIONS[prng.below(VALID_OPTIONS.length)]!();
    const mutated = mutate(prng, valid.subarray(16));
    assert.ok(typeof decodeGoRequest(mutated) !== 'undefined');
    assert.ok(typeof decodeMetaContextRequest(mutated) !== 'undefined');
    const negotiation = new Negotiation(catalogue);
    negotiation.structuredReplies = prng.chance(0.5);
    const outcome = negotiation.handle(OPTIONS[prng.below(OPTIONS.length)]!, prng.chance(0.5) ? mutated : random);
    assert.ok(outcome.replies.every((reply) => reply instanceof Uint8Array));
  }
});

seeded('the input buffer against a plain array: any chunking, any mix of contiguous/take/skip', decoders, (prng) => {
  for (let trial = 0; trial < 200; trial++) {
    const stream = prng.fill(new Uint8Array(prng.range(1, 4096)));
    const input = new InputBuffer();
    let fedBytes = 0;
    let readBytes = 0;
    while (readBytes < stream.length) {
      if (fedBytes < stream.length && (input.length === 0 || prng.chance(0.4))) {
        const piece = Math.min(prng.range(1, 300), stream.length - fedBytes);
        input.push(stream.slice(fedBytes, fedBytes + piece)); // a fresh buffer, like a socket chunk
        fedBytes += piece;
        continue;
      }
      assert.is(input.length, fedBytes - readBytes);
      const want = prng.range(1, Math.max(1, input.length));
      if (want > input.length) continue;
      const expected = stream.subarray(readBytes, readBytes + want);
      switch (prng.below(3)) {
        case 0: {
          const chunk = input.contiguous(want);
          assert.equal(chunk.subarray(input.front, input.front + want), expected, `contiguous(${want}) at ${readBytes}`);
          input.consume(want);
          break;
        }
        case 1:
          assert.equal(input.take(want), expected, `take(${want}) at ${readBytes}`);
          break;
        default:
          assert.is(input.skip(want), want);
      }
      readBytes += want;
    }
    assert.is(input.length, 0);
  }
});

const live = suite('nbd fuzz: live connections');

seeded('garbage, mutated options and mutated requests: each connection ends, the device is untouched, others are unaffected', live, async (prng) => {
  const sizeBytes = 2 * MiB;
  const image = new Prng(prng.nextU32()).fill(new Uint8Array(sizeBytes));
  const device = new MemoryDevice({ sizeBytes, initial: image, name: 'target' });
  const exports: NbdExport[] = [{ name: 'target', device, readOnly: true }];
  const served = await serve(exports);
  const healthy = await RawNbd.connect(served.tcp);
  await healthy.go('target');
  let healthyReads = 0;
  let stopHealthy = false;
  const healthyLoop = (async () => {
    const reader = new Prng(prng.nextU32());
    while (!stopHealthy) {
      const offsetBytes = reader.below(sizeBytes / 4096) * 4096;
      healthy.request(NBD_CMD_READ, offsetBytes, 4096);
      const reply = await healthy.reply();
      assert.is(reply.error, 0);
      assert.ok(Buffer.from(reply.data!).equals(image.subarray(offsetBytes, offsetBytes + 4096)), `healthy read at ${offsetBytes}`);
      healthyReads++;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  })();

  try {
    for (let round = 0; round < 60; round++) {
      const nbd = await RawNbd.connect(prng.chance(0.5) ? served.tcp : served.unix);
      const kind = round % 3;
      if (kind === 0) {
        nbd.send(randomBytes(prng, 256));
      } else {
        await nbd.greet();
        const optionCount = prng.range(1, 6);
        for (let i = 0; i < optionCount; i++) {
          const valid = VALID_OPTIONS[prng.below(VALID_OPTIONS.length - 1)]!();
          nbd.send(prng.chance(0.5) ? mutate(prng, valid) : valid);
        }
        if (kind === 2) {
          nbd.send(VALID_OPTIONS[VALID_OPTIONS.length - 1]!());
          const requestCount = prng.range(1, 40);
          for (let i = 0; i < requestCount; i++) nbd.send(randomRequest(prng, sizeBytes));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, prng.below(20)));
      nbd.socket.end();
      assert.ok(await nbd.waitClosed(5000), `fuzz connection ${round} (kind ${kind}) ended`);
      nbd.close();
    }
    await until(() => served.server.connections().length === 1, 'only the healthy connection left');
    assert.ok(healthyReads > 0, 'the healthy client kept reading');
  } finally {
    stopHealthy = true;
    await healthyLoop.catch((error) => {
      throw error;
    });
    healthy.close();
    await served.stop();
  }
  const after = new Uint8Array(sizeBytes);
  await device.read(0, after);
  assert.ok(Buffer.from(after).equals(image), 'the device is unchanged');
  assert.ok(served.server.counters.errors > 0, 'the fuzzing was noticed');
});

decoders.run();
live.run();
