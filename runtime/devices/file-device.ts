/**
 * A BlockDevice over a regular file, through positional node:fs calls on one file descriptor.
 *
 * I/O path. bench/device.ts, 4 KiB random reads from a 256 MiB file in page cache, medians
 * (op/s; a shared 2-core VM, so the async figures swing widely between runs):
 *                              Node 20      Bun 1.4     Deno 2.9
 *   fs.readSync, plain loop    0.78 M       1.01 M      0.69 M
 *   FileDevice io 'sync'       0.63 M       0.97 M      0.69 M
 *   FileHandle.read            17-65 k      110 k       25-95 k
 *   FileDevice io 'async'      17-65 k      109 k       95 k
 * A page-cache pread costs about a microsecond; an async call costs a hop through the libuv (or
 * Tokio) thread pool and back through the event loop, 10-30x more than the copy it wraps. So by
 * default (`io: 'sync'`) data moves with synchronous pread/pwrite in the calling turn, and the one
 * call that is slow by nature — fdatasync, milliseconds on a real disk — goes through the thread
 * pool, so it never blocks the event loop. Large transfers (the adapter's `poolTransferBytes`,
 * 128 KiB on Node and Bun) go through the pool even in 'sync' mode: their copy (about 50 µs for
 * 256 KiB) costs more than the hop, and in the pool it runs on another core while the event loop
 * does other work — for an NBD export being copied, sending the previous reply (nbdcopy of a
 * 2 GiB export, paired runs against nbdkit on this 2-core VM: Unix socket 0.79x -> 0.89x on Node,
 * 0.61x -> 0.77x on Bun; TCP equal on Node, 0.71x -> 0.78x on Bun). Deno's async reads cost more
 * than they save (TCP 0.80x -> 0.47x), so there every transfer stays synchronous. The price of
 * the sync path: a small read that misses the page cache blocks the event loop for one disk
 * access. For slow or network filesystems, where that
 * access may take milliseconds, open with `io: 'async'`: every data call then goes through the
 * thread pool.
 * Zero-filling a discard (below) is always async, whatever `io` says: it may write gigabytes.
 *
 * Durability, what is on stable storage when:
 *   - write() resolved: the bytes are in the kernel page cache, visible to every reader of the
 *     file and safe from a crash of this process, but lost on power failure or kernel crash;
 *   - flush() resolved: fdatasync made every write (and discard) completed before the call durable,
 *     with the metadata needed to read it back (size, block allocation);
 *   - write(…, { fua: true }) resolved: this write is durable: it went through a second
 *     descriptor opened with O_DSYNC (opened at the first FUA write), so the kernel syncs its
 *     range and the metadata to read it back, not every dirty page of the file (earlier writes
 *     are not made durable by it: flush() does that);
 *   - open({ create }) resolved: the file, its size and its directory entry are durable (fsync of
 *     the file and of the parent directory), so a later flush() is never undone by a lost name.
 *
 * Discard punches a hole (fallocate PUNCH_HOLE|KEEP_SIZE, through the runtime adapter) when the
 * host can, releasing space; otherwise it writes zeros in MiB chunks. Either way the range reads as
 * zeros; the outcome is returned and kept in `discardMode`.
 *
 * Block status (blockStatus): lseek SEEK_DATA / SEEK_HOLE through the runtime adapter, so holes are
 * the filesystem's own (block-granular; boundaries are aligned to logicalBlockBytes, a straddling
 * block counting as data). Holes read as zeros. The lseek calls run in the calling turn in both io
 * modes (they touch only file metadata; in 'async' mode on a slow filesystem that is a known cost). When the host cannot tell (no FFI, a filesystem
 * without SEEK_HOLE), the whole range is reported as data.
 *
 * Copies in (copyFromSpan): another file's span is written here with copy_file_range through the
 * runtime adapter, so the bytes never cross our memory. A copy below COPY_IN_TURN_MAX_BYTES runs in
 * the calling turn ('sync' mode; a hop to another thread costs more than it does), a larger one on
 * another thread (koffi async, Deno nonblocking, a worker on Bun), so the event loop is not held:
 * an in-kernel copy moves about 3 GB/s, so 4 MiB would hold it for over a millisecond. Short
 * copies loop; any failure answers false and the caller copies through memory (see BlockDevice).
 *
 * Sparse files: created by ftruncate, so a device costs no space until written. ext4 with 4 KiB
 * blocks caps a file at 16 TiB - 4 KiB (2^32 - 1 blocks); creating a larger one fails with ERANGE.
 *
 * Only regular files: a directory, or a file whose size is not a multiple of logicalBlockBytes, is
 * refused with EINVAL naming the path. Block special files are not supported yet (node:fs cannot
 * ask a block device its size).
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadAdapter, type RuntimeAdapter } from '../adapter/index.ts';
import type { FileRangeCopy } from '../adapter/types.ts';
import { BlockError } from '../errors.ts';
import type { BlockDevice, BlockExtent, DiscardOutcome, FileSpan, WriteOptions } from './block-device.ts';
import { alignExtents, ExtentList } from './extents.ts';
import { datasync, errnoName, ioError, nodeSyscalls, readFully, readFullySync, writeFully, writeFullySync, type FileSyscalls, type IoPlace } from './file-io.ts';
import { OpGate } from './op-gate.ts';
import { EMPTY_DISCARD_OUTCOME, validateGeometry, validateOpen, validateRequest } from './validate.ts';

export type FileIoMode = 'sync' | 'async';
export type PunchHole = RuntimeAdapter['punchHole'];
export type SeekSparse = Pick<RuntimeAdapter, 'seekData' | 'seekHole'>;

/** Discards that cannot punch write zeros in chunks of this size. */
export const ZERO_CHUNK_BYTES = 1 << 20;
const DEFAULT_LOGICAL_BLOCK_BYTES = 512;
/** Returned by requests that completed within the call. */
const RESOLVED: Promise<void> = Promise.resolve();
const COPIED: Promise<boolean> = Promise.resolve(true);
const NOT_COPIED: Promise<boolean> = Promise.resolve(false);
/** copyFromSpan below this many bytes runs in the calling turn (in 'sync' mode). */
export const COPY_IN_TURN_MAX_BYTES = 64 * 1024;

