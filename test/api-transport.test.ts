/**
 * The transport engine through the service, as two machines would use it: service A serves its
 * devices over RTRS/RNBD on 127.0.0.1 and 127.0.0.2, service B opens a two-path session to A, maps
 * A's disk.img as remote:r1 and serves it over NBD, where nbdcopy reads and writes it (what it
 * writes lands in A's file). Sessions and mappings survive B's restart; A holds the file it
 * serves; bad input is a 4xx naming the field, an unreachable server a 502. Both serve with
 * --rtrs-threads 2: their IO connections on IO threads where the runtime can.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { Prng } from '../runtime/prng.ts';
import { type Answer, expectError, until, useServicePair, writeImage } from './support/blockcore-server.ts';
import { threadedCount } from './support/io-threads.ts';
import { openEvents } from './support/sse-reader.ts';
import { killRunningTools, requireTools, runTool } from './support/tools.ts';

const test = suite('api: transport');
const MiB = 1024 * 1024;
const services = useServicePair(test, killRunningTools);


async function openSession(name = 's1'): Promise<Answer> {
  const server = (await services.a.call('GET', '/v1/transport/server')).json;
  return services.b.call('POST', '/v1/transport/sessions', { name, paths: server.listen.map((dst: string) => ({ dst })), policy: 'round-robin' });
}

test('a remote device over two paths, exported over NBD: nbdcopy reads and writes the other service\'s file', async () => {
  requireTools(['nbdcopy']);
  const image = writeImage(services.a.dataDir, 'disk.img', 4 * MiB, 7);
  const server = await services.a.call('GET', '/v1/transport/server');
  assert.is(server.status, 200);
  assert.is(server.json.listen.length, 2);
  assert.match(server.json.listen[1], /^127\.0\.0\.2:\d+$/);

  const session = await openSession();
  assert.is(session.status, 201, session.text);
  assert.is(session.json.state, 'connected');
  assert.equal(session.json.pathStats.map((path: { stats: { state: string } }) => path.stats.state), ['CONNECTED', 'CONNECTED']);
  assert.is(session.json.maxIoBytes, 124 * 1024);

  const mapped = await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'disk.img', access: 'rw' });
  assert.is(mapped.status, 201, mapped.text);
  assert.equal(mapped.json, { name: 'r1', session: 's1', device: 'disk.img', access: 'rw', open: true, error: null, sizeBytes: 4 * MiB, exports: [] });
  assert.is((await services.b.call('POST', '/v1/exports', { name: 'r', device: 'remote:r1' })).status, 201);

  const copyOut = join(services.b.root, 'copy.img');
  const uri = `nbd://127.0.0.1:${(services.b.running.nbd as { port: number }).port}/r`;
  const read = await runTool('nbdcopy', [uri, copyOut]);
  assert.is(read.code, 0, read.stderr);
  assert.equal(new Uint8Array(readFileSync(copyOut)), image, 'nbdcopy read A\'s file through B');

  const fresh = new Prng(99).fill(new Uint8Array(4 * MiB));
  writeFileSync(join(services.b.root, 'fresh.img'), fresh);
  const write = await runTool('nbdcopy', [join(services.b.root, 'fresh.img'), uri]);
  assert.is(write.code, 0, write.stderr);
  assert.equal(new Uint8Array(readFileSync(join(services.a.dataDir, 'disk.img'))), fresh, 'what nbdcopy wrote is in A\'s file');

  const stats = (await services.b.call('GET', '/v1/transport/sessions/s1')).json.pathStats;
  for (const path of stats) assert.ok(path.stats.readCount > 0 && path.stats.writeCount > 0, `round-robin used ${path.name}: ${JSON.stringify(path.stats)}`);

  const servedBy = (await services.a.call('GET', '/v1/transport/server')).json;
  const threads = (await loadAdapter()).threadSockets !== null ? 2 : 0;
  assert.is(servedBy.ioThreads, threads, '--rtrs-threads 2, where the runtime can hand connections to threads');
  for (const path of servedBy.sessions[0].paths) assert.is(path.threadedConnections, threadedCount(threads, path.connections), 'IO connections on IO threads');
  for (const path of stats) assert.ok(threads > 0 ? path.threadedConnections > 0 : path.threadedConnections === 0, `B's session's IO connections on IO threads: ${JSON.stringify(path)}`);
  const served = servedBy.sessions;
  assert.is(served.length, 1);
  assert.is(served[0].sessionName, 's1');
  assert.equal(served[0].devices.map((device: { name: string; access: string }) => [device.name, device.access]), [['disk.img', 'rw']]);
  expectError(await services.a.call('DELETE', '/v1/devices/disk.img'), 409, 'EBUSY', 'name');

  // In use: no session delete while mapped, no unmap while exported.
  expectError(await services.b.call('DELETE', '/v1/transport/sessions/s1'), 409, 'EBUSY', 'name');
  expectError(await services.b.call('DELETE', '/v1/transport/devices/r1'), 409, 'EBUSY', 'name');
  assert.is((await services.b.call('DELETE', '/v1/exports/r')).status, 204);
  assert.is((await services.b.call('DELETE', '/v1/transport/devices/r1')).status, 204);
  await until(async () => (await services.a.call('GET', '/v1/transport/server')).json.sessions[0]?.devices.length === 0, 'A closed the device');
  assert.is((await services.b.call('DELETE', '/v1/transport/sessions/s1')).status, 204);
  assert.equal((await services.b.call('GET', '/v1/transport/sessions')).json.sessions, []);
});

test('sessions and mappings survive a restart; paths are added, removed, reconnected; stats reset', async () => {
  const image = writeImage(services.a.dataDir, 'disk.img', MiB, 3);
  const listen = (await services.a.call('GET', '/v1/transport/server')).json.listen as string[];
  assert.is((await services.b.call('POST', '/v1/transport/sessions', { name: 's1', paths: [{ dst: listen[0] }] })).status, 201);
  const added = await services.b.call('POST', '/v1/transport/sessions/s1/paths', { dst: listen[1] });
  assert.is(added.status, 200, added.text);
  assert.equal(added.json.paths, [{ dst: listen[0] }, { dst: listen[1] }]);
  assert.is((await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'disk.img', access: 'ro' })).status, 201);

  await services.b.restart();
  await until(async () => (await services.b.call('GET', '/v1/transport/devices/r1')).json.open === true, 'r1 reopened after the restart');
  const session = (await services.b.call('GET', '/v1/transport/sessions/s1')).json;
  assert.equal(session.paths, [{ dst: listen[0] }, { dst: listen[1] }]);
  assert.is((await services.b.call('POST', '/v1/exports', { name: 'r', device: 'remote:r1', readOnly: true })).status, 201);
  const device = services.b.running.service.engines.get('remote')!.deviceOf('r1', 'name');
  const back = new Uint8Array(64 * 1024);
  await device.read(MiB - back.length, back);
  assert.equal(back, image.subarray(MiB - back.length));

  const reconnected = await services.b.call('POST', `/v1/transport/sessions/s1/paths/${encodeURIComponent(listen[0]!)}/reconnect`);
  assert.is(reconnected.status, 200, reconnected.text);
  await until(async () => (await services.b.call('GET', '/v1/transport/sessions/s1')).json.pathStats[0].stats.state === 'CONNECTED', 'path 0 back');
  const reset = await services.b.call('POST', '/v1/transport/sessions/s1/stats/reset');
  assert.ok(reset.json.pathStats.every((path: { stats: { readCount: number } }) => path.stats.readCount === 0));
  const removed = await services.b.call('DELETE', `/v1/transport/sessions/s1/paths/${encodeURIComponent(listen[1]!)}`);
  assert.is(removed.status, 200, removed.text);
  assert.equal(removed.json.paths, [{ dst: listen[0] }]);
  expectError(await services.b.call('DELETE', `/v1/transport/sessions/s1/paths/${encodeURIComponent(listen[0]!)}`), 400, 'EINVAL', 'path');
  expectError(await services.b.call('DELETE', '/v1/transport/sessions/s1/paths/127.0.0.9:1'), 404, 'ENOENT', 'path');
});

test('a clone whose source is remote:r1 hydrates from the other service, and reopens after a restart', async () => {
  const image = writeImage(services.a.dataDir, 'golden.img', 2 * MiB, 11);
  assert.is((await openSession()).status, 201);
  assert.is((await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'golden.img', access: 'ro' })).status, 201);
  for (const [name, sizeBytes] of [['dst.img', 2 * MiB], ['meta', 64 * 1024]] as const) assert.is((await services.b.call('POST', '/v1/devices', { name, sizeBytes })).status, 201);
  const created = await services.b.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img remote:r1 8 1 no_hydration' });
  assert.is(created.status, 201, created.text);
  const unmap = await services.b.call('DELETE', '/v1/transport/devices/r1');
  expectError(unmap, 409, 'EBUSY', 'name');
  assert.match(unmap.json.error, /clone:c1/);

  await services.b.restart();
  await until(async () => (await services.b.call('GET', '/v1/clones/c1')).json.status !== null, 'the clone reopened over remote:r1');
  assert.is((await services.b.call('POST', '/v1/clones/c1/message', { message: 'enable_hydration' })).status, 200);
  await until(async () => (await services.b.call('GET', '/v1/clones/c1')).json.hydrationComplete === true, 'hydrated from the remote source');
  assert.equal(new Uint8Array(readFileSync(join(services.b.dataDir, 'dst.img'))), image, 'the destination holds the remote source');
  assert.is((await services.b.call('DELETE', '/v1/clones/c1')).status, 204);
  assert.is((await services.b.call('DELETE', '/v1/transport/devices/r1')).status, 204);
  expectError(await services.b.call('POST', '/v1/clones', { name: 'c2', table: 'clone meta dst.img remote:r1 8' }), 400, 'EINVAL', 'table');
});

test('path state changes and failovers are events', async () => {
  writeImage(services.a.dataDir, 'disk.img', MiB, 5);
  const stream = await openEvents(`${services.b.url}/v1/events`);
  try {
    assert.is((await openSession()).status, 201);
    await stream.next((event) => event.event === 'remote.session-created', 'session created');
    assert.is((await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'disk.img' })).status, 201);
    await stream.next((event) => event.event === 'remote.mapped' && event.data.device === 'r1', 'mapped');
    const listen = (await services.a.call('GET', '/v1/transport/server')).json.listen as string[];
    // Reads in flight on the path we drop move to the other one.
    const device = services.b.running.service.engines.get('remote')!.deviceOf('r1', 'name');
    const reads = Array.from({ length: 64 }, (_, i) => device.read((i % 16) * 65536, new Uint8Array(65536)));
    assert.is((await services.b.call('POST', `/v1/transport/sessions/s1/paths/${encodeURIComponent(listen[0]!)}/reconnect`)).status, 200);
    await Promise.all(reads);
    const down = await stream.next((event) => event.event === 'remote.path-state' && event.data.to === 'RECONNECTING', 'a path goes down');
    assert.equal([down.data.session, down.data.path, down.data.from], ['s1', listen[0], 'CONNECTED']);
    await stream.next((event) => event.event === 'remote.path-state' && event.data.to === 'CONNECTED' && event.data.path === listen[0], 'the path comes back');
    const moved = stream.received.filter((event) => event.event === 'remote.failover');
    for (const event of moved) assert.equal([event.data.session, event.data.path], ['s1', listen[0]]);
  } finally {
    stream.close();
  }
});

test('bad input is a 4xx naming the field; an unreachable server is a 502', async () => {
  writeImage(services.a.dataDir, 'disk.img', MiB, 3);
  expectError(await services.b.call('POST', '/v1/transport/sessions', { name: 's1', paths: [] }), 400, 'EINVAL', 'paths');
  expectError(await services.b.call('POST', '/v1/transport/sessions', { name: 's1', paths: [{ dst: 'nohost' }] }), 400, 'EINVAL');
  expectError(await services.b.call('POST', '/v1/transport/sessions', { name: 's1', paths: [{ dst: '127.0.0.1:1' }], policy: 'fastest' }), 400, 'EINVAL', 'policy');
  expectError(await services.b.call('POST', '/v1/transport/sessions', { name: 's1', paths: [{ dst: '127.0.0.1:1', src: '1.2' }] }), 400, 'EINVAL');
  expectError(await services.b.call('POST', '/v1/transport/sessions', { name: 'bad/name', paths: [{ dst: '127.0.0.1:1' }] }), 400, 'EINVAL', 'name');
  expectError(await services.b.call('POST', '/v1/transport/sessions', { name: 's1', paths: [{ dst: '127.0.0.1:1' }] }), 502, 'ENOTCONN', 'paths');
  assert.equal((await services.b.call('GET', '/v1/transport/sessions')).json.sessions, [], 'a refused session is not kept');
  assert.is((await openSession()).status, 201);
  expectError(await openSession(), 409, 'EEXIST', 'name');
  expectError(await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 'nope', device: 'disk.img' }), 404, 'ENOENT', 'session');
  expectError(await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'missing.img' }), 404, 'ENOENT', 'device');
  expectError(await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: '../etc/passwd' }), 400, 'EINVAL', 'device');
  expectError(await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'disk.img', access: 'rwx' }), 400, 'EINVAL', 'access');
  assert.is((await services.b.call('POST', '/v1/transport/devices', { name: 'r1', session: 's1', device: 'disk.img' })).status, 201);
  expectError(await services.b.call('POST', '/v1/transport/devices', { name: 'r2', session: 's1', device: 'disk.img', access: 'ro' }), 409, 'EEXIST', 'device');
  expectError(await services.b.call('POST', '/v1/exports', { name: 'x', device: 'remote:nope' }), 404, 'ENOENT', 'device');
  expectError(await services.b.call('GET', '/v1/transport/devices/nope'), 404, 'ENOENT', 'name');
});

test.run();
