/**
 * NbdServer: serves BlockDevices over NBD (fixed newstyle, structured replies, base:allocation)
 * on TCP and Unix sockets, through node:net, which Node, Bun and Deno all provide. Exports come
 * from the caller (`lookup` / `list`), looked up again for every option that names one, so the
 * catalogue may change while the server runs. The server never opens or closes devices.
 *
 * Each socket is an NbdConnection (connection.ts) with its own state and flow control; one
 * misbehaving client is disconnected without the others noticing. Accepting beyond
 * `maxConnections` open sockets closes the new socket at once (reported as a 'protocol-error'
 * event, the only event that carries a message). `connections()` lists the connections that have
 * chosen an export. `close()` stops listening, lets requests in flight finish (SHUTDOWN_GRACE_MS at
 * most), ends every connection and resolves when all sockets are closed.
 *
 * With `threads` (Node), a connection whose GO picked a plain file export moves to a worker thread
 * that serves the rest of it (threads.ts says how, and what stays truthful across threads).
 */
import fs from 'node:fs';
import net from 'node:net';
import { loadAdapter } from '../../runtime/adapter/index.ts';
import { NbdThreads } from './threads.ts';
import { NbdTls } from './tls.ts';
import { BufferPool } from '../../runtime/net/buffer-pool.ts';
import { describeError } from '../../runtime/net/fault-domain.ts';
import { SHUTDOWN_GRACE_MS } from './constants.ts';
import { NbdConnection, type ConnectionHost } from './connection.ts';
import { loadRequestDecoders, type RequestDecoder } from './request-codec.ts';
import type { NbdAddress, NbdConnectionInfo, NbdCounters, NbdEvent, NbdExport, NbdServerOptions } from './types.ts';

export type { NbdAddress, NbdConnectionInfo, NbdCounters, NbdEvent, NbdExport, NbdServerOptions } from './types.ts';

const DEFAULT_MAX_CONNECTIONS = 128;

export class NbdServer {
  readonly counters: NbdCounters = { connections: 0, requests: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };
  private readonly listeners: Array<{ server: net.Server; path: string | null }> = [];
  private readonly open = new Set<NbdConnection>();
  private readonly maxConnections: number;
  private readonly host: ConnectionHost;
  private requestDecoders: (() => RequestDecoder) | null = null;
  private nextConnectionId = 1;
  private closing: Promise<void> | null = null;

  constructor(private readonly options: NbdServerOptions) {
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (!Number.isSafeInteger(this.maxConnections) || this.maxConnections < 1) {
      throw new RangeError(`maxConnections must be a positive integer, got ${String(options.maxConnections)}`);
    }
    const server = this;
    this.host = {
      tls: options.tls === undefined ? null : new NbdTls(options.tls),
      threads: null, // set by listen() once the runtime adapter is loaded
      counters: this.counters,
      pool: new BufferPool(),
      socketSend: null, // set by listen() once the runtime adapter is loaded
      requestDecoder: () => server.requestDecoders!(), // set by listen(), before any connection
      lookup: (name) => options.lookup(name),
      list: () => options.list(),
      emit: (event) => server.emit(event),
      closed: (connection) => server.open.delete(connection),
    };
  }

  /** Starts listening (port 0 picks a free port); resolves with the address actually bound. */
  async listen(address: { host: string; port: number } | { path: string }): Promise<{ host: string; port: number } | { path: string }> {
    if (this.closing) throw new Error('NbdServer is closed');
    const adapter = await loadAdapter();
    if (this.options.zeroCopy !== false) this.host.socketSend = adapter.socketSend;
    this.requestDecoders ??= await loadRequestDecoders(this.options.requestDecoder ?? adapter.nbdRequestDecoder);
    if (this.closing) throw new Error('NbdServer is closed');
    const threadCount = this.options.threads ?? 0;
    if (this.host.threads === null && threadCount > 0 && adapter.threadSockets !== null) {
      const log = (line: string) => (this.options.onLog ?? console.error)(line);
      this.host.threads = new NbdThreads(threadCount, adapter.threadSockets, { counters: this.counters, emit: (event) => this.emit(event), log });
    }
    // Half-open: a client that sends its last requests and then shuts down its side still gets
    // the replies (the connection ends them itself once they are out).
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const bound = () => {
        server.off('error', reject);
        server.on('error', () => {}); // accept errors (EMFILE...) must not crash the process
        if ('path' in address) {
          this.listeners.push({ server, path: address.path });
          resolve({ path: address.path });
        } else {
          this.listeners.push({ server, path: null });
          const info = server.address() as net.AddressInfo;
          resolve({ host: info.address, port: info.port });
        }
      };
      if ('path' in address) server.listen(address.path, bound);
      else server.listen(address.port, address.host, bound);
    });
  }

  /** Open connections a thread serves (threads.ts). */
  get threadedConnections(): number {
    return [...this.open].filter((connection) => connection.onThread).length;
  }

  /** The worker threads, once listening with `threads` on a runtime that has them; else null. */
  get threads(): NbdThreads | null {
    return this.host.threads;
  }

  connections(): Array<{ id: number; exportName: string; remote: string; connectedAtMs: number }> {
    const list: NbdConnectionInfo[] = [];
    for (const connection of this.open) {
      if (!connection.inTransmission) continue;
      list.push({ id: connection.id, exportName: connection.exportName, remote: connection.remote, connectedAtMs: connection.connectedAtMs });
    }
    return list;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = this.listeners.map(({ server, path }) => new Promise<void>((resolve) => {
        server.close(() => resolve());
        if (path !== null) fs.rmSync(path, { force: true }); // Bun and Deno leave the socket file behind
      }));
      await Promise.all([...this.open].map((connection) => connection.shutdown(SHUTDOWN_GRACE_MS)));
      await Promise.all(stopped);
      await this.host.threads?.stop();
      this.host.tls?.close();
    })();
    return this.closing;
  }

  private accept(socket: net.Socket): void {
    const id = this.nextConnectionId++;
    const remote = socket.remoteAddress === undefined ? `unix:${id}` : `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.closing !== null || this.open.size >= this.maxConnections) {
      socket.on('error', () => {});
      socket.destroy();
      const reason = this.closing !== null ? 'server is closing' : `too many connections (maxConnections ${this.maxConnections})`;
      this.emit({ type: 'protocol-error', connectionId: id, remote, message: `refused: ${reason}` });
      return;
    }
    this.counters.connections++;
    try {
      this.open.add(new NbdConnection(id, remote, socket, this.host));
    } catch (error) {
      // A fault while setting the connection up ends that socket only (runtime/net/fault-domain.ts).
      socket.on('error', () => {});
      socket.destroy();
      this.emit({ type: 'protocol-error', connectionId: id, remote, message: `internal error: ${describeError(error)}` });
    }
  }

  private emit(event: NbdEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (error) {
      console.error(`NbdServer: onEvent failed on ${event.type}:`, error);
    }
  }
}
