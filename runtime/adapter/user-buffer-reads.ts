/**
 * SocketReads for runtimes whose node:net implements Node's `onread` option (Node, and Deno's
 * node:net, which follows Node's own net.js): used by node.ts and deno.ts.
 *
 * `connect` is `net.connect` with `onread`. `adopt` has no public API to lean on: net.Server makes
 * its sockets without `onread`, so the accepted socket's handle (not yet reading: the server was
 * made with `pauseOnConnect`) moves into a new net.Socket made with it. The server's connection
 * count follows the handle (`_server`), so `server.close()` still waits for this connection and
 * `getConnections` still counts it. Anything unexpected in those internals: null, and the caller
 * reads the accepted socket as usual.
 */
import { connect as netConnect, Socket, type NetConnectOpts } from 'node:net';
import type { SocketReads } from './types.ts';

interface SocketInternals {
  _handle?: unknown;
  _server?: unknown;
  server?: unknown;
}

/** Hands one read on; true: keep reading (false would pause the socket). */
function onRead(onBytes: (bytes: Uint8Array) => void, buffer: Uint8Array, bytesRead: number): boolean {
  onBytes(buffer.subarray(0, bytesRead));
  return true;
}

export const userBufferReads: SocketReads = {
  connect(options: NetConnectOpts, buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void): Socket {
    return netConnect({ ...options, onread: { buffer, callback: (bytesRead: number) => onRead(onBytes, buffer, bytesRead) } });
  },

  adopt(socket: Socket, buffer: Uint8Array, onBytes: (bytes: Uint8Array) => void): Socket | null {
    const old = socket as unknown as SocketInternals;
    const handle = old._handle;
    if (handle === null || typeof handle !== 'object' || socket.destroyed || socket.readableLength > 0) return null;
    const server = old._server ?? null;
    old._handle = null;
    old._server = null;
    let adopted: Socket;
    try {
      adopted = new Socket({
        handle, readable: true, writable: true,
        onread: { buffer, callback: (bytesRead: number) => onRead(onBytes, buffer, bytesRead) },
      } as unknown as ConstructorParameters<typeof Socket>[0]);
    } catch {
      // Put it back as it was: the caller reads the accepted socket the usual way.
      old._handle = handle;
      old._server = server;
      return null;
    }
    const internals = adopted as unknown as SocketInternals;
    internals._server = server;
    internals.server = server;
    // The old object has no handle now; it is dropped without a 'close' (it never had listeners of ours).
    socket.removeAllListeners();
    return adopted;
  },
};