export interface FileDeviceOptions {
  /** Open O_RDONLY: canWrite is false, write and discard raise EROFS. */
  readOnly?: boolean;
  /** Create a sparse file of this size; EEXIST if the path exists, unless `overwrite`. */
  create?: { sizeBytes: number; overwrite?: boolean };
  /** Default 512; a power of two. The file size must be a multiple of it. */
  logicalBlockBytes?: number;
  /** Default 'sync' (see the note at the top of this file). */
  io?: FileIoMode;
  /** Hole punching; default the runtime adapter's. Return false when the host cannot punch. */
  punchHole?: PunchHole;
  /** SEEK_DATA / SEEK_HOLE for blockStatus; default the runtime adapter's. Return -1 when unknown. */
  seek?: SeekSparse;
  /** Replace some syscalls (tests use it to force short reads and writes). */
  syscalls?: Partial<FileSyscalls>;
  /** copy_file_range for copyFromSpan; default the runtime adapter's; null: never copy in the kernel. */
  rangeCopy?: FileRangeCopy | null;
}

export class FileDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes = true;
  readonly io: FileIoMode;
  /** What the last non-empty discard did; undefined before the first. */
  discardMode: DiscardOutcome | undefined;
  private readonly place: IoPlace;
  private readonly gate = new OpGate();
  /** fileSpan() hands out spans: 'sync' mode and the real read syscalls (see fileSpan). */
  private readonly spansAllowed: boolean;
  /** copyFromSpan() copies in the kernel: an adapter that can, and the real write syscalls. */
  private readonly rangeCopy: FileRangeCopy | null;
  /** The O_DSYNC descriptor FUA writes go through, once one was asked for. */
  private dsyncPlace: IoPlace | null = null;

  private constructor(
    readonly path: string,
    fd: number,
    sizeBytes: number,
    logicalBlockBytes: number,
    readOnly: boolean,
    io: FileIoMode,
    private readonly punchHole: PunchHole,
    private readonly seek: SeekSparse,
    /** In 'sync' mode, transfers of this many bytes or more go through the thread pool (see above). */
    private readonly poolTransferBytes: number,
    private readonly sys: FileSyscalls,
    rangeCopy: FileRangeCopy | null,
  ) {
    this.name = path;
    this.place = { device: path, fd };
    this.sizeBytes = sizeBytes;
    this.logicalBlockBytes = logicalBlockBytes;
    this.canWrite = !readOnly;
    this.canDiscard = !readOnly;
    this.io = io;
    this.spansAllowed = io === 'sync' && sys.readSync === nodeSyscalls.readSync && sys.read === nodeSyscalls.read;
    // Replaced write syscalls (tests forcing short writes or faults) must see every byte written.
    this.rangeCopy = readOnly || sys.writeSync !== nodeSyscalls.writeSync || sys.write !== nodeSyscalls.write ? null : rangeCopy;
  }

  static async open(filePath: string, options: FileDeviceOptions = {}): Promise<FileDevice> {
    const logicalBlockBytes = options.logicalBlockBytes ?? DEFAULT_LOGICAL_BLOCK_BYTES;
    const io = options.io ?? 'sync';
    const readOnly = options.readOnly === true;
    const create = options.create;
    validateGeometry(filePath, create?.sizeBytes ?? 0, logicalBlockBytes);
    if (io !== 'sync' && io !== 'async') throw new BlockError('EINVAL', `io must be 'sync' or 'async', got ${String(io)}`, { device: filePath });
    if (create && readOnly) throw new BlockError('EINVAL', `cannot create ${filePath} read-only`, { device: filePath });
    const adapter = await loadAdapter();
    const punchHole = options.punchHole ?? adapter.punchHole;
    const seek = options.seek ?? adapter;
    const sys = { ...nodeSyscalls, ...options.syscalls };

    const flags = create ? (create.overwrite ? 'w+' : 'wx+') : readOnly ? 'r' : 'r+';
    // The callback API, not FileHandle: we keep the raw fd for positional calls and hole punching.
    const fd = await callback<number>((done) => fs.open(filePath, flags, done), filePath, 'open');
    try {
      if (create) await sizeNewFile(fd, filePath, create.sizeBytes);
      const stats = await callback<fs.Stats>((done) => fs.fstat(fd, done), filePath, 'fstat');
      if (!stats.isFile()) {
        throw new BlockError('EINVAL', `${filePath} is ${stats.isDirectory() ? 'a directory' : 'not a regular file'}`, { device: filePath });
      }
      if (stats.size % logicalBlockBytes !== 0) {
        throw new BlockError('EINVAL', `${filePath} is ${stats.size} bytes, not a multiple of logicalBlockBytes ${logicalBlockBytes}`, { device: filePath });
      }
      const rangeCopy = options.rangeCopy === undefined ? adapter.fileRangeCopy : options.rangeCopy;
      return new FileDevice(filePath, fd, stats.size, logicalBlockBytes, readOnly, io, punchHole, seek, adapter.poolTransferBytes, sys, rangeCopy);
    } catch (error) {
      fs.closeSync(fd);
      if (create) fs.rmSync(filePath, { force: true });
      throw error;
    }
  }

  // read and write are plain functions returning a settled promise on the sync path: an async
  // function would add a promise allocation per call (measured: ~10% of a 4 KiB page-cache read
  // on Node). The sync path completes within the call, so close() cannot slip into it and it
  // needs no in-flight tracking; everything asynchronous (large transfers included) is tracked.
  read(offsetBytes: number, target: Uint8Array): Promise<void> {
    try {
      validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
      if (target.length === 0) return RESOLVED;
      if (this.io === 'sync' && target.length < this.poolTransferBytes) {
        readFullySync(this.sys, this.place, target, offsetBytes);
        return RESOLVED;
      }
      return this.gate.track(() => readFully(this.sys, this.place, target, offsetBytes));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * The range as it lies in this file (BlockDevice.fileSpan), for zero-copy sends. Only in 'sync'
   * mode: 'async' is for filesystems where a read may block, which a sendfile on the event loop
   * must not.
   */
  fileSpan(offsetBytes: number, lengthBytes: number): FileSpan | null {
    validateRequest(this, this.gate.isOpen, 'span', offsetBytes, lengthBytes);
    // Replaced read syscalls (tests forcing short reads or faults) must see every byte read, which
    // a sendfile would bypass.
    if (lengthBytes === 0 || !this.spansAllowed) return null;
    const { sys, place, poolTransferBytes } = this;
    return {
      fd: place.fd,
      fileOffsetBytes: offsetBytes,
      lengthBytes,
      // No validation here: the span is checked and holds the gate, which may already be closing.
      read(spanOffsetBytes, target) {
        const atBytes = offsetBytes + spanOffsetBytes;
        if (target.length >= poolTransferBytes) return readFully(sys, place, target, atBytes);
        try {
          readFullySync(sys, place, target, atBytes);
          return RESOLVED;
        } catch (error) {
          return Promise.reject(error);
        }
      },
      release: this.gate.hold(),
    };
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    try {
      validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
      if (data.length === 0) return RESOLVED;
      if (options?.fua === true) {
        // Through the thread pool: an O_DSYNC write waits for the disk, the event loop must not.
        const place = this.dsync();
        return this.gate.track(() => writeFully(this.sys, place, data, offsetBytes));
      }
      if (this.io === 'sync' && data.length < this.poolTransferBytes) {
        writeFullySync(this.sys, this.place, data, offsetBytes);
        return RESOLVED;
      }
      return this.gate.track(() => writeFully(this.sys, this.place, data, offsetBytes));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private dsync(): IoPlace {
    if (this.dsyncPlace === null) {
      try {
        this.dsyncPlace = { device: this.path, fd: fs.openSync(this.path, fs.constants.O_RDWR | fs.constants.O_DSYNC) };
      } catch (error) {
        throw new BlockError('EIO', `opening for FUA writes (O_DSYNC) failed: ${String(error)}`, { device: this.path, cause: error });
      }
    }
    return this.dsyncPlace;
  }

  /** BlockDevice.copyFromSpan: copy_file_range from the span's file (see the note on top). */
  copyFromSpan(offsetBytes: number, span: FileSpan): Promise<boolean> {
    try {
      validateRequest(this, this.gate.isOpen, 'copy', offsetBytes, span.lengthBytes);
    } catch (error) {
      return Promise.reject(error);
    }
    const rangeCopy = this.rangeCopy;
    if (span.lengthBytes === 0) return COPIED;
    if (rangeCopy === null) return NOT_COPIED;
    const outFd = this.place.fd;
    if (this.io === 'sync' && span.lengthBytes < COPY_IN_TURN_MAX_BYTES) {
      for (let doneBytes = 0; doneBytes < span.lengthBytes; ) {
        const copied = rangeCopy.copySync(span.fd, span.fileOffsetBytes + doneBytes, outFd, offsetBytes + doneBytes, span.lengthBytes - doneBytes);
        if (copied <= 0) return NOT_COPIED;
        doneBytes += copied;
      }
      return COPIED;
    }
    return this.gate.track(async () => {
      for (let doneBytes = 0; doneBytes < span.lengthBytes; ) {
        const copied = await rangeCopy.copy(span.fd, span.fileOffsetBytes + doneBytes, outFd, offsetBytes + doneBytes, span.lengthBytes - doneBytes);
        if (copied <= 0) return false;
        doneBytes += copied;
      }
      return true;
    });
  }

  async flush(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'flush');
    if (!this.canWrite) return; // nothing of ours to make durable
    await this.gate.track(() => datasync(this.sys, this.place));
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
    if (lengthBytes === 0) return EMPTY_DISCARD_OUTCOME;
    this.discardMode = this.punchHole(this.place.fd, offsetBytes, lengthBytes)
      ? 'punched'
      : await this.gate.track(() => this.writeZeros(offsetBytes, lengthBytes));
    return this.discardMode;
  }

  /** Data and holes of the range from SEEK_DATA / SEEK_HOLE (see the note on top). */
  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    try {
      validateRequest(this, this.gate.isOpen, 'status', offsetBytes, lengthBytes);
      return Promise.resolve(alignExtents(this.sparseRuns(offsetBytes, lengthBytes), offsetBytes, this.logicalBlockBytes));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  close(): Promise<void> {
    return this.gate.close(async () => {
      if (this.dsyncPlace !== null) {
        const fd = this.dsyncPlace.fd;
        await callback<void>((done) => fs.close(fd, (error) => done(error)), this.path, 'close');
      }
      await callback<void>((done) => fs.close(this.place.fd, (error) => done(error)), this.path, 'close');
    });
  }

  /** Alternating data and hole runs covering the range, straight from lseek (not yet aligned). */
  private sparseRuns(offsetBytes: number, lengthBytes: number): BlockExtent[] {
    const runs = new ExtentList();
    const endBytes = offsetBytes + lengthBytes;
    const fd = this.place.fd;
    let atBytes = offsetBytes;
    while (atBytes < endBytes) {
      const holeBytes = this.seek.seekHole(fd, atBytes);
      // Inside the file SEEK_HOLE always answers (EOF counts as a hole), so -1 means "cannot tell".
      if (holeBytes < 0) {
        runs.push(endBytes - atBytes, false, false);
        break;
      }
      if (holeBytes > atBytes) {
        const dataEnd = Math.min(holeBytes, endBytes);
        runs.push(dataEnd - atBytes, false, false);
        atBytes = dataEnd;
        continue;
      }
      // atBytes is in a hole; it ends where data starts, or at the end of the file (-1: ENXIO).
      const dataBytes = this.seek.seekData(fd, atBytes);
      const holeEnd = dataBytes < 0 ? endBytes : Math.min(Math.max(dataBytes, atBytes), endBytes);
      if (holeEnd === atBytes) {
        // SEEK_HOLE said hole, SEEK_DATA said data at the same place (a racing write): call it data.
        runs.push(Math.min(this.logicalBlockBytes, endBytes - atBytes), false, false);
        atBytes += Math.min(this.logicalBlockBytes, endBytes - atBytes);
        continue;
      }
      runs.push(holeEnd - atBytes, true, true);
      atBytes = holeEnd;
    }
    return runs.extents;
  }

  private async writeZeros(offsetBytes: number, lengthBytes: number): Promise<'zeroed'> {
    const zeros = new Uint8Array(Math.min(ZERO_CHUNK_BYTES, lengthBytes));
    for (let doneBytes = 0; doneBytes < lengthBytes; doneBytes += zeros.length) {
      const chunk = zeros.subarray(0, Math.min(zeros.length, lengthBytes - doneBytes));
      await writeFully(this.sys, this.place, chunk, offsetBytes + doneBytes);
    }
    return 'zeroed';
  }
}

/** Gives a new file its size, then makes the file and its name durable (see the note on top). */
async function sizeNewFile(fd: number, filePath: string, sizeBytes: number): Promise<void> {
  await callback<void>((done) => fs.ftruncate(fd, sizeBytes, (error) => done(error)), filePath, 'ftruncate');
  await callback<void>((done) => fs.fsync(fd, (error) => done(error)), filePath, 'fsync');
  const directoryFd = await callback<number>((done) => fs.open(path.dirname(filePath), 'r', done), filePath, 'open directory');
  try {
    await callback<void>((done) => fs.fsync(directoryFd, (error) => done(error)), filePath, 'fsync directory');
  } finally {
    fs.closeSync(directoryFd);
  }
}

function callback<T>(start: (done: (error: NodeJS.ErrnoException | null, value?: T) => void) => void, filePath: string, what: string): Promise<T> {
  return call(() => new Promise<T>((resolve, reject) => start((error, value) => (error ? reject(error) : resolve(value as T)))), filePath, what);
}

/** Runs an fs call, turning OS errors into BlockErrors that name the path. */
async function call<T>(run: () => Promise<T>, filePath: string, what: string): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof BlockError) throw error;
    throw openError(error, filePath, what);
  }
}

function openError(error: unknown, filePath: string, what: string): BlockError {
  const errno = errnoName(error);
  const detail = { device: filePath, cause: error };
  switch (errno) {
    case 'ENOENT':
      return new BlockError('ENOENT', `${what}: ${filePath} does not exist`, detail);
    case 'EEXIST':
      return new BlockError('EEXIST', `${what}: ${filePath} exists already (pass create.overwrite to replace it)`, detail);
    case 'EISDIR':
      return new BlockError('EINVAL', `${what}: ${filePath} is a directory`, detail);
    case 'EROFS':
      return new BlockError('EROFS', `${what}: ${filePath} is on a read-only filesystem`, detail);
    case 'EFBIG':
    case 'EINVAL':
    case 'ERR_OUT_OF_RANGE': // Bun refuses some sizes before the syscall
      if (what === 'ftruncate') return new BlockError('ERANGE', `${what}: the filesystem cannot hold ${filePath} at that size`, detail);
      return new BlockError('EINVAL', `${what} ${filePath}: ${errno}`, detail);
    default:
      return ioError(`${what} ${filePath}`, { device: filePath, fd: -1 }, undefined, undefined, error);
  }
}
