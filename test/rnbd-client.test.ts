/**
 * RNBD end to end over the real RTRS transport: RnbdClient on an RtrsClientSession, RnbdServer as
 * the RTRS server's handler, both ends from `connectRtrsPair()` (test/support/rtrs-pair.ts):
 *
 *   connectRtrsPair({ handler, pathCount?, reconnectDelayMs? }): Promise<RtrsPair>
 *     a server listening on loopback with `handler` (an RtrsServerHandler) and a connected client
 *     session to it over `pathCount` paths (default 1; 127.0.0.1, 127.0.0.2, ...), default
 *     chunk 128 KiB and queue depth, reconnect delay `reconnectDelayMs` (default 100 ms);
 *   pair.client             the RtrsClientSession;
 *   pair.cutAllPaths()      resets every connection of every path; resolves once the client
 *                           session has emitted 'disconnected' (RTRS then reconnects by itself
 *                           after the delay and emits 'reconnected'; the server may drop the
 *                           session, calling handler.sessionClosed, as the kernel's does when its
 *                           last path goes);
 *   pair.close()            closes the client session and the server.
 * and, of RTRS itself: 'disconnected' is emitted before requests are rejected with ENOTCONN for
 * lost paths (rnbd-client.ts retries those after the re-open instead of failing them).
 *
 * Covered: the device conformance suite on remote devices (rw, and ro over a seeded image), large
 * reads and writes cut into pieces that fit the session, FUA / flush / discard / write-zeroes
 * reaching the server's device as themselves, ro / rw / migration refusals seen by clients, CLOSE
 * releasing on the server, map and unmap 100 times without leaks, and a reconnect: requests issued
 * while every path is down complete after the devices are re-opened, with the right bytes.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice, DiscardOutcome, WriteOptions } from '../runtime/devices/block-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { RnbdClient } from '../runtime/transport/rnbd-client.ts';
import { RnbdServer, type DeviceResolver } from '../runtime/transport/rnbd-server.ts';
import { deviceConformance, type DeviceFactory } from './conformance/device-suite.ts';
import { expectCode } from './support/expect-code.ts';
import { connectRtrsPair, type RtrsPair } from './support/rtrs-pair.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Memory devices served by name, with the calls the server made on each. */
class Catalogue {
  readonly devices = new Map<string, BlockDevice>();
  readonly calls: string[] = [];
  opened = 0;
  released = 0;

  add(name: string, device: BlockDevice): void {
    this.devices.set(name, device);
  }

  readonly resolve: DeviceResolver = async (name) => {
    const device = this.devices.get(name);
    if (device === undefined) throw new BlockError('ENOENT', `no device ${name}`);
    this.opened++;
    return { device: new Recording(device, this.calls), release: async () => { this.released++; } };
  };
}

/** Passes calls through, noting writes (with fua), flushes and discards. */
class Recording extends PassThroughDevice {
  constructor(inner: BlockDevice, private readonly calls: string[]) {
    super(inner);
  }
  read(offsetBytes: number, target: Uint8Array) { this.calls.push(`read ${target.length}`); return this.inner.read(offsetBytes, target); }
  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions) { this.calls.push(options?.fua ? 'write fua' : `write ${data.length}`); return this.inner.write(offsetBytes, data, options); }
  flush() { this.calls.push('flush'); return this.inner.flush(); }
  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> { this.calls.push('discard'); return this.inner.discard(offsetBytes, lengthBytes); }
  close() { return Promise.resolve(); }
}

async function setup(options: { pathCount?: number } = {}) {
  const catalogue = new Catalogue();
  const server = new RnbdServer(catalogue.resolve);
  const pair = await connectRtrsPair({ handler: server, ...options });
  const client = await RnbdClient.connect(pair.client);
  return { catalogue, server, pair, client };
}

// ---- the device contract ----

let shared: Awaited<ReturnType<typeof setup>> | undefined;
let deviceCount = 0;

const remoteFactory: DeviceFactory = async ({ sizeBytes, logicalBlockBytes, readOnly, initial }) => {
  shared ??= await setup();
  const name = `conformance-${++deviceCount}`;
  shared.catalogue.add(name, new MemoryDevice({ sizeBytes, logicalBlockBytes, initial, name }));
  return shared.client.open(name, readOnly ? 'ro' : 'rw');
};

