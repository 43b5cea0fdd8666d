/**
 * Transmission for one connection: runs requests that passed `checkRequest` against the export's
 * device and builds each reply as one frame. Every request gets exactly one frame (a simple reply,
 * or one structured chunk flagged DONE), and the returned promise never rejects: device errors
 * become NBD errors (errors.ts), with a message when structured replies carry one.
 *
 *   READ          at least ZERO_COPY_MIN_BYTES from a device that has the range in a file
 *                 (fileSpan), on a socket that can take zero-copy sends: a FileFrame (the header
 *                 and the span; runtime/net/output-queue.ts sends it with sendfile); else data
 *                 read into a pooled reply buffer right after its header (no copy). Structured: one
 *                 OFFSET_DATA chunk; except that a read of at least HOLE_CHECK_MIN_BYTES without DF,
 *                 from a device with blockStatus, asks it first, and when part of the range reads
 *                 as zeros (runs of at least HOLE_MIN_BYTES) answers those parts with OFFSET_HOLE
 *                 chunks (no data sent) and the rest with OFFSET_DATA chunks, all in one pooled
 *                 buffer, the last chunk flagged DONE (a status that fails: read it all);
 *   WRITE         device.write, { fua } from the FUA flag;
 *   FLUSH         device.flush;
 *   TRIM          device.discard (a hint; the device may ignore it), then flush when FUA;
 *   WRITE_ZEROES  discard when holes are allowed (no NO_HOLE) and the device's discard reads back
 *                 as zeros (`discardZeroes`); else zeros written in ZERO_CHUNK_BYTES pieces,
 *                 yielding to the event loop every ZERO_YIELD_BYTES so other connections keep
 *                 moving; then flush when FUA. With FAST_ZERO the zeros must come from the discard
 *                 (holes allowed, discard reads back as zeros): otherwise ENOTSUP at once, nothing
 *                 written, so the client (qemu-img convert pre-zeroing a target) falls back to
 *                 writing data. A FileDevice on a filesystem that cannot punch holes fills the
 *                 range with zeros inside discard(): still correct, only not fast;
 *   CACHE         `cache` when the device has one (a clone: copy those regions now); else
 *                 nothing to do, success;
 *   BLOCK_STATUS  one chunk per metadata context selected (meta-contexts.ts), the last flagged
 *                 DONE: base:allocation from device.blockStatus (all data when it has none), a
 *                 bitmap's runs (dirty where set); each merged, at most MAX_BLOCK_DESCRIPTORS
 *                 descriptors (one with REQ_ONE). Any context failing makes the reply one error.
 */
import { setImmediate } from 'node:timers';
import type { BlockDevice, BlockExtent } from '../../runtime/devices/block-device.ts';
import { statusOf } from '../../runtime/devices/extents.ts';
import type { BufferPool } from '../../runtime/net/buffer-pool.ts';
import { FileFrame, type Frame } from '../../runtime/net/file-frame.ts';
import {
  MAX_BLOCK_DESCRIPTORS, MAX_MESSAGE_BYTES, NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_FLAG_DF, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL, NBD_ENOTSUP, NBD_STATE_HOLE, NBD_STATE_ZERO, SIMPLE_REPLY_HEADER_BYTES,
} from './constants.ts';
import { blockSizes, transmissionFlags } from './export-flags.ts';
import { messageOf, nbdErrorOf } from './errors.ts';
import { EXTENDED_CHUNKS } from './extended-codec.ts';
import { bitmapDescriptors, type MetaContext } from './meta-contexts.ts';
import type { Agreement } from './negotiation.ts';
import type { Refusal, Session } from './request-check.ts';
import {
  COMPACT_CHUNKS, dataChunkHeaderBytes, encodeBlockStatusChunk, encodeErrorChunk, encodeNoneChunk, encodeSimpleReply, holeChunkBytes, writeDataChunkHeader,
  writeHoleChunk, writeSimpleReplyHeader, type ChunkFormat,
  type BlockDescriptor, type NbdRequest,
} from './request-codec.ts';
import type { NbdCounters } from './types.ts';
import { utf8Truncated } from './wire.ts';

