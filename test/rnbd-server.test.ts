/**
 * The RNBD server handler driven directly with encoded messages, as RTRS will drive it: real
 * FileDevices in a fresh temp directory behind the resolver, sessions as plain {sessionName,
 * sessionUuid} values. Covered: SESS_INFO, OPEN's geometry, the ro / rw / migration rules across
 * sessions (decided before the resolver runs), names refused before the resolver, IO of every op
 * (bytes checked in the file itself; FUA, PREFLUSH and NOUNMAP seen by a recording wrapper), IO
 * refused before any byte moves, CLOSE and sessionClosed releasing (after in-flight IO and running
 * OPENs), and malformed input answering EINVAL, with a seeded fuzz that only ever sees coded
 * errors while a healthy session keeps reading the right bytes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { BlockDevice, DiscardOutcome, WriteOptions } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { MemoryDevice } from '../runtime/devices/memory-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import {
  decodeOpenRsp, decodeSessInfoRsp, encodeClose, encodeIo, encodeOpen, encodeSessInfo, OPEN_RSP_BYTES, RNBD_CACHE_FUA,
  RNBD_CACHE_WRITEBACK, RNBD_F_FUA, RNBD_F_NOUNMAP, RNBD_F_PREFLUSH, RNBD_OP, SESS_INFO_RSP_BYTES, type OpenRsp, type RnbdAccess,
} from '../runtime/transport/rnbd-messages.ts';
import { RnbdServer, type DeviceResolver } from '../runtime/transport/rnbd-server.ts';
import { ERRNO, errnoOf, RemoteError, type RtrsDirection, type RtrsServerSession } from '../runtime/transport/rtrs-api.ts';
import { mutateMessage } from './support/mutate-message.ts';

const KiB = 1024;
const DISK_BYTES = 256 * KiB;
const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-rnbd-server-'));
let sessionCount = 0;

function newSession(name = 'client'): RtrsServerSession {
  sessionCount++;
  return { sessionName: `${name}-${sessionCount}`, sessionUuid: sessionCount.toString(16).padStart(32, '0') };
}

/** A fresh directory with `disk.img` (and `other.img`) of DISK_BYTES, holding a known pattern. */
function freshDir(): string {
  const dir = fs.mkdtempSync(path.join(tempDir, 'case-'));
  fs.mkdirSync(path.join(dir, 'sub'));
  for (const name of ['disk.img', 'other.img', 'sub/x.img']) fs.writeFileSync(path.join(dir, name), pattern(DISK_BYTES, name.length));
  return dir;
}

function pattern(lengthBytes: number, seed: number): Uint8Array {
  return new Prng(seed).fill(new Uint8Array(lengthBytes));
}

/** Resolves names to FileDevices under `dir` (read-only for ro), counting resolves and releases. */
class FileResolver {
  resolves: Array<{ name: string; access: RnbdAccess }> = [];
  /** Devices the resolver handed out, and how many of them were released. */
  opened = 0;
  released = 0;
  wrap: (device: BlockDevice) => BlockDevice = (device) => device;
  constructor(readonly dir: string, readonly forceReadOnly = false) {}

  readonly resolve: DeviceResolver = async (name, access) => {
    this.resolves.push({ name, access });
    const device = this.wrap(await FileDevice.open(path.join(this.dir, name), { readOnly: this.forceReadOnly || access === 'ro' }));
    this.opened++;
    return { device, release: async () => { this.released++; await device.close(); } };
  };

  file(name = 'disk.img'): Uint8Array {
    return new Uint8Array(fs.readFileSync(path.join(this.dir, name)));
  }
}

async function sessInfo(server: RnbdServer, session: RtrsServerSession, version: number): Promise<number> {
  const data = new Uint8Array(SESS_INFO_RSP_BYTES);
  await server.handle(session, { direction: 'read', header: encodeSessInfo({ version }), data });
  return decodeSessInfoRsp(data).version;
}

async function open(server: RnbdServer, session: RtrsServerSession, deviceName: string, access: RnbdAccess): Promise<OpenRsp> {
  const data = new Uint8Array(OPEN_RSP_BYTES);
  await server.handle(session, { direction: 'read', header: encodeOpen({ access, deviceName }), data });
  return decodeOpenRsp(data);
}

interface IoArgs {
  deviceId: number;
  op: number;
  offsetBytes?: number;
  lengthBytes?: number;
  flags?: number;
  data?: Uint8Array;
  direction?: RtrsDirection;
}

