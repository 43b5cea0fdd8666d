/**
 * Bad input, case by case (issue 9, "Bad input"): wrong magic or major version, cid out of range,
 * an inconsistent cid_num, path names with '/' or '.', garbage before the conn_req, a path that
 * never finishes connecting, oversized IO and headers. Each is refused with the document's error
 * where there is one to answer, with exactly one log line, the connection (or path) is closed by
 * the server, and a healthy session on the same server keeps working. The seeded version of all
 * this is rtrs-fuzz.test.ts.
 */
import { connect } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ERRNO } from '../runtime/transport/rtrs-api.ts';
import { encodeFrameHeader, FRAME_HEADER_BYTES, FRAME_OP } from '../runtime/transport/rtrs-frame.ts';
import { encodeConnReq, RTRS_MAGIC } from '../runtime/transport/rtrs-messages.ts';
import { blockHeader, OP_READ, type Pair, readBlock, rtrsPair, writeBlock } from './support/rtrs-pair.ts';
import { RawRtrs, splitAddress, until } from './support/rtrs-raw.ts';

const fill = (value: number, lengthBytes = 4096): Uint8Array => new Uint8Array(lengthBytes).fill(value);
const test = suite('rtrs bad input');

/** The lines logged since `from` that match. */
function newLines(pair: Pair, from: number, pattern: RegExp): string[] {
  return pair.logs.slice(from).filter((line) => pattern.test(line));
}

async function stillServes(pair: Pair, value: number): Promise<void> {
  const client = await pair.connect();
  await writeBlock(client, 0, fill(value));
  assert.equal(await readBlock(client, 0, 4096), fill(value));
  await client.close();
}

test('conn_req: wrong magic, major version, cid >= cid_num, cid_num 0: CON_RSP ECONNRESET, one line each', async () => {
  const pair = await rtrsPair();
  try {
    const cases = [
      { req: { magic: 0x1bbc }, line: /: bad magic 0x1bbc$/ },
      { req: { version: 0x0300 }, line: /: unsupported major version 3, expected 2$/ },
      { req: { cid: 2, cidCount: 2 }, line: /: cid 2 >= cid_num 2$/ },
      { req: { cid: 0, cidCount: 0 }, line: /: cid_num 0 \(1\.\.4096\)$/ },
      { req: { cid: 0, cidCount: 4097 }, line: /: cid_num 4097 \(1\.\.4096\)$/ },
    ];
    for (const { req, line } of cases) {
      const from = pair.logs.length;
      const raw = await RawRtrs.connect(pair.addresses[0]!, pair.crc32c);
      const rsp = await raw.handshake({ req });
      assert.is(rsp.errno, ERRNO.ECONNRESET, JSON.stringify(req));
      await raw.closed();
      assert.is(pair.logs.length - from, 1, pair.logs.slice(from).join('\n'));
      assert.match(pair.logs.at(-1)!, line);
    }
    // a minor version of our own is fine
    const minor = await RawRtrs.connect(pair.addresses[1]!, pair.crc32c);
    assert.is((await minor.handshake({ req: { version: 0x02ff } })).errno, 0);
    minor.close();
    await stillServes(pair, 1);
  } finally {
    await pair.close();
  }
});

test("a path's connections must agree: another cid_num, a cid taken, no session for a later connection", async () => {
  const pair = await rtrsPair();
  try {
    const first = await RawRtrs.connect(pair.addresses[0]!, pair.crc32c);
    assert.is((await first.handshake({ req: { cid: 0, cidCount: 3 } })).errno, 0);
    const same = { sessionUuid: first.sessionUuid, pathUuid: first.pathUuid, firstConnection: false };
    const cases = [
      { req: { ...same, cid: 1, cidCount: 2 }, errno: ERRNO.ECONNRESET, line: /: cid_num 2, the path has 3$/ },
      { req: { ...same, cid: 0, cidCount: 3 }, errno: ERRNO.ECONNRESET, line: /: connection 0 exists already$/ },
      { req: { cid: 1, cidCount: 3, firstConnection: false }, errno: ERRNO.ENXIO, line: /: no session [0-9a-f]{32}, and not a first connection$/ },
    ];
    for (const { req, errno, line } of cases) {
      const from = pair.logs.length;
      const raw = await RawRtrs.connect(pair.addresses[0]!, pair.crc32c);
      assert.is((await raw.handshake({ req })).errno, errno, JSON.stringify(req));
      await raw.closed();
      assert.equal(newLines(pair, from, /./).length, 1, pair.logs.slice(from).join('\n'));
      assert.match(pair.logs.at(-1)!, line);
    }
    assert.ok(first.isOpen, 'the path being built is not disturbed');
    first.close();
    await stillServes(pair, 2);
  } finally {
    await pair.close();
  }
});

