import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEVICE_BYTES_MAX } from '../server/device-files.ts';
import { expectError, makeCloneDevices, startTestServer, type TestServer } from './support/blockcore-server.ts';

const devices = suite('api: devices');
let server: TestServer;
let outside = '';

devices.before.each(async () => {
  server = await startTestServer();
  outside = mkdtempSync(join(tmpdir(), 'blockcore-outside-'));
});
devices.after.each(async () => {
  await server.dispose();
  rmSync(outside, { recursive: true, force: true });
});


devices('create makes a sparse file; list shows size, allocation and use', async () => {
  const created = await server.call('POST', '/v1/devices', { name: 'disk.img', sizeBytes: 1 << 30 });
  assert.is(created.status, 201);
  assert.equal(created.json, { name: 'disk.img', sizeBytes: 1 << 30, allocatedBytes: 0, inUse: false, usedBy: [] });
  assert.is(statSync(join(server.dataDir, 'disk.img')).size, 1 << 30);
  const nested = await server.call('POST', '/v1/devices', { name: 'vm/a/root.img', sizeBytes: 4096 });
  assert.is(nested.status, 201);
  const list = await server.call('GET', '/v1/devices');
  assert.is(list.status, 200);
  assert.equal(list.json.devices.map((d: { name: string }) => d.name), ['disk.img', 'vm/a/root.img']);
  assert.is(list.json.devices.some((d: { name: string }) => d.name.startsWith('.blockcore')), false, 'the state directory is not a device');
});

devices('the largest size is accepted, and bad sizes name sizeBytes', async () => {
  assert.is((await server.call('POST', '/v1/devices', { name: 'max.img', sizeBytes: DEVICE_BYTES_MAX })).status, 201);
  for (const sizeBytes of [0, -512, 1000, 513, DEVICE_BYTES_MAX + 512, 1.5, '4096', null, true, 2 ** 60]) {
    expectError(await server.call('POST', '/v1/devices', { name: 'x.img', sizeBytes }), 400, 'EINVAL', 'sizeBytes');
  }
  assert.is(existsSync(join(server.dataDir, 'x.img')), false);
});

devices('bad bodies: missing, unknown and mistyped fields, not JSON, not an object', async () => {
  expectError(await server.call('POST', '/v1/devices', { sizeBytes: 4096 }), 400, 'EINVAL', 'name');
  expectError(await server.call('POST', '/v1/devices', { name: 'a.img' }), 400, 'EINVAL', 'sizeBytes');
  expectError(await server.call('POST', '/v1/devices', { name: 'a.img', sizeBytes: 4096, sparse: true }), 400, 'EINVAL', 'sparse');
  expectError(await server.call('POST', '/v1/devices', { name: 7, sizeBytes: 4096 }), 400, 'EINVAL', 'name');
  expectError(await server.call('POST', '/v1/devices', '{"name": "a.img",'), 400, 'EINVAL', 'body');
  expectError(await server.call('POST', '/v1/devices', '[1,2]'), 400, 'EINVAL', 'body');
  expectError(await server.call('POST', '/v1/devices', ''), 400, 'EINVAL', 'body');
  expectError(await server.call('POST', '/v1/devices', new Uint8Array([0x7b, 0xff, 0x7d])), 400, 'EINVAL', 'body');
});

devices('names that leave the data directory or touch the service files are refused', async () => {
  for (const name of ['../escape.img', '/etc/passwd', 'a/../../b', '', '.', 'a//b', 'sp ace', '.blockcore/state.json', '.blockcore', 'x'.repeat(300)]) {
    expectError(await server.call('POST', '/v1/devices', { name, sizeBytes: 4096 }), 400, 'EINVAL', 'name');
  }
  symlinkSync(outside, join(server.dataDir, 'out'));
  expectError(await server.call('POST', '/v1/devices', { name: 'out/evil.img', sizeBytes: 4096 }), 400, 'EINVAL', 'name');
  assert.is(existsSync(join(outside, 'evil.img')), false);
  writeFileSync(join(outside, 'victim.img'), new Uint8Array(4096));
  symlinkSync(join(outside, 'victim.img'), join(server.dataDir, 'link.img'));
  expectError(await server.call('DELETE', '/v1/devices/link.img'), 400, 'EINVAL', 'name');
  expectError(await server.call('DELETE', '/v1/devices/..%2Fescape.img'), 400, 'EINVAL', 'name');
  expectError(await server.call('DELETE', '/v1/devices/.blockcore/state.json'), 400, 'EINVAL', 'name');
  assert.ok(existsSync(join(outside, 'victim.img')));
  const list = await server.call('GET', '/v1/devices');
  assert.equal(list.json.devices, [], 'links leading out are not listed');
});

