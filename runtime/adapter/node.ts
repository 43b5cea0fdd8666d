/**
 * Node adapter: fallocate, lseek, flock, the zero-copy socket calls and copy_file_range through
 * koffi (Node has no built-in FFI; koffi ships its binary in the npm package). koffi's async calls
 * run copy_file_range on a worker thread while the event loop goes on.
 */
import { createRequire } from 'node:module';
import {
  copiedOrFailed, copySyncWith, F_GETFL, fileRangeCopySupported, isNonBlocking, LIBC_PATH, lockWith, POOL_TRANSFER_BYTES, punchWith, seekWith, SEND_MORE_FLAGS,
  SO_SNDBUF, socketHandleFd, socketSendSupported, SOL_SOCKET, type CopyFileRange, type FileRangeCopy, type Flock, type RuntimeAdapter, type SocketSend,
} from './types.ts';
import { nodeThreadSockets } from './node-thread-sockets.ts';
import { userBufferReads } from './user-buffer-reads.ts';

type Fallocate = (fd: number, mode: number, off: number, len: number) => number;
type Lseek = (fd: number, off: number, whence: number) => number | bigint;

interface Koffi {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
}

function loadLibc(): ReturnType<Koffi['load']> | null {
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    return koffi.load(LIBC_PATH);
  } catch {
    return null;
  }
}

const libc = loadLibc();

function bind<T>(signature: string): T | null {
  try {
    return libc === null ? null : (libc.func(signature) as T);
  } catch {
    return null;
  }
}

function socketSend(): SocketSend | null {
  const sendfile = bind<(out: number, inFd: number, offset: [number], count: number) => number | bigint>(
    'int64_t sendfile(int out_fd, int in_fd, _Inout_ int64_t *offset, size_t count)',
  );
  const send = bind<(fd: number, bytes: Uint8Array, length: number, flags: number) => number | bigint>('int64_t send(int fd, const uint8_t *buf, size_t len, int flags)');
  const setsockopt = bind<(fd: number, level: number, name: number, value: [number], length: number) => number>('int setsockopt(int fd, int level, int name, _In_ int *value, int length)');
  const getsockopt = bind<(fd: number, level: number, name: number, value: [number], length: [number]) => number>('int getsockopt(int fd, int level, int name, _Out_ int *value, _Inout_ int *length)');
  const fcntl = bind<(fd: number, command: number, argument: number) => number>('int fcntl(int fd, int cmd, int arg)');
  if (!socketSendSupported(process.platform, process.arch) || !sendfile || !send || !setsockopt || !getsockopt || !fcntl) return null;
  return {
    fdOf(socket) {
      const fd = socketHandleFd(socket);
      return fd >= 0 && isNonBlocking(fcntl(fd, F_GETFL, 0)) ? fd : -1;
    },
    sendMore: (socketFd, bytes) => Math.max(0, Number(send(socketFd, bytes, bytes.length, SEND_MORE_FLAGS))),
    sendFile: (socketFd, fileFd, fileOffsetBytes, lengthBytes) => Math.max(0, Number(sendfile(socketFd, fileFd, [fileOffsetBytes], lengthBytes))),
    setSendBufferBytes(socketFd, bytes) {
      if (setsockopt(socketFd, SOL_SOCKET, SO_SNDBUF, [bytes], 4) !== 0) return -1;
      const got: [number] = [0];
      return getsockopt(socketFd, SOL_SOCKET, SO_SNDBUF, got, [4]) === 0 ? got[0] : -1;
    },
  };
}

type AsyncCall = (...args: unknown[]) => void;

function fileRangeCopy(): FileRangeCopy | null {
  if (!fileRangeCopySupported(process.platform, process.arch)) return null;
  // Plain pointers, not _Inout_: koffi then hands the kernel the typed arrays' own memory, which
  // it advances in place (no marshalling per call).
  const copyFileRange = bind<CopyFileRange & { async: AsyncCall }>(
    'int64_t copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags)',
  );
  if (!copyFileRange) return null;
  return {
    copySync: copySyncWith(copyFileRange),
    copy(inFd, inOffsetBytes, outFd, outOffsetBytes, lengthBytes) {
      // Cells of its own per call: calls run concurrently on other threads.
      const inCell = new BigInt64Array([BigInt(inOffsetBytes)]);
      const outCell = new BigInt64Array([BigInt(outOffsetBytes)]);
      return new Promise((resolve) => {
        copyFileRange.async(inFd, inCell, outFd, outCell, lengthBytes, 0, (error: unknown, result: number | bigint) => {
          resolve(error ? -1 : copiedOrFailed(result));
        });
      });
    },
  };
}

export const adapter: RuntimeAdapter = {
  name: 'node',
  version: process.versions.node,
  punchHole: punchWith(bind<Fallocate>('int fallocate(int fd, int mode, int64_t off, int64_t len)')),
  ...seekWith(bind<Lseek>('int64_t lseek(int fd, int64_t off, int whence)')),
  poolTransferBytes: POOL_TRANSFER_BYTES,
  socketSend: socketSend(),
  nbdRequestDecoder: 'ts', // bench frame-decode-nbd: the kernel batch is at best even here (server/nbd/request-codec.ts)
  socketReads: userBufferReads,
  threadSockets: nodeThreadSockets(bind<(fd: number) => number>('int dup(int fd)')),
  tryLockFile: lockWith(bind<Flock>('int flock(int fd, int operation)')),
  fileRangeCopy: fileRangeCopy(),
};
