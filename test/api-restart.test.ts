import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBlockcore } from '../server/main.ts';
import { ENGINES } from '../server/engines.ts';
import { readState, stateProblem } from '../server/state-file.ts';
import { Prng } from '../runtime/prng.ts';
import { makeCloneDevices, startTestServer, writeImage, type TestServer } from './support/blockcore-server.ts';
import { attachNbd } from './support/nbd-attach.ts';

const restart = suite('api: state survives restart');
let server: TestServer;

restart.before.each(async () => {
  server = await startTestServer();
});
restart.after.each(async () => {
  await server.dispose();
});

async function ok(method: string, path: string, body?: unknown): Promise<void> {
  const answer = await server.call(method, path, body);
  assert.ok(answer.status < 300, `${method} ${path}: ${answer.text}`);
}

restart('devices, clones (messages and suspension included) and exports come back; written data too', async () => {
  await makeCloneDevices(server);
  await makeCloneDevices(server, 1 << 20, 'b-');
  await ok('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 1 no_hydration' });
  await ok('POST', '/v1/clones/c1/message', { message: 'hydration_threshold 7' });
  await ok('POST', '/v1/clones', { name: 'c2', table: 'clone b-meta b-dst.img b-src.img 8 1 no_hydration' });
  await ok('POST', '/v1/clones/c2/suspend');
  await ok('POST', '/v1/exports', { name: 'e1', device: 'clone:c1', description: 'the clone' });
  writeImage(server.dataDir, 'plain.img', 65536, 9);
  await ok('POST', '/v1/exports', { name: 'e2', device: 'plain.img', readOnly: true });
  const written = new Prng(3).fill(new Uint8Array(8192));
  await server.running.service.lookupExport('e1')!.device.write(40960, written);
  const before = (await server.call('GET', '/v1/clones/c1')).json;

  await server.restart();

  const clones = (await server.call('GET', '/v1/clones')).json.clones;
  assert.equal(clones.map((c: { name: string }) => c.name), ['c1', 'c2']);
  const c1 = (await server.call('GET', '/v1/clones/c1')).json;
  assert.is(c1.error, null);
  assert.is(c1.table, 'clone meta dst.img src.img 8 1 no_hydration 2 hydration_threshold 7');
  assert.is(c1.hydrationThreshold, 7);
  assert.is(c1.hydratedRegions, before.hydratedRegions, 'hydrated regions were committed on stop');
  assert.is(c1.hydratedRegions, 2, 'the two regions written');
  assert.equal(c1.exports, ['e1']);
  assert.is(clones[1].suspended, true);
  const exports = (await server.call('GET', '/v1/exports')).json.exports;
  assert.equal(exports.map((e: { name: string; device: string; readOnly: boolean; error: null }) => [e.name, e.device, e.readOnly, e.error]), [['e1', 'clone:c1', false, null], ['e2', 'plain.img', true, null]]);
  assert.is(exports[0].description, 'the clone');
  const devices = (await server.call('GET', '/v1/devices')).json.devices.map((d: { name: string }) => d.name);
  assert.equal(devices, ['b-dst.img', 'b-meta', 'b-src.img', 'dst.img', 'meta', 'plain.img', 'src.img']);

  const client = await attachNbd(server.running.nbd, 'e1');
  assert.equal(await client.read(40960, 8192), written);
  await client.close();
  await ok('POST', '/v1/clones/c2/resume');
  await server.restart();
  assert.is((await server.call('GET', '/v1/clones/c2')).json.suspended, false);
});

restart('a clone that cannot reopen is listed with its error and can be deleted', async () => {
  await makeCloneDevices(server);
  await ok('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8' });
  await ok('POST', '/v1/exports', { name: 'e1', device: 'clone:c1' });
  await server.stop();
  rmSync(join(server.dataDir, 'src.img'));
  await server.restart();
  const c1 = (await server.call('GET', '/v1/clones/c1')).json;
  assert.is(c1.status, null);
  assert.match(c1.error, /source dev/);
  const e1 = (await server.call('GET', '/v1/exports')).json.exports[0];
  assert.is(e1.sizeBytes, null);
  assert.match(e1.error, /clone "c1" is not open/);
  assert.is(server.running.service.lookupExport('e1'), undefined);
  const message = await server.call('POST', '/v1/clones/c1/message', { message: 'enable_hydration' });
  assert.is(message.status, 409);
  assert.is((await server.call('DELETE', '/v1/devices/meta')).status, 409, 'its files are still held');
  assert.ok((await server.call('GET', '/metrics')).text.includes('blockcore_clone_open{clone="c1"} 0'));
  await ok('DELETE', '/v1/exports/e1');
  await ok('DELETE', '/v1/clones/c1');
  await server.restart();
  assert.equal((await server.call('GET', '/v1/clones')).json.clones, []);
});

