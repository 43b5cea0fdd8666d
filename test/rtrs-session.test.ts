/**
 * RTRS sessions over real TCP on 127.0.0.1 and 127.0.0.2: a two-path session moves writes and
 * reads, each multipath policy spreads IO as it says (visible in the per-path stats), keys rotate
 * with always_invalidate and stay without it, the digest and the pre-shared key work, and the
 * server keeps serving other sessions when one sends garbage.
 */
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { readBlock, rtrsPair, writeBlock } from './support/rtrs-pair.ts';

const SEED = seedFromEnv();
const test = suite('rtrs sessions');

test('a two-path session writes and reads back through both paths', async () => {
  const pair = await rtrsPair();
  try {
    const client = await pair.connect({ policy: 'round-robin' });
    assert.is(client.maxIoBytes, 124 * 1024);
    const prng = new Prng(SEED);
    const blocks = Array.from({ length: 64 }, () => prng.fill(new Uint8Array(4096 * prng.range(1, 31))));
    await Promise.all(blocks.map((data, i) => writeBlock(client, i * 128 * 1024, data)));
    for (const [i, data] of blocks.entries()) {
      const device = new Uint8Array(data.length);
      await pair.handler.device.read(i * 128 * 1024, device);
      assert.equal(device, data, `block ${i} on the server (seed ${SEED})`);
      assert.equal(await readBlock(client, i * 128 * 1024, data.length), data, `block ${i} read back`);
    }
    const paths = client.pathsInfo();
    assert.is(paths.length, 2);
    for (const path of paths) {
      assert.is(path.stats.state, 'CONNECTED');
      assert.is(path.stats.writeCount, 32, `round-robin writes on ${path.name}`);
      assert.is(path.stats.readCount, 32, `round-robin reads on ${path.name}`);
    }
    const info = pair.server.sessionsInfo();
    assert.is(info.length, 1);
    assert.is(info[0]!.paths.length, 2);
  } finally {
    await pair.close();
  }
});

test('min-inflight keeps both paths busy; min-latency follows the heartbeat round trip', async () => {
  const pair = await rtrsPair();
  try {
    pair.handler.delayMs = 5;
    const spread = await pair.connect({ policy: 'min-inflight' });
    await Promise.all(Array.from({ length: 40 }, (_, i) => writeBlock(spread, i * 4096, new Uint8Array(4096).fill(i))));
    const counts = spread.pathsInfo().map((path) => path.stats.writeCount);
    assert.is(counts[0]! + counts[1]!, 40);
    assert.ok(Math.abs(counts[0]! - counts[1]!) <= 2, `min-inflight splits 40 concurrent writes evenly: ${counts}`);

    const fastest = await pair.connect({ policy: 'min-latency', heartbeatIntervalMs: 100 });
    await new Promise((resolve) => setTimeout(resolve, 350)); // heartbeats measure both paths
    const latencies = fastest.pathsInfo().map((path) => path.stats.curLatencyMs);
    assert.ok(latencies.every((ms) => ms > 0), `both paths measured: ${latencies}`);
    const lowest = latencies[0]! <= latencies[1]! ? 0 : 1;
    for (let i = 0; i < 10; i++) await writeBlock(fastest, 0, new Uint8Array(4096));
    const writes = fastest.pathsInfo().map((path) => path.stats.writeCount);
    assert.ok(writes[lowest]! >= 1, `min-latency used the lower-latency path: ${writes} vs ${latencies}`);
  } finally {
    await pair.close();
  }
});

test('the digest covers every frame; the key rotates only with always_invalidate', async () => {
  for (const alwaysInvalidate of [true, false]) {
    const pair = await rtrsPair({ alwaysInvalidate });
    try {
      const client = await pair.connect({ digest: true });
      for (let i = 0; i < 8; i++) await writeBlock(client, 0, new Uint8Array(4096).fill(i));
      assert.equal(await readBlock(client, 0, 4096), new Uint8Array(4096).fill(7));
      assert.is(pair.handler.writesApplied, 8);
    } finally {
      await pair.close();
    }
  }
});

