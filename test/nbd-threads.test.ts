/**
 * NBD threads (server/nbd/threads.ts): connections to file exports served whole by worker threads
 * once GO picks the export. Judged by nbdcopy (in and out, TCP and Unix), by two raw connections
 * on two threads seeing each other's writes (multi-conn), by the counters and the data plane's
 * ETag (a write on a thread counts as any other), by a thread's death (its connections close; the
 * next stays on the server's thread) and by the service (--nbd-threads). On Bun and Deno the
 * runtime cannot move sockets: the same tests run with every connection on the server's thread.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter } from '../runtime/adapter/index.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { Prng } from '../runtime/prng.ts';
import { WriteGeneration } from '../server/data-plane/write-generation.ts';
import { MeteredDevice, newIoCounters } from '../server/metered-device.ts';
import { NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE } from '../server/nbd/constants.ts';
import { addCounts } from '../server/nbd/threads.ts';
import type { NbdExport } from '../server/nbd/types.ts';
import { startTestServer, until as untilAnswered } from './support/blockcore-server.ts';
import { RawNbd } from './support/nbd-client.ts';
import { serve, until, type Served } from './support/nbd-fixtures.ts';
import { killRunningTools, mustRun, requireTools } from './support/tools.ts';

const MiB = 1024 * 1024;
const test = suite('nbd threads');
const canMove = (await loadAdapter()).threadSockets !== null;

let tempDir = '';
let served: Served | null = null;
let device: FileDevice | null = null;
const clients: RawNbd[] = [];

test.before(() => requireTools(['nbdcopy']));
test.before.each(() => {
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-nbd-threads-'));
});
test.after.each(async () => {
  killRunningTools();
  for (const client of clients.splice(0)) client.close();
  await served?.stop();
  served = null;
  await device?.close();
  device = null;
  fs.rmSync(tempDir, { recursive: true, force: true });
});

/** A writable file export that threads may take, with its counters and version. */
async function fileExport(sizeBytes: number) {
  const file = path.join(tempDir, 'disk.img');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, sizeBytes);
  device = await FileDevice.open(file);
  const io = newIoCounters();
  const generation = new WriteGeneration('test');
  // As the service's export registry makes it: a counting view on this thread, the file for a thread.
  const exported: NbdExport = {
    name: 'disk', device: new MeteredDevice(device, io, { generation: () => generation }), readOnly: false,
    threadable: { path: file, readOnly: false, logicalBlockBytes: 512, writeCounts: generation.memory as SharedArrayBuffer, addIo: (delta) => addCounts(io, delta) },
  };
  return { file, exported, io, generation };
}

async function connect(address: { host: string; port: number } | { path: string }): Promise<RawNbd> {
  const client = await RawNbd.connect(address);
  clients.push(client);
  await client.greet();
  await client.go('disk', { structured: true });
  return client;
}

test('nbdcopy writes and reads a file export over TCP and Unix; threads serve it; counters and version count every byte', async () => {
  const sizeBytes = 8 * MiB;
  const { file, exported, io, generation } = await fileExport(sizeBytes);
  served = await serve([exported], { threads: 2 });
  assert.is(served.server.threads !== null, canMove, 'threads where the runtime can move sockets');
  const image = path.join(tempDir, 'image.img');
  fs.writeFileSync(image, new Prng(5).fill(new Uint8Array(sizeBytes)));
  await mustRun('nbdcopy', [image, `nbd://127.0.0.1:${served.tcp.port}/disk`]);
  assert.ok(fs.readFileSync(file).equals(fs.readFileSync(image)), 'written through the export');
  const back = path.join(tempDir, 'back.img');
  await mustRun('nbdcopy', [`nbd+unix:///disk?socket=${served.unix.path}`, back]);
  assert.ok(fs.readFileSync(back).equals(fs.readFileSync(image)), 'read back over Unix');

  await until(() => served!.server.connections().length === 0, 'both copies disconnected');
  assert.is(served.server.counters.bytesWritten, sizeBytes);
  assert.is(served.server.counters.bytesRead, sizeBytes);
  assert.is(io.bytesWritten, sizeBytes, "the export's counters");
  assert.is(io.bytesRead, sizeBytes);
  assert.ok(io.writes > 0 && io.reads > 0);
  assert.ok((generation.writeMark() ?? 0) >= 2 * io.writes, 'each write counted in the version, begun and ended');
});

