/**
 * Serves a fetch-style handler (`(Request) => Response`, e.g. a Hono app's `fetch`) over node:http.
 * One small adapter for all three runtimes: Node, Bun and Deno each implement node:http natively,
 * so nothing here branches on the runtime, and no dependency is needed (@hono/node-server would
 * do the same for Node only).
 *
 * Requests: the body is read into memory up to `bodyLimitBytes(method, path)`; past that the
 * request is answered 413 at once and the socket closed, so a client cannot make the server
 * buffer without bound. Bodies `streamedBody` names (device data) reach the handler as a stream.
 * A request that declares no body (no content-length, no transfer-encoding) is not waited on.
 * Responses: an event stream (text/event-stream) and device data (application/octet-stream, with
 * the content-length the handler set) are streamed chunk by chunk; when the client goes away the
 * body stream is cancelled, which ends the handler's stream, and a stream that fails part way
 * destroys the socket, so the client sees a cut transfer and never a short one that looks whole.
 * A body that lies in a file (file-body.ts) goes with sendfile instead where `socketSend` allows
 * (send-file-body.ts: Node), with the same rules.
 * Any other answer is read whole and sent with content-length in one write (bench api: chunked
 * framing and a read loop per answer cost more than the JSON itself).
 * close(): stops listening, cancels every open response stream and destroys idle keep-alive
 * sockets, then resolves.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { loadAdapter } from '../../runtime/adapter/index.ts';
import type { SocketSend } from '../../runtime/adapter/types.ts';
import type { FileSpan } from '../../runtime/devices/block-device.ts';
import { fileBodyOf, type FileBody } from './file-body.ts';
import { sendFileBody, zeroCopyFd } from './send-file-body.ts';

export interface ListenOptions {
  host: string;
  port: number;
  /** Largest body a request to `path` with `method` may carry, when it is read here. */
  bodyLimitBytes(method: string, path: string): number;
  /**
   * True for requests whose body the handler reads as a stream (the data plane's PUTs): not read
   * here, so nothing is buffered before the handler has checked the token and the range.
   */
  streamedBody?(method: string, path: string): boolean;
  fetch(request: Request): Response | Promise<Response>;
  /** Zero-copy sends for file bodies (file-body.ts): the runtime adapter's when absent; null: none. */
  socketSend?: SocketSend | null;
}

export interface Listening {
  host: string;
  port: number;
  close(): Promise<void>;
}

const BODYLESS_METHODS = new Set(['GET', 'HEAD']);
const EMPTY = new Uint8Array(0);
/** Response content types sent as they are produced (chunked); everything else is sent whole. */
const STREAMED_TYPES = ['text/event-stream', 'application/octet-stream'];

