/**
 * The NBD server's two request decoders (server/nbd/request-codec.ts: 'ts' and 'wasm') give the
 * same answers. First straight: seeded random streams of valid and invalid headers with WRITE
 * payloads, cut into random socket chunks and read the way NbdConnection reads them (a header
 * through `contiguous`, payloads skipped or taken); both decoders must return the same requests,
 * refusals and protocol errors in the same order. Then over sockets: the same scripted mix sent
 * in one write to a server of each kind must get the same replies and leave the same bytes.
 * Replay a failure with BLOCKCORE_SEED=<seed in the message>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import * as nbd from '../server/nbd/constants.ts';
import type { Session } from '../server/nbd/request-check.ts';
import { encodeRequest, loadRequestDecoders, type NbdRequest, type RequestDecoder } from '../server/nbd/request-codec.ts';
import type { NbdExport } from '../server/nbd/types.ts';
import { RawNbd, type Reply } from './support/nbd-client.ts';
import { serve } from './support/nbd-fixtures.ts';

const SEED = seedFromEnv();
const MiB = 1024 * 1024;

/** Received bytes as a queue of chunks, read like server/nbd/input-buffer.ts does. */
class Chunks {
  private chunks: Uint8Array[] = [];
  private head = 0;

  constructor(bytes: Uint8Array, prng: Prng) {
    for (let at = 0; at < bytes.length; ) {
      const size = prng.chance(0.3) ? prng.range(1, 40) : prng.range(40, 2000);
      this.chunks.push(bytes.slice(at, at + size));
      at += size;
    }
  }

  get length(): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.length, 0) - this.head;
  }

  /** [chunk, at] holding the next `n` bytes in one piece (a fresh merged chunk when they straddle). */
  contiguous(n: number): [Uint8Array, number] {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) return [first, this.head];
    const merged = this.read(n);
    this.chunks.unshift(merged);
    return [merged, 0];
  }

  read(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let done = 0; done < n; ) {
      const first = this.chunks[0]!;
      const piece = Math.min(first.length - this.head, n - done);
      out.set(first.subarray(this.head, this.head + piece), done);
      done += piece;
      this.head += piece;
      if (this.head === first.length) {
        this.chunks.shift();
        this.head = 0;
      }
    }
    return out;
  }
}

type Step = { request: NbdRequest; refusal: string | null } | { protocolError: string } | 'disc' | 'incomplete';

/** NbdConnection.readRequest's order of events over a whole stream. */
function run(decoder: RequestDecoder, chunks: Chunks, session: Session): Step[] {
  const steps: Step[] = [];
  for (;;) {
    if (chunks.length < nbd.REQUEST_HEADER_BYTES) return [...steps, 'incomplete'];
    const [bytes, at] = chunks.contiguous(nbd.REQUEST_HEADER_BYTES);
    const request = decoder.decode(bytes, at, session);
    chunks.read(nbd.REQUEST_HEADER_BYTES);
    if (typeof request === 'string') return [...steps, { protocolError: request }];
    if (request.type === nbd.NBD_CMD_DISC) return [...steps, 'disc'];
    const refusal = decoder.check(request, session);
    steps.push({ request: { ...request }, refusal: refusal === null ? null : `${refusal.error} ${refusal.message}` });
    if (request.type === nbd.NBD_CMD_WRITE) {
      if (chunks.length < request.lengthBytes) return [...steps, 'incomplete'];
      chunks.read(request.lengthBytes);
    }
  }
}

function randomHeaders(prng: Prng, session: Session, count: number): Uint8Array {
  const pieces: Uint8Array[] = [];
  const block = session.minimumBlockBytes;
  for (let i = 0; i < count; i++) {
    const type = prng.chance(0.03) ? prng.range(8, 9) : prng.below(8) === nbd.NBD_CMD_DISC && !prng.chance(0.1) ? nbd.NBD_CMD_READ : prng.below(8);
    const request: NbdRequest = {
      flags: prng.chance(0.2) ? 1 << prng.below(6) : 0, type, handleHigh: prng.nextU32(), handleLow: i,
      offsetBytes: block * prng.below(Math.floor(session.sizeBytes / block) + 2), lengthBytes: block * prng.below(9),
    };
    if (type === nbd.NBD_CMD_FLUSH && prng.chance(0.8)) request.offsetBytes = request.lengthBytes = 0;
    if (prng.chance(0.05)) request.lengthBytes += 1;
    const data = type === nbd.NBD_CMD_WRITE ? prng.fill(new Uint8Array(request.lengthBytes)) : undefined;
    const frame = encodeRequest(request, data);
    if (prng.chance(0.01)) frame[0] ^= 0x80;
    pieces.push(frame);
  }
  return Uint8Array.from(Buffer.concat(pieces));
}

const decoders = suite('nbd request decoders: wasm and ts agree');

decoders('seeded streams in random chunks: the same requests, refusals and protocol errors', async () => {
  const [ts, wasm] = await Promise.all([loadRequestDecoders('ts'), loadRequestDecoders('wasm')]);
  const prng = new Prng(SEED + 31);
  for (let trial = 0; trial < 150; trial++) {
    const minimumBlockBytes = [1, 512, 4096][prng.below(3)]!;
    const session: Session = {
      sizeBytes: minimumBlockBytes * prng.range(1, 4096), minimumBlockBytes,
      transmissionFlags: prng.nextU32() & 0xffff, structuredReplies: prng.chance(0.7), baseAllocation: prng.chance(0.7),
    };
    const stream = randomHeaders(prng, session, prng.range(1, 120));
    const chunkSeed = prng.nextU32();
    const expected = run(ts(), new Chunks(stream, new Prng(chunkSeed)), session);
    const actual = run(wasm(), new Chunks(stream, new Prng(chunkSeed)), session);
    assert.equal(actual, expected, `seed=${SEED} trial ${trial}`);
  }
});

