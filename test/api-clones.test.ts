import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseStatusLine } from '../runtime/clone/status.ts';
import { type Answer, expectError, makeCloneDevices, startTestServer, type TestServer, until } from './support/blockcore-server.ts';
import { RangeServer } from './support/range-server.ts';

const clones = suite('api: clones');
let server: TestServer;
let image: Uint8Array;
const TABLE = 'clone meta dst.img src.img 8';
const PAUSED = 'clone meta dst.img src.img 8 1 no_hydration';

clones.before.each(async () => {
  server = await startTestServer();
  image = await makeCloneDevices(server);
});
clones.after.each(async () => {
  await server.dispose();
});


async function create(table = TABLE, name = 'c1'): Promise<Answer> {
  const answer = await server.call('POST', '/v1/clones', { name, table });
  assert.is(answer.status, 201, answer.text);
  return answer;
}

async function hydrated(name = 'c1'): Promise<void> {
  await until(async () => (await server.call('GET', `/v1/clones/${name}`)).json.hydrationComplete === true, `${name} hydrated`);
}

clones('create: the status line and every field, parsed; list and get agree', async () => {
  const created = await create(PAUSED);
  const clone = created.json;
  assert.is(clone.name, 'c1');
  assert.is(clone.table, PAUSED);
  assert.is(clone.error, null);
  assert.equal(clone.exports, []);
  assert.is(clone.suspended, false);
  assert.type(clone.status, 'string');
  const parsed = parseStatusLine(clone.status);
  for (const [key, value] of Object.entries(parsed)) assert.equal(clone[key], value, key);
  assert.is(clone.totalRegions, 256);
  assert.is(clone.totalBytes, 1 << 20);
  assert.equal(clone.features, ['no_hydration']);
  assert.is(clone.hydrationEnabled, false);
  const one = await server.call('GET', '/v1/clones/c1');
  assert.is(one.status, 200);
  assert.is(one.json.status, clone.status);
  const list = await server.call('GET', '/v1/clones');
  assert.equal(list.json.clones.map((c: { name: string }) => c.name), ['c1']);
});

clones('bad tables are 400 naming the table, and nothing is written', async () => {
  const before = readFileSync(join(server.dataDir, 'meta'));
  for (const table of [
    'clone meta dst.img src.img 7',
    'clone meta dst.img',
    'clone meta dst.img missing.img 8',
    'clone ../meta dst.img src.img 8',
    'clone /etc/passwd dst.img src.img 8',
    'clone .blockcore/state.json dst.img src.img 8',
    'clone meta meta src.img 8',
    'linear meta dst.img src.img 8',
    'clone meta dst.img src.img 8 1 bogus',
    '0 999999999 clone meta dst.img src.img 8',
    'x'.repeat(5000),
  ]) {
    const answer = await server.call('POST', '/v1/clones', { name: 'c1', table });
    expectError(answer, 400, 'EINVAL', 'table');
    assert.match(answer.json.error, /^table: /);
  }
  // The field is named once, then what is wrong with it.
  const escaping = await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone ../meta dst.img src.img 8' });
  assert.match(escaping.json.error, /^table: metadata dev: "\.\.\/meta" may hold only letters/);
  const same = await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta meta src.img 8' });
  assert.is(same.json.error, 'table: devices: the metadata, destination and source devices must be three different devices');
  expectError(await server.call('POST', '/v1/clones', { name: 'c1', table: 8 }), 400, 'EINVAL', 'table');
  expectError(await server.call('POST', '/v1/clones', { name: 'c1' }), 400, 'EINVAL', 'table');
  expectError(await server.call('POST', '/v1/clones', { name: 'c 1', table: TABLE }), 400, 'EINVAL', 'name');
  expectError(await server.call('POST', '/v1/clones', { name: 'c1', table: TABLE, force: true }), 400, 'EINVAL', 'force');
  assert.ok(readFileSync(join(server.dataDir, 'meta')).equals(before));
  assert.equal((await server.call('GET', '/v1/clones')).json.clones, []);
});

