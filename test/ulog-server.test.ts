/**
 * The log server (runtime/dirty-log/log-server.ts) behind its Unix socket (server/ulog/): a C
 * client built against the kernel's struct drives a core and a disk log through their lives; the
 * disk log is read back through dm-log.c's header struct and survives a server restart (only the
 * regions marked dirty resync); the luid swap of a live and an inactive instance; refusals
 * (bad arguments, foreign or small devices, unframeable streams) answered with the errno, one
 * log line each, nothing written; a seeded fuzz of the server's decoder over live connections.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LogServer } from '../runtime/dirty-log/log-server.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { ULOG_ERRNO } from '../runtime/ulog/ulog-errno.ts';
import { decodePair, decodeString, decodeU64, encodePair, encodeRegions, encodeString, encodeU64, ULOG, ULOG_HEADER_BYTES } from '../runtime/ulog/ulog-frame.ts';
import { UlogServer } from '../server/ulog/ulog-server.ts';
import { RawUlogClient, ulogProgram } from './support/ulog-raw.ts';

const test = suite('ulog server');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-ulog-'));
const run = promisify(execFile);
const { EINVAL, ESRCH, EEXIST, ENOENT } = ULOG_ERRNO;

async function client(args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(ulogProgram('ulog-client'), args, { timeout: 30_000 });
    return { code: 0, stdout };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string };
    return { code: failed.code ?? 1, stdout: failed.stdout ?? '' };
  }
}

interface Served {
  logs: LogServer;
  server: UlogServer;
  socketPath: string;
  lines: string[];
  stop(): Promise<void>;
}

let serial = 0;
async function serve(): Promise<Served> {
  const lines: string[] = [];
  const logs = new LogServer({
    log: (line) => lines.push(line),
    openDevice: async (name) => {
      const file = path.join(dir, name);
      if (!fs.existsSync(file)) throw new BlockError('ENOENT', `no device ${name}`);
      return FileDevice.open(file);
    },
  });
  const server = new UlogServer({ handler: logs, log: (line) => lines.push(line) });
  const socketPath = path.join(dir, `ulog-${++serial}.sock`);
  await server.listen({ path: socketPath });
  return { logs, server, socketPath, lines, stop: async () => { await server.close(); await logs.close(); } };
}

function deviceFile(name: string, bytes: number, fill?: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  if (fill) fs.writeFileSync(file, fill, { flag: 'r+' });
  return file;
}

const okLines = (stdout: string) => stdout.split('\n').filter((line) => line.startsWith('ok ')).length;
const field = (stdout: string, name: string) => stdout.split('\n').find((line) => line.startsWith(`${name}=`))?.slice(name.length + 1);

test('the C client drives a core log and a nosync disk log through their lives (CTR .. DTR), every reply checked', async () => {
  const served = await serve();
  try {
    const core = await client(['session', served.socketPath, 'LVM-core-1', '1000', 'core', '8']);
    assert.is(core.code, 0, core.stdout);
    assert.ok(okLines(core.stdout) >= 25, core.stdout);
    assert.is(field(core.stdout, 'status_info'), '1 core');
    assert.is(field(core.stdout, 'status_table'), 'core 1 8 ');

    const file = deviceFile('log-a.img', 64 * 1024);
    const disk = await client(['session', served.socketPath, 'LVM-disk-1', '1000', 'disk', 'log-a.img', '8', 'nosync']);
    assert.is(disk.code, 0, disk.stdout);
    assert.is(field(disk.stdout, 'status_info'), '3 disk log-a.img A');
    assert.is(field(disk.stdout, 'status_table'), 'disk 3 log-a.img 8 nosync ');
    // dm-log.c's struct reads the log: 125 regions; region 1 marked and flushed; region 3 marked,
    // then cleared, the clear written by POSTSUSPEND's flush.
    const onDisk = await client(['disklog', file]);
    assert.is(field(onDisk.stdout, 'magic'), '0x4d695272 version=2 nr_regions=125');
    assert.is(field(onDisk.stdout, 'dirty'), '1');
    assert.equal(served.logs.list(), [], 'both logs destroyed');
  } finally {
    await served.stop();
  }
});

test('a disk log keeps what FLUSH made durable across a server restart: only the marked regions resync', async () => {
  const file = deviceFile('log-b.img', 64 * 1024);
  const uuid = 'LVM-restart';
  let served = await serve();
  let raw = await RawUlogClient.connect({ path: served.socketPath });
  const ctr = encodeString('4096 disk log-b.img 16');
  try {
    assert.is((await raw.request(ULOG.CTR, uuid, 1, ctr)).header.error, 0);
    assert.is((await raw.request(ULOG.RESUME, uuid, 1)).header.error, 0);
    // A new log: every region out of sync. Resync them all, as a mirror would (in sync, then clean).
    let resynced = 0;
    for (;;) {
      const [has, region] = decodePair((await raw.request(ULOG.GET_RESYNC_WORK, uuid, 1)).data) as [number, number];
      if (has === 0) break;
      await raw.request(ULOG.SET_REGION_SYNC, uuid, 1, encodePair(region, 1));
      await raw.request(ULOG.CLEAR_REGION, uuid, 1, encodeRegions([region]));
      resynced += 1;
    }
    assert.is(resynced, 256);
    // Asked twice without settling the first (a resend after a timeout): the same region again.
    await raw.request(ULOG.SET_REGION_SYNC, uuid, 1, encodePair(7, 0)); // behind the search point: it comes back for it
    const once = decodePair((await raw.request(ULOG.GET_RESYNC_WORK, uuid, 1)).data);
    const twice = decodePair((await raw.request(ULOG.GET_RESYNC_WORK, uuid, 1)).data);
    assert.equal([once, twice], [[1, 7], [1, 7]]);
    await raw.request(ULOG.SET_REGION_SYNC, uuid, 1, encodePair(7, 1));
    await raw.request(ULOG.CLEAR_REGION, uuid, 1, encodeRegions([7]));
    assert.is((await raw.request(ULOG.FLUSH, uuid, 1)).header.error, 0);
    const marked = await client(['mark', served.socketPath, uuid, '5', '200']);
    assert.is(marked.code, 0, marked.stdout);
    assert.is(field((await client(['disklog', file])).stdout, 'dirty'), '5,200');
    // The server goes away without DTR (killed); the next one finds the bits.
    raw.close();
    await served.stop();
    served = await serve();
    raw = await RawUlogClient.connect({ path: served.socketPath });
    assert.is((await raw.request(ULOG.CTR, uuid, 2, ctr)).header.error, 0);
    assert.is((await raw.request(ULOG.RESUME, uuid, 2)).header.error, 0);
    assert.is(decodeU64((await raw.request(ULOG.GET_SYNC_COUNT, uuid, 2)).data), 254);
    const work: number[] = [];
    for (;;) {
      const [has, region] = decodePair((await raw.request(ULOG.GET_RESYNC_WORK, uuid, 2)).data) as [number, number];
      if (has === 0) break;
      work.push(region);
      await raw.request(ULOG.SET_REGION_SYNC, uuid, 2, encodePair(region, 1));
    }
    assert.equal(work, [5, 200]);
    assert.equal(served.logs.list().map((info) => [info.state, info.regionCount, info.inSyncRegions, info.dirtyRegions]), [['live', 256, 256, 2]]);
  } finally {
    raw.close();
    await served.stop();
  }
});

test('luid: a live and an inactive instance of one uuid; RESUME swaps them; requests and DTR reach only the one named', async () => {
  const served = await serve();
  const raw = await RawUlogClient.connect({ path: served.socketPath });
  const uuid = 'LVM-swap';
  try {
    assert.is((await raw.request(ULOG.CTR, uuid, 11, encodeString('1024 core 8'))).header.error, 0);
    assert.is((await raw.request(ULOG.RESUME, uuid, 11)).header.error, 0);
    await raw.request(ULOG.MARK_REGION, uuid, 11, encodeRegions([3]));
    // The new table (a resize: twice the regions) is loaded inactive beside the live one.
    assert.is((await raw.request(ULOG.CTR, uuid, 12, encodeString('2048 core 8'))).header.error, 0);
    assert.equal(served.logs.list().map((info) => [info.luid, info.state, info.regionCount]), [[11, 'live', 128], [12, 'inactive', 256]]);
    assert.is(decodeU64((await raw.request(ULOG.IS_CLEAN, uuid, 0, encodeU64(3))).data), 0, 'luid 0: the live one');
    assert.is((await raw.request(ULOG.MARK_REGION, uuid, 12, encodeRegions([200]))).header.error, -EINVAL, 'the inactive one takes no marks');
    assert.is(decodeU64((await raw.request(ULOG.GET_REGION_SIZE, uuid, 12)).data), 8, 'but answers its region size');
    // dm suspends the old table and resumes the new one.
    assert.is((await raw.request(ULOG.POSTSUSPEND, uuid, 11)).header.error, 0);
    assert.is((await raw.request(ULOG.RESUME, uuid, 12)).header.error, 0);
    assert.equal(served.logs.list().map((info) => [info.luid, info.state]), [[11, 'inactive'], [12, 'live']]);
    assert.is((await raw.request(ULOG.MARK_REGION, uuid, 12, encodeRegions([200]))).header.error, 0);
    assert.is((await raw.request(ULOG.MARK_REGION, uuid, 11, encodeRegions([3]))).header.error, -EINVAL, 'the old one is inactive now');
    // Destroying the old table never touches the new one.
    assert.is((await raw.request(ULOG.DTR, uuid, 11)).header.error, 0);
    assert.equal(served.logs.list().map((info) => [info.luid, info.state, info.dirtyRegions]), [[12, 'live', 1]]);
    assert.is(decodeU64((await raw.request(ULOG.IS_CLEAN, uuid, 0, encodeU64(200))).data), 0);
    assert.is((await raw.request(ULOG.DTR, uuid, 11)).header.error, -ESRCH);
  } finally {
    raw.close();
    await served.stop();
  }
});

test('refused with the protocol\'s errno, one log line each, the device untouched: bad arguments, foreign, small and missing log devices', async () => {
  const served = await serve();
  const raw = await RawUlogClient.connect({ path: served.socketPath });
  const foreign = new Prng(5).fill(new Uint8Array(4096));
  const foreignFile = deviceFile('foreign.img', 64 * 1024, foreign);
  const wrongVersion = new Uint8Array(512);
  new DataView(wrongVersion.buffer).setUint32(0, 0x4d695272, true);
  new DataView(wrongVersion.buffer).setUint32(4, 3, true);
  const versionFile = deviceFile('v3.img', 64 * 1024, wrongVersion);
  deviceFile('small.img', 1024);
  const cases: Array<[string, number, RegExp]> = [
    ['1000 core 3', EINVAL, /power of two/],
    ['1000 core', EINVAL, /takes <region_size>/],
    ['1000 core 8 sync nosync', EINVAL, /unrecognised core argument "nosync"/],
    ['1000 mirror 8', EINVAL, /unknown log type "mirror"/],
    ['x core 8', EINVAL, /target length/],
    ['1000 core 2048', EINVAL, /larger than the target/],
    ['1000 clustered-core 8', EINVAL, /cluster group/],
    ['1000 disk foreign.img 8', EINVAL, /not a dirty log \(magic/],
    ['1000 disk v3.img 8', EINVAL, /incompatible disk log version 3/],
    ['1000000 disk small.img 8', EINVAL, /too small: 125000 regions need 16896 bytes, it has 1024/],
    ['1000 disk missing.img 8', ENOENT, /no device missing.img/],
  ];
  try {
    for (const [args, errno, why] of cases) {
      const before = served.lines.length;
      const reply = await raw.request(ULOG.CTR, `LVM-bad`, 1, encodeString(args));
      assert.is(reply.header.error, -errno, args);
      assert.is(served.lines.length, before + 1, `one line for "${args}"`);
      assert.match(served.lines.at(-1)!, why);
    }
    assert.equal(fs.readFileSync(foreignFile).subarray(0, 4096), Buffer.from(foreign), 'the foreign device is untouched');
    assert.equal(fs.readFileSync(versionFile).subarray(0, 512), Buffer.from(wrongVersion));
    assert.equal(served.logs.list(), []);
    // A refused MARK changes nothing, not even the regions of its list that exist.
    await raw.request(ULOG.CTR, 'LVM-ok', 1, encodeString('1000 core 8'));
    await raw.request(ULOG.RESUME, 'LVM-ok', 1);
    assert.is((await raw.request(ULOG.MARK_REGION, 'LVM-ok', 1, encodeRegions([1, 125]))).header.error, -EINVAL);
    assert.is(decodeU64((await raw.request(ULOG.IS_CLEAN, 'LVM-ok', 1, encodeU64(1))).data), 1);
  } finally {
    raw.close();
    await served.stop();
  }
});

test('framing: a bad frame is answered -EINVAL and the connection goes on; an unframeable stream is answered and closed; other connections never notice', async () => {
  const served = await serve();
  const bystander = await RawUlogClient.connect({ path: served.socketPath });
  try {
    await bystander.request(ULOG.CTR, 'LVM-f', 1, encodeString('1000 core 8'));
    await bystander.request(ULOG.RESUME, 'LVM-f', 1);
    const raw = await RawUlogClient.connect({ path: served.socketPath });
    // Unknown type, a uuid without its NUL: refused, answered, the stream goes on.
    const unknown = raw.frame(ULOG.IS_CLEAN, 'LVM-f', 1, encodeU64(0));
    new DataView(unknown.buffer).setUint32(152, 99, true);
    raw.send(unknown);
    assert.is((await raw.reply())!.header.error, -EINVAL);
    const noNul = raw.frame(ULOG.GET_SYNC_COUNT, 'LVM-f', 1);
    noNul.fill(0x41, 8, 8 + 129);
    raw.send(noNul);
    const refused = await raw.reply();
    assert.is(new DataView(refused!.data.buffer).byteLength, 0);
    assert.is((await raw.request(ULOG.GET_SYNC_COUNT, 'LVM-f', 1)).header.error, 0, 'still served');
    // Many frames in one write (one socket chunk, maybe a view into a pooled Buffer): each read at its own offset.
    const batch = Array.from({ length: 24 }, (_, i) => i % 2 === 0 ? raw.frame(ULOG.IS_CLEAN, 'LVM-f', 1, encodeU64(i)) : raw.frame(ULOG.GET_REGION_SIZE, 'LVM-f', 1));
    raw.send(Buffer.concat(batch));
    for (let i = 0; i < batch.length; i++) {
      const reply = (await raw.reply())!;
      assert.equal([reply.header.error, reply.header.type, decodeU64(reply.data)], [0, i % 2 === 0 ? ULOG.IS_CLEAN : ULOG.GET_REGION_SIZE, i % 2 === 0 ? 1 : 8], `frame ${i} of the batch`);
    }
    // A frame split in single bytes is one frame.
    const split = raw.frame(ULOG.GET_REGION_SIZE, 'LVM-f', 1);
    for (const byte of split) raw.send(Uint8Array.of(byte));
    assert.is(decodeU64((await raw.reply())!.data), 8);
    // data_size above the maximum: answered -EINVAL, then closed.
    const huge = raw.frame(ULOG.MARK_REGION, 'LVM-f', 1);
    new DataView(huge.buffer).setUint32(156, 16 * 1024 * 1024, true);
    raw.send(huge);
    assert.is((await raw.reply())!.header.error, -EINVAL);
    assert.is(await raw.reply(), null, 'closed');
    // A version we cannot measure: the same.
    const other = await RawUlogClient.connect({ path: served.socketPath });
    const v7 = other.frame(ULOG.GET_SYNC_COUNT, 'LVM-f', 1, new Uint8Array(0), { version: 7 });
    other.send(v7);
    assert.is((await other.reply())!.header.error, -EINVAL);
    assert.is(await other.reply(), null);
    assert.ok(served.lines.some((line) => /unframeable stream: data_size 16777216/.test(line)), served.lines.join('\n'));
    assert.is((await bystander.request(ULOG.IS_CLEAN, 'LVM-f', 1, encodeU64(0))).header.error, 0, 'the bystander is served');
    // A client that sends and shuts its side down gets every reply.
    const last = await RawUlogClient.connect({ path: served.socketPath });
    last.send(last.frame(ULOG.GET_SYNC_COUNT, 'LVM-f', 1));
    last.send(last.frame(ULOG.GET_REGION_SIZE, 'LVM-f', 1));
    last.socket.end();
    assert.is((await last.reply())!.header.error, 0);
    assert.is(decodeU64((await last.reply())!.data), 8);
    assert.is(await last.reply(), null);
  } finally {
    bystander.close();
    await served.stop();
  }
});

test('seeded fuzz of the server\'s decoder over live connections: no crash, a bad frame costs at most its connection, the log keeps serving', async () => {
  const served = await serve();
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const keeper = await RawUlogClient.connect({ path: served.socketPath });
  const uuid = 'LVM-fuzz'; // the fuzzed frames' log (they may well destroy it: DTR is a type too)
  const kept = 'LVM-keep';
  try {
    for (const name of [uuid, kept]) {
      await keeper.request(ULOG.CTR, name, 1, encodeString('8192 core 8'));
      await keeper.request(ULOG.RESUME, name, 1);
    }
    const types = Object.values(ULOG);
    let replies = 0;
    let closed = 0;
    for (let round = 0; round < 60; round++) {
      const raw = await RawUlogClient.connect({ path: served.socketPath });
      const frames: Uint8Array[] = [];
      for (let i = 0; i < 1 + prng.below(6); i++) {
        const type = types[prng.below(types.length)]!;
        const payload = prng.chance(0.5) ? encodeRegions([prng.below(2048)]) : prng.fill(new Uint8Array(prng.below(40)));
        const frame = raw.frame(type, prng.chance(0.8) ? uuid : 'LVM-other', prng.chance(0.5) ? 1 : 0, payload);
        for (let flips = prng.below(4); flips > 0; flips--) frame[prng.below(frame.length)] ^= 1 << prng.below(8);
        frames.push(prng.chance(0.1) ? frame.subarray(0, prng.below(frame.length)) : frame);
      }
      if (prng.chance(0.2)) frames.push(prng.fill(new Uint8Array(prng.below(400))));
      const bytes = Buffer.concat(frames);
      for (let at = 0; at < bytes.length; ) {
        const piece = 1 + prng.below(200);
        raw.send(bytes.subarray(at, at + piece));
        at += piece;
      }
      raw.socket.end();
      for (;;) {
        const reply = await raw.reply(5000).catch(() => null);
        if (reply === null) break;
        replies += 1;
      }
      closed += raw.ended ? 1 : 0;
      raw.close();
    }
    // The log still answers, and its bits are its own: every region in range.
    assert.is(decodeU64((await keeper.request(ULOG.GET_SYNC_COUNT, kept, 1)).data), 0);
    assert.is(decodeU64((await keeper.request(ULOG.IS_CLEAN, kept, 1, encodeU64(0))).data), 1);
    assert.ok(replies > 0 && closed === 60, `seed ${seed}: ${replies} replies, ${closed} closed`);
    assert.is(served.server.connectionCount, 1, `seed ${seed}: only the keeper is left`);
  } finally {
    keeper.close();
    await served.stop();
  }
});

test('TCP listens on loopback only (the frames carry no key)', async () => {
  const logs = new LogServer();
  const server = new UlogServer({ handler: logs });
  try {
    const bound = await server.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in bound && bound.port > 0);
    const raw = await RawUlogClient.connect(bound);
    assert.is((await raw.request(ULOG.CTR, 'LVM-tcp', 1, encodeString('64 core 8'))).header.error, 0);
    assert.is(decodeString((await raw.request(ULOG.STATUS_INFO, 'LVM-tcp', 1)).data), '1 core');
    raw.close();
    try {
      await server.listen({ host: '0.0.0.0', port: 0 });
      assert.unreachable('listened off loopback');
    } catch (error) {
      assert.match((error as Error).message, /loopback only/);
    }
  } finally {
    await server.close();
    await logs.close();
  }
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
