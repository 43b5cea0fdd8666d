/**
 * ThreadSockets on Node (types.ts): the descriptor copied with dup(2) through koffi, a worker's
 * socket made over it with `new net.Socket({ fd, onread })` (libuv puts it in non-blocking mode).
 *
 * Workers and TypeScript: under the test runner Node runs .ts through tsx's loader, which a worker
 * thread does not inherit; a .ts module is started through a two-line bootstrap that registers
 * tsx's ESM loader in the worker first. Built JavaScript starts directly.
 */
import { Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { socketHandleFd, type ThreadSockets } from './types.ts';

/** Registers tsx in the worker, then imports the module (workerData: the two URLs). */
const TSX_BOOTSTRAP = `const { workerData } = require('node:worker_threads');
import(workerData.tsxApi).then((api) => { api.register(); return import(workerData.moduleUrl); });`;

export function nodeThreadSockets(dup: ((fd: number) => number) | null): ThreadSockets | null {
  if (dup === null) return null;
  return {
    startThread(moduleUrl: URL): Worker {
      if (!moduleUrl.pathname.endsWith('.ts')) return new Worker(moduleUrl);
      const tsxApi = import.meta.resolve('tsx/esm/api');
      return new Worker(TSX_BOOTSTRAP, { eval: true, workerData: { tsxApi, moduleUrl: moduleUrl.href } });
    },

    detach(socket: Socket): number {
      const fd = socketHandleFd(socket);
      if (fd < 0 || socket.writableLength > 0 || socket.readableLength > 0) return -1;
      const copy = dup(fd);
      if (!(copy >= 0)) return -1;
      socket.removeAllListeners();
      socket.destroy(); // closes the socket's descriptor only: the copy keeps the connection
      return copy;
    },

    adopt(fd: number): Socket {
      return new Socket({ fd, readable: true, writable: true, allowHalfOpen: true } as unknown as ConstructorParameters<typeof Socket>[0]);
    },

    attach(fd: number, buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void): Socket {
      return new Socket({
        fd, readable: true, writable: true,
        onread: { buffer, callback: (bytesRead: number) => (onBytes(buffer.subarray(0, bytesRead)), true) },
      } as unknown as ConstructorParameters<typeof Socket>[0]);
    },
  };
}
