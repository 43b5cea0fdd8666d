/**
 * A small HTTP server on 127.0.0.1 serving one in-memory image, for HttpDevice and clone tests.
 * Modes: honest Range support; `noRanges` (always 200 with the whole body); `failEvery` N (every
 * Nth request answers 503; 1 means every request, retries included); `dropEvery` N (every Nth request's socket is destroyed). The
 * intermittent modes act only on the first request for a given range, so a client that retries
 * always gets through: the failure pattern is deterministic, and tests cannot flake.
 * `content` may be swapped to simulate a source that changes under a reader.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RangeServerOptions {
  noRanges?: boolean;
  failEvery?: number;
  dropEvery?: number;
  etag?: string;
}

export class RangeServer {
  requestCount = 0;
  private readonly rangesSeen = new Set<string>();
  private server: Server | undefined;
  url = '';

  constructor(public content: Uint8Array, public options: RangeServerOptions = {}) {}

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      const n = ++this.requestCount;
      const firstTry = !this.rangesSeen.has(request.headers.range ?? '');
      this.rangesSeen.add(request.headers.range ?? '');
      if (this.options.failEvery === 1) {
        response.writeHead(503).end('down');
        return;
      }
      if (firstTry && this.options.dropEvery && n % this.options.dropEvery === 0) {
        request.socket.destroy();
        return;
      }
      if (firstTry && this.options.failEvery && n % this.options.failEvery === 0) {
        response.writeHead(503).end('busy');
        return;
      }
      const headers: Record<string, string> = {};
      if (this.options.etag) headers.etag = this.options.etag;
      const match = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
      if (this.options.noRanges || !match) {
        response.writeHead(200, { ...headers, 'content-length': String(this.content.length) }).end(this.content);
        return;
      }
      const first = Number(match[1]);
      const last = Math.min(Number(match[2]), this.content.length - 1);
      if (first >= this.content.length) {
        response.writeHead(416, { 'content-range': `bytes */${this.content.length}` }).end();
        return;
      }
      response
        .writeHead(206, { ...headers, 'content-range': `bytes ${first}-${last}/${this.content.length}`, 'content-length': String(last - first + 1) })
        .end(this.content.subarray(first, last + 1));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/image.raw`;
    return this.url;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections?.();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
