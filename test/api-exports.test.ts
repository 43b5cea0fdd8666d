import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockError } from '../runtime/errors.ts';
import { type Answer, expectError, makeCloneDevices, startTestServer, type TestServer, until, writeImage } from './support/blockcore-server.ts';
import { attachNbd } from './support/nbd-attach.ts';

const exports = suite('api: exports');
let server: TestServer;

exports.before.each(async () => {
  server = await startTestServer();
});
exports.after.each(async () => {
  await server.dispose();
});


async function clients(name: string): Promise<unknown[]> {
  const list = (await server.call('GET', '/v1/exports')).json.exports;
  return list.find((e: { name: string }) => e.name === name).clients;
}

exports('a file export serves its bytes over NBD and lists the connected client', async () => {
  const bytes = writeImage(server.dataDir, 'disk.img', 1 << 20, 5);
  const created = await server.call('POST', '/v1/exports', { name: 'disk', device: 'disk.img', description: 'a test disk' });
  assert.is(created.status, 201, created.text);
  assert.equal(created.json, {
    name: 'disk', device: 'disk.img', readOnly: false, description: 'a test disk', sizeBytes: 1 << 20, error: null, clients: [],
    io: { reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, errors: 0 },
  });
  const client = await attachNbd(server.running.nbd, 'disk');
  assert.is(client.sizeBytes, 1 << 20);
  assert.equal(await client.read(65536, 4096), bytes.subarray(65536, 65536 + 4096));
  const connected = await clients('disk');
  assert.is(connected.length, 1);
  assert.match((connected[0] as { remote: string }).remote, /127\.0\.0\.1/);
  const busy = await server.call('DELETE', '/v1/exports/disk');
  expectError(busy, 409, 'EBUSY', 'name');
  assert.match(busy.json.error, /1 connected client/);
  const list = (await server.call('GET', '/v1/exports')).json.exports;
  assert.is(list[0].io.reads, 1);
  assert.is(list[0].io.bytesRead, 4096);
  await client.close();
  await until(async () => (await clients('disk')).length === 0, 'the client gone');
  assert.is((await server.call('DELETE', '/v1/exports/disk')).status, 204);
  assert.equal((await server.call('GET', '/v1/exports')).json.exports, []);
});

exports('clone:NAME exports the clone itself', async () => {
  const image = await makeCloneDevices(server);
  assert.is((await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 1 no_hydration' })).status, 201);
  const created = await server.call('POST', '/v1/exports', { name: 'c1', device: 'clone:c1' });
  assert.is(created.status, 201, created.text);
  const client = await attachNbd(server.running.nbd, 'c1');
  assert.equal(await client.read(0, 1 << 20), image);
  assert.equal((await server.call('GET', '/v1/clones/c1')).json.exports, ['c1']);
  await client.close();
});

exports('bad input is 400 naming the field', async () => {
  writeImage(server.dataDir, 'disk.img', 4096);
  const cases: Array<[unknown, string]> = [
    [{ name: 'a b', device: 'disk.img' }, 'name'],
    [{ name: '', device: 'disk.img' }, 'name'],
    [{ name: 'e', device: '../disk.img' }, 'device'],
    [{ name: 'e', device: '/etc/passwd' }, 'device'],
    [{ name: 'e', device: 'clone:' }, 'device'],
    [{ name: 'e', device: 'clone:../x' }, 'device'],
    [{ name: 'e', device: 'tape:m1' }, 'device'],
    [{ name: 'e', device: 42 }, 'device'],
    [{ name: 'e', device: '.blockcore/state.json' }, 'device'],
    [{ name: 'e', device: 'disk.img', readOnly: 'yes' }, 'readOnly'],
    [{ name: 'e', device: 'disk.img', description: 'x'.repeat(300) }, 'description'],
    [{ name: 'e', device: 'disk.img', port: 1 }, 'port'],
    [{ device: 'disk.img' }, 'name'],
    [[], 'body'],
  ];
  for (const [body, field] of cases) expectError(await server.call('POST', '/v1/exports', body), 400, 'EINVAL', field);
  const outside = mkdtempSync(join(tmpdir(), 'blockcore-outside-'));
  try {
    writeFileSync(join(outside, 'secret.img'), new Uint8Array(4096));
    symlinkSync(join(outside, 'secret.img'), join(server.dataDir, 'link.img'));
    const escaped = await server.call('POST', '/v1/exports', { name: 'e', device: 'link.img', readOnly: true });
    expectError(escaped, 400, 'EINVAL', 'device');
    assert.match(escaped.json.error, /outside the data directory/);
    const table = await server.call('POST', '/v1/clones', { name: 'c', table: 'clone meta dst.img link.img 8' });
    expectError(table, 400, 'EINVAL', 'table');
    assert.match(table.json.error, /outside the data directory/);
  } finally {
    rmSync(outside, { recursive: true, force: true });
  }
  writeFileSync(join(server.dataDir, 'odd.img'), new Uint8Array(1000));
  expectError(await server.call('POST', '/v1/exports', { name: 'e', device: 'odd.img' }), 400, 'EINVAL', 'device');
  expectError(await server.call('DELETE', '/v1/exports/a%20b'), 400, 'EINVAL', 'name');
});

exports('unknown devices and exports are 404; taken names and held devices 409', async () => {
  expectError(await server.call('POST', '/v1/exports', { name: 'e', device: 'missing.img' }), 404, 'ENOENT', 'device');
  expectError(await server.call('POST', '/v1/exports', { name: 'e', device: 'clone:nope' }), 404, 'ENOENT', 'device');
  expectError(await server.call('DELETE', '/v1/exports/nope'), 404, 'ENOENT', 'name');
  writeImage(server.dataDir, 'disk.img', 8192);
  assert.is((await server.call('POST', '/v1/exports', { name: 'r1', device: 'disk.img', readOnly: true })).status, 201);
  assert.is((await server.call('POST', '/v1/exports', { name: 'r2', device: 'disk.img', readOnly: true })).status, 201, 'readers share');
  expectError(await server.call('POST', '/v1/exports', { name: 'r1', device: 'disk.img', readOnly: true }), 409, 'EEXIST', 'name');
  const writer = await server.call('POST', '/v1/exports', { name: 'w', device: 'disk.img' });
  expectError(writer, 409, 'EBUSY', 'device');
  assert.match(writer.json.error, /export:r1, export:r2/);
  await makeCloneDevices(server);
  assert.is((await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8' })).status, 201);
  expectError(await server.call('POST', '/v1/exports', { name: 'w', device: 'dst.img', readOnly: true }), 409, 'EBUSY', 'device');
  expectError(await server.call('POST', '/v1/exports', { name: 'w', device: 'src.img' }), 409, 'EBUSY', 'device');
  assert.is((await server.call('POST', '/v1/exports', { name: 'golden', device: 'src.img', readOnly: true })).status, 201, 'a clone source may be read by others');
});

exports('a read-only export hands out a read-only device, whatever the file allows', async () => {
  writeImage(server.dataDir, 'disk.img', 8192);
  assert.is((await server.call('POST', '/v1/exports', { name: 'ro', device: 'disk.img', readOnly: true })).status, 201);
  const view = server.running.service.lookupExport('ro')!;
  assert.is(view.readOnly, true);
  assert.is(view.device.canWrite, false);
  try {
    await view.device.write(0, new Uint8Array(512));
    assert.unreachable('wrote to a read-only export');
  } catch (error) {
    assert.instance(error, BlockError);
    assert.is((error as BlockError).code, 'EROFS');
  }
  assert.is(server.running.service.lookupExport('nope'), undefined);
});

exports.run();
