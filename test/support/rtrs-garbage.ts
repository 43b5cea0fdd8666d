/**
 * Garbage senders for RTRS fuzz tests: a plain TCP socket (no RtrsLink) whose frames are built by
 * hand with the codecs (`frameBytes`: any op, flags, length or digest, right or wrong) and whose
 * received bytes are parsed here, every frame from the server checked (its header and, when it
 * carries one, its digest); plus the seeded byte mutations the decoders are fuzzed with.
 */
import { connect, type Socket } from 'node:net';
import type { Prng } from '../../runtime/prng.ts';
import {
  type Crc32c, decodeFrameHeader, digestProblem, encodeFrameHeader, FRAME_FLAG_DIGEST, FRAME_HEADER_BYTES, frameDigest, type FrameHeader,
} from '../../runtime/transport/rtrs-frame.ts';
import { mutateBytes } from './mutate-message.ts';
import { splitAddress, until } from './rtrs-raw.ts';

export function randomBytes(prng: Prng, maxBytes: number): Uint8Array {
  return prng.fill(new Uint8Array(prng.below(maxBytes + 1)));
}

/** Flips, overwrites, truncates or extends bytes; sometimes blows up a 16-bit count or a 32-bit length (little-endian). */
export function mutate(prng: Prng, bytes: Uint8Array): Uint8Array {
  return mutateBytes(prng, bytes, 40, [
    (p, out) => { if (out.length >= 8) new DataView(out.buffer, out.byteOffset).setUint16(2 * p.below(4), [0, 1, 2, 0x7fff, 0xffff][p.below(5)]!, true); },
    (p, out) => { if (out.length >= 4) new DataView(out.buffer, out.byteOffset).setUint32(p.below(out.length - 3), [0, 1, 4096, 0x20001, 0xffffffff][p.below(5)]!, true); },
  ]);
}

export interface Received {
  header: FrameHeader;
  payload: Uint8Array;
}

/** A garbage sender: a plain TCP socket; what it sends is built by hand, what it receives is parsed here. */
export class RawSocket {
  private input = Buffer.alloc(0);
  private parsedBytes = 0;
  closed = false;
  readonly localAddress: string;
  readonly localPort: number;

  private constructor(readonly socket: Socket, private readonly crc32c: Crc32c) {
    socket.on('data', (chunk: Buffer) => {
      this.input = Buffer.concat([this.input, chunk]);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
    });
    this.localAddress = socket.localAddress!;
    this.localPort = socket.localPort!;
  }

  static async open(address: string, crc32c: Crc32c, localAddress: string): Promise<RawSocket> {
    const socket = connect({ ...splitAddress(address), localAddress });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawSocket(socket, crc32c);
  }

  send(bytes: Uint8Array): void {
    if (!this.closed && !this.socket.destroyed) this.socket.write(bytes);
  }

  /** The next whole frame from the server (heartbeats included), or null once the connection closed without one. */
  async frame(timeoutMs = 5000): Promise<Received | null> {
    await until(() => this.closed || this.parse(false) !== null, 'a frame from the server', timeoutMs);
    return this.parse(true);
  }

  /** Every frame still unread (after the connection closed: what the server said last). */
  rest(): Received[] {
    const frames: Received[] = [];
    for (let frame = this.parse(true); frame !== null; frame = this.parse(true)) frames.push(frame);
    return frames;
  }

  private parse(consume: boolean): Received | null {
    const bytes = new Uint8Array(this.input.buffer, this.input.byteOffset, this.input.length);
    if (bytes.length - this.parsedBytes < FRAME_HEADER_BYTES) return null;
    const header = decodeFrameHeader(bytes, this.parsedBytes, 1 << 26);
    if (typeof header === 'string') throw new Error(`the server sent a bad frame: ${header}`);
    const end = this.parsedBytes + FRAME_HEADER_BYTES + header.lengthBytes;
    if (bytes.length < end) return null;
    const payload = bytes.slice(this.parsedBytes + FRAME_HEADER_BYTES, end);
    const problem = digestProblem(this.crc32c, header, bytes.subarray(this.parsedBytes, this.parsedBytes + FRAME_HEADER_BYTES), payload);
    if (problem !== null) throw new Error(`the server sent a frame with a bad digest: ${problem}`);
    if (consume) this.parsedBytes = end;
    return { header, payload };
  }
}

export interface FrameFields {
  op: number;
  flags?: number;
  imm?: number;
  addr?: bigint;
  key?: number;
  seq?: number;
  /** What the header says, when not the payload's length. */
  lengthBytes?: number;
}

/** One frame as bytes: the header (with a digest when DIGEST is in the flags; `badDigest` spoils it) and the payload. */
export function frameBytes(crc32c: Crc32c, fields: FrameFields, payload: Uint8Array, digest: boolean, badDigest = false): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const header: FrameHeader = {
    op: fields.op, flags: fields.flags ?? (digest ? FRAME_FLAG_DIGEST : 0), imm: fields.imm ?? 0, addr: fields.addr ?? 0n, key: fields.key ?? 0,
    lengthBytes: fields.lengthBytes ?? payload.length, seq: fields.seq ?? 0, digest: 0,
  };
  encodeFrameHeader(header, out);
  out.set(payload, FRAME_HEADER_BYTES);
  if ((header.flags & FRAME_FLAG_DIGEST) !== 0) {
    header.digest = (frameDigest(crc32c, out, payload) ^ (badDigest ? 1 << (payload.length % 32) : 0)) >>> 0;
    encodeFrameHeader(header, out);
  }
  return out;
}