test('multi-conn: what one connection wrote, another reads at once; each is on its own thread', async () => {
  const { exported } = await fileExport(MiB);
  served = await serve([exported], { threads: 2 });
  const a = await connect(served.tcp);
  const b = await connect(served.tcp);
  if (canMove) await until(() => served!.server.threadedConnections === 2, 'both connections on threads');
  for (let round = 0; round < 4; round++) {
    const data = new Prng(round).fill(new Uint8Array(64 * 1024));
    const [writer, reader] = round % 2 === 0 ? [a, b] : [b, a];
    writer.request(NBD_CMD_WRITE, round * data.length, data.length, { data });
    assert.is((await writer.reply()).error, 0);
    writer.request(NBD_CMD_FLUSH, 0, 0);
    assert.is((await writer.reply()).error, 0);
    reader.request(NBD_CMD_READ, round * data.length, data.length);
    const read = await reader.reply();
    assert.is(read.error, 0);
    assert.equal(read.data, data, `round ${round}: the other connection reads it`);
  }
});

test('a thread that dies closes its connections; the next connection stays on the server\'s thread and works', async () => {
  const { exported } = await fileExport(MiB);
  served = await serve([exported], { threads: 1 });
  if (!canMove) {
    assert.is(served.server.threads, null);
    return;
  }
  const a = await connect(served.tcp);
  await until(() => served!.server.threadedConnections === 1, 'on the thread');
  await served.server.threads!.stopThread(0);
  await until(() => served!.events.some((event) => event.type === 'disconnect'), 'its disconnect');
  await a.read(1, 2000).then(() => assert.unreachable('the socket should be closed'), () => {});
  const b = await connect(served.tcp);
  assert.is(served.server.threadedConnections, 0);
  b.request(NBD_CMD_READ, 0, 4096);
  assert.is((await b.reply()).error, 0);
});

test('the service with --nbd-threads 2: a write on a thread changes the ETag; the export cannot be deleted while connected; counters come back', async () => {
  const server = await startTestServer({ settings: { '--nbd-threads': '2' } });
  try {
    fs.writeFileSync(path.join(server.dataDir, 'disk.img'), new Uint8Array(MiB));
    assert.is((await server.call('POST', '/v1/exports', { name: 'disk', device: 'disk.img' })).status, 201);
    const dataUrl = `${server.url}/v1/devices/disk.img/data`;
    const before = (await fetch(dataUrl, { method: 'HEAD' })).headers.get('etag');
    assert.ok(before !== null);
    const client = await connect(server.running.nbd as { host: string; port: number });
    const data = new Prng(9).fill(new Uint8Array(4096));
    client.request(NBD_CMD_WRITE, 8192, data.length, { data });
    assert.is((await client.reply()).error, 0);
    const after = (await fetch(dataUrl, { method: 'HEAD' })).headers.get('etag');
    assert.ok(after !== null && after !== before, `the version moved: ${before} -> ${after}`);
    const refused = await server.call('DELETE', '/v1/exports/disk');
    assert.is(refused.status, 409, refused.text);
    client.close();
    const exportInfo = async () => ((await server.call('GET', '/v1/exports')).json as { exports: Array<{ clients: unknown[]; io: { bytesWritten: number } }> }).exports[0]!;
    await untilAnswered(async () => (await exportInfo()).clients.length === 0, 'the client gone');
    const info = await exportInfo();
    assert.is(info.io.bytesWritten, data.length);
    const range = await fetch(dataUrl, { headers: { range: 'bytes=8192-12287' } });
    assert.equal(new Uint8Array(await range.arrayBuffer()), data);
  } finally {
    await server.dispose();
  }
});

test.run();
