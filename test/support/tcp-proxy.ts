/**
 * A TCP proxy between an RTRS client path and the server, for failover tests: it forwards both
 * ways until told to break the path, in one of three ways a network breaks:
 *   cut()    every connection through it ends with a FIN (an orderly close)
 *   reset()  every connection is reset (RST: the peer sees ECONNRESET)
 *   stall()  every connection stays open but nothing more is delivered either way (a silent
 *            death: only heartbeats can tell), and new connections are held the same way
 * `heal()` lets new connections through again (stalled ones stay dead, as after a real outage).
 * `holdReplies(afterBytes)` keeps what the server sends back on connections made from then on,
 * past their first `afterBytes` (to delay one answer of a handshake), until `releaseReplies()`
 * delivers it all, in order.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private server: Server | null = null;
  private readonly pairs = new Set<[Socket, Socket]>();
  private stalled = false;
  address = '';
  connections = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(host: string): Promise<string> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen({ host, port: 0 }, resolve));
    const port = (this.server.address() as { port: number }).port;
    this.address = `${host}:${port}`;
    return this.address;
  }

  private accept(client: Socket): void {
    this.connections += 1;
    const upstream = connect(this.target);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    let passBytes = this.held === null ? Infinity : this.holdAfterBytes;
    const forward = (from: Socket, to: Socket) => from.on('data', (chunk: Buffer) => {
      if (this.stalled) return;
      if (from === upstream && this.held !== null && chunk.length > passBytes) {
        const pass = Math.max(0, passBytes);
        if (pass > 0) to.write(chunk.subarray(0, pass));
        this.held.push([to, chunk.subarray(pass)]);
        passBytes = 0;
        return;
      }
      if (from === upstream) passBytes -= chunk.length;
      to.write(chunk);
    });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of pair) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }

  private held: Array<[Socket, Buffer]> | null = null;
  private holdAfterBytes = 0;

  holdReplies(afterBytes = 0): void {
    this.held ??= [];
    this.holdAfterBytes = afterBytes;
  }

  /** Chunks held back so far. */
  get heldChunks(): number {
    return this.held?.length ?? 0;
  }

  releaseReplies(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const [to, chunk] of held) if (!to.destroyed) to.write(chunk);
  }

  cut(): void {
    for (const [a, b] of this.pairs) {
      a.end();
      b.end();
    }
  }

  reset(): void {
    for (const [a, b] of this.pairs) {
      for (const socket of [a, b]) {
        const withReset = socket as Socket & { resetAndDestroy?: () => void };
        if (typeof withReset.resetAndDestroy === 'function') withReset.resetAndDestroy();
        else socket.destroy();
      }
    }
  }

  stall(): void {
    this.stalled = true;
    this.stalledPairs = new Set(this.pairs);
  }

  private stalledPairs = new Set<[Socket, Socket]>();

  heal(): void {
    // Connections that were stalled stay silent forever (their peers gave up on them); new ones flow.
    for (const pair of this.stalledPairs) for (const socket of pair) socket.removeAllListeners('data');
    this.stalled = false;
  }

  async close(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
