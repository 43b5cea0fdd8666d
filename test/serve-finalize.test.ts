/**
 * Finalize in place (dm's table swap under an open device): a hydrated clone exported over NBD is
 * finalized while clients are connected. An nbdcopy started before the finalize, held mid-copy
 * (its stdout not read, so it blocks with requests outstanding) and released after it, must end
 * with exit 0 and the right bytes; a raw client's writes before, during and after the finalize all
 * succeed on the same connection and land in the destination file, which the export serves from
 * then on; no client is disconnected.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE } from '../server/nbd/constants.ts';
import { Prng } from '../runtime/prng.ts';
import { makeCloneDevices, startTestServer, until } from './support/blockcore-server.ts';
import { RawNbd } from './support/nbd-client.ts';
import { requireTools } from './support/tools.ts';

const MiB = 1 << 20;
const CLONE_BYTES = 16 * MiB;
const BLOCK_BYTES = 64 * 1024;

test('finalize of an exported clone: an nbdcopy across it and a writing client notice nothing; the export serves the destination', async () => {
  requireTools(['nbdcopy']);
  const server = await startTestServer();
  const raw: RawNbd[] = [];
  let copier: ReturnType<typeof spawn> | null = null;
  try {
    const image = await makeCloneDevices(server, CLONE_BYTES);
    const created = await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 128 0 4 hydration_threshold 4096 hydration_batch_size 256' });
    assert.is(created.status, 201, created.text);
    await until(async () => (await server.call('GET', '/v1/clones/c1')).json.hydrationComplete === true, 'hydration');
    assert.is((await server.call('POST', '/v1/exports', { name: 'e1', device: 'clone:c1' })).status, 201);
    const address = server.running.nbd;
    if (!('port' in address)) throw new Error('the test server listens for NBD on TCP');

    const client = await RawNbd.connect(address);
    raw.push(client);
    await client.go('e1');
    const prng = new Prng(7);
    const writes = [0, 1, 2].map((index) => ({ offsetBytes: CLONE_BYTES - (index + 1) * BLOCK_BYTES, data: prng.fill(new Uint8Array(BLOCK_BYTES)) }));
    const write = async (index: number) => {
      client.request(NBD_CMD_WRITE, writes[index]!.offsetBytes, BLOCK_BYTES, { data: writes[index]!.data });
      const reply = await client.reply();
      assert.is(reply.error, 0, `write ${index}: ${reply.message}`);
    };
    await write(0); // before: through the clone

    // nbdcopy to a pipe we do not read: it connects, fills the pipe and blocks mid-copy.
    copier = spawn('nbdcopy', ['--connections=1', '--requests=4', `nbd://${address.host}:${address.port}/e1`, '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
    copier.stdout!.pause();
    let stderr = '';
    copier.stderr!.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => copier!.on('close', resolve));
    await until(async () => (await server.call('GET', '/v1/exports')).json.exports[0].clients.length === 2, 'nbdcopy connected');
    await new Promise((resolve) => setTimeout(resolve, 200)); // let it fill the pipe

    // during: a write sent as the finalize starts waits for the switch and lands in the destination
    const finalized = server.call('POST', '/v1/clones/c1/finalize');
    const during = write(1);
    const done = await finalized;
    assert.is(done.status, 200, done.text);
    await during;
    await write(2); // after: on the destination
    client.request(NBD_CMD_FLUSH, 0, 0);
    assert.is((await client.reply()).error, 0, 'flush after the finalize');

    const [served] = (await server.call('GET', '/v1/exports')).json.exports;
    assert.equal([served.device, served.clients.length], ['dst.img', 2], 'the export serves dst.img; both clients still connected');

    // release nbdcopy: it finishes on the destination
    const chunks: Buffer[] = [];
    copier.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
    copier.stdout!.resume();
    assert.is(await exited, 0, `nbdcopy: ${stderr}`);
    copier = null;
    const copied = new Uint8Array(Buffer.concat(chunks));
    assert.is(copied.length, CLONE_BYTES);
    const written = writes.map((w) => w.offsetBytes);
    for (let at = 0; at < CLONE_BYTES; at += BLOCK_BYTES) {
      const got = copied.subarray(at, at + BLOCK_BYTES);
      const index = written.indexOf(at);
      const ok = sameBytes(got, image.subarray(at, at + BLOCK_BYTES)) || (index >= 0 && sameBytes(got, writes[index]!.data));
      assert.ok(ok, `nbdcopy block at ${at}: neither the source nor what was written there`);
    }

    // every write is in the destination file, and reads on the old connection see it
    const destination = new Uint8Array(readFileSync(join(server.dataDir, 'dst.img')));
    for (const [index, w] of writes.entries()) assert.ok(sameBytes(destination.subarray(w.offsetBytes, w.offsetBytes + BLOCK_BYTES), w.data), `write ${index} in dst.img`);
    assert.ok(sameBytes(destination.subarray(0, CLONE_BYTES - 3 * BLOCK_BYTES), image.subarray(0, CLONE_BYTES - 3 * BLOCK_BYTES)), 'the rest of dst.img is the source');
    client.request(NBD_CMD_READ, writes[0]!.offsetBytes, BLOCK_BYTES);
    const back = await client.reply();
    assert.ok(back.error === 0 && sameBytes(back.data!, writes[0]!.data), 'read back on the connection opened before the finalize');
    assert.is((await server.call('GET', '/v1/clones/c1')).status, 404);
  } finally {
    copier?.kill('SIGKILL');
    for (const client of raw) client.close();
    await server.dispose();
  }
});

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

test.run();
