/**
 * Copy buffers reused across region copies that go through memory (a source or destination that is
 * not a file on the same filesystem): a fresh zeroed COPY_PIECE_BYTES buffer per copy cost a memset
 * and garbage collection on the event loop (bench clone: latency while hydrating). Full-size pieces
 * reuse up to COPY_BUFFERS_KEPT idle buffers; a smaller copy (a few small regions) gets its own,
 * which is not kept. `drop()` lets the memory go once no more copies will come (hydrated).
 */

/** Largest single read/write a copy issues; bigger regions are copied piece by piece. */
export const COPY_PIECE_BYTES = 4 << 20;
/** Idle copy buffers kept for the next copies (more run at once only under a high threshold). */
export const COPY_BUFFERS_KEPT = 4;

export class CopyBufferPool {
  private readonly idle: Uint8Array[] = [];
  private dropped = false;

  /** A buffer for a copy of `lengthBytes`: min(COPY_PIECE_BYTES, lengthBytes) long. */
  take(lengthBytes: number): Uint8Array {
    const pieceBytes = Math.min(COPY_PIECE_BYTES, lengthBytes);
    return (pieceBytes === COPY_PIECE_BYTES ? this.idle.pop() : undefined) ?? new Uint8Array(pieceBytes);
  }

  /** Gives a buffer back after its copy (kept only when full-size, room left, and not dropped). */
  give(buffer: Uint8Array): void {
    if (buffer.length === COPY_PIECE_BYTES && !this.dropped && this.idle.length < COPY_BUFFERS_KEPT) this.idle.push(buffer);
  }

  /** No more copies: let the kept buffers go, and keep none from now on. */
  drop(): void {
    this.dropped = true;
    this.idle.length = 0;
  }
}
