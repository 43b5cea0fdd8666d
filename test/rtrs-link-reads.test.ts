/**
 * RtrsLink fed through a reused read buffer (the adapter's SocketReads, Node's `onread`): seeded
 * streams of frames, with and without digests, cut at random points into one buffer that is
 * scribbled over after every read, as the runtime does when it reads again. Every frame must come
 * out whole and right, whether its payload went to a sink or was handed on (and kept by the owner
 * past the read), and what a read leaves unparsed must survive the scribbling. Then the same
 * frames end to end through connectLink / acceptLink on this runtime (its real reads).
 */
import net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BufferPool } from '../runtime/net/buffer-pool.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { encodeFrameHeader, FRAME_FLAG_DIGEST, FRAME_HEADER_BYTES, FRAME_OP, frameDigest, type FrameHeader } from '../runtime/transport/rtrs-frame.ts';
import { ACCEPT_PAUSED, acceptLink, connectLink, RtrsLink } from '../runtime/transport/rtrs-link.ts';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { kernelCrc32c } from './support/rtrs-pair.ts';
import { socketPair } from './support/socket-pair.ts';

const SEED = seedFromEnv();
const test = suite('rtrs link: reads through a reused buffer');
const MAX_PAYLOAD_BYTES = 64 * 1024;
/** Payloads at least this long go to a sink (as the server's IO writes and the client's read data do). */
const SINK_MIN_BYTES = 8 * 1024;

interface Sent {
  op: number;
  imm: number;
  payload: Uint8Array;
}

const crc32c = await kernelCrc32c();
const { socketReads } = await loadAdapter();

/** The bytes of `frames` on the wire, as RtrsLink.send makes them. */
function wire(frames: Sent[], digest: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const frame of frames) {
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    const fields: FrameHeader = {
      op: frame.op, flags: digest ? FRAME_FLAG_DIGEST : 0, imm: frame.imm, addr: 0n, key: 0, lengthBytes: frame.payload.length, seq: 0, digest: 0,
    };
    encodeFrameHeader(fields, header);
    if (digest) new DataView(header.buffer).setUint32(28, frameDigest(crc32c, header, frame.payload), true);
    parts.push(header, frame.payload);
  }
  return Buffer.concat(parts);
}

function randomFrames(prng: Prng, count: number): Sent[] {
  return Array.from({ length: count }, (_, index) => {
    const lengthBytes = prng.below(3) === 0 ? prng.range(SINK_MIN_BYTES, MAX_PAYLOAD_BYTES) : prng.below(SINK_MIN_BYTES);
    return { op: prng.below(2) === 0 ? FRAME_OP.SEND_IMM : FRAME_OP.WRITE_IMM, imm: index, payload: prng.fill(new Uint8Array(lengthBytes)) };
  });
}

/** Starts `link` collecting every frame (payloads kept as handed on, sinks for the long ones). */
function collect(link: RtrsLink): { frames: Sent[]; closed: string[] } {
  const frames: Sent[] = [];
  const closed: string[] = [];
  link.maxPayloadBytes = MAX_PAYLOAD_BYTES;
  link.start({
    sinkFor: (header) => (header.lengthBytes >= SINK_MIN_BYTES ? new Uint8Array(header.lengthBytes) : null),
    onFrame: (header, payload) => void frames.push({ op: header.op, imm: header.imm, payload }),
    onClose: (why) => void closed.push(why ?? 'closed by us'),
  });
  return { frames, closed };
}

function assertSame(got: Sent[], sent: Sent[], what: string): void {
  assert.is(got.length, sent.length, `${what}: frame count`);
  sent.forEach((frame, index) => {
    assert.is(got[index]!.op, frame.op, `${what}: frame ${index} op`);
    assert.is(got[index]!.imm, frame.imm, `${what}: frame ${index} imm`);
    assert.ok(Buffer.from(got[index]!.payload).equals(Buffer.from(frame.payload)), `${what}: frame ${index} payload (${frame.payload.length} bytes)`);
  });
}

test('frames cut anywhere come out whole, and kept payloads survive the next read', async () => {
  const prng = new Prng(SEED);
  const [serverSide, clientSide] = await socketPair();
  try {
    for (let trial = 0; trial < 40; trial++) {
      const digest = trial % 2 === 1;
      const sent = randomFrames(prng, prng.range(1, 30));
      const bytes = wire(sent, digest);
      const link = new RtrsLink(serverSide, crc32c, new BufferPool(), true);
      link.digest = digest;
      // Detach the link's listeners from the shared socket after the trial (close would destroy it).
      const got = collect(link);
      const reused = new Uint8Array(prng.range(1, 96 * 1024));
      for (let at = 0; at < bytes.length;) {
        const size = Math.min(bytes.length - at, prng.range(1, reused.length));
        reused.set(bytes.subarray(at, at + size));
        link.receive(reused.subarray(0, size));
        prng.fill(reused); // the runtime reads the next bytes into the same memory
        at += size;
      }
      assert.equal(got.closed, [], `trial ${trial}: the link closed`);
      assertSame(got.frames, sent, `trial ${trial}`);
      serverSide.removeAllListeners();
    }
  } finally {
    serverSide.destroy();
    clientSide.destroy();
  }
});

for (const digest of [false, true]) test(`connectLink and acceptLink carry the frames on this runtime${digest ? ', digests on' : ''}`, async () => {
  const prng = new Prng(SEED ^ 0x5eed);
  const sent = randomFrames(prng, 200);
  let accepted: RtrsLink | null = null;
  let adoptedAsExpected = false;
  const received = new Promise<{ frames: Sent[]; closed: string[] }>((resolve) => {
    const listener = net.createServer({ pauseOnConnect: ACCEPT_PAUSED }, (socket) => {
      listener.close();
      accepted = acceptLink(socket, crc32c, new BufferPool(), false);
      // Where the runtime offers SocketReads the socket must have been taken over (else this
      // would quietly test 'data' events).
      adoptedAsExpected = (accepted.socket !== socket) === (socketReads !== null);
      accepted.digest = digest;
      const got = collect(accepted);
      const deadline = Date.now() + 10_000;
      const poll = setInterval(() => {
        if (got.frames.length === sent.length || got.closed.length > 0 || Date.now() > deadline) {
          clearInterval(poll);
          resolve(got);
        }
      }, 5);
    });
    listener.listen(0, '127.0.0.1', () => {
      const link = connectLink({ host: '127.0.0.1', port: (listener.address() as net.AddressInfo).port }, crc32c);
      link.digest = digest; // each frame's digest is written into its header (cut from a shared slab)
      link.start({ onFrame: () => {}, onClose: () => {} });
      for (const frame of sent) link.send({ op: frame.op, imm: frame.imm }, frame.payload);
    });
  });
  const got = await received;
  assert.ok(adoptedAsExpected, `the accepted socket ${socketReads === null ? 'was taken over without SocketReads' : 'was not taken over'}`);
  assert.equal(got.closed, []);
  assertSame(got.frames, sent, 'end to end');
  (accepted as RtrsLink | null)?.close();
});

test.run();
