/**
 * NBD CACHE on the service's export of a clone hydrates the regions covering the range, now: the
 * service (HTTP API and NBD server, in this process on free ports) over a temporary data directory,
 * a seeded source file, a clone with background hydration off (the table's `no_hydration` feature,
 * or hydration_threshold 0), exported over NBD and driven with the in-repo raw client (qemu-io has
 * no cache command). After each CACHE, GET /v1/clones/NAME must count exactly the regions covering
 * the range that were not hydrated yet, and the destination file must hold the source's bytes in
 * exactly the hydrated regions (zeros elsewhere: it starts sparse). Written data survives a CACHE;
 * the hydrated regions survive a restart.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_READ, NBD_CMD_WRITE, NBD_EINVAL, NBD_FLAG_SEND_CACHE } from '../server/nbd/constants.ts';
import { makeCloneDevices, startTestServer, type TestServer } from './support/blockcore-server.ts';
import { RawNbd } from './support/nbd-client.ts';

const KiB = 1024;
const REGION_SECTORS = 128;
const REGION_BYTES = REGION_SECTORS * 512;
const REGIONS = 16;
const CLONE_BYTES = REGIONS * REGION_BYTES;

const cache = suite('serve: NBD CACHE on a clone export hydrates');
let server: TestServer;
let source: Uint8Array;
const clients: RawNbd[] = [];

cache.before.each(async () => {
  server = await startTestServer();
  source = await makeCloneDevices(server, CLONE_BYTES);
});
cache.after.each(async () => {
  for (const client of clients.splice(0)) client.close();
  await server.dispose();
});

async function createExportedClone(table: string): Promise<void> {
  const created = await server.call('POST', '/v1/clones', { name: 'c1', table });
  assert.is(created.status, 201, created.text);
  const exported = await server.call('POST', '/v1/exports', { name: 'e1', device: 'clone:c1' });
  assert.is(exported.status, 201, exported.text);
}

async function connect(exportName = 'e1'): Promise<RawNbd> {
  const address = server.running.nbd;
  if (!('port' in address)) throw new Error('the test server listens for NBD on TCP');
  const client = await RawNbd.connect(address);
  clients.push(client);
  const { sizeBytes, flags } = await client.go(exportName);
  assert.is(sizeBytes, CLONE_BYTES);
  assert.ok((flags & NBD_FLAG_SEND_CACHE) !== 0, 'the export advertises CACHE');
  return client;
}

async function hydratedRegions(): Promise<number> {
  const clone = await server.call('GET', '/v1/clones/c1');
  assert.is(clone.status, 200, clone.text);
  return clone.json.hydratedRegions;
}

async function sendCache(client: RawNbd, offsetBytes: number, lengthBytes: number): Promise<void> {
  client.request(NBD_CMD_CACHE, offsetBytes, lengthBytes);
  const reply = await client.reply();
  assert.is(reply.error, 0, `CACHE ${offsetBytes}+${lengthBytes}: ${reply.message}`);
}

/** The regions [first, last] a byte range touches. */
function regionsOf(offsetBytes: number, lengthBytes: number): number[] {
  const regions: number[] = [];
  for (let r = Math.floor(offsetBytes / REGION_BYTES); r <= Math.floor((offsetBytes + lengthBytes - 1) / REGION_BYTES); r++) regions.push(r);
  return regions;
}

/** The destination file must hold `expected`; reports the first differing region. */
function expectDestination(expected: Uint8Array, what: string): void {
  const actual = new Uint8Array(readFileSync(join(server.dataDir, 'dst.img')));
  assert.is(actual.length, expected.length, `${what}: size`);
  for (let at = 0; at < actual.length; at++) {
    if (actual[at] !== expected[at]) {
      assert.unreachable(`${what}: dst.img byte ${at} (region ${Math.floor(at / REGION_BYTES)}) is ${actual[at]}, expected ${expected[at]}`);
    }
  }
}

/** A model of the destination: zeros, and the source's bytes in every hydrated region. */
class DestinationModel {
  readonly bytes = new Uint8Array(CLONE_BYTES);
  readonly hydrated = new Set<number>();

  /** Marks the regions the range covers; returns how many were newly hydrated. */
  hydrate(offsetBytes: number, lengthBytes: number): number {
    let added = 0;
    for (const region of regionsOf(offsetBytes, lengthBytes)) {
      if (this.hydrated.has(region)) continue;
      this.hydrated.add(region);
      this.bytes.set(source.subarray(region * REGION_BYTES, (region + 1) * REGION_BYTES), region * REGION_BYTES);
      added++;
    }
    return added;
  }
}

