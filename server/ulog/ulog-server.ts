/**
 * The log server's listeners: the kernel reaches cmirrord over a netlink connector, which user
 * space cannot offer here, so clients connect to a Unix stream socket (`<data>/.blockcore/ulog.sock`
 * by default, mode 0600: only this user) or to TCP for logs on another machine. Each connection
 * (connection.ts) speaks plain frames: a 160-byte header and `data_size` bytes, the same back.
 *
 * TCP has no place for a key in the kernel's frames, so it listens on loopback only (remote
 * clients reach it through an SSH or TLS tunnel of the operator's); another host is refused.
 */
import fs from 'node:fs';
import net from 'node:net';
import { isLoopbackHost } from '../../runtime/transport/rtrs-address.ts';
import { describeError } from '../../runtime/net/fault-domain.ts';
import { ULOG_MAX_DATA_BYTES } from '../../runtime/ulog/ulog-frame.ts';
import type { UlogHandler } from '../../runtime/ulog/ulog-handler.ts';
import { removeStaleSocket } from '../stale-socket.ts';
import { UlogConnection } from './connection.ts';

export interface UlogServerOptions {
  handler: UlogHandler;
  maxDataBytes?: number;
  /** One line per refusal, connection fault or listener error. */
  log?: (line: string) => void;
  maxConnections?: number;
}

export type UlogAddress = { path: string } | { host: string; port: number };

export class UlogServer {
  private readonly listeners: Array<{ server: net.Server; path: string | null }> = [];
  private readonly open = new Set<UlogConnection>();
  private nextId = 1;
  private closing: Promise<void> | null = null;
  connectionsServed = 0;

  constructor(private readonly options: UlogServerOptions) {}

  get connectionCount(): number {
    return this.open.size;
  }

  /** Starts listening; resolves with the address bound (port 0 picks a free port). */
  async listen(address: UlogAddress): Promise<UlogAddress> {
    if (this.closing !== null) throw new Error('the ulog server is closed');
    if ('host' in address && !isLoopbackHost(address.host)) {
      throw new Error(`refusing to serve dirty logs on ${address.host}: ulog frames carry no key, so TCP listens on loopback only (tunnel remote clients)`);
    }
    if ('path' in address) await removeStaleSocket(address.path);
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const bound = () => {
        server.off('error', reject);
        resolve();
      };
      if ('path' in address) server.listen(address.path, bound);
      else server.listen(address.port, address.host, bound);
    });
    server.on('error', (error) => this.log(`ulog: listener error: ${error.message}`));
    if ('path' in address) {
      fs.chmodSync(address.path, 0o600);
      this.listeners.push({ server, path: address.path });
      return { path: address.path };
    }
    this.listeners.push({ server, path: null });
    const info = server.address() as net.AddressInfo;
    return { host: info.address, port: info.port };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = this.listeners.map(({ server, path }) => new Promise<void>((resolve) => {
        server.close(() => resolve());
        if (path !== null) fs.rmSync(path, { force: true }); // Bun and Deno leave the socket file behind
      }));
      for (const connection of [...this.open]) connection.close(null);
      await Promise.all(stopped);
    })();
    return this.closing;
  }

  private accept(socket: net.Socket): void {
    const id = this.nextId++;
    const remote = socket.remoteAddress === undefined ? `unix:${id}` : `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.closing !== null || this.open.size >= (this.options.maxConnections ?? 256)) {
      socket.on('error', () => {});
      socket.destroy();
      this.log(`ulog connection ${remote}: refused (${this.closing !== null ? 'server closing' : 'too many connections'})`);
      return;
    }
    try {
      const connection = new UlogConnection(id, remote, socket, {
        handler: this.options.handler,
        maxDataBytes: this.options.maxDataBytes ?? ULOG_MAX_DATA_BYTES,
        log: (line) => this.log(line),
        closed: (done) => this.open.delete(done),
      });
      this.open.add(connection);
      this.connectionsServed += 1;
    } catch (error) {
      socket.on('error', () => {});
      socket.destroy();
      this.log(`ulog connection ${remote}: internal error: ${describeError(error)}`);
    }
  }

  private log(line: string): void {
    try {
      this.options.log?.(line);
    } catch {
      // a log sink that throws loses its line, not the server
    }
  }
}
