/**
 * The Worker under a real workerd (the npm package's binary, on a free port, stopped by PID):
 * a clone whose source is an HTTP image served by this test on 127.0.0.1 and whose destination
 * and metadata are devices in the Durable Object's SQLite-backed storage; read and written over
 * the data plane (fetch, curl, HttpDevice); hydration watched over SSE; workerd stopped and
 * started again over the same storage directory, the clone and every written byte still there;
 * finalized; the routes it cannot serve answer 501 and bad input the same errors as the service.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpDevice } from '../runtime/devices/http-device.ts';
import { Prng } from '../runtime/prng.ts';
import { callApi, startTestServer, until } from './support/blockcore-server.ts';
import { RangeServer } from './support/range-server.ts';
import { openEvents } from './support/sse-reader.ts';
import { mustRun, requireTools } from './support/tools.ts';
import { startWorker, type RunningWorker } from './support/workerd.ts';

const test = suite('workerd: the clone engine and its API in a Worker');
const KiB = 1024;
const MiB = 1024 * KiB;
const IMAGE_BYTES = 4 * MiB;
const TOKEN = 'edge-token-0123456789';

let root: string;
let storageDir: string;
let image: RangeServer;
let worker: RunningWorker | null = null;

test.before(async () => {
  root = mkdtempSync(join(tmpdir(), 'blockcore-workerd-test-'));
  storageDir = join(root, 'storage');
  image = new RangeServer(new Prng(77).fill(new Uint8Array(IMAGE_BYTES)), { etag: '"golden-1"' });
  await image.start();
});
test.after(async () => {
  await worker?.stop();
  await image.stop();
  rmSync(root, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${TOKEN}` };
const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => callApi(worker!.url, method, path, body, { ...auth, ...headers });

async function bytesOf(path: string, headers: Record<string, string> = {}): Promise<Uint8Array> {
  const response = await fetch(`${worker!.url}${path}`, { headers: { ...auth, ...headers } });
  assert.ok(response.ok, `${path}: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

test('clone an HTTP image into Durable Object storage, use it over HTTP, watch it hydrate, restart workerd, finalize', async () => {
  worker = await startWorker(storageDir, { token: TOKEN });
  assert.is((await callApi(worker.url, 'GET', '/v1/devices')).status, 401, 'the token is wanted');
  const health = await callApi(worker.url, 'GET', '/v1/health');
  assert.is(health.json.runtime, 'workerd');

  const expected = image.content.slice();
  assert.is((await call('POST', '/v1/devices', { name: 'meta', sizeBytes: 64 * KiB })).status, 201);
  assert.is((await call('POST', '/v1/devices', { name: 'disk.img', sizeBytes: IMAGE_BYTES })).status, 201);
  const created = await call('POST', '/v1/clones', { name: 'c1', table: `clone meta disk.img ${image.url} 8 1 no_hydration` });
  assert.is(created.status, 201, created.text);

  // Usable at once: reads come from the image, writes stay in the clone.
  assert.ok(same(await bytesOf('/v1/devices/clone:c1/data', { range: 'bytes=12345-23456' }), expected.subarray(12345, 23457)));
  const written = new Prng(5).fill(new Uint8Array(64 * KiB));
  const put = await call('PUT', '/v1/devices/clone:c1/data', written, { 'content-range': `bytes ${MiB}-${MiB + 64 * KiB - 1}/*` });
  assert.is(put.status, 204, put.text);
  expected.set(written, MiB);
  requireTools(['curl']);
  const piece = join(root, 'piece');
  await mustRun('curl', ['-sS', '-f', '-H', `authorization: Bearer ${TOKEN}`, '-r', `${MiB - 100}-${MiB + 99}`, '-o', piece, `${worker.url}/v1/devices/clone:c1/data`]);
  assert.ok(same(new Uint8Array(readFileSync(piece)), expected.subarray(MiB - 100, MiB + 100)), 'curl reads across the write');
  writeFileSync(piece, new Uint8Array(4 * KiB).fill(0x99));
  await mustRun('curl', ['-sS', '-f', '-X', 'PUT', '-H', `authorization: Bearer ${TOKEN}`, '-H', 'content-range: bytes 0-4095/*', '--data-binary', `@${piece}`, `${worker.url}/v1/devices/clone:c1/data`]);
  expected.fill(0x99, 0, 4 * KiB);
  const device = await HttpDevice.open(`${worker.url}/v1/devices/clone:c1/data`, { headers: auth });
  try {
    const all = new Uint8Array(IMAGE_BYTES);
    await device.read(0, all);
    assert.ok(same(all, expected), 'HttpDevice reads the clone through the Worker');
  } finally {
    await device.close();
  }

  // Hydration, watched over SSE.
  const events = await openEvents(`${worker.url}/v1/events`, auth);
  try {
    assert.is(events.status, 200);
    assert.is((await call('POST', '/v1/clones/c1/message', { message: 'enable_hydration' })).status, 200);
    await events.next((event) => event.event === 'clone.hydration' && event.data.enabled === true, 'hydration enabled over SSE');
    await events.next((event) => event.event === 'clone.hydration-complete' && event.data.clone === 'c1', 'hydration-complete over SSE', 60_000);
    // Progress is in the commits: the one after the last region says all of it.
    const last = await events.next((event) => event.event === 'clone.commit' && event.data.bytesHydrated === IMAGE_BYTES, 'the commit of the last region over SSE', 30_000);
    assert.is(last.data.totalBytes, IMAGE_BYTES);
  } finally {
    events.close();
  }
  const requestsBefore = image.requestCount;

  // workerd stopped and started again over the same storage: the clone and its bytes are back.
  await worker.stop();
  worker = await startWorker(storageDir, { token: TOKEN });
  const clone = await call('GET', '/v1/clones/c1');
  assert.is(clone.status, 200, clone.text);
  assert.is(clone.json.hydratedRegions, clone.json.totalRegions);
  assert.ok(same(await bytesOf('/v1/devices/clone:c1/data'), expected), 'every byte is back after the restart');
  assert.ok(image.requestCount - requestsBefore <= 1, `a hydrated clone reads nothing from its source but the probe that opens it (${image.requestCount - requestsBefore} requests)`);

  const finalized = await call('POST', '/v1/clones/c1/finalize');
  assert.is(finalized.status, 200, finalized.text);
  assert.is((await call('GET', '/v1/clones/c1')).status, 404);
  assert.ok(same(await bytesOf('/v1/devices/disk.img/data'), expected), 'disk.img holds everything');
  const listed = await call('GET', '/v1/devices');
  assert.equal(listed.json.devices.map((d: { name: string; inUse: boolean }) => [d.name, d.inUse]), [['disk.img', false], ['meta', false]]);
});

test('routes the Worker cannot serve answer 501 naming the route; bad input the same errors as the service', async () => {
  worker ??= await startWorker(storageDir, { token: TOKEN });
  for (const [method, path] of [['GET', '/v1/exports'], ['POST', '/v1/mirrors'], ['GET', '/v1/transport/server']] as const) {
    const answer = await call(method, path, method === 'POST' ? {} : undefined);
    assert.is(answer.status, 501, `${method} ${path}: ${answer.text}`);
    assert.equal([answer.json.code, answer.json.field], ['ENOSYS', 'route']);
  }
  const service = await startTestServer();
  try {
    for (const [method, path, body, headers] of [
      ['POST', '/v1/clones', { name: 'x', table: 'clone a b' }, {}],
      ['POST', '/v1/devices', { name: 'y', sizeBytes: 100 }, {}],
      ['PUT', '/v1/devices/nothing.img/data', new Uint8Array(512), { 'content-range': 'bytes 0-511/*' }],
      ['GET', '/v1/devices/nothing.img/data', undefined, { range: 'bytes=0-1,5-6' }],
    ] as Array<[string, string, unknown, Record<string, string>]>) {
      const ours = await call(method, path, body, headers);
      const theirs = await service.call(method, path, body, headers);
      assert.is(ours.status, theirs.status, `${method} ${path}: ${ours.text} vs ${theirs.text}`);
      assert.equal(ours.json, theirs.json, `${method} ${path}`);
    }
  } finally {
    await service.dispose();
  }
  // The isolate survived all of it.
  assert.is((await call('GET', '/v1/health')).status, 200);
  await until(async () => (await call('GET', '/v1/devices')).status === 200, 'the Worker to answer', 5_000);
});

test.run();