/** A request carries a body when it declares one (HTTP/1.1: content-length or transfer-encoding). */
function hasBody(req: http.IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

/** The client hung up mid-request: nothing to answer and nothing to report. */
function clientGone(req: http.IncomingMessage, res: http.ServerResponse, error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || res.destroyed || req.socket.destroyed;
}

function isStream(response: Response): boolean {
  const type = response.headers.get('content-type') ?? '';
  return STREAMED_TYPES.some((streamed) => type.startsWith(streamed));
}

export async function listenHttp(options: ListenOptions): Promise<Listening> {
  const socketSend = options.socketSend !== undefined ? options.socketSend : (await loadAdapter()).socketSend;
  const sockets = new Set<Socket>();
  const streams = new Set<{ cancel(): Promise<void> }>();
  const server = http.createServer((req, res) => void handle(req, res));
  // A stream that is not HTTP at all gets a JSON 400 too, like every other refusal.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const body = JSON.stringify({ error: `malformed HTTP request (${error.code ?? 'parse error'})`, code: 'EINVAL' });
    socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const method = req.method ?? 'GET';
      const path = (req.url ?? '/').split('?')[0]!;
      const limitBytes = options.bodyLimitBytes(method, path);
      const streamed = hasBody(req) && !BODYLESS_METHODS.has(method) && options.streamedBody?.(method, path) === true;
      const body = streamed ? 'streamed' : hasBody(req) ? await readBody(req, limitBytes) : (req.resume(), EMPTY);
      if (body === 'too-large') {
        reply(res, 413, { error: `request body larger than ${limitBytes} bytes`, code: 'E2BIG', field: 'body' }, true);
        return;
      }
      const url = `http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`;
      const headers = new Headers();
      for (const [key, value] of Object.entries(req.headers)) {
        if (value === undefined) continue;
        for (const item of Array.isArray(value) ? value : [value]) headers.append(key, item);
      }
      let request: Request;
      try {
        if (body === 'streamed') {
          // The handler reads it (after the token check), as far as it wants and no further.
          request = new Request(url, { method, headers, body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } as RequestInit);
        } else {
          request = new Request(url, { method, headers, body: BODYLESS_METHODS.has(method) || body.length === 0 ? undefined : body });
        }
      } catch {
        reply(res, 400, { error: 'malformed request line or headers', code: 'EINVAL' });
        return;
      }
      const response = await options.fetch(request);
      await send(res, response);
    } catch (error) {
      if (clientGone(req, res, error)) {
        res.destroy();
        return;
      }
      console.error('http adapter:', error);
      if (!res.headersSent) reply(res, 500, { error: 'internal error', code: 'EIO' });
      else res.destroy();
    }
  }

  async function send(res: http.ServerResponse, response: Response): Promise<void> {
    const headers: Record<string, string | string[]> = {};
    response.headers.forEach((value, key) => {
      if (key === 'set-cookie') return;
      headers[key] = value;
    });
    if (!response.body) {
      res.writeHead(response.status, headers);
      res.end();
      return;
    }
    if (!isStream(response)) {
      // A whole answer (JSON, text): one write with content-length, no chunked framing.
      if (res.destroyed) {
        await response.body.cancel().catch(() => {});
        return;
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      headers['content-length'] = String(bytes.length);
      res.writeHead(response.status, headers);
      res.end(bytes);
      return;
    }
    const fileBody = fileBodyOf(response);
    const fd = fileBody === undefined ? -1 : zeroCopyFd(res, socketSend);
    const span = fd >= 0 ? openQuietly(fileBody!) : null;
    if (span !== null) {
      // Zero copy (send-file-body.ts); the stream is not read, only cancelled once done, which
      // lets go of what it holds (the device).
      streams.add(response.body);
      try {
        await sendFileBody(res, response.status, headers, fileBody!, span, fd, socketSend!);
      } catch {
        // the client went away, the device was written, or a read failed: the transfer is cut
      } finally {
        span.release();
        streams.delete(response.body);
        await response.body.cancel().catch(() => {});
      }
      return;
    }
    const reader = response.body.getReader();
    // The client may have gone while the handler ran: its 'close' came and will not come again,
    // so cancel now (the handler's stream releases what it holds) rather than wait on it.
    if (res.destroyed) {
      await reader.cancel().catch(() => {});
      return;
    }
    res.writeHead(response.status, headers);
    streams.add(reader);
    res.on('close', () => void reader.cancel().catch(() => {}));
    let whole = false;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (res.destroyed) throw new Error('the client went away');
        if (!res.write(value)) await drained(res);
      }
      whole = true;
    } catch {
      // the client went away, the stream was cancelled on close, or it failed part way
    } finally {
      streams.delete(reader);
      if (whole) {
        res.end();
      } else {
        res.destroy();
        void reader.cancel().catch(() => {});
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const reader of streams) await reader.cancel().catch(() => {});
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** The file body's span, or null when it cannot be lent now (the stream then answers, and reports a failure as it does). */
function openQuietly(body: FileBody): FileSpan | null {
  try {
    return body.open();
  } catch {
    return null;
  }
}

/** Resolves once `res` drains or closes, leaving no listener behind (a long stream waits many times). */
function drained(res: http.ServerResponse): Promise<void> {
  if (res.destroyed || res.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function reply(res: http.ServerResponse, status: number, body: unknown, closeAfter = false): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(closeAfter ? { connection: 'close' } : {}) });
  res.end(text);
}

function readBody(req: http.IncomingMessage, maxBodyBytes: number): Promise<Uint8Array | 'too-large'> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBodyBytes) {
    req.resume();
    return Promise.resolve('too-large');
  }
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let totalBytes = 0;
    req.on('data', (chunk: Uint8Array) => {
      totalBytes += chunk.length;
      if (totalBytes > maxBodyBytes) {
        req.removeAllListeners('data');
        req.resume();
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(totalBytes > maxBodyBytes ? 'too-large' : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