decoders('one wasm decoder per connection: interleaved connections do not see each other\'s headers', async () => {
  const wasm = await loadRequestDecoders('wasm');
  const session: Session = { sizeBytes: MiB, minimumBlockBytes: 512, transmissionFlags: 1, structuredReplies: true, baseAllocation: true };
  const streams = [0, 1].map((connection) => {
    const pieces = Array.from({ length: 20 }, (_, i) => encodeRequest({ flags: 0, type: nbd.NBD_CMD_READ, handleHigh: connection, handleLow: i, offsetBytes: 512 * i, lengthBytes: 512 }));
    return Uint8Array.from(Buffer.concat(pieces));
  });
  const [a, b] = [wasm(), wasm()];
  for (let i = 0; i < 20; i++) {
    for (const [connection, decoder] of [[0, a], [1, b]] as const) {
      const request = decoder.decode(streams[connection]!, i * nbd.REQUEST_HEADER_BYTES, session) as NbdRequest;
      assert.equal([request.handleHigh, request.handleLow, request.offsetBytes], [connection, i, 512 * i]);
      assert.is(decoder.check(request, session), null);
    }
  }
});

decoders.run();

const served = suite('nbd server with each request decoder');

/** The scripted mix: valid and refused requests of every kind, one refused WRITE payload to skip, then DISC. */
function script(prng: Prng): { bytes: Uint8Array; handles: number } {
  const pieces: Uint8Array[] = [];
  let handle = 1;
  const add = (type: number, offsetBytes: number, lengthBytes: number, flags = 0, data?: Uint8Array) =>
    pieces.push(encodeRequest({ flags, type, handleHigh: 0, handleLow: handle++, offsetBytes, lengthBytes }, data));
  for (let i = 0; i < 60; i++) {
    switch (prng.below(10)) {
      case 0: add(nbd.NBD_CMD_WRITE, i * 4096, 4096, 0, prng.fill(new Uint8Array(4096))); break; // distinct blocks, none read
      case 1: add(nbd.NBD_CMD_WRITE, 3, 100, 0, prng.fill(new Uint8Array(100))); break; // refused, payload skipped
      case 2: add(nbd.NBD_CMD_READ, 2 * MiB + 4096 * prng.below(64), 4096 * prng.range(1, 4)); break;
      case 3: add(nbd.NBD_CMD_READ, 2 * MiB, 4096, nbd.NBD_CMD_FLAG_REQ_ONE); break; // REQ_ONE on READ
      case 4: add(nbd.NBD_CMD_FLUSH, 0, 0); break;
      case 5: add(nbd.NBD_CMD_FLUSH, 512, 0); break;
      case 6: add(nbd.NBD_CMD_BLOCK_STATUS, 0, 4 * MiB); break;
      case 7: add(nbd.NBD_CMD_TRIM, 8 * MiB, 4096); break; // past the end
      case 8: add(12, 0, 0); break; // unknown command
      default: add(nbd.NBD_CMD_CACHE, 2 * MiB, 4096, 0x40); break; // unknown flag
    }
  }
  pieces.push(encodeRequest({ flags: 0, type: nbd.NBD_CMD_DISC, handleHigh: 0, handleLow: handle, offsetBytes: 0, lengthBytes: 0 }));
  return { bytes: Uint8Array.from(Buffer.concat(pieces)), handles: handle - 1 };
}

async function runScript(kind: 'wasm' | 'ts', bytes: Uint8Array, handles: number): Promise<{ replies: Reply[]; contents: Uint8Array }> {
  const device = new MemoryDevice({ sizeBytes: 4 * MiB, name: 'disk', initial: new Uint8Array(4 * MiB).fill(0x5a) });
  const list: NbdExport[] = [{ name: 'disk', device, readOnly: false }];
  const s = await serve(list, { requestDecoder: kind });
  try {
    const client = await RawNbd.connect(s.tcp);
    await client.go('disk');
    // The replies are matched by handle, so the client is told about every request it sends.
    const parsed = new DataView(bytes.buffer, bytes.byteOffset);
    for (let at = 0; at < bytes.length; ) {
      const type = parsed.getUint16(at + 6);
      const lengthBytes = parsed.getUint32(at + 24);
      (client as unknown as { pending: Map<number, unknown> }).pending.set(parsed.getUint32(at + 12), { type, offsetBytes: Number(parsed.getBigUint64(at + 16)), lengthBytes });
      at += nbd.REQUEST_HEADER_BYTES + (type === nbd.NBD_CMD_WRITE ? lengthBytes : 0);
    }
    client.send(bytes);
    const replies: Reply[] = [];
    for (let i = 0; i < handles; i++) replies.push(await client.reply());
    assert.ok(await client.waitClosed(), 'DISC ends the connection');
    replies.sort((x, y) => x.handle - y.handle);
    const contents = new Uint8Array(4 * MiB);
    await device.read(0, contents);
    return { replies, contents };
  } finally {
    await s.stop();
  }
}

served('the same mixed stream gets the same replies and leaves the same bytes', async () => {
  const { bytes, handles } = script(new Prng(SEED + 32));
  const ts = await runScript('ts', bytes, handles);
  const wasm = await runScript('wasm', bytes, handles);
  assert.is(wasm.replies.length, handles);
  assert.equal(wasm.replies, ts.replies, `seed=${SEED}`);
  assert.ok(Buffer.from(wasm.contents).equals(Buffer.from(ts.contents)), `seed=${SEED}: device contents`);
  assert.ok(ts.replies.some((reply) => reply.error !== 0) && ts.replies.some((reply) => reply.error === 0), 'the mix has refusals and successes');
});

served.run();