function io(server: RnbdServer, session: RtrsServerSession, args: IoArgs): Promise<void> {
  const data = args.data ?? new Uint8Array(0);
  const lengthBytes = args.lengthBytes ?? data.length;
  const header = encodeIo({ deviceId: args.deviceId, offsetSectors: (args.offsetBytes ?? 0) / 512, op: args.op, flags: args.flags ?? 0, lengthBytes, prio: 0 });
  return server.handle(session, { direction: args.direction ?? (args.op === RNBD_OP.READ ? 'read' : 'write'), header, data });
}

async function read(server: RnbdServer, session: RtrsServerSession, deviceId: number, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const data = new Uint8Array(lengthBytes);
  await io(server, session, { deviceId, op: RNBD_OP.READ, offsetBytes, data });
  return data;
}

function closeDevice(server: RnbdServer, session: RtrsServerSession, deviceId: number): Promise<void> {
  return server.handle(session, { direction: 'write', header: encodeClose({ deviceId }), data: new Uint8Array(0) });
}

async function expectErrno(pending: Promise<unknown>, errno: number, text?: RegExp): Promise<void> {
  try {
    await pending;
  } catch (error) {
    assert.ok(error instanceof RemoteError || error instanceof BlockError, `a coded error, got ${String(error)}`);
    assert.is(errnoOf(error), errno, String(error));
    if (text) assert.match(String(error), text);
    return;
  }
  assert.unreachable(`resolved, expected errno ${errno}`);
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((byte, i) => byte === b[i]);
const isZero = (bytes: Uint8Array) => bytes.every((byte) => byte === 0);

/** Passes every call to `inner`, recording write options, flushes and discards; reads can be held. */
class RecordingDevice implements BlockDevice {
  calls: string[] = [];
  holdReads: Promise<void> | undefined;
  canDiscardOverride: boolean | undefined;
  constructor(readonly inner: BlockDevice) {}
  get name() { return this.inner.name; }
  get sizeBytes() { return this.inner.sizeBytes; }
  get logicalBlockBytes() { return this.inner.logicalBlockBytes; }
  get canWrite() { return this.inner.canWrite; }
  get canDiscard() { return this.canDiscardOverride ?? this.inner.canDiscard; }
  get discardZeroes() { return this.inner.discardZeroes; }
  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    if (this.holdReads) await this.holdReads;
    this.calls.push('read');
    return this.inner.read(offsetBytes, target);
  }
  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.calls.push(options?.fua ? 'write fua' : 'write');
    return this.inner.write(offsetBytes, data, options);
  }
  flush(): Promise<void> {
    this.calls.push('flush');
    return this.inner.flush();
  }
  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    this.calls.push('discard');
    return this.inner.discard(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    this.calls.push('close');
    return this.inner.close();
  }
}

// ---- sessions and opens ----

const opens = suite('rnbd server: SESS_INFO and OPEN');

opens('SESS_INFO answers the lower of the two versions', async () => {
  const server = new RnbdServer(new FileResolver(freshDir()).resolve);
  const session = newSession();
  assert.is(await sessInfo(server, session, 2), 2);
  assert.is(await sessInfo(server, session, 1), 1);
  assert.is(await sessInfo(server, session, 200), 2);
});

opens('OPEN_RSP carries the device geometry; ro mappings offer no discard or write-zeroes', async () => {
  const resolver = new FileResolver(freshDir());
  const server = new RnbdServer(resolver.resolve);
  const session = newSession();
  const rw = await open(server, session, 'disk.img', 'rw');
  assert.is(rw.deviceId, 0);
  assert.is(rw.sizeSectors, DISK_BYTES / 512);
  assert.is(rw.logicalBlockBytes, 512);
  assert.is(rw.physicalBlockBytes, 512);
  assert.ok(rw.maxHwSectors >= (1 << 20) / 512);
  assert.ok(rw.maxDiscardSectors > 0 && rw.maxWriteZeroesSectors > 0);
  assert.is(rw.discardGranularityBytes, 512);
  assert.is(rw.secureDiscard, 0);
  assert.is(rw.cachePolicy, RNBD_CACHE_WRITEBACK | RNBD_CACHE_FUA);
  const ro = await open(server, session, 'other.img', 'ro');
  assert.is(ro.deviceId, 1);
  assert.is(ro.maxDiscardSectors, 0);
  assert.is(ro.maxWriteZeroesSectors, 0);
  assert.is(ro.discardGranularityBytes, 0);
  assert.equal(resolver.resolves, [{ name: 'disk.img', access: 'rw' }, { name: 'other.img', access: 'ro' }]);
  // A device with 4 KiB blocks says so; one with 1-byte blocks is addressed in sectors.
  const big = new RnbdServer(async () => ({ device: new MemoryDevice({ sizeBytes: 64 * KiB, logicalBlockBytes: 4096 }), release: async () => {} }));
  assert.is((await open(big, session, 'm', 'rw')).logicalBlockBytes, 4096);
  const tiny = new RnbdServer(async () => ({ device: new MemoryDevice({ sizeBytes: 64 * KiB, logicalBlockBytes: 1 }), release: async () => {} }));
  assert.is((await open(tiny, session, 'm', 'rw')).logicalBlockBytes, 512);
  await server.sessionClosed(session);
});

