/**
 * RTRS over real sockets for tests: an RtrsServer listening on 127.0.0.1 and 127.0.0.2 (free ports
 * the kernel picks), and clients with a path to each. The server's user in these tests is
 * `BlockHandler`, a small block protocol of its own over a MemoryDevice (a user header of op u8 and
 * offset u64, little-endian), so RTRS is tested without RNBD on top; RNBD's own tests use the
 * real RNBD server.
 */
import { MemoryDevice } from '../../runtime/devices/memory-device.ts';
import { type RtrsRequest, type RtrsServerHandler, type RtrsServerSession } from '../../runtime/transport/rtrs-api.ts';
import { RtrsClient, type RtrsClientOptions } from '../../runtime/transport/rtrs-client.ts';
import type { Crc32c } from '../../runtime/transport/rtrs-frame.ts';
import { RtrsServer, type RtrsServerOptions } from '../../runtime/transport/rtrs-server.ts';
import { defaultKernels } from '../../runtime/wasm/kernels.ts';
import { TcpProxy } from './tcp-proxy.ts';

export const OP_READ = 1;
export const OP_WRITE = 2;

export async function kernelCrc32c(): Promise<Crc32c> {
  const kernels = await defaultKernels();
  return (bytes, seed = 0) => kernels.crc32c(bytes, seed);
}

export function blockHeader(op: number, offsetBytes: number): Uint8Array {
  const header = new Uint8Array(9);
  header[0] = op;
  new DataView(header.buffer).setBigUint64(1, BigInt(offsetBytes), true);
  return header;
}

/** Applies writes to a MemoryDevice and serves reads from it; counts what it applied. */
export class BlockHandler implements RtrsServerHandler {
  readonly device: MemoryDevice;
  writesApplied = 0;
  readsServed = 0;
  closedSessions: string[] = [];
  /** Delays every request by this much (to keep requests in flight across a failover). */
  delayMs = 0;

  constructor(sizeBytes: number) {
    this.device = new MemoryDevice({ sizeBytes });
  }

  async handle(_session: RtrsServerSession, request: RtrsRequest): Promise<void> {
    if (this.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
    const view = new DataView(request.header.buffer, request.header.byteOffset, request.header.byteLength);
    const op = view.getUint8(0);
    const offsetBytes = Number(view.getBigUint64(1, true));
    if (op === OP_WRITE && request.direction === 'write') {
      await this.device.write(offsetBytes, request.data);
      this.writesApplied += 1;
    } else if (op === OP_READ && request.direction === 'read') {
      await this.device.read(offsetBytes, request.data);
      this.readsServed += 1;
    } else throw new Error(`bad test request op ${op}`);
  }

  async sessionClosed(session: RtrsServerSession): Promise<void> {
    this.closedSessions.push(session.sessionName);
  }
}

export interface Pair {
  server: RtrsServer;
  handler: BlockHandler;
  /** "127.0.0.1:port", "127.0.0.2:port" */
  addresses: string[];
  crc32c: Crc32c;
  logs: string[];
  connect(options?: Partial<RtrsClientOptions>): Promise<RtrsClient>;
  close(): Promise<void>;
}

export async function rtrsPair(serverOptions: Partial<RtrsServerOptions> = {}, sizeBytes = 16 * 1024 * 1024): Promise<Pair> {
  const crc32c = await kernelCrc32c();
  const handler = new BlockHandler(sizeBytes);
  const logs: string[] = [];
  const server = new RtrsServer({ handler, crc32c, log: (line) => logs.push(line), ...serverOptions });
  const addresses = [await server.listen('127.0.0.1', 0), await server.listen('127.0.0.2', 0)];
  const clients: RtrsClient[] = [];
  let serial = 0;
  return {
    server, handler, addresses, crc32c, logs,
    async connect(options = {}) {
      const client = await RtrsClient.open({
        sessionName: `test-session-${process.pid}-${serial++}`,
        paths: addresses.map((address) => ({ dst: { host: address.split(':')[0]!, port: Number(address.split(':')[1]) } })),
        crc32c, reconnectDelayMs: 50, reconnectBackoffMs: 50, log: (line) => logs.push(line),
        ...options,
      });
      clients.push(client);
      return client;
    },
    async close() {
      for (const client of clients) await client.close();
      await server.close();
    },
  };
}

export function writeBlock(client: RtrsClient, offsetBytes: number, data: Uint8Array): Promise<void> {
  return client.request({ direction: 'write', header: blockHeader(OP_WRITE, offsetBytes), data });
}

export async function readBlock(client: RtrsClient, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const data = new Uint8Array(lengthBytes);
  await client.request({ direction: 'read', header: blockHeader(OP_READ, offsetBytes), data });
  return data;
}

export interface RtrsPair {
  server: RtrsServer;
  client: RtrsClient;
  logs: string[];
  /** Resets every connection of every path; resolves once the client raised 'disconnected' (its paths then reconnect). */
  cutAllPaths(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A server with `handler` (RNBD's, in the RNBD tests) and a client session to it whose paths run
 * through TCP proxies (127.0.0.1, 127.0.0.2, ...), so a test can cut them all at once.
 */
export async function connectRtrsPair(options: {
  handler: RtrsServerHandler; pathCount?: number; reconnectDelayMs?: number; clientOptions?: Partial<RtrsClientOptions>; serverOptions?: Partial<RtrsServerOptions>;
}): Promise<RtrsPair> {
  const crc32c = await kernelCrc32c();
  const logs: string[] = [];
  const server = new RtrsServer({ handler: options.handler, crc32c, log: (line) => logs.push(line), ...options.serverOptions });
  const proxies: TcpProxy[] = [];
  const paths = [];
  for (let i = 0; i < (options.pathCount ?? 1); i++) {
    const host = `127.0.0.${i + 1}`;
    const address = await server.listen(host, 0);
    const proxy = new TcpProxy({ host, port: Number(address.split(':')[1]) });
    proxies.push(proxy);
    const through = await proxy.listen(host);
    paths.push({ dst: { host, port: Number(through.split(':')[1]) } });
  }
  const client = await RtrsClient.open({
    sessionName: `rnbd-test-${process.pid}-${pairSerial++}`, paths, crc32c, reconnectDelayMs: options.reconnectDelayMs ?? 100, reconnectBackoffMs: 100,
    log: (line) => logs.push(line), ...options.clientOptions,
  });
  return {
    server, client, logs,
    async cutAllPaths() {
      const disconnected = new Promise<void>((resolve) => {
        const off = client.onLinkEvent((event) => {
          if (event !== 'disconnected') return;
          off();
          resolve();
        });
      });
      for (const proxy of proxies) proxy.reset();
      await disconnected;
    },
    async close() {
      await client.close();
      for (const proxy of proxies) await proxy.close();
      await server.close();
    },
  };
}

let pairSerial = 0;