restart('the state file is written whole (no temporary left), checked on read, and refused when bad', async () => {
  await ok('POST', '/v1/devices', { name: 'disk.img', sizeBytes: 4096 });
  await ok('POST', '/v1/exports', { name: 'e1', device: 'disk.img' });
  const stateDir = join(server.dataDir, '.blockcore');
  assert.equal(readdirSync(stateDir).sort(), ['lock', 'node-id', 'state.json']);
  const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8'));
  assert.equal(state, { format: 'blockcore-state', version: 2, engines: { remote: [], array: [], mirror: [], clone: [] }, exports: [{ name: 'e1', device: 'disk.img', readOnly: false }] });
  assert.is(stateProblem(state, ENGINES), null);
  assert.equal(readState(server.dataDir, ENGINES).exports, state.exports);
  await server.stop();
  assert.equal(readdirSync(stateDir).sort(), ['node-id', 'state.json'], 'the lock is released');
  for (const [bad, reason] of [
    ['{"format":"blockcore-state","version":3,"engines":{},"exports":[]}', /version 3 is not 1 or 2/],
    ['{"format":"blockcore-state","version":2,"engines":{"tape":[{"name":"m"}]},"exports":[]}', /no "tape" engine .*refusing to start rather than drop its records/],
    ['{"format":"blockcore-state","version":2,"engines":{"clone":[{"name":"a","table":"t"}]},"exports":[]}', /engines\.clone\[0\]\.suspended must be a boolean/],
    ['{"format":"blockcore-state","version":2,"engines":{},"exports":[{"name":"e","device":"tape:m","readOnly":false}]}', /exports\[0\]\.device: unknown device kind "tape"/],
    ['{"format":"blockcore-state","version":1,"exports":[]}', /version "v1 without a clones array"/],
    ['{"format":"blockcore-state","version":1,"clones":[],"exports":[{"name":"../x","device":"disk.img","readOnly":false}]}', /exports\[0\]\.name/],
    ['{"format":"blockcore-state","version":1,"clones":[{"name":"a","table":"t","suspended":false},{"name":"a","table":"t","suspended":false}],"exports":[]}', /appears twice/],
    ['{"format":', /is not JSON/],
  ] as const) {
    writeFileSync(join(stateDir, 'state.json'), bad);
    try {
      await startBlockcore({ dataDir: server.dataDir, http: { host: '127.0.0.1', port: 0 }, nbd: { host: '127.0.0.1', port: 0 }, token: null });
      assert.unreachable('started over a bad state file');
    } catch (error) {
      assert.match((error as Error).message, reason);
      assert.match((error as Error).message, /state\.json/);
    }
    assert.not.ok(existsSync(join(stateDir, 'lock')), 'a refused start leaves no lock');
  }
  writeFileSync(join(stateDir, 'state.json'), JSON.stringify(state));
  await server.restart();
});

restart('a state file that cannot be written: a new clone is undone, an applied change says it will not survive a restart', async () => {
  await makeCloneDevices(server);
  await makeCloneDevices(server, 1 << 20, 'b-');
  await ok('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 1 no_hydration' });
  // A non-empty directory where the state file goes: the atomic rename over it fails.
  const statePath = join(server.dataDir, '.blockcore/state.json');
  const saved = readFileSync(statePath);
  rmSync(statePath);
  mkdirSync(join(statePath, 'blocker'), { recursive: true });
  try {
    const created = await server.call('POST', '/v1/clones', { name: 'c2', table: 'clone b-meta b-dst.img b-src.img 8 1 no_hydration' });
    assert.is(created.status, 500);
    assert.is(created.json.code, 'EIO');
    assert.match(created.json.error, /cannot write the state file/);
    assert.is((await server.call('GET', '/v1/clones/c2')).status, 404, 'the new clone was undone');
    for (const [path, body, what] of [
      ['/v1/clones/c1/message', { message: 'hydration_threshold 9' }, 'message'],
      ['/v1/clones/c1/suspend', undefined, 'suspending'],
      ['/v1/clones/c1/resume', undefined, 'resuming'],
    ] as const) {
      const answer = await server.call('POST', path, body);
      assert.is(answer.status, 500, path);
      assert.is(answer.json.code, 'EIO');
      assert.match(answer.json.error, new RegExp(`${what}.*is in effect.*will not survive a restart`));
    }
    assert.is((await server.call('GET', '/v1/clones/c1')).json.hydrationThreshold, 9, 'the message is in effect');
  } finally {
    rmSync(statePath, { recursive: true, force: true });
    writeFileSync(statePath, saved);
  }
});

restart('one service per data directory', async () => {
  try {
    await startBlockcore({ dataDir: server.dataDir, http: { host: '127.0.0.1', port: 0 }, nbd: { host: '127.0.0.1', port: 0 }, token: null });
    assert.unreachable('two services on one data directory');
  } catch (error) {
    assert.match((error as Error).message, /is in use by process \d+/);
  }
  await server.stop();
  writeFileSync(join(server.dataDir, '.blockcore', 'lock'), '999999999\n');
  await server.restart();
  assert.is((await server.call('GET', '/v1/health')).status, 200, 'a stale lock is taken over');
});

restart('a stale NBD Unix socket (the service was killed) is replaced; a live one is not', async () => {
  await server.stop();
  const path = join(server.root, 'nbd.sock');
  // A socket file nobody listens on: listen, move the file away from the listener, close it.
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(join(server.root, 'first.sock'), resolve));
  renameSync(join(server.root, 'first.sock'), path);
  await new Promise<void>((resolve) => listener.close(() => resolve()));
  assert.ok(lstatSync(path).isSocket());
  const config = { dataDir: server.dataDir, http: { host: '127.0.0.1', port: 0 }, nbd: { path }, token: null };
  const running = await startBlockcore(config);
  try {
    writeImage(server.dataDir, 'disk.img', 4096);
    await running.service.createExport({ name: 'disk', device: 'disk.img', readOnly: true });
    const client = await attachNbd({ path }, 'disk');
    assert.is(client.sizeBytes, 4096);
    await client.close();
    const other = mkdtempSync(join(tmpdir(), 'blockcore-other-'));
    try {
      await startBlockcore({ ...config, dataDir: other });
      assert.unreachable('listened over a live socket');
    } catch (error) {
      assert.match(String((error as Error).message), /EADDRINUSE|in use/i);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  } finally {
    await running.stop();
  }
});

restart.run();