cache('CACHE of an unaligned range hydrates exactly the regions covering it; the destination holds the source there and nothing else', async () => {
  await createExportedClone(`clone meta dst.img src.img ${REGION_SECTORS} 1 no_hydration`);
  const client = await connect();
  const model = new DestinationModel();
  assert.is(await hydratedRegions(), 0);
  expectDestination(model.bytes, 'before any CACHE');

  const ranges: Array<[number, number, string]> = [
    [10 * REGION_BYTES, REGION_BYTES, 'one whole region'],
    [3 * REGION_BYTES + 4 * KiB, 2 * REGION_BYTES, 'starts inside region 3, ends inside region 5'],
    [3 * REGION_BYTES + 4 * KiB, 2 * REGION_BYTES, 'the same range again'],
    [4 * REGION_BYTES + 8 * KiB, 4 * KiB, 'inside region 4, hydrated already'],
    [5 * REGION_BYTES, 2 * REGION_BYTES, 'regions 5 (hydrated) and 6 (not)'],
    [15 * REGION_BYTES + REGION_BYTES - 4 * KiB, 4 * KiB, 'the last 4 KiB'],
  ];
  for (const [offsetBytes, lengthBytes, what] of ranges) {
    const before = await hydratedRegions();
    await sendCache(client, offsetBytes, lengthBytes);
    const added = model.hydrate(offsetBytes, lengthBytes);
    assert.is(await hydratedRegions(), before + added, `${what}: hydrated count rose by ${added}`);
    expectDestination(model.bytes, what);
  }
  assert.equal([...model.hydrated].sort((a, b) => a - b), [3, 4, 5, 6, 10, 15]);

  // Reads through the export give the source everywhere (hydrated or not).
  client.request(NBD_CMD_READ, 0, CLONE_BYTES);
  const read = await client.reply();
  assert.is(read.error, 0);
  assert.ok(Buffer.from(read.data!).equals(Buffer.from(source)), 'the export reads as the source');
  assert.is(await hydratedRegions(), model.hydrated.size, 'reads do not hydrate while hydration is off');

  // The service's export offers the clone's map as qemu:dirty-bitmap:hydrated: set where hydrated.
  const mapper = await RawNbd.connect(server.running.nbd);
  clients.push(mapper);
  await mapper.go('e1', { meta: ['qemu:dirty-bitmap:hydrated'] });
  mapper.request(NBD_CMD_BLOCK_STATUS, 0, CLONE_BYTES);
  const status = await mapper.reply();
  assert.is(status.error, 0, status.message);
  const dirty: number[] = [];
  let atBytes = 0;
  for (const extent of status.extents!) {
    for (let region = atBytes / REGION_BYTES; region < (atBytes + extent.lengthBytes) / REGION_BYTES; region++) if (extent.flags === 1) dirty.push(region);
    atBytes += extent.lengthBytes;
  }
  assert.is(atBytes, CLONE_BYTES, 'the map covers the export');
  assert.equal(dirty, [...model.hydrated].sort((a, b) => a - b), 'hydrated regions are the set bits');

  // Committed: the same regions after a restart, and the destination unchanged.
  await server.restart();
  assert.is(await hydratedRegions(), model.hydrated.size, 'after a restart');
  expectDestination(model.bytes, 'after a restart');
});

cache('CACHE never overwrites what a client wrote; a range past the end is refused and hydrates nothing', async () => {
  await createExportedClone(`clone meta dst.img src.img ${REGION_SECTORS} 1 no_hydration`);
  const client = await connect();
  const model = new DestinationModel();
  // A partial write hydrates its region from the source first, then lands.
  const written = new Uint8Array(8 * KiB).fill(0x5a);
  const writeOffsetBytes = 8 * REGION_BYTES + 12 * KiB;
  client.request(NBD_CMD_WRITE, writeOffsetBytes, written.length, { data: written });
  assert.is((await client.reply()).error, 0);
  model.hydrate(writeOffsetBytes, written.length);
  model.bytes.set(written, writeOffsetBytes);
  assert.is(await hydratedRegions(), 1);

  await sendCache(client, 7 * REGION_BYTES, 3 * REGION_BYTES);
  assert.is(model.hydrate(7 * REGION_BYTES, 3 * REGION_BYTES), 2);
  assert.is(await hydratedRegions(), 3);
  expectDestination(model.bytes, 'after CACHE over the written region');

  client.request(NBD_CMD_CACHE, 15 * REGION_BYTES, 2 * REGION_BYTES);
  const refused = await client.reply();
  assert.is(refused.error, NBD_EINVAL);
  assert.match(refused.message ?? '', /passes the export size/);
  assert.is(await hydratedRegions(), 3, 'a refused CACHE hydrates nothing');
  expectDestination(model.bytes, 'after the refused CACHE');
});

cache('hydration enabled but held at hydration_threshold 0: CACHE still hydrates; a message raising the threshold finishes the rest', async () => {
  await createExportedClone(`clone meta dst.img src.img ${REGION_SECTORS} 0 2 hydration_threshold 0`);
  const clone = (await server.call('GET', '/v1/clones/c1')).json;
  assert.is(clone.hydrationEnabled, true);
  assert.is(clone.hydrationThreshold, 0);
  const client = await connect();
  const model = new DestinationModel();
  await sendCache(client, REGION_BYTES + 4 * KiB, 4 * KiB);
  model.hydrate(REGION_BYTES + 4 * KiB, 4 * KiB);
  assert.is(await hydratedRegions(), 1);
  expectDestination(model.bytes, 'after CACHE inside region 1');

  const message = await server.call('POST', '/v1/clones/c1/message', { message: 'hydration_threshold 4' });
  assert.is(message.status, 200, message.text);
  const deadline = Date.now() + 20_000;
  while ((await hydratedRegions()) < REGIONS) {
    if (Date.now() > deadline) assert.unreachable('not hydrated within 20 s');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  expectDestination(source, 'once hydrated');
});

cache.run();