opens('access across sessions: ro always, rw alone, migration one extra writer', async () => {
  const resolver = new FileResolver(freshDir());
  const server = new RnbdServer(resolver.resolve);
  const [a, b, c, d] = [newSession('a'), newSession('b'), newSession('c'), newSession('d')];
  await open(server, a, 'disk.img', 'ro');
  await open(server, b, 'disk.img', 'ro');
  const aRw = await open(server, c, 'disk.img', 'rw');
  assert.is(server.writerCount('disk.img'), 1);
  const before = resolver.resolves.length;
  await expectErrno(open(server, d, 'disk.img', 'rw'), ERRNO.EPERM, /1 writer/);
  assert.is(resolver.resolves.length, before, 'a refused open never reaches the resolver');
  await open(server, d, 'disk.img', 'migration');
  assert.is(server.writerCount('disk.img'), 2);
  await expectErrno(open(server, a, 'disk.img', 'migration'), ERRNO.EEXIST, /open ro/);
  const e = newSession('e');
  await expectErrno(open(server, e, 'disk.img', 'migration'), ERRNO.EPERM, /2 writer/);
  await open(server, e, 'disk.img', 'ro');
  // Another name is another device.
  await open(server, e, 'other.img', 'rw');
  // The rw writer leaves: migration has room again, rw still not (the migration writer stays).
  await closeDevice(server, c, aRw.deviceId);
  assert.is(server.writerCount('disk.img'), 1);
  await expectErrno(open(server, newSession(), 'disk.img', 'rw'), ERRNO.EPERM);
  await open(server, newSession(), 'disk.img', 'migration');
  for (const session of [a, b, c, d, e]) await server.sessionClosed(session);
});

opens('the same session re-opening a name gets the same device id, without resolving again', async () => {
  const resolver = new FileResolver(freshDir());
  const server = new RnbdServer(resolver.resolve);
  const session = newSession();
  const first = await open(server, session, 'disk.img', 'rw');
  const second = await open(server, session, 'disk.img', 'rw');
  assert.is(second.deviceId, first.deviceId);
  assert.is(resolver.resolves.length, 1);
  assert.is(server.writerCount('disk.img'), 1);
  // Two OPENs of one name at once: one resolve, one id.
  const [x, y] = await Promise.all([open(server, session, 'other.img', 'ro'), open(server, session, 'other.img', 'ro')]);
  assert.is(x.deviceId, y.deviceId);
  assert.is(resolver.resolves.length, 2);
  await expectErrno(open(server, session, 'disk.img', 'ro'), ERRNO.EEXIST);
  await server.sessionClosed(session);
});

opens('names: .., absolute, empty refused before the resolver; a//b/./c is a/b/c', async () => {
  const resolver = new FileResolver(freshDir());
  const server = new RnbdServer(resolver.resolve);
  const session = newSession();
  await expectErrno(open(server, session, '../etc/passwd', 'ro'), ERRNO.EINVAL, /contains \.\./);
  await expectErrno(open(server, session, 'sub/../disk.img', 'ro'), ERRNO.EINVAL, /contains \.\./);
  await expectErrno(open(server, session, '/etc/passwd', 'ro'), ERRNO.EINVAL, /absolute path/);
  await expectErrno(open(server, session, '', 'ro'), ERRNO.EINVAL, /empty/);
  await expectErrno(open(server, session, './', 'ro'), ERRNO.EINVAL, /empty/);
  assert.is(resolver.resolves.length, 0);
  await open(server, session, 'sub//./x.img', 'rw');
  assert.equal(resolver.resolves, [{ name: 'sub/x.img', access: 'rw' }]);
  await expectErrno(open(server, newSession(), 'sub/x.img', 'rw'), ERRNO.EPERM);
  await server.sessionClosed(session);
});

