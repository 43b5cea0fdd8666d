/**
 * RNBD messages frozen by hex vectors (STYLE 17): every message written out byte by byte from the
 * kernel's drivers/block/rnbd/rnbd-proto.h layouts (little-endian; zero runs written as counted
 * '00' repeats), encoded and decoded. Then each decoder's refusals (the reason strings), the device
 * name rules, and a seeded fuzz of every decoder: random and mutated bytes must get a reason or
 * fields, never a throw, and accepted bytes must re-encode to a message that decodes the same.
 * BLOCKCORE_SEED replays a failure.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { mutateMessage } from './support/mutate-message.ts';
import {
  CLOSE_BYTES, decodeClose, decodeIo, decodeOpen, decodeOpenRsp, decodeSessInfo, decodeSessInfoRsp, deviceNameProblem, encodeClose,
  encodeIo, encodeOpen, encodeOpenRsp, encodeSessInfo, encodeSessInfoRsp, invalidClose, invalidIo, invalidOpen, invalidOpenRsp,
  invalidSessInfo, invalidSessInfoRsp, IO_BYTES, messageType, normalizeDeviceName, OPEN_BYTES, OPEN_RSP_BYTES, RNBD_CACHE_FUA, RNBD_CACHE_WRITEBACK,
  RNBD_F_FUA, RNBD_F_NOUNMAP, RNBD_F_PREFLUSH, RNBD_F_SYNC, RNBD_OP, SESS_INFO_BYTES, SESS_INFO_RSP_BYTES, type OpenRsp,
} from '../runtime/transport/rnbd-messages.ts';

const hex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
const bytesOf = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const zeros = (count: number) => '00'.repeat(count);

const SESS_INFO_HEX = '0000 0000' + '02' + zeros(31);
const SESS_INFO_RSP_HEX = '0100 0000' + '02' + zeros(31);
// access rw, resv1, "disk.img", then NUL padding to dev_name[255], reserved[3].
const OPEN_HEX = '0200 0000' + '01' + '00' + '6469736b2e696d67' + zeros(255 - 8) + zeros(3);
const OPEN_RSP: OpenRsp = {
  deviceId: 7, sizeSectors: 2 ** 32 + 0x20, maxHwSectors: 0x800, maxWriteZeroesSectors: 0x10000, maxDiscardSectors: 0x20000,
  discardGranularityBytes: 0x1000, discardAlignmentBytes: 0x200, physicalBlockBytes: 0x1000, logicalBlockBytes: 0x200,
  maxSegments: 0x80, secureDiscard: 1, rotational: 1, cachePolicy: RNBD_CACHE_WRITEBACK | RNBD_CACHE_FUA,
};
const OPEN_RSP_HEX =
  '0300 0000' + '07000000' + '2000000001000000' + '00080000' + '00000100' + '00000200' + '00100000' + '00020000' +
  '0010' + '0002' + '8000' + '0100' + '01' + '03' + zeros(10);
// device 0x01020304, sector 0x123456789, rw WRITE | SYNC | FUA, bi_size 128 KiB, prio 0x4005, tail padding.
const IO_HEX = '0400 0000' + '04030201' + '8967452301000000' + '01030000' + '00000200' + '0540' + zeros(6);
const CLOSE_HEX = '0500 0000' + 'efbeadde';

const vectors = suite('rnbd messages: hex vectors');

vectors('sizes are the kernel structs\'', () => {
  assert.is(SESS_INFO_BYTES, 36);
  assert.is(SESS_INFO_RSP_BYTES, 36);
  assert.is(OPEN_BYTES, 264);
  assert.is(OPEN_RSP_BYTES, 56);
  assert.is(IO_BYTES, 32);
  assert.is(CLOSE_BYTES, 8);
  assert.is(bytesOf(SESS_INFO_HEX).length, SESS_INFO_BYTES);
  assert.is(bytesOf(CLOSE_HEX).length, CLOSE_BYTES);
  assert.is(bytesOf(OPEN_HEX).length, OPEN_BYTES);
  assert.is(bytesOf(OPEN_RSP_HEX).length, OPEN_RSP_BYTES);
  assert.is(bytesOf(IO_HEX).length, IO_BYTES);
});

vectors('sess_info and sess_info_rsp', () => {
  assert.is(hex(encodeSessInfo({ version: 2 })), hex(bytesOf(SESS_INFO_HEX)));
  assert.is(hex(encodeSessInfoRsp({ version: 2 })), hex(bytesOf(SESS_INFO_RSP_HEX)));
  assert.equal(decodeSessInfo(bytesOf(SESS_INFO_HEX)), { version: 2 });
  assert.equal(decodeSessInfoRsp(bytesOf(SESS_INFO_RSP_HEX)), { version: 2 });
  assert.is(messageType(bytesOf(SESS_INFO_RSP_HEX)), 1);
});

vectors('open: access mode, dev_name NUL-padded', () => {
  assert.is(hex(encodeOpen({ access: 'rw', deviceName: 'disk.img' })), hex(bytesOf(OPEN_HEX)));
  assert.equal(decodeOpen(bytesOf(OPEN_HEX)), { access: 'rw', deviceName: 'disk.img' });
  const ro = bytesOf('0200 0000' + '00' + '00' + '6331' + zeros(253) + zeros(3));
  assert.equal(decodeOpen(ro), { access: 'ro', deviceName: 'c1' });
  const migration = bytesOf('0200 0000' + '02' + '00' + '636c6f6e653a6331' + zeros(247) + zeros(3));
  assert.is(hex(encodeOpen({ access: 'migration', deviceName: 'clone:c1' })), hex(migration));
  // The longest name: 254 bytes and the NUL.
  const longest = 'n'.repeat(254);
  assert.is(hex(encodeOpen({ access: 'ro', deviceName: longest })), '02000000' + '00' + '00' + '6e'.repeat(254) + '00' + zeros(3));
  assert.is(decodeOpen(encodeOpen({ access: 'ro', deviceName: 'é/ü' })).deviceName, 'é/ü');
});

vectors('open_rsp: every geometry field in its place', () => {
  assert.is(hex(encodeOpenRsp(OPEN_RSP)), hex(bytesOf(OPEN_RSP_HEX)));
  assert.equal(decodeOpenRsp(bytesOf(OPEN_RSP_HEX)), OPEN_RSP);
});

vectors('io: device, sector, op and flags in rw, bi_size, prio, padding', () => {
  const io = { deviceId: 0x01020304, offsetSectors: 0x123456789, op: RNBD_OP.WRITE, flags: RNBD_F_SYNC | RNBD_F_FUA, lengthBytes: 0x20000, prio: 0x4005 };
  assert.is(hex(encodeIo(io)), hex(bytesOf(IO_HEX)));
  assert.equal(decodeIo(bytesOf(IO_HEX)), io);
  const zeroes = { deviceId: 0, offsetSectors: 8, op: RNBD_OP.WRITE_ZEROES, flags: RNBD_F_NOUNMAP, lengthBytes: 4096, prio: 0 };
  assert.is(hex(encodeIo(zeroes)), '04000000' + '00000000' + '0800000000000000' + '05080000' + '00100000' + '0000' + zeros(6));
  const flush = { deviceId: 3, offsetSectors: 0, op: RNBD_OP.FLUSH, flags: RNBD_F_PREFLUSH, lengthBytes: 0, prio: 0 };
  assert.is(hex(encodeIo(flush)), '04000000' + '03000000' + zeros(8) + '02040000' + zeros(4) + '0000' + zeros(6));
  assert.equal(decodeIo(encodeIo(flush)), flush);
});

vectors('close', () => {
  assert.is(hex(encodeClose({ deviceId: 0xdeadbeef })), hex(bytesOf(CLOSE_HEX)));
  assert.equal(decodeClose(bytesOf(CLOSE_HEX)), { deviceId: 0xdeadbeef });
});

vectors('encoding into a larger buffer writes only the message, zeroing its reserved bytes', () => {
  const out = new Uint8Array(64).fill(0xaa);
  const written = encodeSessInfoRsp({ version: 2 }, out);
  assert.is(written.length, SESS_INFO_RSP_BYTES);
  assert.is(hex(out.subarray(0, 36)), hex(bytesOf(SESS_INFO_RSP_HEX)));
  assert.ok(out.subarray(36).every((byte) => byte === 0xaa));
});

const refusals = suite('rnbd messages: refusals');

refusals('wrong type, short, long', () => {
  assert.is(messageType(bytesOf('0100')), 'RNBD message of 2 bytes, shorter than its 4-byte header');
  assert.is(invalidSessInfo(bytesOf(SESS_INFO_RSP_HEX)), 'sess_info has type 1, not 0');
  assert.is(invalidSessInfoRsp(bytesOf(SESS_INFO_HEX)), 'sess_info_rsp has type 0, not 1');
  assert.is(invalidOpen(bytesOf(OPEN_HEX).subarray(0, 263)), 'open of 263 bytes, 264 expected');
  assert.is(invalidOpenRsp(bytesOf(OPEN_RSP_HEX + '00')), 'open_rsp of 57 bytes, 56 expected');
  assert.is(invalidIo(bytesOf(IO_HEX).subarray(0, 26)), 'io of 26 bytes, 32 expected');
  assert.is(invalidClose(bytesOf('0500 0000 0100')), 'close of 6 bytes, 8 expected');
  assert.is(invalidClose(bytesOf('0400 0000 01000000')), 'close has type 4, not 5');
  assert.is(invalidClose(new Uint8Array(0)), 'RNBD message of 0 bytes, shorter than its 4-byte header');
});

refusals('open: access mode, name without NUL, name not UTF-8', () => {
  const bad = bytesOf(OPEN_HEX);
  bad[4] = 3;
  assert.is(invalidOpen(bad), 'open has access_mode 3, not ro 0, rw 1 or migration 2');
  const unterminated = bytesOf('0200 0000' + '00' + '00' + '41'.repeat(255) + zeros(3));
  assert.is(invalidOpen(unterminated), 'open dev_name is not NUL-terminated');
  const latin1 = bytesOf('0200 0000' + '00' + '00' + 'ff41' + zeros(253) + zeros(3));
  assert.is(invalidOpen(latin1), 'open dev_name is not UTF-8');
});

refusals('io: unknown op, unknown flags, sector beyond 2^53 bytes', () => {
  const withRw = (rw: string) => bytesOf('0400 0000' + '00000000' + zeros(8) + rw + zeros(4) + '0000' + zeros(6));
  assert.is(invalidIo(withRw('06000000')), 'io has op 6, not one of 0..5');
  assert.is(invalidIo(withRw('ff000000')), 'io has op 255, not one of 0..5');
  assert.is(invalidIo(withRw('01100000')), 'io has unknown flags 0x1000');
  assert.is(invalidIo(withRw('01000080')), 'io has unknown flags 0x80000000');
  assert.is(invalidIo(withRw('010f0000')), null);
  const atSector = (sector: string) => bytesOf('0400 0000' + '00000000' + sector + '00000000' + zeros(4) + '0000' + zeros(6));
  // 2^44 sectors of 512 bytes is 2^53 bytes: the first sector whose offset is no safe integer.
  assert.is(invalidIo(atSector('0000000000100000')), 'io sector 17592186044416 is beyond 2^53 bytes');
  assert.is(invalidIo(atSector('ffffffffff0f0000')), null);
  assert.is(decodeIo(atSector('ffffffffff0f0000')).offsetSectors, 2 ** 44 - 1);
  const huge = bytesOf(OPEN_RSP_HEX);
  huge.set(bytesOf('ffffffffffffffff'), 8);
  assert.is(invalidOpenRsp(huge), 'open_rsp nsectors 18446744073709551615 is beyond 2^53 bytes');
});

refusals('reserved and padding bytes are accepted as the kernel does', () => {
  const info = bytesOf(SESS_INFO_HEX);
  info.fill(0x5a, 2, 4);
  info.fill(0x5a, 5);
  assert.is(invalidSessInfo(info), null);
  assert.equal(decodeSessInfo(info), { version: 2 });
  const io = bytesOf(IO_HEX);
  io.fill(0xee, 26);
  assert.is(invalidIo(io), null);
  const open = bytesOf(OPEN_HEX);
  open[5] = 9;
  open.fill(0x77, 261);
  open[20] = 0x41; // after the name's NUL: ignored
  assert.equal(decodeOpen(open), { access: 'rw', deviceName: 'disk.img' });
});

refusals('device names a server serves', () => {
  assert.is(deviceNameProblem('disk.img'), null);
  assert.is(deviceNameProblem('clone:c1'), null);
  assert.is(deviceNameProblem('dir/disk.img'), null);
  assert.is(deviceNameProblem(''), 'device name is empty');
  assert.is(deviceNameProblem('/etc/passwd'), 'device name is an absolute path');
  assert.is(deviceNameProblem('../x'), 'device name contains ..');
  assert.is(deviceNameProblem('a/../b'), 'device name contains ..');
  assert.is(deviceNameProblem('a..b'), 'device name contains ..');
  assert.is(deviceNameProblem('a\0b'), 'device name contains NUL');
  assert.is(deviceNameProblem('x'.repeat(254)), null);
  assert.is(deviceNameProblem('x'.repeat(255)), 'device name is 255 bytes or longer');
  assert.is(deviceNameProblem('é'.repeat(128)), 'device name is 255 bytes or longer');
  assert.is(normalizeDeviceName('a//b/./c/'), 'a/b/c');
  assert.is(normalizeDeviceName('./'), '');
  assert.is(normalizeDeviceName('clone:c1'), 'clone:c1');
});

// ---- fuzz ----

const FUZZ_ROUNDS = 3000;

interface Codec {
  label: string;
  sample: Uint8Array;
  invalid(bytes: Uint8Array): string | null;
  /** decode then encode: the bytes a decoder's fields come back as. */
  roundTrip(bytes: Uint8Array): Uint8Array;
  decode(bytes: Uint8Array): unknown;
}

