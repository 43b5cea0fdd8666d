/**
 * Mirrors and dirty logs over the API and CLI: create from a table line, the dm status lines,
 * export `mirror:m1` over NBD and copy through it with nbdcopy (legs equal), a disk log resyncing
 * to 100%, a userspace log in the service's log server (GET /v1/logs), the luid swap through
 * replace-table + resume under an open export, fail a leg with policy replace (a spare), a restart
 * opening the mirror again, a log server process killed (SIGKILL) and started again mid-I/O while
 * a mirror of ours uses it over its socket (the client's ESRCH path), and bad input answered 4xx
 * naming the field.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MirrorDevice } from '../runtime/mirror/mirror-device.ts';
import { socketLink } from '../runtime/ulog/ulog-link.ts';
import { runCli } from '../server/cli/main.ts';
import { type Answer, callApi, expectError, startTestServer, type TestServer, until } from './support/blockcore-server.ts';
import { killServeChildren, launchers, servicePid, startServe } from './support/serve-process.ts';
import { requireTools, runTool } from './support/tools.ts';

const test = suite('api: mirrors');
const MIB = 1024 * 1024;
let server: TestServer;

test.before.each(async () => {
  server = await startTestServer({ settings: { '--ulog': 'default' } });
  for (const name of ['a.img', 'b.img', 'c.img', 'spare.img']) assert.is((await server.call('POST', '/v1/devices', { name, sizeBytes: 8 * MIB })).status, 201);
  for (const name of ['log.img', 'd.img', 'e.img']) assert.is((await server.call('POST', '/v1/devices', { name, sizeBytes: MIB })).status, 201);
});
test.after.each(async () => {
  await server.dispose();
});


const legsEqual = (names: string[]) => {
  const first = readFileSync(join(server.dataDir, names[0]!));
  return names.slice(1).every((name) => readFileSync(join(server.dataDir, name)).equals(first));
};

test('create with a core log (nosync): dm status lines; export over NBD, nbdcopy writes both legs; in use: 409', async () => {
  requireTools(['nbdcopy']);
  const created = await server.call('POST', '/v1/mirrors', { name: 'm1', table: 'mirror core 2 1024 nosync 2 a.img 0 b.img 0 1 handle_errors' });
  assert.is(created.status, 201, created.text);
  assert.is(created.json.statusInfo, '2 a.img b.img 16/16 1 AA 1 core');
  assert.is(created.json.statusTable, 'core 2 1024 nosync 2 a.img 0 b.img 0 1 handle_errors');
  assert.is(created.json.syncPercent, 100);
  assert.is((await server.call('POST', '/v1/exports', { name: 'm', device: 'mirror:m1' })).status, 201);
  const image = Uint8Array.from({ length: 8 * MIB }, (_, i) => (i * 13 + 5) & 0xff);
  const source = join(server.root, 'image.bin');
  writeFileSync(source, image);
  const uri = `nbd://127.0.0.1:${(server.running.nbd as { port: number }).port}/m`;
  const copied = await runTool('nbdcopy', [source, uri]);
  assert.is(copied.code, 0, copied.stderr);
  for (const leg of ['a.img', 'b.img']) assert.equal(new Uint8Array(readFileSync(join(server.dataDir, leg))), image, leg);
  expectError(await server.call('DELETE', '/v1/mirrors/m1'), 409, 'EBUSY', 'name');
  expectError(await server.call('POST', '/v1/mirrors', { name: 'm2', table: 'mirror core 1 1024 2 a.img 0 c.img 0' }), 409, 'EBUSY', 'table');
});

test('a disk log on a new device resyncs everything to 100%; a userspace log lives in the log server (GET /v1/logs, blockcore log ls)', async () => {
  writeFileSync(join(server.dataDir, 'a.img'), Buffer.alloc(8 * MIB, 0x3c));
  const disk = await server.call('POST', '/v1/mirrors', { name: 'd1', table: 'mirror disk 2 log.img 256 2 a.img 0 b.img 0' });
  assert.is(disk.status, 201, disk.text);
  await until(async () => (await server.call('GET', '/v1/mirrors/d1')).json.syncPercent === 100, 'resynced');
  assert.is((await server.call('GET', '/v1/mirrors/d1')).json.statusInfo, '2 a.img b.img 64/64 1 AA 3 disk log.img A');
  assert.ok(legsEqual(['a.img', 'b.img']));
  const user = await server.call('POST', '/v1/mirrors', { name: 'u1', table: 'mirror userspace 4 LVM-u1 core 1024 nosync 2 c.img 0 spare.img 0' });
  assert.is(user.status, 201, user.text);
  assert.is(user.json.statusTable, 'userspace 4 LVM-u1 core 1024 nosync 2 c.img 0 spare.img 0');
  // A clustered log (a group of one in this service, until etcd orders several).
  const clustered = await server.call('POST', '/v1/mirrors', { name: 'c1', table: 'mirror userspace 4 LVM-c1 clustered-core 1024 nosync 2 e.img 0 d.img 0' });
  assert.is(clustered.status, 201, clustered.text);
  assert.match(clustered.json.statusInfo, /^2 e\.img d\.img 2\/2 1 AA 1 clustered-core$/);
  assert.is((await server.call('DELETE', '/v1/mirrors/c1')).status, 204);
  const logs = (await server.call('GET', '/v1/logs')).json;
  assert.is(logs.socket, join(server.dataDir, '.blockcore', 'ulog.sock'));
  assert.equal(logs.logs.map((log: { uuid: string; type: string; state: string; regionCount: number }) => [log.uuid, log.type, log.state, log.regionCount]), [['LVM-u1', 'core', 'live', 16]]);
  const out: string[] = [];
  assert.is(await runCli(['log', 'ls'], { BLOCKCORE_URL: server.url }, { out: (line: string) => void out.push(line), err: (line: string) => void out.push(line), write: (text: string) => void out.push(text), isTty: false }), 0, out.join('\n'));
  assert.match(out.join('\n'), /LVM-u1 +\d+ +core +16 +16 +0 +live/);
  out.length = 0;
  assert.is(await runCli(['mirror', 'ls'], { BLOCKCORE_URL: server.url }, { out: (line: string) => void out.push(line), err: (line: string) => void out.push(line), write: (text: string) => void out.push(text), isTty: false }), 0, out.join('\n'));
  assert.match(out.join('\n'), /d1 +a\.img,b\.img +AA +100%/);
});

test('replace-table then resume: the luid swap of a userspace log under an open export; the old instance destroyed alone', async () => {
  const table = (region: number) => `mirror userspace 4 LVM-swap core ${region} nosync 2 a.img 0 b.img 0`;
  assert.is((await server.call('POST', '/v1/mirrors', { name: 's1', table: table(1024) })).status, 201);
  assert.is((await server.call('POST', '/v1/exports', { name: 's', device: 'mirror:s1' })).status, 201);
  const loaded = await server.call('POST', '/v1/mirrors/s1/replace-table', { table: table(2048) });
  assert.is(loaded.status, 200, loaded.text);
  assert.is(loaded.json.pendingTable, table(2048));
  const both = (await server.call('GET', '/v1/logs')).json.logs as Array<{ luid: number; state: string; regionSectors: number }>;
  assert.equal(both.map((log) => [log.state, log.regionSectors]), [['live', 1024], ['inactive', 2048]]);
  const swapped = await server.call('POST', '/v1/mirrors/s1/resume');
  assert.is(swapped.status, 200, swapped.text);
  assert.is(swapped.json.table, table(2048));
  assert.is(swapped.json.pendingTable, null);
  const after = (await server.call('GET', '/v1/logs')).json.logs as Array<{ luid: number; state: string; regionSectors: number }>;
  assert.equal(after.map((log) => [log.state, log.regionSectors]), [['live', 2048]]);
  assert.is(after[0]!.luid, both[1]!.luid, 'the new instance stayed; only the old one was destroyed');
  // The export goes on over the new table.
  requireTools(['nbdcopy']);
  const source = join(server.root, 'small.bin');
  writeFileSync(source, Buffer.alloc(MIB, 0x77));
  const copied = await runTool('nbdcopy', ['--destination-is-zero', source, `nbd://127.0.0.1:${(server.running.nbd as { port: number }).port}/s`]);
  assert.is(copied.code, 0, copied.stderr);
  assert.is(readFileSync(join(server.dataDir, 'b.img'))[MIB - 1], 0x77);
});

test('suspend holds I/O in the export; replace-table and resume send it to the new table; a log uuid belongs to one mirror', async () => {
  requireTools(['nbdcopy']);
  const table = (region: number) => `mirror userspace 4 LVM-held core ${region} nosync 2 a.img 0 b.img 0`;
  assert.is((await server.call('POST', '/v1/mirrors', { name: 'h1', table: table(1024) })).status, 201);
  expectError(await server.call('POST', '/v1/mirrors', { name: 'h2', table: 'mirror userspace 4 LVM-held core 1024 nosync 2 c.img 0 spare.img 0' }), 409, 'EEXIST', 'table');
  assert.is((await server.call('POST', '/v1/exports', { name: 'h', device: 'mirror:h1' })).status, 201);
  assert.is((await server.call('POST', '/v1/mirrors/h1/suspend')).json.suspended, true);
  const source = join(server.root, 'held.bin');
  writeFileSync(source, Buffer.alloc(MIB, 0x5d));
  const copy = runTool('nbdcopy', ['--destination-is-zero', source, `nbd://127.0.0.1:${(server.running.nbd as { port: number }).port}/h`]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.is(readFileSync(join(server.dataDir, 'a.img'))[0], 0, 'held while suspended');
  assert.is((await server.call('POST', '/v1/mirrors/h1/replace-table', { table: table(2048) })).status, 200);
  const resumed = await server.call('POST', '/v1/mirrors/h1/resume');
  assert.is(resumed.status, 200, resumed.text);
  assert.is(resumed.json.table, table(2048));
  const done = await copy;
  assert.is(done.code, 0, done.stderr);
  for (const leg of ['a.img', 'b.img']) assert.is(readFileSync(join(server.dataDir, leg))[MIB - 1], 0x5d, leg);
  const logs = (await server.call('GET', '/v1/logs')).json.logs as Array<{ state: string; regionSectors: number; dirtyRegions: number }>;
  assert.equal(logs.map((log) => [log.state, log.regionSectors]), [['live', 2048]]);
});

test('fail a leg with policy replace: the spare takes its place and is resynced; the table is saved; a restart opens it again', async () => {
  writeFileSync(join(server.dataDir, 'a.img'), Buffer.alloc(8 * MIB, 0x42));
  const created = await server.call('POST', '/v1/mirrors', { name: 'r1', table: 'mirror disk 3 log.img 256 nosync 2 a.img 0 b.img 0 1 handle_errors', legFaultPolicy: 'replace', spares: ['spare.img'] });
  assert.is(created.status, 201, created.text);
  const failed = await server.call('POST', '/v1/mirrors/r1/legs/b.img/fail');
  assert.is(failed.status, 200, failed.text);
  assert.is(failed.json.table, 'mirror disk 3 log.img 256 sync 2 a.img 0 spare.img 0 1 handle_errors');
  assert.equal(failed.json.spares, []);
  await until(async () => (await server.call('GET', '/v1/mirrors/r1')).json.syncPercent === 100, 'spare resynced');
  assert.ok(legsEqual(['a.img', 'spare.img']));
  assert.is((await server.call('POST', '/v1/exports', { name: 'free', device: 'b.img' })).status, 201, 'the failed leg is free');
  expectError(await server.call('POST', '/v1/mirrors/r1/legs/b.img/fail'), 404, 'ENOENT', 'leg');
  await server.restart();
  const back = await server.call('GET', '/v1/mirrors/r1');
  assert.is(back.status, 200, back.text);
  assert.is(back.json.table, 'mirror disk 3 log.img 256 sync 2 a.img 0 spare.img 0 1 handle_errors');
  assert.equal(back.json.legs.map((leg: { device: string }) => leg.device), ['a.img', 'spare.img']);
  assert.is((await server.call('POST', '/v1/mirrors/r1/suspend')).json.suspended, true);
  assert.is((await server.call('POST', '/v1/mirrors/r1/resume')).json.suspended, false);
  assert.is((await server.call('DELETE', '/v1/mirrors/r1')).status, 204);
});

test('bad input: 4xx naming the field, nothing opened', async () => {
  for (const [table, status, code, why] of [
    ['mirror core 1 1024 2 a.img 0', 400, 'EINVAL', /too few leg arguments/],
    ['mirror core 1 1000 2 a.img 0 b.img 0', 400, 'EINVAL', /power of two/],
    ['mirror core 1 1024 2 a.img 0 ../x 0', 400, 'EINVAL', /table/],
    ['mirror core 1 1024 2 a.img 0 none.img 0', 404, 'ENOENT', /none\.img/],
    ['mirror disk 2 a.img 1024 2 b.img 0 c.img 0', 400, 'EINVAL', /not a dirty log|log refused/],
    ['mirror core 1 1024 1 a.img 0', 400, 'EINVAL', /at least 2 legs/],
    ['mirror core 1 1024 2 a.img 0 b.img 0 1 keep_log', 400, 'EINVAL', /keep_log needs handle_errors/],
    ['mirror userspace 3 LVM-x core 1000 2 a.img 0 b.img 0', 400, 'EINVAL', /region_size 1000/],
    ['mirror core 1 1024 2 a.img 0 a.img 0', 400, 'EINVAL', /"a\.img" is named twice/],
    ['mirror disk 2 b.img 1024 2 b.img 0 c.img 0', 400, 'EINVAL', /"b\.img" is named twice/],
  ] as const) {
    if (table.includes('disk 2 a.img')) writeFileSync(join(server.dataDir, 'a.img'), Buffer.alloc(4096, 0x99), { flag: 'r+' });
    const answer = await server.call('POST', '/v1/mirrors', { name: 'bad', table });
    expectError(answer, status, code, 'table');
    assert.match(answer.json.error, why, `${table}: ${answer.json.error}`);
  }
  expectError(await server.call('POST', '/v1/mirrors', { name: 'x', table: 'mirror core 1 1024 2 a.img 0 b.img 0', legFaultPolicy: 'eject' }), 400, 'EINVAL', 'legFaultPolicy');
  expectError(await server.call('GET', '/v1/mirrors/nope'), 404, 'ENOENT', 'name');
  assert.equal((await server.call('GET', '/v1/mirrors')).json.mirrors, []);
  assert.equal((await server.call('GET', '/v1/logs')).json.logs, []);
  assert.equal(readFileSync(join(server.dataDir, 'a.img')).subarray(0, 4096), Buffer.alloc(4096, 0x99), 'the device refused as a disk log is untouched');
});

test('the log server, a process of its own, is killed (SIGKILL) and started again mid-I/O: the mirror\'s log client constructs the log again and the mirror goes on', async () => {
  const root = mkdtempSync(join(tmpdir(), 'blockcore-ulog-kill-'));
  const launcher = launchers().filter((candidate) => candidate.name !== 'npm start').at(-1)!;
  const socketPath = join(root, 'ulog.sock');
  const args = ['--data', join(root, 'data'), '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0', '--rtrs', 'off', '--ulog', socketPath];
  const events: string[] = [];
  let served = await startServe(launcher, args, { cwd: root });
  const open = (name: string) => FileDevice.open(join(server.dataDir, name));
  const mirror = await MirrorDevice.open({
    name: 'k', table: 'mirror userspace 4 LVM-kill core 256 nosync 2 a.img 0 b.img 0', openLeg: open,
    userspaceLink: socketLink({ path: socketPath }), retryMs: 100, timeoutMs: 2000, clearDelayMs: 5, log: (line) => events.push(line),
  });
  try {
    const listed = await callApi(served.url, 'GET', '/v1/logs');
    assert.equal((listed.json as { logs: Array<{ uuid: string; state: string }> }).logs.map((log) => [log.uuid, log.state]), [['LVM-kill', 'live']]);
    let writes = 0;
    let stop = false;
    const writer = (async () => {
      for (let block = 0; !stop; block = (block + 37) % 2048) {
        await mirror.write(block * 4096, new Uint8Array(4096).fill(1 + (writes % 250)));
        writes += 1;
        if (writes % 20 === 0) await mirror.flush();
      }
    })();
    await until(async () => writes > 50, 'writes under way');
    process.kill(servicePid(served), 'SIGKILL');
    await served.exited;
    const before = writes;
    served = await startServe(launcher, args, { cwd: root });
    await until(async () => writes > before + 100, 'writes go on after the restart');
    stop = true;
    await writer;
    await mirror.flush();
    assert.match(events.join('\n'), /constructed and resumed again on the server/);
    const relisted = await callApi(served.url, 'GET', '/v1/logs');
    assert.equal((relisted.json as { logs: Array<{ uuid: string; state: string }> }).logs.map((log) => [log.uuid, log.state]), [['LVM-kill', 'live']]);
    await mirror.close();
    assert.ok(legsEqual(['a.img', 'b.img']));
  } finally {
    await mirror.close().catch(() => {});
    killServeChildren();
    rmSync(root, { recursive: true, force: true });
  }
});

test('a userspace log whose server never comes back: the mirror gives up after logGiveUpMs and goes on with a core log', async () => {
  const root = mkdtempSync(join(tmpdir(), 'blockcore-ulog-gone-'));
  const launcher = launchers().filter((candidate) => candidate.name !== 'npm start').at(-1)!;
  const socketPath = join(root, 'ulog.sock');
  const served = await startServe(launcher, ['--data', join(root, 'data'), '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0', '--rtrs', 'off', '--ulog', socketPath], { cwd: root });
  const events: string[] = [];
  const open = (name: string) => FileDevice.open(join(server.dataDir, name));
  const mirror = await MirrorDevice.open({
    name: 'g', table: 'mirror userspace 4 LVM-gone core 256 nosync 2 a.img 0 b.img 0 1 handle_errors', openLeg: open,
    userspaceLink: socketLink({ path: socketPath }), retryMs: 50, logGiveUpMs: 500, onEvent: (event) => events.push(event.message),
  });
  try {
    process.kill(servicePid(served), 'SIGKILL');
    await served.exited;
    await mirror.write(0, new Uint8Array(4096).fill(9)); // a fresh region: its mark needs the log
    assert.match(events.join('\n'), /the userspace log failed: .*no log server for 500 ms.*going on with a core log/);
    assert.match(await mirror.statusTable(), /^core 1 256 2 a\.img 0 b\.img 0 1 handle_errors$/);
  } finally {
    await mirror.close();
    killServeChildren();
    rmSync(root, { recursive: true, force: true });
  }
});

test.run();
