/**
 * CopyBufferPool: buffers reused across copies that go through memory (a source or destination
 * that cannot copy in the kernel, see range-copy.ts). A fresh zeroed buffer per copy costs a
 * memset and garbage collection on the event loop (bench clone: latency while hydrating; a clone
 * of 4 KiB regions spent 10% of its time allocating and collecting them). Buffers are kept by
 * length (copies of one engine come in a few sizes: a region, a piece), at most COPY_BUFFERS_KEPT
 * of each length and KEPT_BYTES_MAX in all. `drop()` lets the memory go once no more copies will
 * come (a clone fully hydrated).
 */

/** Idle buffers kept per length (more run at once only under a high threshold). */
export const COPY_BUFFERS_KEPT = 4;
/** Idle bytes kept in all. */
const KEPT_BYTES_MAX = 16 << 20;

export class CopyBufferPool {
  private readonly idle = new Map<number, Uint8Array[]>();
  private keptBytes = 0;
  private dropped = false;

  /** A buffer of `lengthBytes`. */
  take(lengthBytes: number): Uint8Array {
    const buffer = this.idle.get(lengthBytes)?.pop();
    if (buffer === undefined) return new Uint8Array(lengthBytes);
    this.keptBytes -= buffer.length;
    return buffer;
  }

  /** Gives a buffer back after its copy (kept if there is room and the pool is not dropped). */
  give(buffer: Uint8Array): void {
    if (this.dropped || this.keptBytes + buffer.length > KEPT_BYTES_MAX) return;
    let kept = this.idle.get(buffer.length);
    if (kept === undefined) this.idle.set(buffer.length, (kept = []));
    if (kept.length >= COPY_BUFFERS_KEPT) return;
    kept.push(buffer);
    this.keptBytes += buffer.length;
  }

  /** No more copies: let the kept buffers go, and keep none from now on. */
  drop(): void {
    this.dropped = true;
    this.idle.clear();
    this.keptBytes = 0;
  }
}
