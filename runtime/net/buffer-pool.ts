/**
 * BufferPool: reusable buffers for outgoing frames that carry bulk data (a server's read replies,
 * a client's write requests). Protocol-neutral, shared by servers and clients (runtime/net/).
 *
 * Why: a fresh 256 KiB buffer per frame costs a malloc, a page fault per 4 KiB page when the data
 * first touches it, and garbage collection later: measured, that was the larger part of serving
 * big sequential NBD reads. Memory here comes in classes of a power of two plus HEADER_ROOM_BYTES
 * (so 256 KiB of data and its frame header share one 256 KiB class rather than doubling to
 * 512 KiB), 4 KiB .. 64 MiB, handed out as exact-length Buffer views, and goes back to its class
 * once the socket has taken the bytes (`release`; output-queue.ts does it). At most
 * MAX_POOLED_BYTES are kept idle; the rest is left to the collector. One pool per server or client
 * (single-threaded by construction).
 */
import { assert } from '../assert.ts';

/** Room above the power of two for a frame header (NBD's largest reply header is 28 bytes). */
const HEADER_ROOM_BYTES = 64;
const MIN_CLASS_BITS = 12;
const MAX_CLASS_BITS = 26;
/** Idle memory kept, all classes together. */
const MAX_POOLED_BYTES = 64 * 1024 * 1024;

export class BufferPool {
  private readonly free: ArrayBuffer[][] = [];
  private readonly mine = new WeakSet<ArrayBuffer>();
  private pooledBytes = 0;

  constructor() {
    for (let bits = 0; bits <= MAX_CLASS_BITS; bits++) this.free.push([]);
  }

  /** A buffer of exactly `byteCount` bytes (contents undefined); give it back with `release`. */
  take(byteCount: number): Buffer {
    const bits = classBits(byteCount);
    if (bits > MAX_CLASS_BITS) return Buffer.allocUnsafeSlow(byteCount);
    let memory = this.free[bits]!.pop();
    if (memory !== undefined) this.pooledBytes -= memory.byteLength;
    else {
      memory = new ArrayBuffer(classBytes(bits));
      this.mine.add(memory);
    }
    return Buffer.from(memory, 0, byteCount);
  }

  /** True when `view` lies over memory from `take` (and so must be released once sent). */
  owns(view: Uint8Array): boolean {
    return this.mine.has(view.buffer as ArrayBuffer);
  }

  /** Takes back the memory under `view` if it came from `take`; a no-op for anything else. */
  release(view: Uint8Array): void {
    const memory = view.buffer as ArrayBuffer;
    if (!this.mine.has(memory)) return;
    if (this.pooledBytes + memory.byteLength > MAX_POOLED_BYTES) {
      this.mine.delete(memory);
      return;
    }
    this.free[classBits(memory.byteLength)]!.push(memory);
    this.pooledBytes += memory.byteLength;
  }
}

/** The class holding `byteCount` bytes: the smallest k with 2^k + HEADER_ROOM_BYTES >= byteCount. */
function classBits(byteCount: number): number {
  assert(byteCount > 0, 'buffer pool: empty buffer');
  const body = Math.max(1, byteCount - HEADER_ROOM_BYTES);
  return Math.max(MIN_CLASS_BITS, 32 - Math.clz32(body - 1));
}

function classBytes(bits: number): number {
  return 2 ** bits + HEADER_ROOM_BYTES;
}

assert(classBits(classBytes(MIN_CLASS_BITS)) === MIN_CLASS_BITS && classBits(classBytes(18)) === 18, 'buffer pool: a class holds its own size');
assert(classBits(256 * 1024 + 28) === 18, 'buffer pool: a 256 KiB read reply fits the 256 KiB class');