const CODECS: Codec[] = [
  { label: 'sess_info', sample: bytesOf(SESS_INFO_HEX), invalid: invalidSessInfo, decode: decodeSessInfo, roundTrip: (b) => encodeSessInfo(decodeSessInfo(b)) },
  { label: 'sess_info_rsp', sample: bytesOf(SESS_INFO_RSP_HEX), invalid: invalidSessInfoRsp, decode: decodeSessInfoRsp, roundTrip: (b) => encodeSessInfoRsp(decodeSessInfoRsp(b)) },
  { label: 'open', sample: bytesOf(OPEN_HEX), invalid: invalidOpen, decode: decodeOpen, roundTrip: (b) => encodeOpen(decodeOpen(b)) },
  { label: 'open_rsp', sample: bytesOf(OPEN_RSP_HEX), invalid: invalidOpenRsp, decode: decodeOpenRsp, roundTrip: (b) => encodeOpenRsp(decodeOpenRsp(b)) },
  { label: 'io', sample: bytesOf(IO_HEX), invalid: invalidIo, decode: decodeIo, roundTrip: (b) => encodeIo(decodeIo(b)) },
  { label: 'close', sample: bytesOf(CLOSE_HEX), invalid: invalidClose, decode: decodeClose, roundTrip: (b) => encodeClose(decodeClose(b)) },
];

