/**
 * The edge host (server/edge/edge-host.ts) in this process over MemoryKv, beside a real service:
 * the same routes answer the same errors, the routes it lacks answer 501 naming the route and say
 * so in its OpenAPI document, SERVICE_ROUTES is exactly the service's route list, a clone from an
 * HTTP image hydrates into KvDevices and comes back after the host is opened again over the same
 * storage, and the Worker bundle imports no node: module (the build checks; we run it).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryKv } from '../runtime/devices/memory-kv.ts';
import { Prng } from '../runtime/prng.ts';
import { EdgeHost } from '../server/edge/edge-host.ts';
import { SERVICE_ROUTES } from '../server/edge/service-routes.ts';
import { documentedRoutes } from '../server/edge/unavailable.ts';
import { startTestServer, until, type TestServer } from './support/blockcore-server.ts';
import { RangeServer } from './support/range-server.ts';

const test = suite('edge host');
const KiB = 1024;
const IMAGE_BYTES = 256 * KiB;
let service: TestServer;
let image: RangeServer;
let storage: MemoryKv;
let host: EdgeHost;
let app: ReturnType<EdgeHost['app']>;

test.before(async () => {
  service = await startTestServer();
  image = new RangeServer(new Prng(21).fill(new Uint8Array(IMAGE_BYTES)), { etag: '"image-1"' });
  await image.start();
});
test.after(async () => {
  await host?.close();
  await image.stop();
  await service.dispose();
});
test.before.each(async () => {
  storage = new MemoryKv();
  host = await EdgeHost.open({ storage, version: 'test', runtime: 'test', log: () => {} });
  app = host.app(null);
});
test.after.each(async () => {
  await host.close();
});

async function edge(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = body instanceof Uint8Array ? body : JSON.stringify(body);
  const response = await app.request(path, init);
  const bytes = new Uint8Array(await response.arrayBuffer());
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    json = undefined;
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return { status: response.status, headers: response.headers, bytes, json: json as any };
}

test("SERVICE_ROUTES is the service's route list; the edge documents every one, the absent ones as 501", async () => {
  const document = (await service.call('GET', '/v1/openapi.json')).json;
  const routes: string[] = [];
  for (const [path, operations] of Object.entries(document.paths as Record<string, Record<string, unknown>>)) {
    for (const method of Object.keys(operations)) routes.push(`${method.toUpperCase()} ${path}`);
  }
  assert.equal([...SERVICE_ROUTES].sort(), routes.sort(), 'server/edge/service-routes.ts lists the service\'s routes (update it with the new ones)');
  assert.equal([...documentedRoutes(app)].sort(), [...SERVICE_ROUTES].sort());
  const edgeDocument = (await edge('GET', '/v1/openapi.json')).json;
  assert.match(edgeDocument.paths['/v1/exports'].get.summary, /Not on this host/);
  assert.ok(edgeDocument.paths['/v1/exports'].get.responses['501'], 'documented as answering 501');
  assert.not.match(edgeDocument.paths['/v1/clones'].post.summary, /Not on this host/);
});

test('routes the edge cannot serve answer 501 naming the route, whatever the body', async () => {
  for (const [method, path] of [['GET', '/v1/exports'], ['POST', '/v1/arrays'], ['DELETE', '/v1/transport/sessions/s1'], ['GET', '/metrics'], ['GET', '/v1/cluster']] as const) {
    const answer = await edge(method, path, method === 'POST' ? { garbage: true } : undefined);
    assert.is(answer.status, 501, `${method} ${path}`);
    assert.is(answer.json.code, 'ENOSYS');
    assert.is(answer.json.field, 'route');
    assert.ok(answer.json.error.includes(`${method} ${path.replace('s1', '{name}')}`), answer.json.error);
  }
  assert.is((await edge('GET', '/v1/nothing-here')).status, 404, 'a route no host has is still 404');
});

test('the same bad requests get the same answers from the edge and the service', async () => {
  const requests: Array<[string, string, unknown?, Record<string, string>?]> = [
    ['POST', '/v1/devices', { name: '../x', sizeBytes: 4096 }],
    ['POST', '/v1/devices', { name: 'x', sizeBytes: 1000 }],
    ['POST', '/v1/devices', { name: 'x', sizeBytes: 4096, extra: 1 }],
    ['POST', '/v1/clones', { name: 'c1', table: 'clone meta dst' }],
    ['POST', '/v1/clones', { name: 'bad name!', table: 'clone meta dst.img src.img 8' }],
    ['POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img missing.img 8' }],
    ['GET', '/v1/clones/none'],
    ['GET', '/v1/devices/none.img/data'],
    ['DELETE', '/v1/devices/none.img'],
    ['POST', '/v1/clones/none/message', { message: 'disable_hydration' }],
  ];
  for (const [method, path, body, headers] of requests) {
    const ours = await edge(method, path, body, headers);
    const theirs = await service.call(method, path, body, headers);
    assert.is(ours.status, theirs.status, `${method} ${path}: ${JSON.stringify(ours.json)} vs ${theirs.text}`);
    assert.equal({ ...ours.json, error: ours.json.error.replace("the Durable Object's storage", 'the data directory') }, theirs.json, `${method} ${path}`);
  }
  // Only the engine kinds differ: the edge names the one it has.
  const kind = await edge('GET', '/v1/devices/bogus:x/data');
  assert.equal([kind.status, kind.json.code, kind.json.field], [400, 'EINVAL', 'ref']);
  assert.match(kind.json.error, /expected a device name or clone:<name>\)$/);
});

test('a clone from an HTTP image into the storage: read and write over the data plane, hydrate, open again, finalize', async () => {
  const expected = image.content.slice();
  assert.is((await edge('POST', '/v1/devices', { name: 'meta', sizeBytes: 64 * KiB })).status, 201);
  assert.is((await edge('POST', '/v1/devices', { name: 'vm/disk.img', sizeBytes: IMAGE_BYTES })).status, 201);
  const created = await edge('POST', '/v1/clones', { name: 'c1', table: `clone meta vm/disk.img ${image.url} 8 1 no_hydration` });
  assert.is(created.status, 201, JSON.stringify(created.json));
  const ranged = await edge('GET', '/v1/devices/clone:c1/data', undefined, { range: 'bytes=1000-1999' });
  assert.is(ranged.status, 206);
  assert.equal(ranged.bytes, expected.subarray(1000, 2000));
  const block = new Uint8Array(8 * KiB).fill(0x42);
  assert.is((await edge('PUT', '/v1/devices/clone:c1/data', block, { 'content-range': `bytes ${64 * KiB}-${72 * KiB - 1}/*` })).status, 204);
  expected.set(block, 64 * KiB);
  assert.is((await edge('GET', '/v1/devices/vm/disk.img/data')).status, 409, "the clone's destination is held");
  assert.is((await edge('POST', '/v1/clones/c1/message', { message: 'enable_hydration' })).status, 200);
  await until(async () => (await edge('GET', '/v1/clones/c1')).json.hydrationComplete === true, 'hydration', 20_000);

  await host.close();
  host = await EdgeHost.open({ storage, version: 'test', runtime: 'test', log: () => {} });
  app = host.app(null);
  const again = await edge('GET', '/v1/clones/c1');
  assert.is(again.status, 200, 'the clone is back after the host opened again');
  assert.is(again.json.hydratedRegions, again.json.totalRegions);
  assert.equal((await edge('GET', '/v1/devices/clone:c1/data')).bytes, expected);
  const listed = (await edge('GET', '/v1/devices')).json.devices;
  assert.equal(listed.map((device: { name: string; usedBy: string[] }) => [device.name, device.usedBy]), [['meta', ['clone:c1']], ['vm/disk.img', ['clone:c1']]]);

  assert.is((await edge('POST', '/v1/clones/c1/finalize')).status, 200);
  assert.is((await edge('GET', '/v1/clones/c1')).status, 404);
  assert.equal((await edge('GET', '/v1/devices/vm/disk.img/data')).bytes, expected, 'the destination holds everything');
  assert.is((await edge('DELETE', '/v1/devices/meta')).status, 204);
});

test('the Worker bundle builds and imports no node: module', () => {
  const script = fileURLToPath(new URL('../scripts/build-worker.mjs', import.meta.url));
  const result = spawnSync('node', [script, '--force'], { encoding: 'utf8' });
  assert.is(result.status, 0, result.stderr || result.stdout);
  assert.match(result.stdout, /worker\.js \(\d+ bytes\)/);
});

test.run();
