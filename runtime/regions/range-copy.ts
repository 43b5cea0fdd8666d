/**
 * RangeCopier: copies byte ranges from one device to another the fastest way the pair allows, for
 * the engines that move regions behind the user's I/O (clone hydration, mirror and md resync):
 *   in the kernel    the source lends the range as a file span (BlockDevice.fileSpan) and the
 *                    destination takes it (BlockDevice.copyFromSpan: copy_file_range), so the
 *                    bytes never cross our memory and large copies run off the event loop;
 *   through memory   otherwise: read into a pooled buffer, write it, piece by piece, yielding
 *                    the event loop between pieces once a time slice is spent (time-slice.ts).
 *                    Pieces start at MEMORY_PIECE_BYTES_MAX, which Node's and Bun's file calls
 *                    move on the thread pool; when a piece's calls held the calling turn for
 *                    more than a slice (memory devices, Deno's file calls: a 64 MiB batch held
 *                    the loop for 450 ms), the pieces halve, down to MEMORY_PIECE_BYTES_MIN.
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
import { SLICE_MS, TimeSlice } from './time-slice.ts';

/** Largest piece a copy hands to the kernel at once (about a millisecond on another thread). */
export const COPY_PIECE_BYTES = 4 << 20;
/** Largest read or write a copy through memory issues (on the thread pool where devices use one). */
export const MEMORY_PIECE_BYTES_MAX = 1 << 20;
/** Smallest: a 16 KiB copy in the calling turn takes microseconds. */
export const MEMORY_PIECE_BYTES_MIN = 16 * 1024;
/** Pieces copied at once per copier. */
export const PIECES_IN_FLIGHT_MAX = 1;

export class RangeCopier {
  /** False once the pair is known not to copy in the kernel. */
  private inKernel: boolean;
  private piecesInFlight = 0;
  /** Through memory: the piece size, halved while pieces hold the calling turn too long. */
  private memoryPieceBytes = MEMORY_PIECE_BYTES_MAX;
  private readonly memoryPieceBytesMin: number;
  private pieceWaiters: Array<() => void> = [];

  constructor(
    private readonly source: BlockDevice,
    private readonly destination: BlockDevice,
    private readonly buffers = new CopyBufferPool(),
  ) {
    this.inKernel = source.fileSpan !== undefined && destination.copyFromSpan !== undefined;
    this.memoryPieceBytesMin = Math.max(MEMORY_PIECE_BYTES_MIN, source.logicalBlockBytes, destination.logicalBlockBytes);
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
    const buffer = this.buffers.take(Math.min(this.memoryPieceBytes, lengthBytes));
    const slice = new TimeSlice();
    try {
      const endBytes = offsetBytes + lengthBytes;
      for (let atBytes = offsetBytes; atBytes < endBytes; ) {
        const pieceBytes = Math.min(this.memoryPieceBytes, buffer.length, endBytes - atBytes);
        const piece = pieceBytes === buffer.length ? buffer : buffer.subarray(0, pieceBytes);
        // The time each call spends before it hands back its promise is time the loop is held.
        const readStartMs = performance.now();
        const reading = this.source.read(atBytes, piece);
        const readTurnMs = performance.now() - readStartMs;
        await reading;
        const writeStartMs = performance.now();
        const writing = this.destination.write(atBytes, piece);
        const writeTurnMs = performance.now() - writeStartMs;
        await writing;
        if (readTurnMs + writeTurnMs > SLICE_MS && this.memoryPieceBytes > this.memoryPieceBytesMin) {
          this.memoryPieceBytes = Math.max(this.memoryPieceBytesMin, this.memoryPieceBytes >> 1);
        }
        atBytes += pieceBytes;
        await slice.yieldIfSpent();
      }
    } finally {
      this.buffers.give(buffer);
    }
  }
}
