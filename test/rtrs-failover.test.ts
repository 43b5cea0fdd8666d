/**
 * Failover: a two-path session whose first path runs through a TCP proxy that cuts (FIN), resets
 * (RST) or stalls (silent) its connections while writes and reads are in flight. Every write must
 * be acknowledged and applied on the server exactly once (the handler counts what it applies),
 * every read must return what was written, the failed path's stats count the failed-over requests,
 * and the path reconnects and takes IO again. A single-path session waits through the outage and
 * completes its IO after the path comes back. The breakages run again with the server's IO
 * connections on IO threads, where the runtime has them.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import type { RtrsClient } from '../runtime/transport/rtrs-client.ts';
import { readBlock, rtrsPair, writeBlock, type Pair } from './support/rtrs-pair.ts';
import { FRAME_HEADER_BYTES, HELLO_BYTES } from '../runtime/transport/rtrs-frame.ts';
import { CONN_RSP_BYTES } from '../runtime/transport/rtrs-messages.ts';
import { TcpProxy } from './support/tcp-proxy.ts';
import { THREAD_CASES, threadedCount, type ThreadsCase } from './support/io-threads.ts';

const SEED = seedFromEnv();
const test = suite('rtrs failover');

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function proxiedPair(threads: ThreadsCase = THREAD_CASES[0]!): Promise<{ pair: Pair; proxy: TcpProxy; client: RtrsClient }> {
  const pair = await rtrsPair({ heartbeatIntervalMs: 100, ioThreads: threads.server });
  const [host, port] = pair.addresses[0]!.split(':');
  const proxy = new TcpProxy({ host: host!, port: Number(port) });
  const through = await proxy.listen('127.0.0.1');
  const direct = pair.addresses[1]!;
  const hostPort = (text: string) => ({ host: text.split(':')[0]!, port: Number(text.split(':')[1]) });
  const client = await pair.connect({
    paths: [{ dst: hostPort(through) }, { dst: hostPort(direct) }], policy: 'round-robin', heartbeatIntervalMs: 100, connectTimeoutMs: 1000, ioThreads: threads.client,
  });
  return { pair, proxy, client };
}

for (const [breakage, threads] of THREAD_CASES.flatMap((each) => (['cut', 'reset', 'stall'] as const).map((breakage) => [breakage, each] as const))) {
  test(`${breakage} of one path mid-IO: every write applied exactly once, every read right, the path comes back${threads.label}`, async () => {
    const { pair, proxy, client } = await proxiedPair(threads);
    try {
      const prng = new Prng(SEED);
      pair.handler.delayMs = 3;
      const blocks = Array.from({ length: 200 }, () => prng.fill(new Uint8Array(4096 * prng.range(1, 8))));
      const writes = blocks.map((data, i) => writeBlock(client, i * 64 * 1024, data));
      await until('writes in flight on the proxied path', () => client.pathsInfo()[0]!.stats.inflight > 0);
      if (breakage === 'cut') proxy.cut();
      else if (breakage === 'reset') proxy.reset();
      else proxy.stall();
      await Promise.all(writes);
      assert.is(pair.handler.writesApplied, blocks.length, `each write applied once (seed ${SEED})`);
      const reads = await Promise.all(blocks.map((data, i) => readBlock(client, i * 64 * 1024, data.length)));
      for (const [i, data] of blocks.entries()) assert.equal(reads[i], data, `block ${i} (seed ${SEED})`);
      const failed = client.pathsInfo()[0]!;
      assert.ok(failed.stats.failoverCount > 0, `the broken path counts its failed-over requests: ${JSON.stringify(failed.stats)}`);
      if (breakage === 'stall') proxy.heal();
      await until('the path reconnects', () => client.pathsInfo()[0]!.stats.state === 'CONNECTED');
      assert.ok(client.pathsInfo()[0]!.stats.reconnects.ok >= 1);
      const before = client.pathsInfo()[0]!.stats.writeCount;
      for (let i = 0; i < 4; i++) await writeBlock(client, 0, new Uint8Array(4096).fill(i));
      assert.ok(client.pathsInfo()[0]!.stats.writeCount > before, 'the path takes IO again');
      // Both paths, the reconnected one too, with their IO connections on IO threads when asked for.
      const served = pair.server.sessionsInfo()[0]!.paths.map((path) => [path.state, path.connections, path.threadedConnections] as const);
      assert.ok(served.length === 2 && served.every(([state, connections, threaded]) => state === 'CONNECTED' && threaded === threadedCount(threads.server, connections)), `server paths: ${JSON.stringify(served)}`);
      for (const path of client.paths) assert.is(path.threadedConnections, threadedCount(threads.client, path.links.length), `client connections on IO threads (${path.name})`);
    } finally {
      await proxy.close();
      await pair.close();
    }
  });
}

if (THREAD_CASES.length > 1) {
  test('an IO thread that dies mid-IO: its connections close, every write is applied once, and the paths come back with those connections on the server\'s thread', async () => {
    const { pair, proxy, client } = await proxiedPair(THREAD_CASES[1]!);
    try {
      const prng = new Prng(SEED ^ 0x7d);
      pair.handler.delayMs = 3;
      const blocks = Array.from({ length: 200 }, () => prng.fill(new Uint8Array(4096 * prng.range(1, 8))));
      const writes = blocks.map((data, i) => writeBlock(client, i * 64 * 1024, data));
      await until('writes in flight', () => client.pathsInfo().some((path) => path.stats.inflight > 0));
      const threads = pair.server.ioThreads!;
      assert.is(pair.server.ioThreadCount, 2);
      await threads.stopThread(0);
      await Promise.all(writes);
      assert.is(pair.handler.writesApplied, blocks.length, `each write applied once (seed ${SEED})`);
      const reads = await Promise.all(blocks.map((data, i) => readBlock(client, i * 64 * 1024, data.length)));
      for (const [i, data] of blocks.entries()) assert.equal(reads[i], data, `block ${i} (seed ${SEED})`);
      assert.ok(pair.logs.some((line) => line.includes('IO thread 0 stopped')), pair.logs.join('\n'));
      assert.is(pair.server.ioThreadCount, 1, 'one thread left');
      await until('both paths connected again', () => client.pathsInfo().every((path) => path.stats.state === 'CONNECTED'));
      await until('the server has both paths', () => pair.server.sessionsInfo()[0]?.paths.filter((path) => path.state === 'CONNECTED').length === 2);
      // Connection cid goes to thread (cid - 1) mod 2: those of the dead thread 0 stay on the server's thread.
      for (const path of pair.server.sessionsInfo()[0]!.paths) {
        const expected = Array.from({ length: path.connections - 1 }, (_, i) => i + 1).filter((cid) => (cid - 1) % 2 === 1).length;
        assert.is(path.threadedConnections, expected, `connections left on the living thread: ${JSON.stringify(path)}`);
      }
      for (let i = 0; i < 8; i++) await writeBlock(client, i * 4096, new Uint8Array(4096).fill(i));
    } finally {
      await proxy.close();
      await pair.close();
    }
  });
}

test('a path that reconnects keeps the keys IO on other paths rotated while its INFO_RSP was on the way', async () => {
  const pair = await rtrsPair({ heartbeatIntervalMs: 100, queueDepth: 4 });
  const [host, port] = pair.addresses[0]!.split(':');
  const proxy = new TcpProxy({ host: host!, port: Number(port) });
  try {
    const through = Number((await proxy.listen('127.0.0.1')).split(':')[1]);
    const direct = Number(pair.addresses[1]!.split(':')[1]);
    const client = await pair.connect({ paths: [{ dst: { host: '127.0.0.1', port: through }, name: 'proxied' }, { dst: { host: '127.0.0.2', port: direct }, name: 'direct' }] });
    // Every connection of the reconnecting path gets its hello and CON_RSP (144 bytes); connection
    // 0's INFO_RSP (the keys of the moment the server sent it) then waits in the proxy while
    // writes on the direct path rotate every chunk's key.
    proxy.holdReplies(FRAME_HEADER_BYTES + HELLO_BYTES + FRAME_HEADER_BYTES + CONN_RSP_BYTES);
    client.findPath('proxied').reconnectNow();
    await until('the INFO_RSP held in the proxy', () => proxy.heldChunks > 0);
    for (let i = 0; i < 8; i++) await writeBlock(client, i * 4096, new Uint8Array(4096).fill(i));
    proxy.releaseReplies();
    await until('the proxied path is back', () => client.pathsInfo()[0]!.stats.state === 'CONNECTED');
    for (let i = 0; i < 16; i++) await writeBlock(client, i * 4096, new Uint8Array(4096).fill(100 + i));
    assert.is(pair.logs.filter((line) => line.includes('stale or wrong key')).length, 0, pair.logs.join('\n'));
  } finally {
    await proxy.close();
    await pair.close();
  }
});

test('a single path: IO waits through an outage and completes after the reconnect', async () => {
  const pair = await rtrsPair({ heartbeatIntervalMs: 100 });
  const [host, port] = pair.addresses[0]!.split(':');
  const proxy = new TcpProxy({ host: host!, port: Number(port) });
  try {
    const through = await proxy.listen('127.0.0.1');
    const client = await pair.connect({ paths: [{ dst: { host: '127.0.0.1', port: Number(through.split(':')[1]) } }], heartbeatIntervalMs: 100 });
    const events: string[] = [];
    client.onLinkEvent((event) => events.push(event));
    pair.handler.delayMs = 20;
    const writes = Array.from({ length: 16 }, (_, i) => writeBlock(client, i * 4096, new Uint8Array(4096).fill(i + 1)));
    await until('writes in flight', () => client.pathsInfo()[0]!.stats.inflight > 0);
    proxy.reset();
    await Promise.all(writes);
    assert.is(pair.handler.writesApplied, 16, 'each write applied once across the reconnect');
    for (let i = 0; i < 16; i++) assert.equal(await readBlock(client, i * 4096, 4096), new Uint8Array(4096).fill(i + 1));
    assert.equal(events, ['disconnected', 'reconnected']);
  } finally {
    await proxy.close();
    await pair.close();
  }
});

test.run();