opens('a resolver failure is answered with its errno; a read-only device refuses writers', async () => {
  const resolver = new FileResolver(freshDir());
  const server = new RnbdServer(resolver.resolve);
  const session = newSession();
  await expectErrno(open(server, session, 'missing.img', 'rw'), ERRNO.ENOENT);
  assert.is(server.writerCount('missing.img'), 0, 'the failed writer is not counted');
  let releases = 0;
  const readOnly = new RnbdServer(async () => ({ device: new MemoryDevice({ sizeBytes: 64 * KiB, readOnly: true }), release: async () => { releases++; } }));
  await expectErrno(open(readOnly, session, 'm', 'rw'), ERRNO.EROFS, /read-only/);
  assert.is(releases, 1);
  assert.is(readOnly.writerCount('m'), 0);
  await open(readOnly, session, 'm', 'ro');
  const odd = new RnbdServer(async () => ({ device: new MemoryDevice({ sizeBytes: 1000, logicalBlockBytes: 8 }), release: async () => { releases++; } }));
  await expectErrno(open(odd, session, 'm', 'ro'), ERRNO.EINVAL, /sectors/);
  assert.is(releases, 2);
});

// ---- IO ----

const ios = suite('rnbd server: IO');

async function rwSetup(wrap = false) {
  const resolver = new FileResolver(freshDir());
  let recording: RecordingDevice | undefined;
  if (wrap) resolver.wrap = (device) => (recording = new RecordingDevice(device));
  const server = new RnbdServer(resolver.resolve);
  const session = newSession();
  const { deviceId } = await open(server, session, 'disk.img', 'rw');
  return { resolver, server, session, deviceId, recording: () => recording! };
}

ios('READ and WRITE move the bytes of the file', async () => {
  const { resolver, server, session, deviceId } = await rwSetup();
  const original = resolver.file();
  assert.ok(same(await read(server, session, deviceId, 0, DISK_BYTES), original));
  assert.ok(same(await read(server, session, deviceId, 8 * KiB, 4 * KiB), original.subarray(8 * KiB, 12 * KiB)));
  const data = pattern(12 * KiB, 99);
  await io(server, session, { deviceId, op: RNBD_OP.WRITE, offsetBytes: 20 * KiB, data });
  const expected = original.slice();
  expected.set(data, 20 * KiB);
  assert.ok(same(resolver.file(), expected));
  assert.ok(same(await read(server, session, deviceId, 20 * KiB, 12 * KiB), data));
  // Zero-length reads and writes are no-ops.
  await io(server, session, { deviceId, op: RNBD_OP.READ, offsetBytes: DISK_BYTES, data: new Uint8Array(0) });
  await server.sessionClosed(session);
});

ios('FUA, PREFLUSH, FLUSH, DISCARD, WRITE_ZEROES (discard or, with NOUNMAP, zeros written)', async () => {
  const { resolver, server, session, deviceId, recording } = await rwSetup(true);
  const device = recording();
  await io(server, session, { deviceId, op: RNBD_OP.WRITE, offsetBytes: 0, data: pattern(4 * KiB, 5), flags: RNBD_F_FUA });
  await io(server, session, { deviceId, op: RNBD_OP.WRITE, offsetBytes: 4 * KiB, data: pattern(4 * KiB, 6), flags: RNBD_F_PREFLUSH });
  await io(server, session, { deviceId, op: RNBD_OP.FLUSH });
  assert.equal(device.calls, ['write fua', 'flush', 'write', 'flush']);
  device.calls = [];
  await io(server, session, { deviceId, op: RNBD_OP.DISCARD, offsetBytes: 16 * KiB, lengthBytes: 8 * KiB });
  assert.ok(isZero(resolver.file().subarray(16 * KiB, 24 * KiB)));
  await io(server, session, { deviceId, op: RNBD_OP.WRITE_ZEROES, offsetBytes: 32 * KiB, lengthBytes: 4 * KiB });
  await io(server, session, { deviceId, op: RNBD_OP.WRITE_ZEROES, offsetBytes: 40 * KiB, lengthBytes: 4 * KiB + 512, flags: RNBD_F_NOUNMAP | RNBD_F_FUA });
  assert.equal(device.calls, ['discard', 'discard', 'write', 'flush']);
  const file = resolver.file();
  assert.ok(isZero(file.subarray(32 * KiB, 36 * KiB)) && isZero(file.subarray(40 * KiB, 44.5 * KiB)));
  assert.ok(!isZero(file.subarray(36 * KiB, 40 * KiB)) && !isZero(file.subarray(44.5 * KiB, 48 * KiB)), 'neighbours untouched');
  await server.sessionClosed(session);
});

