/**
 * A response body whose bytes lie in a file: a Response (fetch-style, the same on every host) with
 * the note that its body could instead go from the device's file to the socket with zero copy.
 *
 * The data plane (data.ts) streams long reads as a ReadableStream; that stream is always there and
 * always right. Where the listener can do better (node-listen on a runtime with SocketSend and a
 * socket whose fd it can reach: Node), it asks `fileBodyOf(response)` for the same bytes as a file
 * span and sends them with sendfile, page cache to socket; it then never reads the stream, only
 * cancels it when done, which lets the device go. Every other listener (Bun's node:http, Deno's,
 * workerd) just reads the stream.
 *
 * Ownership: `open()` lends a FileSpan that the caller releases; the stream's cancel or end
 * releases what the response itself holds (the device's lease).
 */
import type { FileSpan } from '../../runtime/devices/block-device.ts';

export interface FileBody {
  /** The body's bytes as they lie in a file, or null when the device cannot lend them now. */
  open(): FileSpan | null;
  /**
   * Throws when the answer can no longer be vouched for (the device was written since its headers
   * were made): the sender then cuts the transfer short of Content-Length. Call it after every
   * part sent, and once more before ending.
   */
  check(): void;
}

const bodies = new WeakMap<Response, FileBody>();

/** `response`, noted as one whose body `body` can send from a file. */
export function withFileBody(response: Response, body: FileBody): Response {
  bodies.set(response, body);
  return response;
}

/** The file behind `response`'s body, when its maker noted one. */
export function fileBodyOf(response: Response): FileBody | undefined {
  return bodies.get(response);
}
