/**
 * Arrays over the API: create a clustered raid1 on two device files (mdadm reads the legs), the
 * mdstat-like view, export `array:a1` over NBD and copy through it with nbdcopy (both legs end
 * equal), fail a leg ([U_], every superblock says so), stop and assemble again, a restart
 * assembling it again, raid10, events, and bad input answered 4xx naming the field.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../server/cli/main.ts';
import { type Answer, expectError, startTestServer, type TestServer, until } from './support/blockcore-server.ts';
import { mdadmExamine } from './support/mdadm.ts';
import { requireTools, runTool } from './support/tools.ts';

const test = suite('api: arrays');
const MIB = 1024 * 1024;
let server: TestServer;

test.before.each(async () => {
  server = await startTestServer();
  for (const name of ['l0.img', 'l1.img', 'l2.img', 'l3.img']) assert.is((await server.call('POST', '/v1/devices', { name, sizeBytes: 9 * MIB })).status, 201);
});
test.after.each(async () => {
  await server.dispose();
});


const RAID1 = { name: 'a1', level: 'raid1', legs: ['l0.img', 'l1.img'], nodes: 4, clusterName: 'lab', bitmapChunkBytes: MIB, assumeClean: true };

test('create a raid1: mdstat-like state, legs, slot; mdadm reads the legs', async () => {
  const created = await server.call('POST', '/v1/arrays', RAID1);
  assert.is(created.status, 201, created.text);
  const a = created.json;
  assert.is(a.level, 'raid1');
  assert.is(a.picture, '[UU]');
  assert.is(a.slot, 0);
  assert.is(a.nodes, 4);
  assert.equal(a.nodesSeen, [0]);
  assert.is(a.sizeBytes, 8 * MIB);
  assert.equal(a.legs.map((leg: { device: string; slot: number; role: number; state: string }) => [leg.device, leg.slot, leg.role, leg.state]), [['l0.img', 0, 0, 'active'], ['l1.img', 1, 1, 'active']]);
  assert.match(a.state, /^a1 : active raid1 l1\.img\[1\] l0\.img\[0\]\n/);
  assert.match(a.state, /8192 blocks super 1\.2 \[2\/2\] \[UU\]/);
  assert.match(a.state, /bitmap: 0 dirty chunks, 1024KB chunk, clustered, node slot 0 of 4/);
  assert.equal((await server.call('GET', '/v1/arrays')).json.arrays.map((x: { name: string }) => x.name), ['a1']);
  const examined = await mdadmExamine(join(server.dataDir, 'l1.img'));
  assert.is(examined['Raid Level'], 'raid1');
  assert.is(examined['Cluster Name']?.trim(), 'lab');
  assert.match(examined['Array State']!, /^AA /);
});

test('export array:a1 over NBD: nbdcopy writes through it, both legs hold the bytes, reads come back', async () => {
  requireTools(['nbdcopy']);
  assert.is((await server.call('POST', '/v1/arrays', RAID1)).status, 201);
  const exported = await server.call('POST', '/v1/exports', { name: 'a', device: 'array:a1' });
  assert.is(exported.status, 201, exported.text);
  const image = Uint8Array.from({ length: 8 * MIB }, (_, i) => (i * 7 + 3) & 0xff);
  const source = join(server.root, 'image.bin');
  writeFileSync(source, image);
  const uri = `nbd://127.0.0.1:${(server.running.nbd as { port: number }).port}/a`;
  const write = await runTool('nbdcopy', [source, uri]);
  assert.is(write.code, 0, write.stderr);
  for (const leg of ['l0.img', 'l1.img']) {
    const data = new Uint8Array(readFileSync(join(server.dataDir, leg))).subarray(MIB);
    assert.equal(data, image, `${leg} holds what nbdcopy wrote`);
  }
  const back = join(server.root, 'back.bin');
  const read = await runTool('nbdcopy', [uri, back]);
  assert.is(read.code, 0, read.stderr);
  assert.equal(new Uint8Array(readFileSync(back)), image);
  expectError(await server.call('POST', '/v1/arrays/a1/stop'), 409, 'EBUSY', 'name');
});

test('fail a leg: [U_] on this node and in the superblocks; stop, then assemble again from the legs', async () => {
  assert.is((await server.call('POST', '/v1/arrays', RAID1)).status, 201);
  const failed = await server.call('POST', '/v1/arrays/a1/legs/1/fail');
  assert.is(failed.status, 200, failed.text);
  assert.is(failed.json.picture, '[U_]');
  assert.equal(failed.json.legs[1].state, 'faulty');
  assert.match(failed.json.state, /l1\.img\[1\]\(F\)/);
  assert.match((await mdadmExamine(join(server.dataDir, 'l0.img')))['Array State']!, /^A\. /);
  expectError(await server.call('POST', '/v1/arrays/a1/legs/7/fail'), 404, 'ENOENT', 'slot');
  assert.is((await server.call('POST', '/v1/arrays/a1/stop')).status, 204);
  expectError(await server.call('GET', '/v1/arrays/a1'), 404, 'ENOENT', 'name');
  const again = await server.call('POST', '/v1/arrays', { name: 'a1', legs: ['l0.img', 'l1.img'], assemble: true });
  assert.is(again.status, 201, again.text);
  assert.is(again.json.picture, '[U_]', 'the legs remember the failure');
});

test('manage: add a spare, remove it (its file is free again), re-add a failed leg, add into a vacant role', async () => {
  assert.is((await server.call('POST', '/v1/arrays', RAID1)).status, 201);
  const added = await server.call('POST', '/v1/arrays/a1/legs', { device: 'l2.img', spare: true });
  assert.is(added.status, 200, added.text);
  assert.equal(added.json.legs.map((leg: { device: string; state: string }) => `${leg.device}:${leg.state}`), ['l0.img:active', 'l1.img:active', 'l2.img:spare']);
  expectError(await server.call('DELETE', '/v1/arrays/a1/legs/0'), 409, 'EBUSY', 'slot');
  const removed = await server.call('DELETE', '/v1/arrays/a1/legs/2');
  assert.is(removed.status, 200, removed.text);
  assert.is(removed.json.legs.length, 2);
  assert.is((await server.call('POST', '/v1/exports', { name: 'free', device: 'l2.img' })).status, 201, 'the removed leg is an ordinary file again');
  assert.is((await server.call('DELETE', '/v1/exports/free')).status, 204);
  assert.is((await server.call('POST', '/v1/arrays/a1/legs/1/fail')).status, 200);
  const readded = await server.call('POST', '/v1/arrays/a1/legs/1/re-add');
  assert.is(readded.status, 200, readded.text);
  await until(async () => (await server.call('GET', '/v1/arrays/a1')).json.picture === '[UU]', 're-added leg in sync');
  expectError(await server.call('POST', '/v1/arrays/a1/legs/1/re-add'), 409, 'EBUSY', 'slot');
  assert.is((await server.call('POST', '/v1/arrays/a1/legs/0/fail')).status, 200);
  const vacant = await server.call('POST', '/v1/arrays/a1/legs', { device: 'l3.img' });
  assert.is(vacant.status, 200, vacant.text);
  await until(async () => (await server.call('GET', '/v1/arrays/a1')).json.picture === '[UU]', 'new leg recovered into role 0');
  const after = (await server.call('GET', '/v1/arrays/a1')).json;
  assert.equal(after.legs.map((leg: { device: string; state: string; role: number | null }) => `${leg.device}:${leg.state}:${leg.role}`), ['l0.img:faulty:null', 'l1.img:active:1', 'l3.img:active:0']);
  expectError(await server.call('POST', '/v1/arrays/a1/legs', { device: 'l1.img' }), 400, 'EINVAL', 'device');
  expectError(await server.call('POST', '/v1/arrays/a1/legs', { device: 'l2.img', spare: true, grow: true }), 400, 'EINVAL', 'grow');
  const grown = await server.call('POST', '/v1/arrays/a1/legs', { device: 'l2.img', grow: true });
  assert.is(grown.status, 200, grown.text);
  await until(async () => (await server.call('GET', '/v1/arrays/a1')).json.picture === '[UUU]', 'grown to three legs');
  expectError(await server.call('POST', '/v1/arrays/a1/legs', { device: 'nope.img' }), 404, 'ENOENT', 'device');
  await server.restart();
  const back = (await server.call('GET', '/v1/arrays/a1')).json;
  assert.is(back.error, null, back.error);
  assert.is(back.picture, '[UUU]', 'the added and the grown legs are assembled after a restart');
});

test('a restart assembles the array again; raid10 near=2 over four legs; events', async () => {
  const events: string[] = [];
  const controller = new AbortController();
  const stream = fetch(`${server.url}/v1/events`, { signal: controller.signal }).then(async (response) => {
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      events.push(decoder.decode(value));
    }
  }).catch(() => {});
  const r10 = await server.call('POST', '/v1/arrays', { name: 'r10', level: 'raid10', layout: 'n2', legs: ['l0.img', 'l1.img', 'l2.img', 'l3.img'], chunkSizeBytes: 65536, bitmapChunkBytes: MIB });
  assert.is(r10.status, 201, r10.text);
  assert.is(r10.json.level, 'raid10');
  assert.is(r10.json.sizeBytes, 16 * MIB);
  await until(async () => (await server.call('GET', '/v1/arrays/r10')).json.resync.state === 'idle', 'initial resync done');
  await until(() => events.join('').includes('array.resync-done'), 'resync-done event');
  assert.ok(events.join('').includes('array.created'));
  controller.abort();
  await stream;
  await server.restart();
  const back = await server.call('GET', '/v1/arrays/r10');
  assert.is(back.status, 200, back.text);
  assert.is(back.json.error, null);
  assert.is(back.json.picture, '[UUUU]');
  assert.is((await mdadmExamine(join(server.dataDir, 'l2.img')))['State'], 'clean');
});

test('resize: shrink and grow back (only the new part resyncs), refused while exported or past what fits; the CLI grows too', async () => {
  const created = await server.call('POST', '/v1/arrays', { ...RAID1, sizeBytes: 4 * MIB });
  assert.is(created.status, 201, created.text);
  assert.is(created.json.sizeBytes, 4 * MIB);
  expectError(await server.call('POST', '/v1/arrays/a1/resize', { sizeBytes: 4 * MIB + 512 }), 400, 'EINVAL', 'sizeBytes');
  expectError(await server.call('POST', '/v1/arrays/a1/resize', { sizeBytes: 64 * MIB }), 400, 'EINVAL', 'sizeBytes');
  expectError(await server.call('POST', '/v1/arrays/a1/resize', { sizeBytes: 'most' }), 400, 'EINVAL', 'sizeBytes');
  expectError(await server.call('POST', '/v1/arrays/nope/resize', { sizeBytes: MIB }), 404, 'ENOENT', 'name');
  const grown = await server.call('POST', '/v1/arrays/a1/resize', { sizeBytes: 'max' });
  assert.is(grown.status, 200, grown.text);
  assert.is(grown.json.sizeBytes, 8 * MIB);
  await until(async () => (await server.call('GET', '/v1/arrays/a1')).json.resync.state === 'idle', 'the new part resynced');
  const after = (await server.call('GET', '/v1/arrays/a1')).json;
  assert.is(after.resync.totalChunks, 4, 'four 1 MiB chunks: the new part only');
  assert.match((await mdadmExamine(join(server.dataDir, 'l1.img')))['Array Size']!, /^8192 KiB/);
  assert.is((await server.call('POST', '/v1/exports', { name: 'a1', device: 'array:a1' })).status, 201);
  expectError(await server.call('POST', '/v1/arrays/a1/resize', { sizeBytes: 4 * MIB }), 409, 'EBUSY', 'name');
  assert.is((await server.call('DELETE', '/v1/exports/a1')).status, 204);
  let stdout = '';
  let stderr = '';
  const code = await runCli(['array', 'grow', 'a1', '--size', String(6 * MIB), '--assume-clean'], { BLOCKCORE_URL: server.url }, {
    out: (line) => (stdout += `${line}\n`), err: (line) => (stderr += `${line}\n`), write: (text) => (stdout += text), isTty: false,
  });
  assert.is(code, 0, stderr);
  assert.match(stdout, /6144 blocks/);
  assert.is((await server.call('GET', '/v1/arrays/a1')).json.sizeBytes, 6 * MIB);
  await server.restart();
  assert.is((await server.call('GET', '/v1/arrays/a1')).json.sizeBytes, 6 * MIB, 'the size is on the legs');
});

test('bitmap switch: clustered -> none -> internal (kept over a restart) -> none -> clustered; refused while exported; the CLI switches too', async () => {
  assert.is((await server.call('POST', '/v1/arrays', RAID1)).status, 201);
  expectError(await server.call('POST', '/v1/arrays/a1/bitmap', { bitmap: 'internal' }), 400, 'EINVAL', 'bitmap');
  expectError(await server.call('POST', '/v1/arrays/a1/bitmap', { bitmap: 'none', nodes: 2 }), 400, 'EINVAL', 'nodes');
  expectError(await server.call('POST', '/v1/arrays/a1/bitmap', { bitmap: 'sometimes' }), 400, 'EINVAL', 'bitmap');
  const none = await server.call('POST', '/v1/arrays/a1/bitmap', { bitmap: 'none' });
  assert.is(none.status, 200, none.text);
  assert.is(none.json.bitmap, 'none');
  assert.match(none.json.state, /bitmap: none/);
  assert.is((await mdadmExamine(join(server.dataDir, 'l0.img')))['Feature Map'], '0x0');
  const internal = await server.call('POST', '/v1/arrays/a1/bitmap', { bitmap: 'internal', bitmapChunkBytes: MIB });
  assert.is(internal.status, 200, internal.text);
  assert.match(internal.json.state, /bitmap: 0 dirty chunks, 1024KB chunk, internal/);
  await server.restart();
  assert.is((await server.call('GET', '/v1/arrays/a1')).json.bitmap, 'internal', 'the legs say so');
  assert.is((await server.call('POST', '/v1/exports', { name: 'a1', device: 'array:a1' })).status, 201);
  expectError(await server.call('POST', '/v1/arrays/a1/bitmap', { bitmap: 'none' }), 409, 'EBUSY', 'name');
  assert.is((await server.call('DELETE', '/v1/exports/a1')).status, 204);
  let stdout = '';
  let stderr = '';
  const code = await runCli(['array', 'grow', 'a1', '--bitmap', 'none'], { BLOCKCORE_URL: server.url }, {
    out: (line) => (stdout += `${line}\n`), err: (line) => (stderr += `${line}\n`), write: (text) => (stdout += text), isTty: false,
  });
  assert.is(code, 0, stderr);
  assert.match(stdout, /bitmap: none/);
  const clustered = await server.call('POST', '/v1/arrays/a1/bitmap', { bitmap: 'clustered', nodes: 3, clusterName: 'lab2', bitmapChunkBytes: MIB });
  assert.is(clustered.status, 200, clustered.text);
  assert.equal([clustered.json.bitmap, clustered.json.nodes], ['clustered', 3]);
  assert.is((await mdadmExamine(join(server.dataDir, 'l1.img')))['Cluster Name']?.trim(), 'lab2');
});

test('resync rate limit (md sync_speed_max): a limited resync stays at its first copy; kept over a restart; lifted, it finishes; the CLI sets it', async () => {
  // 4 KiB/s: the first copy (a batch of 1 MiB chunks) starts at once, the next would wait minutes.
  const created = await server.call('POST', '/v1/arrays', { ...RAID1, assumeClean: false, resyncMaxBytesPerSecond: 4096 });
  assert.is(created.status, 201, created.text);
  assert.is(created.json.resyncMaxBytesPerSecond, 4096);
  let first: any;
  await until(async () => {
    first = (await server.call('GET', '/v1/arrays/a1')).json;
    return first.resync.state === 'running' && first.resync.doneChunks > 0;
  }, 'the first resync copy');
  assert.ok(first.resync.doneChunks < first.resync.totalChunks, `one batch of ${first.resync.totalChunks} chunks, not all: ${JSON.stringify(first.resync)}`);
  await server.restart();
  const restarted = (await server.call('GET', '/v1/arrays/a1')).json;
  assert.is(restarted.resyncMaxBytesPerSecond, 4096, 'kept in the state file');
  expectError(await server.call('POST', '/v1/arrays/a1/resync-speed', { maxBytesPerSecond: 0 }), 400, 'EINVAL', 'maxBytesPerSecond');
  expectError(await server.call('POST', '/v1/arrays/a1/resync-speed', { maxBytesPerSecond: '1M' }), 400, 'EINVAL', 'maxBytesPerSecond');
  expectError(await server.call('POST', '/v1/arrays/a1/resync-speed', {}), 400, 'EINVAL', 'maxBytesPerSecond');
  expectError(await server.call('POST', '/v1/arrays/nope/resync-speed', { maxBytesPerSecond: null }), 404, 'ENOENT', 'name');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, name: 'a2', legs: ['l2.img', 'l3.img'], resyncMaxBytesPerSecond: 12 }), 400, 'EINVAL', 'resyncMaxBytesPerSecond');
  let stdout = '';
  let stderr = '';
  const code = await runCli(['array', 'resync-speed', 'a1', 'none'], { BLOCKCORE_URL: server.url }, {
    out: (line) => (stdout += `${line}\n`), err: (line) => (stderr += `${line}\n`), write: (text) => (stdout += text), isTty: false,
  });
  assert.is(code, 0, stderr);
  assert.match(stdout, /a1: resync limit none/);
  let done: any;
  await until(async () => {
    done = (await server.call('GET', '/v1/arrays/a1')).json;
    return done.resync.state === 'idle' && done.dirtyChunks === 0 && !/resync/.test(done.state);
  }, 'the resync to finish once the limit is lifted');
  assert.is(done.resyncMaxBytesPerSecond, null);
  assert.is((await mdadmExamine(join(server.dataDir, 'l0.img')))['State'], 'clean');
  await server.restart();
  assert.is((await server.call('GET', '/v1/arrays/a1')).json.resyncMaxBytesPerSecond, null, 'lifted in the state file too');
});

test('bad input: 4xx naming the field, nothing created', async () => {
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, level: undefined }), 400, 'EINVAL', 'level');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, level: 'raid5' }), 400, 'EINVAL', 'level');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, legs: ['l0.img', 'l0.img'] }), 400, 'EINVAL', 'legs[1]');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, legs: ['l0.img', 'nope.img'] }), 404, 'ENOENT', 'legs[1]');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, legs: ['l0.img', '../x.img'] }), 400, 'EINVAL', 'legs.1');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, bitmapChunkBytes: 5000 }), 400, 'EINVAL', 'bitmapChunkBytes');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, layout: 'n2' }), 400, 'EINVAL', 'layout');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, spares: 2 }), 400, 'EINVAL', 'spares');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, nodes: 99 }), 400, 'EINVAL', 'nodes');
  expectError(await server.call('POST', '/v1/arrays', { name: 'x', legs: ['l0.img'], assemble: true, level: 'raid1' }), 400, 'EINVAL', 'level');
  expectError(await server.call('POST', '/v1/arrays', { name: 'x', legs: ['l2.img'], assemble: true }), 400, 'EINVAL', 'legs');
  assert.is((await server.call('POST', '/v1/devices', { name: 'small.img', sizeBytes: 4 * MIB })).status, 201);
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, legs: ['l0.img', 'small.img'] }), 400, 'EINVAL', 'legs');
  assert.equal((await server.call('GET', '/v1/arrays')).json.arrays, []);
  assert.is((await server.call('POST', '/v1/arrays', RAID1)).status, 201);
  expectError(await server.call('POST', '/v1/arrays', RAID1), 409, 'EEXIST', 'name');
  expectError(await server.call('POST', '/v1/arrays', { ...RAID1, name: 'a2' }), 409, 'EBUSY', 'legs[0]');
  expectError(await server.call('POST', '/v1/exports', { name: 'raw', device: 'l0.img' }), 409, 'EBUSY', 'device');
});

test.run();