ios('WRITE_ZEROES larger than a zero piece writes zeros in pieces', async () => {
  const resolver = new FileResolver(freshDir());
  const path4 = path.join(resolver.dir, 'big.img');
  fs.writeFileSync(path4, pattern(3 * 1024 * KiB, 3));
  resolver.wrap = (device) => Object.assign(new RecordingDevice(device), { canDiscardOverride: false });
  const server = new RnbdServer(resolver.resolve);
  const session = newSession();
  const { deviceId, maxDiscardSectors } = await open(server, session, 'big.img', 'rw');
  assert.is(maxDiscardSectors, 0);
  await io(server, session, { deviceId, op: RNBD_OP.WRITE_ZEROES, offsetBytes: 512, lengthBytes: 2 * 1024 * KiB + 1024 });
  const file = resolver.file('big.img');
  assert.ok(isZero(file.subarray(512, 512 + 2 * 1024 * KiB + 1024)));
  assert.ok(!isZero(file.subarray(0, 512)) && !isZero(file.subarray(1536 + 2 * 1024 * KiB)));
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.DISCARD, lengthBytes: 512 }), ERRNO.EOPNOTSUPP, /cannot discard/);
  await server.sessionClosed(session);
});

ios('IO refused before any byte moves: access, range, alignment, shape, unknown device', async () => {
  const { resolver, server, session, deviceId } = await rwSetup();
  const original = resolver.file();
  const ro = newSession();
  const { deviceId: roId } = await open(server, ro, 'disk.img', 'ro');
  const data = pattern(4 * KiB, 7);
  await expectErrno(io(server, ro, { deviceId: roId, op: RNBD_OP.WRITE, data }), ERRNO.EROFS, /read-only mapping/);
  await expectErrno(io(server, ro, { deviceId: roId, op: RNBD_OP.DISCARD, lengthBytes: 512 }), ERRNO.EROFS);
  await expectErrno(io(server, ro, { deviceId: roId, op: RNBD_OP.WRITE_ZEROES, lengthBytes: 512 }), ERRNO.EROFS);
  await io(server, ro, { deviceId: roId, op: RNBD_OP.FLUSH });
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.WRITE, offsetBytes: DISK_BYTES - 2 * KiB, data }), ERRNO.ERANGE);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.READ, offsetBytes: DISK_BYTES, data: new Uint8Array(512) }), ERRNO.ERANGE);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.WRITE, data: data.subarray(0, 100) }), ERRNO.EINVAL, /unaligned/);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.DISCARD, lengthBytes: 1000 }), ERRNO.EINVAL, /unaligned/);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.WRITE, data, lengthBytes: 8 * KiB }), ERRNO.EINVAL, /carries 4096 bytes/);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.WRITE, data, direction: 'read' }), ERRNO.EINVAL, /sent as a read/);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.READ, data: new Uint8Array(512), direction: 'write' }), ERRNO.EINVAL, /sent as a write/);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.DISCARD, lengthBytes: 512, data: new Uint8Array(512) }), ERRNO.EINVAL);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.FLUSH, lengthBytes: 512 }), ERRNO.EINVAL, /flush of bi_size/);
  await expectErrno(io(server, session, { deviceId, op: RNBD_OP.SECURE_ERASE, lengthBytes: 512 }), ERRNO.EOPNOTSUPP);
  await expectErrno(io(server, session, { deviceId: deviceId + 7, op: RNBD_OP.READ, data: new Uint8Array(512) }), ERRNO.ENOTCONN);
  await expectErrno(io(server, ro, { deviceId: roId + 1, op: RNBD_OP.READ, data: new Uint8Array(512) }), ERRNO.ENOTCONN, /has not open/);
  assert.ok(same(resolver.file(), original), 'no refused request changed the file');
  await server.sessionClosed(session);
  await server.sessionClosed(ro);
});

