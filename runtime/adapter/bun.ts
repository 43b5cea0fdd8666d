/**
 * Bun adapter: fallocate, lseek, flock, the zero-copy socket calls and copy_file_range through
 * bun:ffi. bun:ffi calls are synchronous only, so copies off the event loop go to a worker of their
 * own (bun-copy-worker.ts), started at the first such copy.
 */
import {
  copySyncWith, F_GETFL, fileRangeCopySupported, isNonBlocking, LIBC_PATH, lockWith, POOL_TRANSFER_BYTES, punchWith, seekWith, SEND_MORE_FLAGS, SO_SNDBUF,
  socketHandleFd, socketSendSupported, SOL_SOCKET, type CopyFileRange, type FileRangeCopy, type Flock, type RuntimeAdapter, type SocketSend,
} from './types.ts';

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;
type Lseek = (fd: number, off: number, whence: number) => number | bigint;

interface Libc {
  fallocate: Fallocate;
  lseek: Lseek;
  socketSend: SocketSend;
  copyFileRange: CopyFileRange;
}

async function bindLibc(): Promise<Libc | null> {
  if (process.platform !== 'linux') return null;
  try {
    const { dlopen, FFIType } = await import('bun:ffi');
    const lib = dlopen(LIBC_PATH, {
      fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
      // i64_fast: a number while the result is a safe integer (always, for a file offset).
      lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64_fast },
      sendfile: { args: [FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64_fast },
      send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64_fast },
      setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
      getsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
      fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
      copy_file_range: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.u32], returns: FFIType.i64_fast },
    });
    const { symbols } = lib;
    // One offset cell for sendfile (all calls are synchronous, so one is enough) and int cells for
    // the socket options.
    const offsetCell = new BigInt64Array(1);
    const intCell = new Int32Array(1);
    const lengthCell = new Int32Array(1);
    const socketSend: SocketSend = {
      fdOf(socket) {
        const fd = socketHandleFd(socket);
        return fd >= 0 && isNonBlocking(symbols.fcntl(fd, F_GETFL, 0) as number) ? fd : -1;
      },
      sendMore: (socketFd, bytes) => (bytes.length === 0 ? 0 : Math.max(0, Number(symbols.send(socketFd, bytes, bytes.length, SEND_MORE_FLAGS)))),
      sendFile(socketFd, fileFd, fileOffsetBytes, lengthBytes) {
        offsetCell[0] = BigInt(fileOffsetBytes);
        return Math.max(0, Number(symbols.sendfile(socketFd, fileFd, offsetCell, lengthBytes)));
      },
      setSendBufferBytes(socketFd, bytes) {
        intCell[0] = bytes;
        if (symbols.setsockopt(socketFd, SOL_SOCKET, SO_SNDBUF, intCell, 4) !== 0) return -1;
        lengthCell[0] = 4;
        return symbols.getsockopt(socketFd, SOL_SOCKET, SO_SNDBUF, intCell, lengthCell) === 0 ? intCell[0]! : -1;
      },
    };
    return {
      fallocate: (fd, mode, off, len) => symbols.fallocate(fd, mode, off, len) as number,
      lseek: (fd, off, whence) => symbols.lseek(fd, off, whence) as number | bigint,
      socketSend,
      copyFileRange: symbols.copy_file_range as unknown as CopyFileRange,
    };
  } catch {
    return null;
  }
}

/** flock, bound on its own (see RuntimeAdapter.tryLockFile). */
async function bindFlock(): Promise<Flock | null> {
  if (process.platform !== 'linux') return null;
  try {
    const { dlopen, FFIType } = await import('bun:ffi');
    const { symbols } = dlopen(LIBC_PATH, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
    return (fd, operation) => symbols.flock(fd, operation) as number;
  } catch {
    return null;
  }
}

const bunGlobal = (globalThis as unknown as { Bun: { version: string } }).Bun;
const libc = await bindLibc();
const flock = await bindFlock();

interface CopyWorker {
  postMessage(message: number[]): void;
  onmessage: ((event: { data: [number, number] }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  ref(): void;
  unref(): void;
}

/** copy_file_range in the calling turn here, and off the event loop in bun-copy-worker.ts. */
function fileRangeCopy(copyFileRange: CopyFileRange | undefined): FileRangeCopy | null {
  if (copyFileRange === undefined || !fileRangeCopySupported(process.platform, process.arch)) return null;
  let worker: CopyWorker | null = null;
  let nextId = 0;
  const waiting = new Map<number, (result: number) => void>();
  const failAll = () => {
    for (const resolve of waiting.values()) resolve(-1);
    waiting.clear();
    worker = null;
  };
  const start = (): CopyWorker => {
    const WorkerClass = (globalThis as unknown as { Worker: new (url: string) => CopyWorker }).Worker;
    const started = new WorkerClass(new URL('./bun-copy-worker.ts', import.meta.url).href);
    started.onmessage = ({ data: [id, result] }) => {
      const resolve = waiting.get(id);
      waiting.delete(id);
      // Keep the process alive only while a copy is in flight.
      if (waiting.size === 0) started.unref();
      resolve?.(result);
    };
    started.onerror = failAll;
    started.unref();
    return started;
  };
  return {
    copySync: copySyncWith(copyFileRange),
    copy(inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes) {
      worker ??= start();
      const id = nextId++;
      if (waiting.size === 0) worker.ref();
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        worker!.postMessage([id, inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes]);
      });
    },
  };
}

export const adapter: RuntimeAdapter = {
  name: 'bun',
  version: bunGlobal.version,
  punchHole: punchWith(libc?.fallocate ?? null),
  ...seekWith(libc?.lseek ?? null),
  poolTransferBytes: POOL_TRANSFER_BYTES,
  socketSend: socketSendSupported(process.platform, process.arch) ? (libc?.socketSend ?? null) : null,
  nbdRequestDecoder: 'ts', // bench frame-decode-nbd: the kernel batch is at best even here (server/nbd/request-codec.ts)
  socketReads: null, // its 'data' events cost what Node's onread does (types.ts SocketReads)
  threadSockets: null, // types.ts ThreadSockets: no socket from a descriptor here
  tryLockFile: lockWith(flock),
  fileRangeCopy: fileRangeCopy(libc?.copyFileRange),
};
