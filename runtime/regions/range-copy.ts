/**
 * RangeCopier: copies byte ranges from one device to another the fastest way the pair allows, for
 * the engines that move regions behind the user's I/O (clone hydration, mirror and md resync):
 *   in the kernel    the source lends the range as a file span (BlockDevice.fileSpan) and the
 *                    destination takes it (BlockDevice.copyFromSpan: copy_file_range), so the
 *                    bytes never cross our memory and large copies run off the event loop;
 *   through memory   otherwise: read into a pooled buffer, write it, in pieces of
 *                    MEMORY_PIECE_BYTES, yielding a macrotask between pieces. Where the devices'
 *                    calls complete in the calling turn (memory devices, Deno's file calls) a
 *                    64 MiB batch held the loop for 450 ms; now one piece does (~0.1 ms), and
 *                    Node's and Bun's file calls still move a piece that size on their thread
 *                    pool. Piece size and yields are fixed, never tuned by measured time: the
 *                    same seed must issue the same I/O in the same order (the power-loss trials
 *                    replay exactly), and a copy of one piece (small regions) never yields.
 * When the kernel path declines a piece and the memory path then copies that same piece, the pair
 * cannot copy in the kernel (another filesystem, no FFI): later copies go through memory at once.
 * When the memory path fails too, the error is the copy's (a real I/O error, with its errno).
 *
 * At most PIECES_IN_FLIGHT_MAX pieces run at once per copier, whatever the number of copies the
 * walker starts: each in-kernel piece occupies a thread, and on a small machine more parallel
 * copies only take cores and the runtime's thread pool (fdatasync of commits, user I/O) from
 * everything else without moving more bytes.
 *
 * Durability: none of its own. A copy resolves when the destination holds the bytes as after a
 * write(); the engine flushes the destination before its metadata says so.
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { CopyBufferPool } from './copy-buffers.ts';
import { nextMacrotask } from './time-slice.ts';

/** Largest piece a copy hands to the kernel at once (about a millisecond on another thread). */
export const COPY_PIECE_BYTES = 4 << 20;
/**
 * Largest read or write a copy through memory issues: about 0.1 ms in the calling turn, and the
 * size from which Node's and Bun's file calls use the thread pool (POOL_TRANSFER_BYTES).
 */
export const MEMORY_PIECE_BYTES = 128 * 1024;
/** Pieces copied at once per copier. */
export const PIECES_IN_FLIGHT_MAX = 1;

export class RangeCopier {
  /** False once the pair is known not to copy in the kernel. */
  private inKernel: boolean;
  private piecesInFlight = 0;
  private pieceWaiters: Array<() => void> = [];

  constructor(
    private readonly source: BlockDevice,
    private readonly destination: BlockDevice,
    private readonly buffers = new CopyBufferPool(),
  ) {
    this.inKernel = source.fileSpan !== undefined && destination.copyFromSpan !== undefined;
  }

  /** Copies [offsetBytes, offsetBytes + lengthBytes); rejects with the I/O error that stopped it. */
  async copy(offsetBytes: number, lengthBytes: number): Promise<void> {
    const endBytes = offsetBytes + lengthBytes;
    for (let atBytes = offsetBytes; atBytes < endBytes; atBytes += COPY_PIECE_BYTES) {
      const pieceBytes = Math.min(COPY_PIECE_BYTES, endBytes - atBytes);
      if (this.piecesInFlight >= PIECES_IN_FLIGHT_MAX) await new Promise<void>((resolve) => this.pieceWaiters.push(resolve));
      this.piecesInFlight++;
      try {
        await this.copyPiece(atBytes, pieceBytes);
      } finally {
        this.piecesInFlight--;
        this.pieceWaiters.shift()?.();
      }
    }
  }

  /** No more copies will come: let the buffers go. */
  drop(): void {
    this.buffers.drop();
  }

  private async copyPiece(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (this.inKernel && (await this.copyInKernel(offsetBytes, lengthBytes))) return;
    await this.copyThroughMemory(offsetBytes, lengthBytes);
    // The memory path copied what the kernel path declined: this pair cannot copy in the kernel.
    this.inKernel = false;
  }

  private async copyInKernel(offsetBytes: number, lengthBytes: number): Promise<boolean> {
    const span = this.source.fileSpan!(offsetBytes, lengthBytes);
    if (span === null) return false;
    try {
      return await this.destination.copyFromSpan!(offsetBytes, span);
    } finally {
      span.release();
    }
  }

  private async copyThroughMemory(offsetBytes: number, lengthBytes: number): Promise<void> {
    const buffer = this.buffers.take(Math.min(MEMORY_PIECE_BYTES, lengthBytes));
    try {
      const endBytes = offsetBytes + lengthBytes;
      for (let atBytes = offsetBytes; atBytes < endBytes; atBytes += buffer.length) {
        if (atBytes > offsetBytes) await nextMacrotask();
        const piece = buffer.length <= endBytes - atBytes ? buffer : buffer.subarray(0, endBytes - atBytes);
        await this.source.read(atBytes, piece);
        await this.destination.write(atBytes, piece);
      }
    } finally {
      this.buffers.give(buffer);
    }
  }
}