/**
 * Reads of at least this many bytes go out as FileFrames when they can. Smaller ones are read into
 * memory: coalesced with their neighbours into one socket write, they cost less than a sendfile
 * each (fio 4 KiB reads at queue depth 32).
 */
export const ZERO_COPY_MIN_BYTES = 64 * 1024;
/** WRITE_ZEROES without a usable discard writes zeros in pieces of this size. */
export const ZERO_CHUNK_BYTES = 1 << 20;
/** After this many zero bytes written in one go, let the event loop run. */
const ZERO_YIELD_BYTES = 16 * ZERO_CHUNK_BYTES;
/** Shared, never written: devices only read the data they are given. */
const ZEROS = new Uint8Array(ZERO_CHUNK_BYTES);

/** Reads at least this long ask the device where its zeros are first (OFFSET_HOLE chunks). */
export const HOLE_CHECK_MIN_BYTES = 64 * 1024;
/** Zero runs shorter than this are sent as data: a chunk header costs more than they save. */
export const HOLE_MIN_BYTES = 4096;

/** One chunk of a sparse read reply. */
interface ReadPiece {
  offsetBytes: number;
  lengthBytes: number;
  zero: boolean;
}

/**
 * The chunks of a read of `[offsetBytes, offsetBytes + lengthBytes)` from block-status extents:
 * zero runs of at least HOLE_MIN_BYTES as holes, everything else (shorter zero runs too) merged
 * into data runs. Covers the range exactly, whatever the extents say past it.
 */
export function readPieces(extents: readonly BlockExtent[], offsetBytes: number, lengthBytes: number): ReadPiece[] {
  const pieces: ReadPiece[] = [];
  const endBytes = offsetBytes + lengthBytes;
  let atBytes = offsetBytes;
  const add = (runBytes: number, zero: boolean) => {
    const last = pieces[pieces.length - 1];
    if (last !== undefined && last.zero === zero) last.lengthBytes += runBytes;
    else pieces.push({ offsetBytes: atBytes, lengthBytes: runBytes, zero });
    atBytes += runBytes;
  };
  for (const extent of extents) {
    if (atBytes >= endBytes) break;
    const runBytes = Math.min(extent.lengthBytes, endBytes - atBytes);
    if (runBytes <= 0) continue;
    add(runBytes, extent.zero && runBytes >= HOLE_MIN_BYTES);
  }
  if (atBytes < endBytes) add(endBytes - atBytes, false);
  return pieces;
}

/** base:allocation's descriptors for a request of `lengthBytes`: the device's extents, merged, at most `limit`. */
function allocationDescriptors(extents: readonly BlockExtent[], lengthBytes: number, limit: number): BlockDescriptor[] {
  const descriptors: BlockDescriptor[] = [];
  let coveredBytes = 0;
  for (const extent of extents) {
    const statusFlags = (extent.hole ? NBD_STATE_HOLE : 0) | (extent.zero ? NBD_STATE_ZERO : 0);
    const runBytes = Math.min(extent.lengthBytes, lengthBytes - coveredBytes);
    if (runBytes <= 0) break;
    const last = descriptors[descriptors.length - 1];
    if (last !== undefined && last.statusFlags === statusFlags) last.lengthBytes += runBytes;
    else if (descriptors.length === limit) break;
    else descriptors.push({ lengthBytes: runBytes, statusFlags });
    coveredBytes += runBytes;
  }
  return descriptors;
}

export class ExportSession {
  readonly name: string;
  readonly device: BlockDevice;
  /** For checkRequest. */
  readonly session: Session;
  private readonly structured: boolean;
  /** 32-byte headers (extended-codec.ts): every reply a chunk, none simple. */
  readonly extended: boolean;
  /** How this connection's chunk headers look. */
  private readonly chunks: ChunkFormat;
  private readonly readHeaderBytes: number;
  private readonly metaContexts: readonly MetaContext[];

