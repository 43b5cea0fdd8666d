/**
 * The one block-device shape every layer speaks. Files, memory, fault injectors and later engines
 * (clone, mirror, remote) are all BlockDevices, and layers wrap a device and are devices
 * themselves, like nbdkit filters over `next`.
 *
 * Contract (checked by test/conformance/device-suite.ts for every implementation):
 * - Offsets and lengths are non-negative safe integers, multiples of `logicalBlockBytes`, and the
 *   range lies inside `[0, sizeBytes)`; anything else is a BlockError (ERANGE, EINVAL) raised before
 *   any byte moves: never a silent clamp, never a partial write.
 * - `read` fills the whole target or throws. `write` writes all bytes or throws.
 * - Durability: a completed `write` is visible to later reads but may sit in a volatile cache;
 *   it is durable once a later `flush()` resolves (fdatasync for files), or at once when written
 *   with `{ fua: true }`. Nothing else promises durability.
 * - Callers check `canWrite` / `canDiscard` instead of catching errors; the calls still refuse
 *   with EROFS / ENOTSUP when misused.
 * - After `close()` every call fails with EBADF; close is idempotent.
 */
export type DiscardOutcome =
  /** Space released; the range now reads as zeros. */
  | 'punched'
  /** The host cannot release space, so zeros were written instead; the range reads as zeros. */
  | 'zeroed'
  /** Taken as a hint only (see `discardZeroes`): nothing released, contents unspecified. */
  | 'ignored';

export interface WriteOptions {
  /** Force Unit Access: the write is durable when the promise resolves. */
  fua?: boolean;
}

/**
 * One run of a block-status answer (see `BlockDevice.blockStatus`). `hole`: no storage is allocated
 * for the run (a write there may need space). `zero`: the run reads as zeros. Data is
 * `{ hole: false, zero: false }`; a punched file range is `{ hole: true, zero: true }`.
 */
export interface BlockExtent {
  lengthBytes: number;
  hole: boolean;
  zero: boolean;
}

/** One run of equal bits of a DeviceBitmap, `set` or clear, over `lengthBytes` of the device. */
export interface BitmapRun {
  lengthBytes: number;
  set: boolean;
}

/**
 * A bitmap an engine keeps over its device's bytes (a clone's hydrated regions), for clients that
 * ask which parts are in a state (NBD: the metadata context `qemu:dirty-bitmap:<name>`, a set bit
 * reported as dirty). Answers are taken at one moment, like blockStatus.
 */
export interface DeviceBitmap {
  /** Unique on its device; letters, digits, '.', '_' and '-' only. */
  readonly name: string;
  /** Bytes one bit stands for (a multiple of the device's logicalBlockBytes). */
  readonly granularityBytes: number;
  /** What a set bit means, one line (for listings). */
  readonly meaning: string;
  /**
   * Runs covering `[offsetBytes, offsetBytes + lengthBytes)` exactly, in order, each non-empty,
   * neighbours of different states; at most `maxRuns` (then they cover a prefix of the range).
   * The range must lie inside the device and be non-empty (the caller checks).
   */
  runs(offsetBytes: number, lengthBytes: number, maxRuns: number): BitmapRun[];
}

export interface BlockDevice {
  /** For errors and logs: a path, a URL or an engine name. */
  readonly name: string;
  readonly sizeBytes: number;
  /** I/O offsets and lengths must be multiples of this (a power of two, >= 1). */
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  /**
   * True: a discarded range reads as zeros afterwards (files, memory). False: discard is a hint
   * and the range's contents are unspecified afterwards, like NBD's TRIM (a clone, whose partial
   * regions are left alone). Callers that need zeros must write them when this is false.
   */
  readonly discardZeroes: boolean;

