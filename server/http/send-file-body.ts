/**
 * Sends a response's file body (file-body.ts) over node:http with zero copy: the headers through
 * node:http as usual, then the bytes with sendfile from the device's file straight to the socket's
 * fd, the way the NBD export sends read replies (runtime/net/output-queue.ts).
 *
 * Only where it is safe to write to the fd ourselves: the runtime has SocketSend, the socket's fd
 * is reachable (Node; Bun's node:http hides it, Deno's too), the response is the one the socket is
 * serving now (not a pipelined one queued behind another), and nothing node:http wrote is still
 * unsent (each sendfile waits for the socket's own queue to empty, so bytes never pass each other).
 *
 * When the socket is full (sendfile takes nothing: EAGAIN), the next part, at most PART_BYTES, is
 * read from the span into one buffer of this response and written the ordinary way; that write's
 * callback says the socket took it all, and sendfile goes on from there. After every part the body's
 * check() runs; if it throws (the device was written), or the client goes, the socket is destroyed
 * short of Content-Length, so the client sees a cut transfer, never a short one that looks whole.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { socketHandleFd, type SocketSend } from '../../runtime/adapter/types.ts';
import type { FileSpan } from '../../runtime/devices/block-device.ts';
import type { FileBody } from './file-body.ts';

/** Largest part written the ordinary way when the socket is full. */
const PART_BYTES = 256 * 1024;
const EMPTY = new Uint8Array(0);

/**
 * The fd to send `res`'s body on with zero copy, or -1 when this response cannot (see above).
 * Call before the headers are written.
 */
export function zeroCopyFd(res: ServerResponse, send: SocketSend | null): number {
  const socket = res.socket as (Socket & { _httpMessage?: unknown }) | null;
  if (send === null || socket === null || socket._httpMessage !== res || res.headersSent) return -1;
  return send.fdOf(socket);
}

/**
 * Writes the headers, then the body from `span` on `fd` (from zeroCopyFd), then ends the response.
 * Rejects (with `res` destroyed) when the client went away, a read failed or `body.check()` threw.
 * The caller releases `span`.
 */
export async function sendFileBody(
  res: ServerResponse, status: number, headers: Record<string, string | string[]>, body: FileBody, span: FileSpan, fd: number, send: SocketSend,
): Promise<void> {
  const socket = res.socket as Socket;
  try {
    res.writeHead(status, headers);
    res.flushHeaders();
    let sentBytes = 0;
    let part: Uint8Array | null = null;
    while (sentBytes < span.lengthBytes) {
      // What node:http (or a part written below) handed the socket must be out before sendfile.
      if (socket.writableLength > 0) await written(socket, EMPTY);
      if (res.destroyed || socketHandleFd(socket) !== fd) throw new Error('the client went away');
      const movedBytes = send.sendFile(fd, span.fd, span.fileOffsetBytes + sentBytes, span.lengthBytes - sentBytes);
      if (movedBytes > 0) {
        sentBytes += movedBytes;
      } else {
        // Full (or failed: the write below then fails too and says so).
        part ??= new Uint8Array(Math.min(PART_BYTES, span.lengthBytes));
        const partBytes = Math.min(part.length, span.lengthBytes - sentBytes);
        const piece = part.subarray(0, partBytes);
        await span.read(sentBytes, piece);
        body.check();
        await written(socket, piece);
        sentBytes += partBytes;
      }
      body.check();
    }
    res.end();
  } catch (error) {
    res.destroy();
    throw error;
  }
}

/** Writes `bytes` on `socket` (nothing: waits for what is queued) and resolves once the kernel took it all. */
function written(socket: Socket, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.write(bytes, (error?: Error | null) => (error ? reject(error) : resolve()));
  });
}