  constructor(
    agreement: Agreement,
    private readonly counters: NbdCounters,
    private readonly pool: BufferPool,
    /** The connection's output queue sends FileFrames with zero copy. */
    private readonly zeroCopy = false,
  ) {
    const { exported } = agreement;
    this.name = exported.name;
    this.device = exported.device;
    this.structured = agreement.structuredReplies;
    this.extended = agreement.extendedHeaders;
    this.chunks = this.extended ? EXTENDED_CHUNKS : COMPACT_CHUNKS;
    this.readHeaderBytes = this.structured ? dataChunkHeaderBytes(this.chunks) : SIMPLE_REPLY_HEADER_BYTES;
    const sizes = blockSizes(exported.device);
    this.session = {
      sizeBytes: exported.device.sizeBytes,
      minimumBlockBytes: sizes === null ? exported.device.logicalBlockBytes : sizes.minimumBytes,
      transmissionFlags: transmissionFlags(exported, agreement.structuredReplies),
      structuredReplies: agreement.structuredReplies,
      baseAllocation: agreement.metaContexts.length > 0,
      extendedHeaders: agreement.extendedHeaders,
    };
    this.metaContexts = agreement.metaContexts;
  }

  /** Runs a checked request; `payload` is a WRITE's data. Resolves with the one reply frame. */
  run(request: NbdRequest, payload: Uint8Array): Promise<Frame> {
    try {
      return this.dispatch(request, payload);
    } catch (error) {
      // A device that throws instead of rejecting: still one reply.
      return Promise.resolve(this.failed(request, error));
    }
  }

