/**
 * Everything that differs between Node, Bun and Deno sits behind this one interface, implemented
 * once per runtime in node.ts, bun.ts and deno.ts. Nothing else in blockcore branches on the
 * runtime: it calls `loadAdapter()` and uses what it gets.
 *
 * What differs today: how native code is reached (koffi on Node, bun:ffi on Bun, Deno.dlopen on
 * Deno) for the syscalls node:fs lacks: fallocate(PUNCH_HOLE), lseek(SEEK_DATA / SEEK_HOLE), and
 * sendfile/send/setsockopt for zero-copy socket sends (Node and Bun only), flock for the data
 * directory's lock (server/data-lock.ts), copy_file_range for in-kernel file-to-file copies
 * (FileRangeCopy). Positional file I/O goes
 * through node:fs on all three: each runtime implements it natively and it measured fastest
 * (see runtime/devices/file-device.ts).
 */
import type { NetConnectOpts, Socket } from 'node:net';

export type RuntimeName = 'node' | 'bun' | 'deno';

export interface RuntimeAdapter {
  readonly name: RuntimeName;
  /** Runtime version string, for benchmark and log headers. */
  readonly version: string;
  /**
   * Deallocate `[offsetBytes, offsetBytes + lengthBytes)` of the open file `fd` while keeping its
   * size (fallocate PUNCH_HOLE | KEEP_SIZE). Afterwards the range reads as zeros. Returns false
   * when this host cannot punch holes (no FFI permission, not Linux, or the filesystem refuses):
   * the caller then writes zeros instead. Throws only for bugs (bad arguments).
   */
  punchHole(fd: number, offsetBytes: number, lengthBytes: number): boolean;
  /**
   * lseek(fd, offsetBytes, SEEK_DATA): the first offset >= offsetBytes that holds data, or -1 when
   * there is none before the end of the file (ENXIO) or the host cannot tell (no FFI, not Linux,
   * the filesystem refuses). Moves the fd's file position, which positional I/O ignores.
   */
  seekData(fd: number, offsetBytes: number): number;
  /**
   * lseek(fd, offsetBytes, SEEK_HOLE): the first offset >= offsetBytes in a hole (the file size
   * counts as one), or -1 when offsetBytes is at or past the end (ENXIO) or the host cannot tell.
   * So for an offset inside the file, -1 always means "cannot tell".
   */
  seekHole(fd: number, offsetBytes: number): number;
  /**
   * FileDevice in 'sync' mode moves reads and writes of at least this many bytes through the
   * runtime's thread pool (in parallel with the event loop) rather than in the calling turn:
   * worth it where async file I/O is cheap next to a large copy (Node, Bun), not where it is not
   * (Deno: measured slower, so Infinity). See runtime/devices/file-device.ts.
   */
  readonly poolTransferBytes: number;
  /** Zero-copy sends from files to sockets; null where this runtime cannot (see SocketSend). */
  readonly socketSend: SocketSend | null;
  /**
   * How the NBD server decodes and checks request headers: 'wasm' (the frame kernel, a batch of
   * headers per call) or 'ts' (one at a time in TypeScript), whichever `npm run bench -- frame`
   * measured faster on this runtime (numbers in server/nbd/request-codec.ts). Same answers either way.
   */
  readonly nbdRequestDecoder: 'wasm' | 'ts';
  /**
   * flock(fd, LOCK_EX | LOCK_NB): the kernel's exclusive advisory lock on the open file `fd`,
   * without waiting. The kernel holds it for as long as that open file lives: until it is closed,
   * or until the process ends, however it ends (SIGKILL included, whether or not its parent has
   * reaped it yet). 'locked': taken (or already held through this open file). 'busy': another
   * open file holds it (another process, or another open of the same file in this one); any
   * failure of the call counts as busy, because the bindings do not read errno. 'unsupported':
   * this host has no flock binding (not Linux, or no FFI permission): the caller must fall back.
   */
  tryLockFile(fd: number): FileLockResult;
  /** In-kernel file-to-file copies; null where this host cannot (see FileRangeCopy). */
  readonly fileRangeCopy: FileRangeCopy | null;
  /**
   * Socket reads into one buffer of ours, used again for every read (see SocketReads); null where
   * the runtime's own reads cost no more than that (Bun: measured the same).
   */
  readonly socketReads: SocketReads | null;
  /**
   * Connections moved to worker threads (see ThreadSockets); null where the runtime cannot hand a
   * connection to another thread (Bun: node:net makes no socket from a descriptor in a worker;
   * Deno: node:net takes no descriptor at all).
   */
  readonly threadSockets: ThreadSockets | null;
}

