/**
 * InputBuffer: the bytes received on one stream socket and not yet parsed, as a queue of socket
 * chunks. Protocol-neutral (runtime/net/ is shared by every server and client: the NBD server
 * today, an RNBD client and RTRS next): it knows bytes, not frames; the codec on top says how many
 * bytes a header or payload needs.
 *
 * Frames are parsed in place when they sit inside one chunk (nearly always: `contiguous`) and
 * copied out only when they straddle chunks; a payload inside one chunk is handed on as a view,
 * no copy (`take`). Socket chunks from 'data' events are never reused by the runtimes (each read
 * is a fresh buffer), so views stay valid for as long as whoever took them holds them; a chunk read
 * into a reused buffer (the adapter's SocketReads) is the reader's to copy (`keepUnread`). No state beyond the queue:
 * `clear` forgets everything (a connection that stops reading).
 */
import { assert } from '../assert.ts';

export class InputBuffer {
  private chunks: Uint8Array[] = [];
  private headAt = 0;
  private lengthBytes = 0;

  get length(): number {
    return this.lengthBytes;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.lengthBytes += chunk.length;
  }

  /**
   * Makes the next `byteCount` bytes (which must be available) contiguous and returns the chunk
   * holding them; they start at `front`. Call `consume` afterwards.
   */
  contiguous(byteCount: number): Uint8Array {
    assert(byteCount <= this.lengthBytes, `input: ${byteCount} bytes asked, ${this.lengthBytes} held`);
    const first = this.chunks[0]!;
    if (first.length - this.headAt >= byteCount) return first;
    const merged = this.copyOut(byteCount);
    // Replace the bytes we copied with the merged chunk, so `front` is 0 and nothing is lost: the
    // chunk the copy ended in keeps only its unread rest.
    this.dropBytes(byteCount);
    if (this.headAt > 0) {
      this.chunks[0] = this.chunks[0]!.subarray(this.headAt);
      this.headAt = 0;
    }
    this.chunks.unshift(merged);
    this.lengthBytes += byteCount;
    return merged;
  }

  /** Offset of the next unread byte within the chunk `contiguous` returned. */
  get front(): number {
    return this.headAt;
  }

  consume(byteCount: number): void {
    assert(byteCount <= this.lengthBytes, `input: consume ${byteCount} of ${this.lengthBytes}`);
    this.dropBytes(byteCount);
  }

  /** Removes and returns the next `byteCount` bytes (available): a view when they lie in one chunk. */
  take(byteCount: number): Uint8Array {
    assert(byteCount <= this.lengthBytes, `input: take ${byteCount} of ${this.lengthBytes}`);
    const first = this.chunks[0]!;
    if (first.length - this.headAt >= byteCount) {
      const view = first.subarray(this.headAt, this.headAt + byteCount);
      this.dropBytes(byteCount);
      return view;
    }
    const copy = this.copyOut(byteCount);
    this.dropBytes(byteCount);
    return copy;
  }

  /**
   * Removes and returns up to `maxBytes` of the next bytes, as a view of the chunk they start in
   * (never a copy): at least one byte when any is held, fewer than asked when the chunk ends first.
   * For payloads copied into their destination as they arrive.
   */
  takeSome(maxBytes: number): Uint8Array {
    assert(maxBytes > 0 && this.lengthBytes > 0, `input: takeSome ${maxBytes} of ${this.lengthBytes}`);
    const first = this.chunks[0]!;
    const byteCount = Math.min(maxBytes, first.length - this.headAt);
    const view = first.subarray(this.headAt, this.headAt + byteCount);
    this.dropBytes(byteCount);
    return view;
  }

  /**
   * `chunk`, pushed last, lies in memory the runtime is about to read into again (a reused read
   * buffer: SocketReads): whatever unread bytes are still held in that memory (the chunk, or what
   * `contiguous` left of it) become a copy of their own.
   */
  keepUnread(chunk: Uint8Array): void {
    for (let index = 0; index < this.chunks.length; index++) {
      const held = this.chunks[index]!;
      if (held.buffer !== chunk.buffer) continue;
      const from = index === 0 ? this.headAt : 0;
      this.chunks[index] = Uint8Array.prototype.slice.call(held, from); // a copy even for a Buffer, whose slice is a view
      if (index === 0) this.headAt = 0;
    }
  }

  /** Drops up to `byteCount` bytes; returns how many were dropped. */
  skip(byteCount: number): number {
    const dropped = Math.min(byteCount, this.lengthBytes);
    this.dropBytes(dropped);
    return dropped;
  }

  clear(): void {
    this.chunks = [];
    this.headAt = 0;
    this.lengthBytes = 0;
  }

  private copyOut(byteCount: number): Uint8Array {
    const out = new Uint8Array(byteCount);
    let doneBytes = 0;
    let at = this.headAt;
    for (const chunk of this.chunks) {
      const piece = Math.min(chunk.length - at, byteCount - doneBytes);
      out.set(chunk.subarray(at, at + piece), doneBytes);
      doneBytes += piece;
      at = 0;
      if (doneBytes === byteCount) break;
    }
    return out;
  }

  private dropBytes(byteCount: number): void {
    this.lengthBytes -= byteCount;
    let left = byteCount;
    while (left > 0) {
      const first = this.chunks[0]!;
      const inFirst = first.length - this.headAt;
      if (left < inFirst) {
        this.headAt += left;
        return;
      }
      left -= inFirst;
      this.chunks.shift();
      this.headAt = 0;
    }
    if (this.chunks.length > 0 && this.headAt === this.chunks[0]!.length) {
      this.chunks.shift();
      this.headAt = 0;
    }
  }
}