// ---- close and session end ----

const closing = suite('rnbd server: CLOSE and sessionClosed');

closing('CLOSE releases the device and its writer; later IO on the id is ENOTCONN; unknown ids are fine', async () => {
  const { resolver, server, session, deviceId } = await rwSetup();
  await closeDevice(server, session, deviceId);
  assert.is(resolver.released, 1);
  assert.is(server.writerCount('disk.img'), 0);
  await expectErrno(read(server, session, deviceId, 0, 512), ERRNO.ENOTCONN);
  await closeDevice(server, session, deviceId);
  await closeDevice(server, session, 12345);
  assert.is(resolver.released, 1);
  // Ids are not reused within a session.
  assert.is((await open(server, session, 'disk.img', 'rw')).deviceId, deviceId + 1);
  await open(server, newSession(), 'disk.img', 'ro');
});

closing('CLOSE waits for in-flight IO before releasing; IO arriving meanwhile is ENOTCONN', async () => {
  const { resolver, server, session, deviceId, recording } = await rwSetup(true);
  let letGo!: () => void;
  recording().holdReads = new Promise((resolve) => (letGo = resolve));
  const reading = read(server, session, deviceId, 0, 4 * KiB);
  const closed = closeDevice(server, session, deviceId);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.is(resolver.released, 0, 'not released while a read is in flight');
  await expectErrno(read(server, session, deviceId, 0, 512), ERRNO.ENOTCONN);
  letGo();
  assert.ok(same(await reading, resolver.file().subarray(0, 4 * KiB)));
  await closed;
  assert.is(resolver.released, 1);
  assert.equal(recording().calls, ['read', 'close']);
});

closing('sessionClosed releases everything the session held, including an OPEN still resolving', async () => {
  const resolver = new FileResolver(freshDir());
  let letOpen!: () => void;
  const slow = new Promise<void>((resolve) => (letOpen = resolve));
  const server = new RnbdServer(async (name, access) => {
    if (name === 'other.img') await slow;
    return resolver.resolve(name, access);
  });
  const session = newSession();
  const other = newSession();
  await open(server, session, 'disk.img', 'rw');
  await open(server, session, 'sub/x.img', 'migration');
  await open(server, other, 'sub/x.img', 'ro');
  const pending = open(server, session, 'other.img', 'rw');
  const ended = server.sessionClosed(session);
  letOpen();
  await pending;
  await ended;
  assert.is(resolver.released, 3);
  assert.is(server.writerCount('disk.img') + server.writerCount('sub/x.img') + server.writerCount('other.img'), 0);
  assert.equal(server.sessions().map((s) => s.sessionName), [other.sessionName]);
  assert.equal(server.sessions()[0]!.devices, [{ deviceId: 0, name: 'sub/x.img', access: 'ro' }]);
  await open(server, newSession(), 'disk.img', 'rw');
  await server.sessionClosed(session); // twice: nothing left to do
  assert.is(resolver.released, 3);
});

// ---- bad input ----

const bad = suite('rnbd server: malformed requests');

bad('each malformed message answers EINVAL for that request only', async () => {
  const lines: string[] = [];
  const resolver = new FileResolver(freshDir());
  const server = new RnbdServer(resolver.resolve, { log: (line) => lines.push(line) });
  const session = newSession();
  const { deviceId } = await open(server, session, 'disk.img', 'ro');
  const empty = new Uint8Array(0);
  const cases: Array<[Uint8Array, RtrsDirection, Uint8Array, RegExp]> = [
    [new Uint8Array(2), 'read', empty, /shorter than its 4-byte header/],
    [new Uint8Array([9, 0, 0, 0]), 'write', empty, /unexpected RNBD message type 9/],
    [new Uint8Array([1, 0, 0, 0]), 'read', new Uint8Array(36), /unexpected RNBD message type 1/],
    [encodeOpen({ access: 'ro', deviceName: 'disk.img' }).subarray(0, 100), 'read', new Uint8Array(56), /open of 100 bytes/],
    [encodeOpen({ access: 'ro', deviceName: 'disk.img' }), 'write', empty, /open sent as a write/],
    [encodeOpen({ access: 'ro', deviceName: 'disk.img' }), 'read', new Uint8Array(40), /response buffer of 40 bytes/],
    [encodeSessInfo({ version: 2 }), 'read', new Uint8Array(10), /response buffer of 10 bytes/],
    [encodeClose({ deviceId }).subarray(0, 6), 'write', empty, /close of 6 bytes/],
    [(() => { const b = encodeIo({ deviceId, offsetSectors: 0, op: 0, flags: 0, lengthBytes: 512, prio: 0 }); b[16] = 9; return b; })(), 'read', new Uint8Array(512), /op 9/],
  ];
  for (const [header, direction, data, reason] of cases) await expectErrno(server.handle(session, { direction, header, data }), ERRNO.EINVAL, reason);
  assert.is(lines.length, cases.length, 'one log line each');
  assert.ok(same(await read(server, session, deviceId, 0, 4 * KiB), resolver.file().subarray(0, 4 * KiB)), 'the session still serves');
  await server.sessionClosed(session);
});

