/**
 * The NBD server over real sockets, driven by the raw test client (test/support/nbd-client.ts):
 * handshake refusals, option replies, every command with simple and structured replies, the
 * request check's errors on the wire, payload skipping, out-of-order replies, flow control, DISC,
 * close, connection limits, events and counters. Real-tool interoperability is nbd-clients.test.ts.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CloneDevice } from '../runtime/clone/clone-device.ts';
import { FaultDevice } from '../runtime/devices/fault-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { Prng } from '../runtime/prng.ts';
import {
  NBD_CMD_BLOCK_STATUS, NBD_CMD_CACHE, NBD_CMD_DISC, NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLUSH,
  NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_ENOTSUP, NBD_EPERM, NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES, NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_READ_ONLY, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_LIST,
  NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NBD_REP_ERR_INVALID, NBD_REP_ERR_TOO_BIG, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP,
  NBD_REP_SERVER, NBD_STATE_HOLE, NBD_STATE_ZERO,
} from '../server/nbd/constants.ts';
import { encodeGoRequest } from '../server/nbd/option-codec.ts';
import { encodeRequest } from '../server/nbd/request-codec.ts';
import type { NbdExport } from '../server/nbd/types.ts';
import { readU16, readU64 } from '../server/nbd/wire.ts';
import { RawNbd } from './support/nbd-client.ts';
import { RecordingDevice, serve, until, type Served } from './support/nbd-fixtures.ts';

const MiB = 1024 * 1024;
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

function exportsFor(): { disk: RecordingDevice; ro: MemoryDevice; list: NbdExport[] } {
  const disk = new RecordingDevice(new MemoryDevice({ sizeBytes: 4 * MiB, name: 'disk' }));
  const ro = new MemoryDevice({ sizeBytes: MiB, initial: new Uint8Array(4096).fill(0x5a), name: 'ro' });
  const big = new MemoryDevice({ sizeBytes: 8 * 1024 * MiB, name: 'big' });
  return {
    disk, ro,
    list: [{ name: 'disk', device: disk, readOnly: false, description: 'scratch disk' }, { name: 'ro', device: ro, readOnly: true }, { name: 'big', device: big, readOnly: false }],
  };
}

let served: Served | undefined;
const clients: RawNbd[] = [];
async function start(list: NbdExport[], options = {}): Promise<Served> {
  served = await serve(list, options);
  return served;
}
async function client(): Promise<RawNbd> {
  const nbd = await RawNbd.connect(served!.tcp);
  clients.push(nbd);
  return nbd;
}
async function cleanup(): Promise<void> {
  for (const nbd of clients.splice(0)) nbd.close();
  await served?.stop();
  served = undefined;
}

const handshake = suite('nbd handshake over a socket');
handshake.after.each(cleanup);

handshake('greeting is fixed newstyle; plain newstyle, oldstyle-expecting and unknown-flag clients are cut off', async () => {
  const { list } = exportsFor();
  const s = await start(list);
  const plain = await client();
  const greeting = await plain.greet(0);
  assert.is(hex(greeting), '4e42444d41474943' + '49484156454f5054' + '0003', 'never the oldstyle cliserv magic 0x00420281861253');
  assert.ok(await plain.waitClosed(), 'a client without FIXED_NEWSTYLE is disconnected');
  const odd = await client();
  await odd.greet(NBD_FLAG_C_FIXED_NEWSTYLE | 0x100);
  assert.ok(await odd.waitClosed(), 'unknown client flags are disconnected');
  const messages = s.events.filter((event) => event.type === 'protocol-error').map((event) => (event as { message: string }).message);
  assert.match(messages.join('\n'), /does not speak fixed newstyle/);
  assert.match(messages.join('\n'), /unknown client flags 0x101/);
  assert.is(s.server.counters.errors, 2);
});

handshake('options: LIST, INFO errors, unknown, too big, all on one connection that keeps going', async () => {
  const { list } = exportsFor();
  await start(list);
  const nbd = await client();
  await nbd.greet();
  const listed = await nbd.option(NBD_OPT_LIST);
  assert.equal(listed.map((reply) => reply.type), [NBD_REP_SERVER, NBD_REP_SERVER, NBD_REP_SERVER, NBD_REP_ACK]);
  assert.is(new TextDecoder().decode(listed[0]!.data.subarray(4)), 'diskscratch disk');
  assert.is((await nbd.option(NBD_OPT_LIST, new Uint8Array(2)))[0]!.type, NBD_REP_ERR_INVALID);
  assert.is((await nbd.option(NBD_OPT_GO, encodeGoRequest({ name: 'missing', infoTypes: [] })))[0]!.type, NBD_REP_ERR_UNKNOWN);
  assert.is((await nbd.option(NBD_OPT_GO, new Uint8Array([0, 0, 0, 9, 1])))[0]!.type, NBD_REP_ERR_INVALID);
  assert.is((await nbd.option(0x4242, new Uint8Array(7)))[0]!.type, NBD_REP_ERR_UNSUP);
  assert.is((await nbd.option(NBD_OPT_GO, new Uint8Array(128 * 1024)))[0]!.type, NBD_REP_ERR_TOO_BIG, 'too big: the data is skipped');
  const info = await nbd.go('disk');
  assert.is(info.sizeBytes, 4 * MiB);
  assert.is(info.minimumBlockBytes, 512);
  assert.ok(info.flags & NBD_FLAG_CAN_MULTI_CONN);
});

handshake('ABORT is acknowledged, then the server closes; a bad option magic closes; EXPORT_NAME of nothing closes', async () => {
  const { list } = exportsFor();
  const s = await start(list);
  const aborting = await client();
  await aborting.greet();
  assert.is((await aborting.option(NBD_OPT_ABORT))[0]!.type, NBD_REP_ACK);
  assert.ok(await aborting.waitClosed());
  const garbled = await client();
  await garbled.greet();
  garbled.send(new Uint8Array(16).fill(0x49));
  assert.ok(await garbled.waitClosed());
  const nameless = await client();
  await nameless.greet();
  nameless.sendOption(NBD_OPT_EXPORT_NAME, new TextEncoder().encode('missing'));
  assert.ok(await nameless.waitClosed());
  assert.is(s.events.filter((event) => event.type === 'protocol-error').length, 2, 'ABORT is no error');
  assert.is(s.events.filter((event) => event.type === 'connect').length, 0);
});

handshake('EXPORT_NAME enters transmission with simple replies (NO_ZEROES honoured, 124 zeros otherwise)', async () => {
  const { list, ro } = exportsFor();
  await start(list);
  for (const noZeroes of [true, false]) {
    const nbd = await client();
    await nbd.greet(NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0));
    nbd.sendOption(NBD_OPT_EXPORT_NAME, new TextEncoder().encode('ro'));
    const reply = await nbd.read(10 + (noZeroes ? 0 : 124));
    assert.is(readU64(reply, 0), MiB);
    assert.ok(readU16(reply, 8) & NBD_FLAG_READ_ONLY);
    nbd.request(NBD_CMD_READ, 0, 8192);
    const read = await nbd.reply();
    const expected = new Uint8Array(8192);
    await ro.read(0, expected);
    assert.ok(read.error === 0 && same(read.data!, expected));
    nbd.close();
  }
});

const commands = suite('nbd transmission');
commands.after.each(cleanup);

for (const structured of [false, true]) {
  commands(`every command (${structured ? 'structured' : 'simple'} replies)`, async () => {
    const { disk, list } = exportsFor();
    const s = await start(list);
    const nbd = await client();
    await nbd.go('disk', { structured });
    const data = new Prng(1).fill(new Uint8Array(128 * 1024));
    nbd.request(NBD_CMD_WRITE, 64 * 1024, data.length, { data });
    assert.is((await nbd.reply()).error, 0);
    nbd.request(NBD_CMD_READ, 64 * 1024, data.length);
    assert.ok(same((await nbd.reply()).data!, data));
    nbd.request(NBD_CMD_WRITE, 0, 4096, { data: data.subarray(0, 4096), flags: NBD_CMD_FLAG_FUA });
    assert.is((await nbd.reply()).error, 0);
    assert.equal(disk.calls.at(-1), { op: 'write', offsetBytes: 0, lengthBytes: 4096, fua: true });
    nbd.request(NBD_CMD_FLUSH, 0, 0);
    assert.is((await nbd.reply()).error, 0);
    nbd.request(NBD_CMD_TRIM, 64 * 1024, 64 * 1024);
    assert.is((await nbd.reply()).error, 0);
    nbd.request(NBD_CMD_WRITE_ZEROES, 128 * 1024, 64 * 1024);
    assert.is((await nbd.reply()).error, 0);
    nbd.request(NBD_CMD_CACHE, 0, MiB);
    assert.is((await nbd.reply()).error, 0);
    nbd.request(NBD_CMD_READ, 0, 0);
    const empty = await nbd.reply();
    assert.ok(empty.error === 0 && empty.data!.length === 0);
    nbd.request(NBD_CMD_READ, 64 * 1024, 128 * 1024);
    assert.ok(same((await nbd.reply()).data!, new Uint8Array(128 * 1024)), 'trimmed and zeroed ranges read zeros');
    if (structured) {
      nbd.request(NBD_CMD_BLOCK_STATUS, 0, 4 * MiB);
      const status = await nbd.reply();
      assert.equal(status.extents, [{ lengthBytes: 64 * 1024, flags: 0 }, { lengthBytes: 4 * MiB - 64 * 1024, flags: NBD_STATE_HOLE | NBD_STATE_ZERO }]);
      nbd.request(NBD_CMD_BLOCK_STATUS, 0, 4 * MiB, { flags: NBD_CMD_FLAG_REQ_ONE });
      assert.equal((await nbd.reply()).extents, [{ lengthBytes: 64 * 1024, flags: 0 }]);
      nbd.request(NBD_CMD_BLOCK_STATUS, 512 * 1024, 4096, { flags: NBD_CMD_FLAG_REQ_ONE });
      assert.equal((await nbd.reply()).extents, [{ lengthBytes: 4096, flags: 3 }], 'never longer than asked');
    }
    nbd.request(NBD_CMD_DISC, 0, 0);
    assert.ok(await nbd.waitClosed());
    await until(() => s.events.some((event) => event.type === 'disconnect'), 'disconnect event');
    assert.equal(s.events.map((event) => event.type), ['connect', 'disconnect']);
    assert.is(s.server.counters.bytesWritten, data.length + 4096);
    assert.is(s.server.counters.bytesRead, data.length + 128 * 1024);
    assert.is(s.server.counters.errors, 0);
  });
}

commands('refusals on the wire: EPERM, ENOSPC, EINVAL; a refused WRITE payload is skipped and the stream stays in step', async () => {
  const { list } = exportsFor();
  const s = await start(list);
  const ro = await client();
  await ro.go('ro', { structured: true });
  const payload = new Uint8Array(64 * 1024).fill(1);
  ro.request(NBD_CMD_WRITE, 0, payload.length, { data: payload });
  const refused = await ro.reply();
  assert.is(refused.error, NBD_EPERM);
  assert.match(refused.message!, /WRITE on a read-only export/);
  ro.request(NBD_CMD_TRIM, 0, 4096);
  assert.is((await ro.reply()).error, NBD_EPERM);
  ro.request(NBD_CMD_READ, 0, 4096);
  assert.ok(same((await ro.reply()).data!, new Uint8Array(4096).fill(0x5a)), 'the stream is still in step after a skipped payload');

  const rw = await client();
  await rw.go('disk', { structured: false });
  rw.request(NBD_CMD_WRITE, 4 * MiB - 512, 1024, { data: new Uint8Array(1024) });
  assert.is((await rw.reply()).error, NBD_ENOSPC);
  rw.request(NBD_CMD_READ, 4 * MiB, 512);
  assert.is((await rw.reply()).error, NBD_EINVAL, 'a simple read error carries no payload');
  rw.request(NBD_CMD_READ, 100, 512);
  assert.is((await rw.reply()).error, NBD_EINVAL);
  rw.request(NBD_CMD_WRITE, 0, 1000, { data: new Uint8Array(1000) });
  assert.is((await rw.reply()).error, NBD_EINVAL);
  rw.request(NBD_CMD_READ, 0, 512, { flags: NBD_CMD_FLAG_NO_HOLE });
  assert.is((await rw.reply()).error, NBD_EINVAL);
  rw.request(11, 0, 0);
  assert.is((await rw.reply()).error, NBD_EINVAL);
  rw.request(NBD_CMD_BLOCK_STATUS, 0, 4096);
  assert.is((await rw.reply()).error, NBD_EINVAL, 'no base:allocation negotiated');
  const oversize = (32 * MiB) + 512;
  rw.request(NBD_CMD_WRITE, 0, oversize, { data: new Uint8Array(oversize) });
  assert.is((await rw.reply()).error, NBD_ENOSPC, 'past the end of a 4 MiB export: the range check comes first');
  rw.request(NBD_CMD_READ, 0, 512);
  assert.is((await rw.reply()).error, 0, 'still in step after skipping 32 MiB');
  const big = await client();
  await big.go('big', { structured: true });
  big.request(NBD_CMD_WRITE, 0, oversize, { data: new Uint8Array(oversize).fill(3) });
  const tooLong = await big.reply();
  assert.is(tooLong.error, NBD_EINVAL);
  assert.match(tooLong.message!, /exceeds the maximum block size 33554432/);
  big.request(NBD_CMD_READ, 0, 512);
  assert.ok(same((await big.reply()).data!, new Uint8Array(512)), 'nothing of the refused write landed');
  assert.ok(s.server.counters.errors >= 10);
  assert.is(s.events.filter((event) => event.type === 'protocol-error').length, 0);
});

commands('frames cut into odd pieces (headers and payloads straddling socket reads) parse the same', async () => {
  const { disk, list } = exportsFor();
  await start(list);
  const nbd = await client();
  await nbd.go('disk', { structured: false });
  nbd.socket.setNoDelay(true);
  const prng = new Prng(9);
  const frames: Uint8Array[] = [];
  const expected = new Uint8Array(256 * 1024);
  for (let i = 0; i < 24; i++) {
    const offsetBytes = prng.below(expected.length / 512 - 16) * 512;
    const data = prng.fill(new Uint8Array(prng.range(1, 16) * 512));
    expected.set(data, offsetBytes);
    frames.push(encodeRequest({ flags: 0, type: NBD_CMD_WRITE, handleHigh: 0, handleLow: 1000 + i, offsetBytes, lengthBytes: data.length }, data));
  }
  const stream = Buffer.concat(frames);
  for (let at = 0; at < stream.length; ) {
    const piece = Math.min(stream.length - at, prng.range(1, 700));
    nbd.send(stream.subarray(at, at + piece));
    at += piece;
    if (prng.chance(0.3)) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const replies = new Set<number>();
  for (let i = 0; i < 24; i++) {
    const header = await nbd.read(16);
    assert.is(Buffer.from(header).readUInt32BE(4), 0, 'no error');
    replies.add(Buffer.from(header).readUInt32BE(12));
  }
  assert.is(replies.size, 24);
  const back = new Uint8Array(expected.length);
  await disk.read(0, back);
  assert.ok(same(back, expected), 'every write landed where it should');
});

commands('a WRITE too large to skip: EINVAL, then that connection (only) is closed', async () => {
  const { list } = exportsFor();
  const s = await start(list);
  const other = await client();
  await other.go('disk');
  const nbd = await client();
  await nbd.go('big');
  nbd.request(NBD_CMD_WRITE, 0, 0xfffffe00);
  const reply = await nbd.reply();
  assert.is(reply.error, NBD_EINVAL);
  assert.ok(await nbd.waitClosed());
  assert.match(JSON.stringify(s.events), /too large to skip/);
  other.request(NBD_CMD_READ, 0, 512);
  assert.is((await other.reply()).error, 0);
});

commands('a bad request magic closes that connection only', async () => {
  const { list } = exportsFor();
  const s = await start(list);
  const good = await client();
  await good.go('disk');
  const bad = await client();
  await bad.go('disk');
  const frame = encodeRequest({ flags: 0, type: NBD_CMD_READ, handleHigh: 0, handleLow: 1, offsetBytes: 0, lengthBytes: 512 });
  frame[3] ^= 0xff;
  bad.send(frame);
  assert.ok(await bad.waitClosed());
  good.request(NBD_CMD_READ, 0, 512);
  assert.is((await good.reply()).error, 0);
  assert.match(JSON.stringify(s.events), /request magic is 0x256095ec/);
  await until(() => s.server.connections().length === 1, 'one connection left');
});

commands('replies leave in completion order: a slow read does not hold up a fast one', async () => {
  const slow = new FaultDevice(new MemoryDevice({ sizeBytes: MiB }), { seed: 1, rules: [{ op: 'read', nth: 1, action: 'delay', delayMs: 150 }] });
  await start([{ name: 'slow', device: slow, readOnly: false }]);
  const nbd = await client();
  await nbd.go('slow');
  const first = nbd.request(NBD_CMD_READ, 0, 4096);
  const second = nbd.request(NBD_CMD_READ, 4096, 4096);
  assert.is((await nbd.reply()).handle, second);
  assert.is((await nbd.reply()).handle, first);
});

commands('flow control: at most 64 requests in flight per connection, the rest wait in the socket', async () => {
  const { disk, list } = exportsFor();
  await start(list);
  const nbd = await client();
  await nbd.go('disk');
  disk.hold = true;
  for (let i = 0; i < 200; i++) nbd.request(NBD_CMD_READ, (i % 64) * 4096, 4096);
  await until(() => disk.readsInFlight === 64, '64 reads in flight');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.is(disk.maxReadsInFlight, 64, 'never more than 64');
  disk.release();
  const handles = new Set<number>();
  for (let i = 0; i < 200; i++) {
    disk.release(); // later reads are held too while `hold` was set; release keeps letting them go
    handles.add((await nbd.reply()).handle);
  }
  assert.is(handles.size, 200);
  assert.is(disk.maxReadsInFlight, 64);
});

commands('WRITE_ZEROES: punches when holes are allowed, writes zeros with NO_HOLE or when discard is only a hint; FUA flushes', async () => {
  const punching = new RecordingDevice(new MemoryDevice({ sizeBytes: 8 * MiB }));
  const hinting = new RecordingDevice(new MemoryDevice({ sizeBytes: 8 * MiB }), { discardZeroes: false });
  await start([{ name: 'punching', device: punching, readOnly: false }, { name: 'hinting', device: hinting, readOnly: false }]);
  const a = await client();
  await a.go('punching');
  await punching.write(0, new Uint8Array(3 * MiB).fill(1));
  a.request(NBD_CMD_WRITE_ZEROES, 0, MiB);
  assert.is((await a.reply()).error, 0);
  assert.equal(punching.calls.at(-1), { op: 'discard', offsetBytes: 0, lengthBytes: MiB });
  a.request(NBD_CMD_WRITE_ZEROES, MiB, 2.5 * MiB, { flags: NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA });
  assert.is((await a.reply()).error, 0);
  assert.equal(punching.calls.slice(-4).map((call) => call.op), ['write', 'write', 'write', 'flush']);
  assert.equal(punching.calls.slice(-4, -1).map((call) => call.lengthBytes), [MiB, MiB, MiB / 2]);
  const back = new Uint8Array(4 * MiB);
  await punching.read(0, back);
  assert.ok(back.subarray(0, 3.5 * MiB).every((byte) => byte === 0));
  const b = await client();
  await b.go('hinting');
  b.request(NBD_CMD_WRITE_ZEROES, 0, MiB);
  assert.is((await b.reply()).error, 0);
  assert.equal(hinting.calls.map((call) => call.op), ['write']);

  // FAST_ZERO: done by the discard when it can be; refused with ENOTSUP, nothing touched, when
  // only writing zeros would do (NO_HOLE, or a discard that is only a hint).
  await punching.write(0, new Uint8Array(MiB).fill(2));
  a.request(NBD_CMD_WRITE_ZEROES, 0, MiB, { flags: NBD_CMD_FLAG_FAST_ZERO });
  assert.is((await a.reply()).error, 0);
  assert.equal(punching.calls.at(-1), { op: 'discard', offsetBytes: 0, lengthBytes: MiB });
  await punching.write(0, new Uint8Array(MiB).fill(3));
  const callsBefore = punching.calls.length;
  a.request(NBD_CMD_WRITE_ZEROES, 0, MiB, { flags: NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE });
  const refused = await a.reply();
  assert.is(refused.error, NBD_ENOTSUP);
  assert.match(refused.message ?? '', /FAST_ZERO/);
  assert.is(punching.calls.length, callsBefore, 'a refused FAST_ZERO touches nothing');
  const kept = new Uint8Array(MiB);
  await punching.read(0, kept);
  assert.ok(kept.every((byte) => byte === 3));
  b.request(NBD_CMD_WRITE_ZEROES, 0, MiB, { flags: NBD_CMD_FLAG_FAST_ZERO });
  assert.is((await b.reply()).error, NBD_ENOTSUP);
  assert.equal(hinting.calls.map((call) => call.op), ['write']);
});

commands('CACHE hydrates a clone range at once; device errors come back as EIO with the message', async () => {
  const regionBytes = 64 * 1024;
  const image = new Prng(3).fill(new Uint8Array(16 * regionBytes));
  const clone = await CloneDevice.open({
    metadata: new MemoryDevice({ sizeBytes: 64 * 1024 }),
    destination: new MemoryDevice({ sizeBytes: image.length }),
    source: new MemoryDevice({ sizeBytes: image.length, initial: image, readOnly: true }),
    regionSectors: regionBytes / 512,
    features: ['no_hydration'],
  });
  const failing = new FaultDevice(new MemoryDevice({ sizeBytes: MiB }), { seed: 1, rules: [{ op: 'read', probability: 1, action: 'fail' }] });
  await start([{ name: 'clone', device: clone, readOnly: false }, { name: 'failing', device: failing, readOnly: false }]);
  const nbd = await client();
  await nbd.go('clone');
  nbd.request(NBD_CMD_CACHE, 2 * regionBytes, 3 * regionBytes);
  assert.is((await nbd.reply()).error, 0);
  assert.is(clone.hydratedRegions, 3);
  const f = await client();
  await f.go('failing');
  f.request(NBD_CMD_READ, 0, 4096);
  const failed = await f.reply();
  assert.is(failed.error, NBD_EIO);
  assert.match(failed.message!, /injected read failure/);
  await clone.close();
});

const lifecycle = suite('nbd server lifecycle');
lifecycle.after.each(cleanup);

lifecycle('DISC answers what is in flight first; connections() and events follow the connection', async () => {
  const { disk, list } = exportsFor();
  const s = await start(list);
  const nbd = await client();
  await nbd.go('disk');
  assert.equal(s.server.connections().map((c) => c.exportName), ['disk']);
  assert.ok(s.server.connections()[0]!.connectedAtMs <= Date.now());
  disk.hold = true;
  nbd.request(NBD_CMD_READ, 0, 4096);
  nbd.request(NBD_CMD_DISC, 0, 0);
  await until(() => disk.readsInFlight === 1, 'the read in flight');
  setTimeout(() => disk.release(), 50);
  assert.is((await nbd.reply()).error, 0, 'the read is answered before the close');
  assert.ok(await nbd.waitClosed());
  await until(() => s.server.connections().length === 0, 'no connections');
  assert.equal(s.events.map((event) => event.type), ['connect', 'disconnect']);
});

lifecycle('a client that half-closes after its requests still gets the replies', async () => {
  const { disk, list } = exportsFor();
  await start(list);
  const nbd = await client();
  await nbd.go('disk');
  disk.hold = true;
  nbd.request(NBD_CMD_READ, 0, 4096);
  nbd.request(NBD_CMD_READ, 4096, 4096);
  await until(() => disk.readsInFlight === 2, 'two reads in flight');
  nbd.socket.end();
  setTimeout(() => disk.release(), 50);
  assert.is((await nbd.reply()).error, 0);
  assert.is((await nbd.reply()).error, 0);
  assert.ok(await nbd.waitClosed());
});

lifecycle('close() ends connections and stops listening, but leaves devices open', async () => {
  const { disk, list } = exportsFor();
  const s = await start(list);
  const nbd = await client();
  await nbd.go('disk');
  const idle = await client(); // still in the handshake
  await idle.read(18);
  await s.server.close();
  assert.ok(await nbd.waitClosed());
  assert.ok(await idle.waitClosed());
  await disk.read(0, new Uint8Array(512)); // still open
  await RawNbd.connect(s.tcp).then(
    (late) => {
      late.close();
      assert.unreachable('connected after close');
    },
    () => {},
  );
  await s.server.listen({ host: '127.0.0.1', port: 0 }).then(
    () => assert.unreachable('listen after close'),
    (error: Error) => assert.match(error.message, /closed/),
  );
});

lifecycle('maxConnections: extra sockets are closed at once and reported', async () => {
  const { list } = exportsFor();
  const s = await start(list, { maxConnections: 2 });
  const a = await client();
  const b = await client();
  await a.read(18);
  await b.read(18);
  const c = await client();
  assert.ok(await c.waitClosed());
  assert.match(JSON.stringify(s.events), /too many connections \(maxConnections 2\)/);
  assert.is(s.server.counters.connections, 2);
});

lifecycle('Unix sockets serve the same exports', async () => {
  const { list } = exportsFor();
  const s = await start(list);
  const nbd = await RawNbd.connect(s.unix);
  clients.push(nbd);
  const info = await nbd.go('ro');
  assert.ok(info.flags & NBD_FLAG_READ_ONLY);
  nbd.request(NBD_CMD_READ, 0, 4096);
  assert.ok(same((await nbd.reply()).data!, new Uint8Array(4096).fill(0x5a)));
  assert.match(s.server.connections()[0]!.remote, /^unix:/);
});

handshake.run();
commands.run();
lifecycle.run();