test('add, remove, reconnect and disconnect paths while IO runs: every request completes with the right bytes', async () => {
  const pair = await rtrsPair();
  try {
    const [first, second] = pair.addresses.map((address) => ({ host: address.split(':')[0]!, port: Number(address.split(':')[1]) }));
    const client = await pair.connect({ paths: [{ dst: first!, name: 'one' }], connectionsPerPath: 3 });
    assert.is(client.timing.connectionCount, 3);
    let stop = false;
    let done = 0;
    const prng = new Prng(SEED + 7);
    const worker = async (slot: number) => {
      while (!stop) {
        const data = prng.fill(new Uint8Array(4096 * prng.range(1, 8)));
        await writeBlock(client, slot * 64 * 1024, data);
        assert.equal(await readBlock(client, slot * 64 * 1024, data.length), data, `slot ${slot} (seed ${SEED})`);
        done += 1;
      }
    };
    const failures: unknown[] = [];
    const workers = Array.from({ length: 8 }, (_, slot) => worker(slot).catch((error: unknown) => void failures.push(error)));
    const settle = () => new Promise((resolve) => setTimeout(resolve, 30));
    await settle();
    await client.addPath({ dst: second!, name: 'two' });
    await settle();
    client.findPath('one').reconnectNow();
    await settle();
    client.findPath('two').disconnect();
    await settle();
    client.findPath('two').reconnectNow();
    await settle();
    client.removePath('one');
    await settle();
    assert.throws(() => client.removePath('two'), /last/);
    stop = true;
    await Promise.all(workers);
    assert.equal(failures.map(String), [], `no request failed (seed ${SEED})`);
    assert.ok(done > 0);
    assert.equal(client.pathsInfo().map((path) => path.name), ['two']);
  } finally {
    await pair.close();
  }
});

test('with every path disconnected by hand, IO waits (its chunks are not given up in doubt) and completes after a reconnect', async () => {
  const pair = await rtrsPair();
  try {
    const client = await pair.connect();
    pair.handler.delayMs = 20;
    const writes = Array.from({ length: 8 }, (_, i) => writeBlock(client, i * 4096, new Uint8Array(4096).fill(i + 1)));
    for (const path of client.paths) path.disconnect();
    let settled = 0;
    for (const write of writes) void write.then(() => settled++, () => settled++);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.is(settled, 0, 'nothing fails while a path may still be reconnected');
    client.paths[1]!.reconnectNow();
    await Promise.all(writes);
    assert.is(pair.handler.writesApplied, 8);
    for (let i = 0; i < 8; i++) await writeBlock(client, i * 4096, new Uint8Array(4096).fill(100 + i)); // every chunk usable again
    assert.is(pair.handler.writesApplied, 16);
  } finally {
    await pair.close();
  }
});

test('a client may ask for always_invalidate but not turn it off', async () => {
  const lax = await rtrsPair({ alwaysInvalidate: false });
  try {
    await lax.connect();
    await lax.connect({ alwaysInvalidate: true });
    assert.equal(lax.server.sessionsInfo().map((session) => session.alwaysInvalidate).sort(), [false, true]);
  } finally {
    await lax.close();
  }
  const strict = await rtrsPair();
  try {
    await strict.connect({ alwaysInvalidate: false });
    assert.equal(strict.server.sessionsInfo().map((session) => session.alwaysInvalidate), [true]);
  } finally {
    await strict.close();
  }
});

test('TLS with a pre-shared key: both paths encrypted, data intact', async () => {
  const cert = readFileSync(new URL('./fixtures/tls/cert.pem', import.meta.url));
  const key = new TextEncoder().encode('a pre-shared key of the test');
  const pair = await rtrsPair({ tls: { cert, key: readFileSync(new URL('./fixtures/tls/key.pem', import.meta.url)) }, key });
  try {
    const client = await pair.connect({ tls: { ca: cert, servername: 'localhost' }, key });
    const prng = new Prng(SEED + 1);
    const data = prng.fill(new Uint8Array(124 * 1024));
    await writeBlock(client, 4096, data);
    assert.equal(await readBlock(client, 4096, data.length), data);
    assert.is(client.pathsInfo().filter((path) => path.stats.state === 'CONNECTED').length, 2);
    assert.is(pair.handler.writesApplied, 1);
  } finally {
    await pair.close();
  }
});

test.run();