test("INFO_REQ: a name with '/' or '.', an empty name, a name in use: the path is closed with one line", async () => {
  const pair = await rtrsPair();
  try {
    const taken = await pair.connect();
    for (const [name, line] of [['a/b', /EINVAL: path name cannot contain \/ or \.$/], ['..', /EINVAL: path name cannot contain \/ or \.$/], ['', /EINVAL: path name is empty$/], [taken.sessionName, /EPERM: session name .* is in use by another session$/]] as const) {
      const from = pair.logs.length;
      const raw = await RawRtrs.connect(pair.addresses[1]!, pair.crc32c);
      assert.is((await raw.handshake()).errno, 0);
      const payload = new Uint8Array(272);
      payload.set(new TextEncoder().encode(name), 2);
      raw.link.send({ op: FRAME_OP.SEND }, payload);
      await raw.closed();
      const lines = newLines(pair, from, /./);
      assert.is(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, new RegExp(`path ${raw.pathUuid} refused: `));
      assert.match(lines[0]!, line);
    }
    await writeBlock(taken, 0, fill(3));
    assert.equal(await readBlock(taken, 0, 4096), fill(3));
  } finally {
    await pair.close();
  }
});

test('oversized IO: a read over max io is answered EINVAL, a frame over a chunk or a user header over the limit closes the path; one line each', async () => {
  const pair = await rtrsPair();
  try {
    const healthy = await pair.connect();
    const raw = await RawRtrs.session(pair.addresses[0]!, pair.crc32c, 'bad-input-oversized');
    let from = pair.logs.length;
    raw.read({ bufferId: 1, key: raw.chunks[1]!.key, seq: 1, header: blockHeader(OP_READ, 0), lengthBytes: 124 * 1024 + 1 });
    assert.equal(await raw.response(), { bufferId: 1, errno: ERRNO.EINVAL, newKey: null, data: null });
    assert.equal(newLines(pair, from, /./).length, 1);
    assert.match(pair.logs.at(-1)!, /refused an IO request: read of 126977 bytes, over the session's max io size$/);
    raw.read({ bufferId: 1, key: raw.chunks[1]!.key, seq: 2, header: blockHeader(OP_READ, 0), lengthBytes: 124 * 1024 });
    assert.is((await raw.response()).errno, 0, 'max io itself is fine');

    // a user header longer than 4096 bytes
    from = pair.logs.length;
    raw.write({ bufferId: 2, key: raw.chunks[2]!.key, seq: 1, data: fill(1), header: new Uint8Array(4097) });
    await raw.closed();
    assert.equal(newLines(pair, from, /./).length, 1, pair.logs.slice(from).join('\n'));
    assert.match(pair.logs.at(-1)!, /path [0-9a-f]{32} closed: user header of 4097 bytes$/);

    // a frame larger than a chunk
    const big = await RawRtrs.session(pair.addresses[1]!, pair.crc32c, 'bad-input-big');
    from = pair.logs.length;
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    encodeFrameHeader({ op: FRAME_OP.WRITE_IMM, flags: 0, imm: 0, addr: big.chunks[0]!.addr, key: big.chunks[0]!.key, lengthBytes: 128 * 1024 + 1, seq: 1, digest: 0 }, header);
    big.link.socket.write(header);
    await big.closed();
    assert.equal(newLines(pair, from, /./).length, 1, pair.logs.slice(from).join('\n'));
    assert.match(pair.logs.at(-1)!, /closed: WRITE_IMM frame of 131073 bytes, at most 131072 allowed here$/);

    await writeBlock(healthy, 4096, fill(4));
    assert.equal(await readBlock(healthy, 4096, 4096), fill(4));
    assert.is(pair.handler.writesApplied, 1, 'nothing of the oversized requests was applied');
  } finally {
    await pair.close();
  }
});

test('a path that never finishes connecting (no INFO_REQ, a connection missing, a frame cut short) is closed after the handshake time, with one line', async () => {
  const pair = await rtrsPair({ handshakeTimeoutMs: 200, sessionLingerMs: 50 });
  try {
    const healthy = await pair.connect();
    const silent = await RawRtrs.connect(pair.addresses[0]!, pair.crc32c);
    assert.is((await silent.handshake()).errno, 0);
    const missing = await RawRtrs.connect(pair.addresses[1]!, pair.crc32c);
    assert.is((await missing.handshake({ req: { cidCount: 2 } })).errno, 0);
    const partial = await RawRtrs.connect(pair.addresses[0]!, pair.crc32c);
    assert.is((await partial.handshake()).errno, 0);
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    encodeFrameHeader({ op: FRAME_OP.SEND, flags: 0, imm: 0, addr: 0n, key: 0, lengthBytes: 272, seq: 0, digest: 0 }, header);
    partial.link.socket.write(header);
    for (const raw of [silent, missing, partial]) {
      await raw.closed(3000);
      const lines = pair.logs.filter((line) => line.includes(raw.pathUuid));
      assert.is(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, /refused: not connected within 200 ms/);
    }
    await until(() => pair.server.sessionsInfo().length === 1, 'only the healthy session left');
    await writeBlock(healthy, 0, fill(5));
    assert.equal(await readBlock(healthy, 0, 4096), fill(5));
  } finally {
    await pair.close();
  }
});

test('garbage or silence before the conn_req: the connection is closed with one line', async () => {
  const pair = await rtrsPair({ handshakeTimeoutMs: 200 });
  try {
    const cases: { bytes: Uint8Array; line: RegExp }[] = [
      { bytes: new Uint8Array(FRAME_HEADER_BYTES).fill(0x41), line: /: bad frame magic 0x4141$/ },
      { bytes: new Uint8Array(0), line: /: no conn_req in time$/ },
      { bytes: new Uint8Array(7).fill(0x42), line: /: no conn_req in time$/ },
    ];
    const unknownOp = new Uint8Array(FRAME_HEADER_BYTES);
    encodeFrameHeader({ op: 2, flags: 0x80, imm: 0, addr: 0n, key: 0, lengthBytes: 0, seq: 0, digest: 0 }, unknownOp);
    cases.push({ bytes: unknownOp, line: /: unknown frame flags 0x80$/ });
    const tooLong = new Uint8Array(FRAME_HEADER_BYTES + 56);
    encodeFrameHeader({ op: FRAME_OP.CON_REQ, flags: 0, imm: 0, addr: 0n, key: 0, lengthBytes: 1 << 20, seq: 0, digest: 0 }, tooLong);
    tooLong.set(encodeConnReq({ magic: RTRS_MAGIC, version: 0x0200, cid: 0, cidCount: 1, reconnectCount: 0, pathUuid: '0'.repeat(32), sessionUuid: '1'.repeat(32), firstConnection: true }), FRAME_HEADER_BYTES);
    cases.push({ bytes: tooLong, line: /: CON_REQ frame of 1048576 bytes, at most 4096 allowed here$/ });
    for (const { bytes, line } of cases) {
      const from = pair.logs.length;
      const socket = connect(splitAddress(pair.addresses[0]!));
      await new Promise((resolve) => socket.once('connect', resolve));
      const local = `${socket.localAddress}:${socket.localPort}`;
      let closed = false;
      socket.on('close', () => (closed = true));
      socket.on('data', () => {});
      socket.on('error', () => {});
      socket.write(bytes);
      await until(() => closed, 'the server to close the connection', 3000);
      const lines = newLines(pair, from, /./);
      assert.is(lines.length, 1, `${line}: ${lines.join('\n')}`);
      assert.ok(lines[0]!.includes(`from ${local}: `), lines[0]);
      assert.match(lines[0]!, line);
    }
    await stillServes(pair, 6);
  } finally {
    await pair.close();
  }
});

test.run();