  read(offsetBytes: number, target: Uint8Array): Promise<void>;
  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Make every write completed before this call durable. */
  flush(): Promise<void>;
  /** Forget the range (see `discardZeroes`). Says whether space was released. */
  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome>;
  /**
   * Optional: allocation of `[offsetBytes, offsetBytes + lengthBytes)`, for NBD BLOCK_STATUS and
   * sparse copies. The extents cover the range exactly, in order, each non-empty and a multiple
   * of `logicalBlockBytes`; neighbours may share flags. The range is checked like a read (EBADF, EINVAL, ERANGE; allowed on read-only
   * devices); a zero-length range gives `[]`. Answers are hints taken at one moment: `zero: true`
   * must be true when reported, `zero: false` promises nothing, and a concurrent write may change
   * the answer. A device without this method is all data (`{ hole: false, zero: false }`).
   */
  blockStatus?(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]>;
  /**
   * Optional: where the bytes of `[offsetBytes, offsetBytes + lengthBytes)` lie right now as one
   * run of one open local file, so a server can send them to a socket without copying them
   * through memory (sendfile). null when they do not (memory, a network file, unhydrated clone
   * regions, a slow 'async' file) or the range is empty. Checked like a read (EBADF, EINVAL,
   * ERANGE). The span keeps the device open (close() waits) until `release()`; the holder reads
   * the file promptly, at most once, and releases it exactly once. Reading later than read() would
   * have is allowed: a reply sent while a write to the same range completes may carry either data,
   * as NBD allows for requests that overlap in time.
   */
  fileSpan?(offsetBytes: number, lengthBytes: number): FileSpan | null;
  /** Optional: the bitmaps this device's engine keeps over it (see DeviceBitmap); none when absent. */
  bitmaps?(): readonly DeviceBitmap[];
  /**
   * Optional: make `[offsetBytes, offsetBytes + lengthBytes)` fast to read (NBD CACHE, a hint, like
   * posix_fadvise WILLNEED). A device that fills itself from elsewhere (a clone) brings the range in
   * now; resolves once it is in (not necessarily durable: that takes flush()). Checked like a read
   * (EBADF, EINVAL, ERANGE; allowed on read-only devices). A device without this method is as fast
   * to read as it gets: callers treat its absence as success.
   */
  cache?(offsetBytes: number, lengthBytes: number): Promise<void>;
  /**
   * Optional: write the bytes of `span` (another device's range, from its fileSpan) at
   * `offsetBytes`, without moving them through our memory (copy_file_range), as write() would:
   * visible to reads when it resolves, durable after flush(). Resolves true when written, false
   * when this device cannot take these bytes that way (another filesystem, no FFI, a test's
   * replaced syscalls, a failure of the in-kernel copy): then the range may be partly written and
   * the caller copies it through memory instead, which also reports any real I/O error. Checked
   * like a write of `span.lengthBytes` (EBADF, EINVAL, ERANGE, EROFS). The caller keeps the span
   * until the promise settles, then releases it.
   */
  copyFromSpan?(offsetBytes: number, span: FileSpan): Promise<boolean>;
  close(): Promise<void>;
}

/** A device range as it lies in an open file (see BlockDevice.fileSpan). */
export interface FileSpan {
  /** Open file descriptor holding the bytes; valid until release(). */
  readonly fd: number;
  /** Where the range starts in that file. */
  readonly fileOffsetBytes: number;
  readonly lengthBytes: number;
  /**
   * Copies `target.length` bytes starting `spanOffsetBytes` into the span into `target` (for the
   * part a socket would not take at once), however the device reads: small pieces in the calling
   * turn, large ones through the thread pool. Works while the device is closing (the span holds
   * it open). Rejects with a BlockError on an I/O error.
   */
  read(spanOffsetBytes: number, target: Uint8Array): Promise<void>;
  /** Gives the span back; later calls do nothing. */
  release(): void;
}

/** `span` whose release() also runs `alsoRelease` (once): for a device lending out another's span. */
export function spanAlsoReleasing(span: FileSpan, alsoRelease: () => void): FileSpan {
  let held = true;
  return {
    fd: span.fd,
    fileOffsetBytes: span.fileOffsetBytes,
    lengthBytes: span.lengthBytes,
    read: (spanOffsetBytes, target) => span.read(spanOffsetBytes, target),
    release: () => {
      if (!held) return;
      held = false;
      span.release();
      alsoRelease();
    },
  };
}