async function closeShared(): Promise<void> {
  if (shared === undefined) return;
  await shared.client.close();
  await shared.pair.close();
  shared = undefined;
}

deviceConformance('RemoteDevice over RTRS', remoteFactory, { after: closeShared });
deviceConformance('RemoteDevice over RTRS', remoteFactory, { readOnly: 'only', after: closeShared });

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    assert.ok(Date.now() < deadline, 'condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

// ---- RNBD over RTRS ----

const e2e = suite('rnbd client over RTRS');
let pair: RtrsPair | undefined;
e2e.after.each(async () => {
  await pair?.close();
  pair = undefined;
});

e2e('large reads and writes are cut into pieces that fit the session, in parallel, and land whole', async () => {
  const seed = seedFromEnv();
  const context = await setup({ pathCount: 2 });
  pair = context.pair;
  const backing = new MemoryDevice({ sizeBytes: 16 * MiB, logicalBlockBytes: 512 });
  context.catalogue.add('big', backing);
  const device = await context.client.open('big', 'rw');
  const pieceBytes = device.pieceBytes();
  assert.ok(pieceBytes > 0 && pieceBytes <= context.pair.client.maxIoBytes, `piece ${pieceBytes}`);
  const prng = new Prng(seed);
  for (let round = 0; round < 8; round++) {
    const lengthBytes = 512 * prng.range(1, (5 * MiB) / 512);
    const offsetBytes = 512 * prng.below((16 * MiB - lengthBytes) / 512 + 1);
    const data = prng.fill(new Uint8Array(lengthBytes));
    context.catalogue.calls.length = 0;
    await device.write(offsetBytes, data);
    assert.is(context.catalogue.calls.length, Math.ceil(lengthBytes / pieceBytes), `pieces of ${lengthBytes} [seed ${seed}]`);
    const onServer = new Uint8Array(lengthBytes);
    await backing.read(offsetBytes, onServer);
    assert.ok(Buffer.from(onServer).equals(Buffer.from(data)), `server holds the bytes [seed ${seed}]`);
    const back = new Uint8Array(lengthBytes);
    await device.read(offsetBytes, back);
    assert.ok(Buffer.from(back).equals(Buffer.from(data)), `read back [seed ${seed}]`);
  }
  await context.client.close();
});

e2e('FUA, flush, discard and write-zeroes reach the server device as themselves', async () => {
  const context = await setup();
  pair = context.pair;
  context.catalogue.add('d', new MemoryDevice({ sizeBytes: 4 * MiB }));
  const device = await context.client.open('d', 'rw');
  assert.ok(device.canDiscard && device.discardZeroes);
  await device.write(0, new Uint8Array(4096).fill(1), { fua: true });
  await device.flush();
  assert.is(await device.discard(0, 4096), 'zeroed');
  await device.writeZeroes(8192, 4096, { noUnmap: true });
  assert.equal(context.catalogue.calls, ['write fua', 'flush', 'discard', 'write 4096']);
  const back = new Uint8Array(4096);
  await device.read(0, back);
  assert.ok(back.every((byte) => byte === 0));
  await context.client.close();
});

e2e('access rules between two sessions; CLOSE releases on the server', async () => {
  const catalogue = new Catalogue();
  const server = new RnbdServer(catalogue.resolve);
  catalogue.add('shared', new MemoryDevice({ sizeBytes: MiB }));
  const first = await connectRtrsPair({ handler: server });
  const second = await connectRtrsPair({ handler: server });
  try {
    const a = await RnbdClient.connect(first.client);
    const b = await RnbdClient.connect(second.client);
    const writer = await a.open('shared', 'rw');
    await expectCode(b.open('shared', 'rw'), 'EIO', /remote errno 1\b/);
    const migrating = await b.open('shared', 'migration');
    await expectCode(a.open('shared', 'ro'), 'EEXIST');
    await writer.close();
    assert.is(server.writerCount('shared'), 1);
    await migrating.close();
    assert.is(server.writerCount('shared'), 0);
    assert.is(catalogue.released, catalogue.opened);
    await expectCode(a.open('../etc/passwd', 'ro'), 'EINVAL');
    await expectCode(a.open('missing', 'ro'), 'ENOENT', /remote errno 2\b/);
    await a.close();
    await b.close();
  } finally {
    await first.close();
    await second.close();
  }
});

e2e('map and unmap 100 times: nothing left open on either side', async () => {
  const context = await setup();
  pair = context.pair;
  context.catalogue.add('m', new MemoryDevice({ sizeBytes: MiB }));
  for (let i = 0; i < 100; i++) {
    const device = await context.client.open('m', i % 2 ? 'rw' : 'ro');
    await device.read(0, new Uint8Array(4096));
    await device.close();
  }
  assert.is(context.client.devices().length, 0);
  assert.equal(context.server.sessions().flatMap((session) => session.devices), []);
  assert.is(context.catalogue.released, 100);
  await context.client.close();
});

e2e('a reconnect re-opens the devices; requests issued while every path is down complete after it', async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const context = await setup();
  pair = context.pair;
  const rwBacking = new MemoryDevice({ sizeBytes: 4 * MiB });
  context.catalogue.add('first', new MemoryDevice({ sizeBytes: MiB }));
  context.catalogue.add('rw', rwBacking);
  context.catalogue.add('ro', new MemoryDevice({ sizeBytes: MiB, initial: prng.fill(new Uint8Array(MiB)) }));
  // A closed device first, so the server's ids for the others are not 0 and 1.
  await (await context.client.open('first', 'ro')).close();
  const rw = await context.client.open('rw', 'rw');
  const ro = await context.client.open('ro', 'ro');
  const roImage = new Uint8Array(MiB);
  await context.catalogue.devices.get('ro')!.read(0, roImage);
  const before = prng.fill(new Uint8Array(256 * KiB));
  await rw.write(0, before);
  await context.pair.cutAllPaths();
  assert.is(context.client.state, 'down');
  const during = prng.fill(new Uint8Array(512 * KiB));
  const rwRead = new Uint8Array(256 * KiB);
  const roRead = new Uint8Array(MiB);
  await Promise.all([rw.write(MiB, during), rw.read(0, rwRead), ro.read(0, roRead), rw.flush()]);
  assert.is(context.client.state, 'up');
  assert.ok(Buffer.from(rwRead).equals(Buffer.from(before)), `rw read during the outage [seed ${seed}]`);
  assert.ok(Buffer.from(roRead).equals(Buffer.from(roImage)), `ro read during the outage [seed ${seed}]`);
  const back = new Uint8Array(512 * KiB);
  await rw.read(MiB, back);
  assert.ok(Buffer.from(back).equals(Buffer.from(during)), `written during the outage [seed ${seed}]`);
  const onServer = new Uint8Array(512 * KiB);
  await rwBacking.read(MiB, onServer);
  assert.ok(Buffer.from(onServer).equals(Buffer.from(during)), `on the server [seed ${seed}]`);
  // Cut again with a large write and read in flight: their pieces lost with the paths are sent again.
  const big = prng.fill(new Uint8Array(3 * MiB));
  const writing = rw.write(0, big);
  const bigRead = new Uint8Array(MiB);
  const reading = ro.read(0, bigRead);
  context.catalogue.calls.length = 0;
  await until(() => context.catalogue.calls.length >= 4);
  await context.pair.cutAllPaths();
  await Promise.all([writing, reading]);
  assert.ok(Buffer.from(bigRead).equals(Buffer.from(roImage)), `ro read across the cut [seed ${seed}]`);
  const bigBack = new Uint8Array(3 * MiB);
  await rwBacking.read(0, bigBack);
  assert.ok(Buffer.from(bigBack).equals(Buffer.from(big)), `write across the cut [seed ${seed}]`);
  await until(() => context.client.state === 'up');
  const listed = context.server.sessions().flatMap((session) => session.devices.map((d) => `${d.name} ${d.access}`)).sort();
  assert.equal(listed, ['ro ro', 'rw rw']);
  await context.client.close();
  assert.equal(context.server.sessions().flatMap((session) => session.devices), []);
});

e2e.run();