clones('names: taken is 409, devices held by another clone are 409, a shared source is fine', async () => {
  await create();
  expectError(await server.call('POST', '/v1/clones', { name: 'c1', table: TABLE }), 409, 'EEXIST', 'name');
  await makeCloneDevices(server, 1 << 20, 'b-');
  const busy = await server.call('POST', '/v1/clones', { name: 'c2', table: 'clone b-meta dst.img b-src.img 8' });
  expectError(busy, 409, 'EBUSY', 'table');
  assert.match(busy.json.error, /dst\.img.*clone:c1/);
  expectError(await server.call('POST', '/v1/clones', { name: 'c2', table: 'clone b-meta b-dst.img dst.img 8' }), 409, 'EBUSY', 'table');
  await create('clone b-meta b-dst.img src.img 8', 'c2');
});

clones('unknown names are 404, malformed names 400', async () => {
  expectError(await server.call('GET', '/v1/clones/nope'), 404, 'ENOENT', 'name');
  expectError(await server.call('DELETE', '/v1/clones/nope'), 404, 'ENOENT', 'name');
  for (const action of ['message', 'suspend', 'resume', 'finalize']) {
    const body = action === 'message' ? { message: 'enable_hydration' } : undefined;
    expectError(await server.call('POST', `/v1/clones/nope/${action}`, body), 404, 'ENOENT', 'name');
    expectError(await server.call('POST', `/v1/clones/a%20b/${action}`, body), 400, 'EINVAL', 'name');
  }
  expectError(await server.call('GET', '/v1/clones/-x'), 400, 'EINVAL', 'name');
  expectError(await server.call('GET', `/v1/clones/${'a'.repeat(65)}`), 400, 'EINVAL', 'name');
});

clones('message: good ones change the saved table, bad ones are 400 naming message', async () => {
  await create(PAUSED);
  const answer = await server.call('POST', '/v1/clones/c1/message', { message: 'hydration_batch_size 64' });
  assert.is(answer.status, 200, answer.text);
  assert.is(answer.json.hydrationBatchSize, 64);
  assert.is(answer.json.table, 'clone meta dst.img src.img 8 1 no_hydration 2 hydration_batch_size 64');
  const state = JSON.parse(readFileSync(join(server.dataDir, '.blockcore/state.json'), 'utf8'));
  assert.is(state.engines.clone[0].table, answer.json.table);
  for (const message of ['frobnicate', 'hydration_threshold', 'hydration_batch_size 0', 'hydration_threshold x', '']) {
    expectError(await server.call('POST', '/v1/clones/c1/message', { message }), 400, 'EINVAL', 'message');
  }
  expectError(await server.call('POST', '/v1/clones/c1/message', { message: 3 }), 400, 'EINVAL', 'message');
  expectError(await server.call('POST', '/v1/clones/c1/message', {}), 400, 'EINVAL', 'message');
  expectError(await server.call('POST', '/v1/clones/c1/message', { message: 'x'.repeat(300) }), 400, 'EINVAL', 'message');
});

clones('suspend and resume; their bodies may be empty or {}, nothing else', async () => {
  await create(PAUSED);
  const suspended = await server.call('POST', '/v1/clones/c1/suspend');
  assert.is(suspended.status, 200, suspended.text);
  assert.is(suspended.json.suspended, true);
  assert.is((await server.call('GET', '/v1/clones/c1')).json.suspended, true);
  expectError(await server.call('POST', '/v1/clones/c1/resume', { now: true }), 400, 'EINVAL', 'now');
  expectError(await server.call('POST', '/v1/clones/c1/resume', 'nonsense'), 400, 'EINVAL', 'body');
  const resumed = await server.call('POST', '/v1/clones/c1/resume', {});
  assert.is(resumed.status, 200);
  assert.is(resumed.json.suspended, false);
});