const fuzz = suite('rnbd messages: seeded fuzz of every decoder');

fuzz('random and mutated bytes get a reason or fields, never a throw; accepted ones round-trip', () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const accepted = new Map<string, number>();
  try {
    for (let round = 0; round < FUZZ_ROUNDS; round++) {
      for (const codec of CODECS) {
        const bytes = prng.chance(0.2) ? prng.fill(new Uint8Array(prng.below(300))) : mutateMessage(prng, (prng.chance(0.5) ? CODECS[prng.below(CODECS.length)]! : codec).sample);
        const type = messageType(bytes);
        assert.ok(typeof type === 'number' || typeof type === 'string');
        const problem = codec.invalid(bytes);
        if (problem !== null) {
          assert.type(problem, 'string');
          assert.ok(problem.length > 0);
          continue;
        }
        accepted.set(codec.label, (accepted.get(codec.label) ?? 0) + 1);
        const fields = codec.decode(bytes);
        const again = codec.roundTrip(bytes);
        assert.is(codec.invalid(again), null, `${codec.label}: re-encoded bytes are valid`);
        assert.equal(codec.decode(again), fields, `${codec.label}: decode(encode(decode(bytes))) is decode(bytes)`);
      }
    }
    // Every decoder saw some valid messages, not only refusals.
    for (const codec of CODECS) assert.ok((accepted.get(codec.label) ?? 0) > 0, `${codec.label} accepted nothing`);
  } catch (error) {
    if (error instanceof Error) error.message += ` [seed ${seed}; replay with BLOCKCORE_SEED=${seed}]`;
    throw error;
  }
});

vectors.run();
refusals.run();
fuzz.run();