bad('seeded fuzz: only coded errors, no hang, the device unchanged, a healthy session reads throughout, all released', async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  try {
    // Every device opens read-only, so no fuzzed message can change a file (rw and migration: EROFS).
    const resolver = new FileResolver(freshDir(), true);
    const server = new RnbdServer(resolver.resolve);
    const original = resolver.file();
    const healthy = newSession('healthy');
    const { deviceId: healthyId } = await open(server, healthy, 'disk.img', 'ro');
    const fuzzers = [newSession('fuzz'), newSession('fuzz')];
    for (const session of fuzzers) await open(server, session, 'disk.img', 'ro');
    const samples = [
      encodeSessInfo({ version: 2 }), encodeOpen({ access: 'ro', deviceName: 'disk.img' }), encodeOpen({ access: 'rw', deviceName: 'other.img' }),
      encodeClose({ deviceId: 0 }), encodeIo({ deviceId: 0, offsetSectors: 8, op: RNBD_OP.READ, flags: 0, lengthBytes: 4096, prio: 0 }),
      encodeIo({ deviceId: 0, offsetSectors: 0, op: RNBD_OP.WRITE, flags: RNBD_F_FUA, lengthBytes: 512, prio: 0 }),
      encodeIo({ deviceId: 1, offsetSectors: 0, op: RNBD_OP.WRITE_ZEROES, flags: 0, lengthBytes: 8192, prio: 0 }),
    ];
    let answered = 0;
    for (let round = 0; round < 100; round++) {
      const batch: Promise<void>[] = [];
      for (let i = 0; i < 20; i++) {
        const header = prng.chance(0.15) ? prng.fill(new Uint8Array(prng.below(300))) : prng.chance(0.3) ? samples[prng.below(samples.length)]! : mutateMessage(prng, samples[prng.below(samples.length)]!);
        const direction: RtrsDirection = prng.chance(0.5) ? 'read' : 'write';
        const data = new Uint8Array(prng.chance(0.5) ? prng.below(64) * 64 : [0, 36, 56, 512, 4096][prng.below(5)]!);
        const session = fuzzers[prng.below(fuzzers.length)]!;
        batch.push(server.handle(session, { direction, header, data }).then(
          () => { answered++; },
          (error) => {
            answered++;
            assert.ok(error instanceof RemoteError || error instanceof BlockError, `a coded error, got ${String(error)}`);
          },
        ));
      }
      batch.push(read(server, healthy, healthyId, 4096 * prng.below(DISK_BYTES / 4096), 4096).then((bytes) => assert.ok(bytes.length === 4096)));
      await Promise.all(batch);
    }
    assert.is(answered, 2000, 'every request answered');
    assert.ok(same(await read(server, healthy, healthyId, 0, DISK_BYTES), original), 'the healthy session reads the right bytes');
    for (const session of [...fuzzers, healthy]) await server.sessionClosed(session);
    assert.ok(resolver.opened > 3, 'the fuzz opened devices');
    assert.is(resolver.released, resolver.opened, 'every opened device released');
    assert.is(server.sessions().length, 0);
    assert.ok(same(resolver.file(), original), 'the device is unchanged');
  } catch (error) {
    if (error instanceof Error) error.message += ` [seed ${seed}; replay with BLOCKCORE_SEED=${seed}]`;
    throw error;
  }
});

bad.after(() => fs.rmSync(tempDir, { recursive: true, force: true }));

opens.run();
ios.run();
closing.run();
bad.run();