  private dispatch(request: NbdRequest, payload: Uint8Array): Promise<Frame> {
    switch (request.type) {
      case NBD_CMD_READ:
        return this.read(request);
      case NBD_CMD_WRITE: {
        const fua = (request.flags & NBD_CMD_FLAG_FUA) !== 0;
        return this.settle(request, this.device.write(request.offsetBytes, payload, fua ? FUA : undefined), request.lengthBytes);
      }
      case NBD_CMD_FLUSH:
        return this.settle(request, this.device.flush(), 0);
      case NBD_CMD_TRIM:
        return this.settle(request, this.trim(request), 0);
      case NBD_CMD_WRITE_ZEROES:
        if ((request.flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 && !this.zeroesByDiscard(request)) {
          return Promise.resolve(this.errorFrame(request, { error: NBD_ENOTSUP, message: 'WRITE_ZEROES: FAST_ZERO asked, but this range would be zeroed by writing zeros' }));
        }
        return this.settle(request, this.writeZeroes(request), 0);
      case NBD_CMD_CACHE:
        return this.settle(request, this.device.cache ? this.device.cache(request.offsetBytes, request.lengthBytes) : RESOLVED, 0);
      case NBD_CMD_BLOCK_STATUS:
        return this.blockStatus(request);
      default:
        return Promise.resolve(this.errorFrame(request, { error: NBD_EINVAL, message: `command ${request.type} cannot run` }));
    }
  }

  /** The reply to a request refused by the check (or that failed). */
  errorFrame(request: NbdRequest, refusal: Refusal): Uint8Array {
    this.counters.errors++;
    if (!this.structured) return encodeSimpleReply(refusal.error, request);
    return encodeErrorChunk(request, refusal.error, utf8Truncated(refusal.message, MAX_MESSAGE_BYTES), this.chunks);
  }

  private read(request: NbdRequest): Promise<Frame> {
    const lengthBytes = request.lengthBytes;
    if (lengthBytes === 0) return Promise.resolve(this.success(request));
    if (this.structured && lengthBytes >= HOLE_CHECK_MIN_BYTES && (request.flags & NBD_CMD_FLAG_DF) === 0 && this.device.blockStatus) {
      return this.readSparse(request);
    }
    return this.readWhole(request);
  }

  /** A read that may answer zero runs with OFFSET_HOLE chunks (see the design note). */
  private async readSparse(request: NbdRequest): Promise<Frame> {
    let extents: BlockExtent[];
    try {
      extents = await this.device.blockStatus!(request.offsetBytes, request.lengthBytes);
    } catch {
      return this.readWhole(request); // only a hint: the read itself reports a real error
    }
    // Outside the catch: a device that answers with something that is no list broke its contract (a fault).
    const pieces = readPieces(extents, request.offsetBytes, request.lengthBytes);
    if (!pieces.some((piece) => piece.zero)) return this.readWhole(request);
    let totalBytes = 0;
    const holeBytes = holeChunkBytes(this.chunks);
    const dataHeaderBytes = dataChunkHeaderBytes(this.chunks);
    for (const piece of pieces) totalBytes += piece.zero ? holeBytes : dataHeaderBytes + piece.lengthBytes;
    const frame = this.pool.take(totalBytes);
    const reads: Promise<void>[] = [];
    let at = 0;
    for (const [i, piece] of pieces.entries()) {
      const done = i === pieces.length - 1;
      if (piece.zero) {
        writeHoleChunk(frame, at, done, request, piece.offsetBytes, piece.lengthBytes, this.chunks);
        at += holeBytes;
        continue;
      }
      writeDataChunkHeader(frame, at, done, request, piece.offsetBytes, piece.lengthBytes, this.chunks);
      const dataAt = at + dataHeaderBytes;
      try {
        reads.push(this.device.read(piece.offsetBytes, frame.subarray(dataAt, dataAt + piece.lengthBytes)));
      } catch (error) {
        reads.push(Promise.reject(error));
      }
      at = dataAt + piece.lengthBytes;
    }
    try {
      await Promise.all(reads);
    } catch (error) {
      await Promise.allSettled(reads); // the buffer goes back to the pool only once no read fills it
      this.pool.release(frame);
      return this.failed(request, error);
    }
    this.counters.bytesRead += request.lengthBytes;
    return frame;
  }

  /** A read answered as one reply: zero copy when it can, else read into a pooled buffer. */
  private readWhole(request: NbdRequest): Promise<Frame> {
    const lengthBytes = request.lengthBytes;
    if (this.zeroCopy && lengthBytes >= ZERO_COPY_MIN_BYTES && this.device.fileSpan) {
      let span;
      try {
        span = this.device.fileSpan(request.offsetBytes, lengthBytes);
      } catch (error) {
        return Promise.resolve(this.failed(request, error));
      }
      if (span !== null) {
        const header = new Uint8Array(this.readHeaderBytes);
        this.writeReadHeader(header, request);
        this.counters.bytesRead += lengthBytes;
        return Promise.resolve(new FileFrame(header, span, (error) => this.failed(request, error)));
      }
    }
    const frame = this.pool.take(this.readHeaderBytes + lengthBytes);
    let pending: Promise<void>;
    try {
      pending = this.device.read(request.offsetBytes, frame.subarray(this.readHeaderBytes));
    } catch (error) {
      pending = Promise.reject(error);
    }
    return pending.then(
      () => {
        this.writeReadHeader(frame, request);
        this.counters.bytesRead += lengthBytes;
        return frame as Uint8Array;
      },
      (error) => {
        this.pool.release(frame);
        return this.failed(request, error);
      },
    );
  }

  private async trim(request: NbdRequest): Promise<void> {
    if (request.lengthBytes === 0) return;
    await this.device.discard(request.offsetBytes, request.lengthBytes);
    if ((request.flags & NBD_CMD_FLAG_FUA) !== 0) await this.device.flush();
  }

  private async writeZeroes(request: NbdRequest): Promise<void> {
    const { offsetBytes, lengthBytes } = request;
    if (lengthBytes === 0) return;
    const device = this.device;
    if (this.zeroesByDiscard(request)) {
      await device.discard(offsetBytes, lengthBytes);
    } else {
      let sinceYieldBytes = 0;
      for (let doneBytes = 0; doneBytes < lengthBytes; ) {
        const pieceBytes = Math.min(ZERO_CHUNK_BYTES, lengthBytes - doneBytes);
        await device.write(offsetBytes + doneBytes, pieceBytes === ZERO_CHUNK_BYTES ? ZEROS : ZEROS.subarray(0, pieceBytes));
        doneBytes += pieceBytes;
        sinceYieldBytes += pieceBytes;
        if (sinceYieldBytes >= ZERO_YIELD_BYTES && doneBytes < lengthBytes) {
          sinceYieldBytes = 0;
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
    }
    if ((request.flags & NBD_CMD_FLAG_FUA) !== 0) await device.flush();
  }

  /** WRITE_ZEROES may discard (holes allowed) and the device's discard reads back as zeros. */
  private zeroesByDiscard(request: NbdRequest): boolean {
    return (request.flags & NBD_CMD_FLAG_NO_HOLE) === 0 && this.device.canDiscard && this.device.discardZeroes;
  }

  private async blockStatus(request: NbdRequest): Promise<Uint8Array> {
    const reqOne = (request.flags & NBD_CMD_FLAG_REQ_ONE) !== 0;
    const limit = reqOne ? 1 : MAX_BLOCK_DESCRIPTORS;
    const chunks: Uint8Array[] = [];
    const contexts = this.metaContexts;
    for (const [i, context] of contexts.entries()) {
      let descriptors: BlockDescriptor[];
      if (context.bitmap === null) {
        let extents: BlockExtent[];
        try {
          extents = await statusOf(this.device, request.offsetBytes, request.lengthBytes);
        } catch (error) {
          return this.failed(request, error);
        }
        // Outside the catch: extents that are no list are a device's broken contract (a fault).
        descriptors = allocationDescriptors(extents, request.lengthBytes, limit);
      } else {
        try {
          descriptors = bitmapDescriptors(context.bitmap, request.offsetBytes, request.lengthBytes, limit);
        } catch (error) {
          return this.failed(request, error);
        }
      }
      if (descriptors.length === 0) return this.failed(request, new Error(`${context.name}: no extents for the range`));
      const done = i === contexts.length - 1;
      chunks.push(encodeBlockStatusChunk(request, context.id, descriptors, done, this.chunks));
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  /** Waits for `pending`; replies success (simple) or the error. */
  private settle(request: NbdRequest, pending: Promise<unknown>, writtenBytes: number): Promise<Uint8Array> {
    return pending.then(
      () => {
        this.counters.bytesWritten += writtenBytes;
        return this.success(request);
      },
      (error) => this.failed(request, error),
    );
  }

  /** A reply that says only "done": simple, or (extended headers, where simple replies are not allowed) a NONE chunk. */
  private success(request: NbdRequest): Uint8Array {
    return this.extended || (this.structured && request.type === NBD_CMD_READ) ? encodeNoneChunk(request, this.chunks) : encodeSimpleReply(0, request);
  }

  /** The header before a whole read's data: simple, or one final OFFSET_DATA chunk. */
  private writeReadHeader(bytes: Uint8Array, request: NbdRequest): void {
    if (this.structured) writeDataChunkHeader(bytes, 0, true, request, request.offsetBytes, request.lengthBytes, this.chunks);
    else writeSimpleReplyHeader(bytes, 0, 0, request);
  }

  private failed(request: NbdRequest, error: unknown): Uint8Array {
    return this.errorFrame(request, { error: nbdErrorOf(error), message: messageOf(error) });
  }
}

const FUA = { fua: true } as const;
const RESOLVED: Promise<void> = Promise.resolve();
