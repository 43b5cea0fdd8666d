/**
 * Keys as the security boundary (issue 9, "Stale key, foreign chunk, wrong session key, no key:
 * refused"), over real sockets to an RtrsServer on 127.0.0.1 / 127.0.0.2:
 * - chunk keys: a request naming a chunk with the key always_invalidate replaced is answered
 *   EKEYREJECTED; one naming another session's chunk (or another chunk's address) EFAULT; each
 *   with one log line, nothing applied, and the path goes on serving;
 * - the pre-shared key: a client with the wrong key or none is refused (EKEYREJECTED, logged), a
 *   client with the key refuses a server that cannot prove it holds the key too, and the server
 *   will not listen off loopback without a key.
 * The requests the real client never sends are sent by a hand-driven client (support/rtrs-raw.ts).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ERRNO, RemoteError } from '../runtime/transport/rtrs-api.ts';
import { RtrsClient } from '../runtime/transport/rtrs-client.ts';
import { encodeHello, FRAME_OP, newNonce, serverProof } from '../runtime/transport/rtrs-frame.ts';
import { RtrsLink } from '../runtime/transport/rtrs-link.ts';
import { decodeConnReq, encodeConnRsp, RTRS_MAGIC, RTRS_VERSION } from '../runtime/transport/rtrs-messages.ts';
import { RtrsServer } from '../runtime/transport/rtrs-server.ts';
import { BlockHandler, blockHeader, kernelCrc32c, OP_READ, OP_WRITE, readBlock, rtrsPair, writeBlock } from './support/rtrs-pair.ts';
import { RawRtrs, splitAddress, until } from './support/rtrs-raw.ts';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i);
const OTHER_KEY = Uint8Array.from({ length: 32 }, (_, i) => 0x50 + i);
const fill = (value: number, lengthBytes = 4096): Uint8Array => new Uint8Array(lengthBytes).fill(value);
const linesMatching = (logs: readonly string[], pattern: RegExp): string[] => logs.filter((line) => pattern.test(line));

async function rejection(promise: Promise<unknown>): Promise<RemoteError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, RemoteError, `a RemoteError, got ${String(error)}`);
    return error as RemoteError;
  }
  throw new Error('expected a rejection');
}

const chunks = suite('rtrs keys: chunks');

chunks('a stale key (before always_invalidate rotated it) is refused with EKEYREJECTED, logged, and the path serves on', async () => {
  const pair = await rtrsPair();
  const raw = await RawRtrs.session(pair.addresses[0]!, pair.crc32c, 'keys-stale');
  try {
    const key0 = raw.chunks[0]!.key;
    raw.write({ bufferId: 0, key: key0, seq: 1, data: fill(1), header: blockHeader(OP_WRITE, 0) });
    const first = await raw.response();
    assert.equal({ bufferId: first.bufferId, errno: first.errno }, { bufferId: 0, errno: 0 });
    const key1 = first.newKey!;
    assert.ok(key1 !== null && key1 !== key0, 'RKEY_RSP carried a new key');

    // a new request (seq 2) with the key the chunk had before
    raw.write({ bufferId: 0, key: key0, seq: 2, data: fill(2), header: blockHeader(OP_WRITE, 0) });
    const stale = await raw.response();
    assert.equal(stale, { bufferId: 0, errno: ERRNO.EKEYREJECTED, newKey: null, data: null });
    assert.is(linesMatching(pair.logs, /refused an IO request: stale or wrong key for chunk 0$/).length, 1, pair.logs.join('\n'));
    // the same for a read: no data comes back
    raw.read({ bufferId: 0, key: key0, seq: 2, header: blockHeader(OP_READ, 0), lengthBytes: 4096 });
    assert.equal(await raw.response(), { bufferId: 0, errno: ERRNO.EKEYREJECTED, newKey: null, data: null });
    // and for a key that never was
    raw.write({ bufferId: 0, key: (key1 ^ 0x5a5a5a5a) >>> 0, seq: 2, data: fill(2), header: blockHeader(OP_WRITE, 0) });
    assert.is((await raw.response()).errno, ERRNO.EKEYREJECTED);
    assert.is(linesMatching(pair.logs, /stale or wrong key/).length, 3);
    assert.is(pair.handler.writesApplied, 1, 'nothing applied with a bad key');
    const device = new Uint8Array(4096);
    await pair.handler.device.read(0, device);
    assert.equal(device, fill(1));

    // the path serves on with the current key, which rotates again
    assert.ok(raw.isOpen, 'the connection stays');
    raw.write({ bufferId: 0, key: key1, seq: 2, data: fill(3), header: blockHeader(OP_WRITE, 0) });
    const third = await raw.response();
    assert.is(third.errno, 0);
    const key2 = third.newKey!;
    assert.ok(key2 !== key1);
    // a re-issue of that very request (same seq) may name the key it was sent with: answered, not applied again
    raw.write({ bufferId: 0, key: key1, seq: 2, data: fill(3), header: blockHeader(OP_WRITE, 0) });
    assert.is((await raw.response()).errno, 0);
    assert.is(pair.handler.writesApplied, 2, 'a re-issue is not applied twice');
    // but a key two rotations old is stale even for a re-issue, and the previous key does not open a new request
    raw.write({ bufferId: 0, key: key0, seq: 2, data: fill(4), header: blockHeader(OP_WRITE, 0) });
    assert.is((await raw.response()).errno, ERRNO.EKEYREJECTED);
    raw.write({ bufferId: 0, key: key1, seq: 3, data: fill(4), header: blockHeader(OP_WRITE, 0) });
    assert.is((await raw.response()).errno, ERRNO.EKEYREJECTED);
    raw.read({ bufferId: 0, key: key2, seq: 3, header: blockHeader(OP_READ, 0), lengthBytes: 4096 });
    const read = await raw.response();
    assert.is(read.errno, 0);
    assert.equal(read.data, fill(3));
    assert.is(pair.handler.writesApplied, 2);
    assert.equal(pair.server.sessionsInfo().map((session) => session.paths.map((path) => path.state)), [['CONNECTED']]);
  } finally {
    raw.close();
    await pair.close();
  }
});

chunks('without always_invalidate the key stays: the same key serves every request', async () => {
  const pair = await rtrsPair({ alwaysInvalidate: false });
  const raw = await RawRtrs.session(pair.addresses[1]!, pair.crc32c, 'keys-stay');
  try {
    const key = raw.chunks[7]!.key;
    for (let seq = 1; seq <= 3; seq++) {
      raw.write({ bufferId: 7, key, seq, data: fill(seq), header: blockHeader(OP_WRITE, 4096) });
      assert.equal(await raw.response(), { bufferId: 7, errno: 0, newKey: null, data: null });
    }
    raw.write({ bufferId: 7, key: key ^ 1, seq: 4, data: fill(9), header: blockHeader(OP_WRITE, 4096) });
    assert.is((await raw.response()).errno, ERRNO.EKEYREJECTED, 'a wrong key is still wrong');
    assert.is(pair.handler.writesApplied, 3);
  } finally {
    raw.close();
    await pair.close();
  }
});

chunks("another session's chunk is refused with EFAULT, logged; both sessions serve on", async () => {
  const pair = await rtrsPair();
  const a = await RawRtrs.session(pair.addresses[0]!, pair.crc32c, 'keys-a');
  const b = await RawRtrs.session(pair.addresses[1]!, pair.crc32c, 'keys-b');
  const client = await pair.connect();
  try {
    await writeBlock(client, 8192, fill(0x77));
    const applied = pair.handler.writesApplied;
    // a names b's chunk 3, with b's own valid key
    a.write({ bufferId: 3, key: b.chunks[3]!.key, addr: b.chunks[3]!.addr, seq: 1, data: fill(0xee), header: blockHeader(OP_WRITE, 8192) });
    assert.equal(await a.response(), { bufferId: 3, errno: ERRNO.EFAULT, newKey: null, data: null });
    // a names its own chunk 4's address for buffer 3
    a.write({ bufferId: 3, key: a.chunks[3]!.key, addr: a.chunks[4]!.addr, seq: 1, data: fill(0xee), header: blockHeader(OP_WRITE, 8192) });
    assert.is((await a.response()).errno, ERRNO.EFAULT);
    // a read of b's chunk the same way
    a.read({ bufferId: 3, key: b.chunks[3]!.key, addr: b.chunks[3]!.addr, seq: 1, header: blockHeader(OP_READ, 8192), lengthBytes: 4096 });
    assert.equal(await a.response(), { bufferId: 3, errno: ERRNO.EFAULT, newKey: null, data: null });
    // the real client's chunks, by address and the key INFO_RSP gave it
    const info = pair.server.sessionsInfo();
    assert.is(info.length, 3);
    assert.is(linesMatching(pair.logs, /session keys-a: refused an IO request: address 0x[0-9a-f]+ is not this session's chunk 3$/).length, 3, pair.logs.join('\n'));
    assert.is(pair.handler.writesApplied, applied, 'nothing applied');

    // b's chunk 3 and a's chunk 3 still take their own keys
    b.write({ bufferId: 3, key: b.chunks[3]!.key, seq: 1, data: fill(0xbb), header: blockHeader(OP_WRITE, 0) });
    assert.is((await b.response()).errno, 0);
    a.write({ bufferId: 3, key: a.chunks[3]!.key, seq: 1, data: fill(0xaa), header: blockHeader(OP_WRITE, 4096) });
    assert.is((await a.response()).errno, 0);
    assert.equal(await readBlock(client, 8192, 4096), fill(0x77), 'the real client reads its own data back');
    assert.ok(a.isOpen && b.isOpen);
  } finally {
    a.close();
    b.close();
    await pair.close();
  }
});

const psk = suite('rtrs keys: the pre-shared key');

psk('a wrong key: open rejects with EKEYREJECTED and the server logs "wrong key" (with and without the digest)', async () => {
  const pair = await rtrsPair({ key: KEY });
  try {
    for (const digest of [false, true]) {
      const before = linesMatching(pair.logs, /wrong key/).length;
      const error = await rejection(pair.connect({ key: OTHER_KEY, digest, paths: [{ dst: splitAddress(pair.addresses[0]!) }] }));
      assert.is(error.errno, ERRNO.EKEYREJECTED, `digest ${digest}: ${error.message}`);
      await until(() => linesMatching(pair.logs, /wrong key/).length > before, 'the log line');
      assert.is(linesMatching(pair.logs, /wrong key/).length, before + 1, pair.logs.join('\n'));
    }
    assert.equal(pair.server.sessionsInfo(), [], 'no session was made');
    const good = await pair.connect({ key: KEY, digest: true });
    await writeBlock(good, 0, fill(5));
    assert.equal(await readBlock(good, 0, 4096), fill(5));
  } finally {
    await pair.close();
  }
});

psk('no key: the client sees the hello asks for one; a conn_req without the proof is refused by the server', async () => {
  const pair = await rtrsPair({ key: KEY });
  try {
    const error = await rejection(pair.connect());
    assert.is(error.errno, ERRNO.EKEYREJECTED, error.message);
    // a client that does not care what the hello says
    const raw = await RawRtrs.connect(pair.addresses[1]!, pair.crc32c);
    assert.ok(raw.hello!.keyRequired);
    const rsp = await raw.handshake();
    assert.is(rsp.errno, ERRNO.EKEYREJECTED);
    await raw.closed();
    assert.is(linesMatching(pair.logs, /refused a connection from 127\.0\.0\.1:\d+: no key offered, and this server requires one$/).length, 1, pair.logs.join('\n'));
    // nor does the auth block of another key, or a truncated one
    const wrong = await RawRtrs.connect(pair.addresses[0]!, pair.crc32c);
    assert.is((await wrong.handshake({ key: OTHER_KEY })).errno, ERRNO.EKEYREJECTED);
    await wrong.closed();
    // a client that asked for digests reads its refusal with one
    const digested = await RawRtrs.connect(pair.addresses[0]!, pair.crc32c);
    assert.is((await digested.handshake({ digest: true })).errno, ERRNO.EKEYREJECTED);
    assert.match(await digested.closed() ?? '', /peer closed/);
    assert.equal(pair.server.sessionsInfo(), []);
  } finally {
    await pair.close();
  }
});

/** A server that does not hold the key: it says hello and accepts every conn_req with `proof(...)` after the conn_rsp. */
async function fakeServer(keyRequired: boolean, proof: (clientNonce: Uint8Array, serverNonce: Uint8Array, rsp: Uint8Array) => Uint8Array | null): Promise<{ address: string; requests: number; close(): Promise<void> }> {
  const crc32c = await kernelCrc32c();
  const sockets = new Set<Socket>();
  const state = { requests: 0 };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    const link = new RtrsLink(socket, crc32c);
    const nonce = newNonce();
    link.start({
      onFrame: (header, payload) => {
        if (header.op !== FRAME_OP.CON_REQ) return link.close('not a conn_req');
        state.requests += 1;
        const req = decodeConnReq(payload);
        if (typeof req === 'string') return link.close(req);
        link.digest = (header.flags & 1) !== 0;
        const rsp = encodeConnRsp({ magic: RTRS_MAGIC, version: RTRS_VERSION, errno: 0, queueDepth: 512, maxIoBytes: 124 * 1024, maxHeaderBytes: 4096, flags: 2 });
        const extra = proof(payload.subarray(56, 72), nonce, rsp);
        if (extra === null) link.send({ op: FRAME_OP.CON_RSP }, rsp);
        else link.send({ op: FRAME_OP.CON_RSP }, rsp, extra);
      },
      onClose: () => sockets.delete(socket),
    });
    link.send({ op: FRAME_OP.HELLO }, encodeHello({ keyRequired, nonce }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    get requests() {
      return state.requests;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

psk("a client with a key checks the server's proof: a server without the key cannot fake it", async () => {
  const crc32c = await kernelCrc32c();
  const fakes = [
    { why: 'a garbage proof', keyRequired: true, proof: () => Uint8Array.from({ length: 32 }, (_, i) => i * 7) },
    { why: 'no proof at all (the hello asks for no key)', keyRequired: false, proof: () => null },
    { why: 'a proof made with another key', keyRequired: true, proof: (clientNonce: Uint8Array, serverNonce: Uint8Array, rsp: Uint8Array) => serverProof(OTHER_KEY, clientNonce, serverNonce, rsp) },
    { why: 'a proof over other nonces', keyRequired: true, proof: (clientNonce: Uint8Array, serverNonce: Uint8Array, rsp: Uint8Array) => serverProof(KEY, serverNonce, clientNonce, rsp) },
    { why: 'a proof one byte short', keyRequired: true, proof: () => new Uint8Array(31) },
  ];
  for (const fake of fakes) {
    const server = await fakeServer(fake.keyRequired, fake.proof);
    try {
      const opening = RtrsClient.open({
        sessionName: 'keys-fake', paths: [{ dst: splitAddress(server.address) }], crc32c, key: KEY, connectTimeoutMs: 3000, log: () => {},
      });
      const error = await rejection(opening);
      assert.is(error.errno, ERRNO.EKEYREJECTED, `${fake.why}: ${error.message}`);
      assert.match(error.message, /could not prove it holds the key/);
      assert.is(server.requests, 1, `${fake.why}: one conn_req, then the client gave up`);
    } finally {
      await server.close();
    }
  }
  // the control: a fake that does hold the key is believed (and then fails later, at INFO_REQ, which it does not answer)
  const honest = await fakeServer(true, (clientNonce, serverNonce, rsp) => serverProof(KEY, clientNonce, serverNonce, rsp));
  try {
    const error = await rejection(RtrsClient.open({
      sessionName: 'keys-fake', paths: [{ dst: splitAddress(honest.address) }], crc32c, key: KEY, connectionsPerPath: 1, connectTimeoutMs: 300, log: () => {},
    }));
    assert.not.match(error.message, /prove/, error.message);
  } finally {
    await honest.close();
  }
});

psk('the server refuses to listen off loopback without a key, and does with one', async () => {
  const crc32c = await kernelCrc32c();
  const handler = new BlockHandler(1024 * 1024);
  const open = new RtrsServer({ handler, crc32c, log: () => {} });
  try {
    for (const host of ['0.0.0.0', '::', '192.0.2.1']) {
      try {
        await open.listen(host, 0);
        assert.unreachable(`listened on ${host} without a key`);
      } catch (error) {
        assert.match((error as Error).message, /refusing to listen for RTRS on .*, off loopback, without a key/);
      }
    }
    assert.match(await open.listen('127.0.0.3', 0), /^127\.0\.0\.3:\d+$/, 'loopback is fine without a key');
  } finally {
    await open.close();
  }
  const keyed = new RtrsServer({ handler, crc32c, key: KEY, log: () => {} });
  try {
    const address = await keyed.listen('0.0.0.0', 0);
    assert.match(address, /^0\.0\.0\.0:\d+$/);
    const client = await RtrsClient.open({ sessionName: 'keys-anywhere', paths: [{ dst: { host: '127.0.0.1', port: splitAddress(address).port } }], crc32c, key: KEY, log: () => {} });
    await writeBlock(client, 0, fill(9));
    await client.close();
  } finally {
    await keyed.close();
  }
});

chunks.run();
psk.run();