/**
 * A TCP connection accepted on one thread, served on another: how a server spreads its
 * connections over cores (RTRS's "one connection per core"). A descriptor is a number the whole
 * process shares, so the connection travels as one: `detach` gives the connection a descriptor
 * of its own (dup) and closes the socket's (the connection stays up: no FIN, nothing unread is
 * lost: the kernel keeps it for the next reader), the number is posted to a worker, and `attach`
 * there makes the worker's socket over it.
 */
export interface ThreadSockets {
  /** Starts a worker thread running the module at `moduleUrl` (a .ts module where the runtime runs TypeScript through a loader). */
  startThread(moduleUrl: URL): import('node:worker_threads').Worker;
  /**
   * Takes the connection away from `socket` (accepted, plain TCP, nothing of ours still queued to
   * write): returns a descriptor for it; `socket` is destroyed and tells no listener. -1 when
   * it cannot (then `socket` is as it was).
   */
  detach(socket: Socket): number;
  /** In the thread the descriptor went to: a socket over it whose reads go through `buffer` to `onBytes` (as SocketReads). */
  attach(fd: number, buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void): Socket;
  /** In the thread the descriptor went to: a plain socket over it ('data' events; half-open allowed, as the NBD server's). */
  adopt(fd: number): Socket;
}

/**
 * Stream socket reads into a buffer the caller owns and the runtime fills again on the next read
 * (Node's `onread`), in place of a fresh buffer and a 'data' event per read. Receiving 1 GiB over
 * loopback TCP took 0.5-1.3 CPU s with 'data' events and 0.15 with this on Node, 1.27 against
 * 0.16 on Deno (Bun: 0.37 either way). The price: `onBytes` gets a view of that buffer, valid only
 * until it returns, so whatever it keeps it must copy. Sockets made here emit no 'data' events;
 * 'end', 'error', 'close' and writing are as usual. Not for TLS (the bytes on the wire are not
 * the bytes read).
 */
export interface SocketReads {
  /** Like net.connect(options), with every read delivered to `onBytes` through `buffer`. */
  connect(options: NetConnectOpts, buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void): Socket;
  /**
   * Takes over a socket a net.Server accepted (created with `pauseOnConnect: true`, and nothing
   * read from it yet) so that its reads go through `buffer` to `onBytes`: returns the socket to use
   * from now on (the one given must not be used again), or null when this one cannot be taken over
   * (then use it as it is, after `resume()`).
   */
  adopt(socket: Socket, buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void): Socket | null;
}

/**
 * copy_file_range(2): the kernel copies bytes from one open file to another without moving them
 * through our memory (a reflink on filesystems that share extents, an in-kernel copy otherwise).
 * Offsets are explicit (pointers to 64-bit cells that the kernel advances), so the fds' file
 * positions are neither used nor moved and concurrent calls on one fd are safe.
 * Each call returns the bytes copied (possibly fewer than asked; 0 at the end of the input) or -1
 * on any failure, without the errno: the caller then copies the same range through memory, which
 * either works (the kernel refused this pair: another filesystem before Linux 5.19, a filesystem
 * without support) or reports the real error with its errno.
 */
export interface FileRangeCopy {
  /** In the calling turn: for small copies, which cost less than a hop to another thread. */
  copySync(inFd: number, inOffsetBytes: number, outFd: number, outOffsetBytes: number, lengthBytes: number): number;
  /** On another thread (koffi's async call, Deno's nonblocking FFI, a worker on Bun): the event loop runs meanwhile. */
  copy(inFd: number, inOffsetBytes: number, outFd: number, outOffsetBytes: number, lengthBytes: number): Promise<number>;
}

/** copy_file_range is bound with 64-bit loff_t and size_t: x86-64 and arm64 Linux only. */
export function fileRangeCopySupported(platform: string, arch: string): boolean {
  return platform === 'linux' && (arch === 'x64' || arch === 'arm64');
}

/** A raw copy_file_range binding: offsets in 64-bit cells the kernel advances. */
export type CopyFileRange = (inFd: number, inOffset: BigInt64Array, outFd: number, outOffset: BigInt64Array, lengthBytes: number, flags: number) => number | bigint;

/** Wraps a synchronous raw binding, with one pair of offset cells (a call ends before the next starts). */
export function copySyncWith(copyFileRange: CopyFileRange): FileRangeCopy['copySync'] {
  const inCell = new BigInt64Array(1);
  const outCell = new BigInt64Array(1);
  return (inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes) => {
    inCell[0] = BigInt(inOffsetBytes);
    outCell[0] = BigInt(outOffsetBytes);
    return copiedOrFailed(copyFileRange(inFd, inCell, outFd, outCell, lengthBytes, 0));
  };
}

/** A raw result as FileRangeCopy reports it: bytes copied, or -1. */
export function copiedOrFailed(result: number | bigint): number {
  const copied = Number(result);
  return copied >= 0 ? copied : -1;
}