devices('create twice is 409; delete removes; unknown is 404', async () => {
  assert.is((await server.call('POST', '/v1/devices', { name: 'a.img', sizeBytes: 4096 })).status, 201);
  expectError(await server.call('POST', '/v1/devices', { name: 'a.img', sizeBytes: 8192 }), 409, 'EEXIST', 'name');
  assert.is(statSync(join(server.dataDir, 'a.img')).size, 4096, 'the existing file is untouched');
  const deleted = await server.call('DELETE', '/v1/devices/a.img');
  assert.is(deleted.status, 204);
  assert.is(existsSync(join(server.dataDir, 'a.img')), false);
  expectError(await server.call('DELETE', '/v1/devices/a.img'), 404, 'ENOENT', 'name');
  assert.is((await server.call('POST', '/v1/devices', { name: 'd/b.img', sizeBytes: 4096 })).status, 201);
  assert.is((await server.call('DELETE', '/v1/devices/d/b.img')).status, 204);
  expectError(await server.call('DELETE', '/v1/devices/d'), 400, 'EINVAL', 'name');
});

devices('a device used by a clone or an export cannot be deleted (409)', async () => {
  await makeCloneDevices(server);
  assert.is((await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8' })).status, 201);
  for (const name of ['meta', 'dst.img', 'src.img']) {
    const answer = await server.call('DELETE', `/v1/devices/${name}`);
    expectError(answer, 409, 'EBUSY', 'name');
    assert.match(answer.json.error, /clone:c1/);
  }
  const list = await server.call('GET', '/v1/devices');
  assert.equal(list.json.devices.map((d: { inUse: boolean; usedBy: string[] }) => [d.inUse, d.usedBy]), [[true, ['clone:c1']], [true, ['clone:c1']], [true, ['clone:c1']]]);
  assert.is((await server.call('POST', '/v1/devices', { name: 'plain.img', sizeBytes: 4096 })).status, 201);
  assert.is((await server.call('POST', '/v1/exports', { name: 'e1', device: 'plain.img', readOnly: true })).status, 201);
  expectError(await server.call('DELETE', '/v1/devices/plain.img'), 409, 'EBUSY', 'name');
  assert.is((await server.call('DELETE', '/v1/exports/e1')).status, 204);
  assert.is((await server.call('DELETE', '/v1/devices/plain.img')).status, 204);
});

devices('bodies over 64 KiB are 413, declared or streamed', async () => {
  const big = JSON.stringify({ name: 'a.img', sizeBytes: 4096, pad: 'x'.repeat(70_000) });
  expectError(await server.call('POST', '/v1/devices', big), 413, 'E2BIG');
  const chunks = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 20; i++) controller.enqueue(new Uint8Array(8192).fill(0x20));
      controller.close();
    },
  });
  const response = await fetch(`${server.url}/v1/devices`, { method: 'POST', body: chunks, duplex: 'half' } as RequestInit);
  assert.is(response.status, 413);
  assert.is(((await response.json()) as { code: string }).code, 'E2BIG');
  assert.is((await server.call('GET', '/v1/health')).status, 200, 'still serving');
});

devices('unknown routes and methods are JSON 404s', async () => {
  expectError(await server.call('GET', '/v1/nothing'), 404, 'ENOENT');
  expectError(await server.call('PUT', '/v1/devices'), 404, 'ENOENT');
  expectError(await server.call('GET', '/'), 404, 'ENOENT');
});

devices.run();