clones('finalize: 409 until hydrated and with two exports; then the clone is gone, its destination a plain device its export serves', async () => {
  await create(PAUSED);
  const early = await server.call('POST', '/v1/clones/c1/finalize');
  expectError(early, 409, 'EBUSY', 'name');
  assert.match(early.json.error, /not hydrated yet: \d+ of 256 regions/);
  assert.is((await server.call('POST', '/v1/clones/c1/message', { message: 'enable_hydration' })).status, 200);
  await hydrated();
  assert.is((await server.call('POST', '/v1/exports', { name: 'e1', device: 'clone:c1' })).status, 201);
  assert.is((await server.call('POST', '/v1/exports', { name: 'e2', device: 'clone:c1', readOnly: true })).status, 201);
  const twice = await server.call('POST', '/v1/clones/c1/finalize');
  expectError(twice, 409, 'EBUSY', 'name');
  assert.match(twice.json.error, /exported as e1, e2; finalize keeps at most one export/);
  expectError(await server.call('DELETE', '/v1/clones/c1'), 409, 'EBUSY', 'name');
  assert.is((await server.call('DELETE', '/v1/exports/e2')).status, 204);
  const done = await server.call('POST', '/v1/clones/c1/finalize');
  assert.is(done.status, 200, done.text);
  assert.equal(done.json, { clone: 'c1', device: 'dst.img' });
  expectError(await server.call('GET', '/v1/clones/c1'), 404, 'ENOENT');
  assert.ok(readFileSync(join(server.dataDir, 'dst.img')).equals(image));
  const [served] = (await server.call('GET', '/v1/exports')).json.exports;
  assert.equal([served.name, served.device, served.error], ['e1', 'dst.img', null], 'the export serves the destination now');
  const devices = (await server.call('GET', '/v1/devices')).json.devices;
  assert.equal(devices.filter((d: { inUse: boolean }) => d.inUse).map((d: { name: string; usedBy: string[] }) => [d.name, d.usedBy]), [['dst.img', ['export:e1']]]);
  expectError(await server.call('POST', '/v1/exports', { name: 'disk', device: 'dst.img' }), 409, 'EBUSY', 'device');
  const state = JSON.parse(readFileSync(join(server.dataDir, '.blockcore/state.json'), 'utf8'));
  assert.equal([state.engines.clone, state.exports], [[], [{ name: 'e1', device: 'dst.img', readOnly: false }]]);
  await server.restart();
  const [again] = (await server.call('GET', '/v1/exports')).json.exports;
  assert.equal([again.name, again.device, again.error], ['e1', 'dst.img', null], 'and after a restart');
  assert.is((await server.call('DELETE', '/v1/exports/e1')).status, 204);
  assert.is((await server.call('POST', '/v1/exports', { name: 'disk', device: 'dst.img' })).status, 201, 'usable as a plain device');
});

clones('delete closes the clone and keeps its files', async () => {
  await create();
  const deleted = await server.call('DELETE', '/v1/clones/c1');
  assert.is(deleted.status, 204);
  expectError(await server.call('GET', '/v1/clones/c1'), 404, 'ENOENT');
  for (const name of ['meta', 'dst.img', 'src.img']) assert.ok(existsSync(join(server.dataDir, name)));
  assert.is((await server.call('DELETE', '/v1/devices/meta')).status, 204, 'no longer in use');
});

clones('an http(s) source is read with Range requests', async () => {
  const remote = new RangeServer(image);
  const url = await remote.start();
  try {
    await server.call('DELETE', '/v1/devices/dst.img');
    await server.call('DELETE', '/v1/devices/meta');
    await server.call('POST', '/v1/devices', { name: 'dst.img', sizeBytes: 1 << 20 });
    await server.call('POST', '/v1/devices', { name: 'meta', sizeBytes: 65536 });
    await create(`clone meta dst.img ${url} 8 0 2 hydration_batch_size 32`);
    await hydrated();
    assert.ok(readFileSync(join(server.dataDir, 'dst.img')).equals(image));
    expectError(await server.call('POST', '/v1/clones', { name: 'c2', table: `clone meta ${url} src.img 8` }), 400, 'EINVAL', 'table');
  } finally {
    await server.call('DELETE', '/v1/clones/c1');
    await remote.stop();
  }
});

clones.run();