export type FileLockResult = 'locked' | 'busy' | 'unsupported';

/**
 * Sending file bytes to a connected stream socket without copying them through our memory
 * (sendfile), and the socket's send buffer size. Works on the socket's file descriptor beside the
 * runtime's own socket machinery, so the caller must only use it while the runtime has nothing
 * queued on that socket (writableLength 0), or bytes would go out of order. Every call is
 * non-blocking: the socket must be O_NONBLOCK (`fdOf` checks) and `sendMore` passes MSG_DONTWAIT.
 * Node and Bun give a net.Socket's fd (`_handle.fd`); Deno's node:net does not, so it has none.
 */
export interface SocketSend {
  /** The fd of a net.Socket when it is open and non-blocking; -1 when not (then do not use this). */
  fdOf(socket: unknown): number;
  /** send(MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL): bytes taken (0 when the socket is full or failed). */
  sendMore(socketFd: number, bytes: Uint8Array): number;
  /** sendfile from `fileFd` at `fileOffsetBytes`: bytes taken (0 when the socket is full or failed). */
  sendFile(socketFd: number, fileFd: number, fileOffsetBytes: number, lengthBytes: number): number;
  /** SO_SNDBUF: asks for `bytes` (the kernel caps it at net.core.wmem_max); returns what it got, or -1. */
  setSendBufferBytes(socketFd: number, bytes: number): number;
}

/** Linux socket constants for SocketSend implementations (asm-generic values, x86-64 and arm64). */
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_MORE = 0x8000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const F_GETFL = 3;
export const O_NONBLOCK = 0x800;
export const SEND_MORE_FLAGS = MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL;

/**
 * The fd behind a Node-style net.Socket (`_handle.fd`, Node and Bun), or -1: also for a destroyed
 * socket (its fd may already be another file's) and a TLS socket (bytes on that fd must be
 * encrypted, which sendfile would bypass).
 */
export function socketHandleFd(socket: unknown): number {
  const shaped = socket as { _handle?: { fd?: unknown } | null; destroyed?: boolean; encrypted?: boolean } | null;
  if (shaped === null || shaped.destroyed === true || shaped.encrypted === true) return -1;
  const fd = shaped._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

/**
 * The socket calls are bound with 64-bit ssize_t / off_t and the generic Linux constants above:
 * right on x86-64 and arm64 Linux only, so other hosts get no SocketSend.
 */
export function socketSendSupported(platform: string, arch: string): boolean {
  return platform === 'linux' && (arch === 'x64' || arch === 'arm64');
}

/** fcntl(F_GETFL) flags say non-blocking (a failed call, -1, does not). */
export function isNonBlocking(flags: number): boolean {
  return flags >= 0 && (flags & O_NONBLOCK) !== 0;
}

/** The default `poolTransferBytes` where the thread pool pays for large transfers. */
export const POOL_TRANSFER_BYTES = 128 * 1024;

/** fallocate(2) mode bits, from linux/falloc.h. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const PUNCH_HOLE_MODE = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
export const LIBC_PATH = 'libc.so.6';

/** flock(2) operations, from asm-generic/fcntl.h (the same on every Linux architecture). */
export const LOCK_EX = 2;
export const LOCK_NB = 4;

export type Flock = (fd: number, operation: number) => number;

/** Wraps a raw flock binding (null when unavailable) into tryLockFile. */
export function lockWith(flock: Flock | null): RuntimeAdapter['tryLockFile'] {
  return (fd: number) => {
    if (flock === null) return 'unsupported';
    return flock(fd, LOCK_EX | LOCK_NB) === 0 ? 'locked' : 'busy';
  };
}

/** lseek(2) whence values for sparse files, from linux/fs.h. */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

type Lseek = (fd: number, offset: number, whence: number) => number | bigint;

/** Wraps a raw lseek binding (null when unavailable) into seekData / seekHole. */
export function seekWith(lseek: Lseek | null): Pick<RuntimeAdapter, 'seekData' | 'seekHole'> {
  const seek = (whence: number) => (fd: number, offsetBytes: number): number => {
    if (lseek === null) return -1;
    const result = Number(lseek(fd, offsetBytes, whence));
    return result >= 0 ? result : -1;
  };
  return { seekData: seek(SEEK_DATA), seekHole: seek(SEEK_HOLE) };
}

/** Wraps a raw fallocate binding so every adapter reports failure the same way. */
export function punchWith(fallocate: ((fd: number, mode: number, off: number, len: number) => number) | null) {
  return (fd: number, offsetBytes: number, lengthBytes: number): boolean => {
    if (fallocate === null) return false;
    if (lengthBytes === 0) return true;
    return fallocate(fd, PUNCH_HOLE_MODE, offsetBytes, lengthBytes) === 0;
  };
}
