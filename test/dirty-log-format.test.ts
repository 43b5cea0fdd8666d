/**
 * The dirty log's text and on-disk forms: the disk log header and bits frozen by a hex vector
 * (what dm-log.c writes for 100 regions, regions 3 and 64 dirty), CTR arguments and mirror table
 * lines accepted and refused with the word named, the table printed back as dm prints it, and a
 * seeded fuzz of every decoder here (never a throw, only a reason).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeDiskLogHeader, encodeDiskLogHeader, bufferBytes, DISK_LOG_BITS_OFFSET } from '../runtime/dirty-log/disk-log-format.ts';
import { parseLogArgs } from '../runtime/dirty-log/log-args.ts';
import { formatMirrorTable, parseMirrorTable } from '../runtime/mirror/mirror-table.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';

const test = suite('dirty log formats');
const hexOf = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

test('disk log: the header and bits of 100 regions with 3 and 64 dirty, byte for byte', () => {
  const image = new Uint8Array(bufferBytes(100, 512));
  assert.is(image.length, 1536);
  encodeDiskLogHeader(100, image);
  const bits = image.subarray(DISK_LOG_BITS_OFFSET, DISK_LOG_BITS_OFFSET + 16);
  bits.fill(0xff, 0, 12);
  bits[12] = 0x0f; // regions 96..99 clean, the rest of the last word zero
  bits[0] = 0xf7; // region 3 dirty
  bits[8] = 0xfe; // region 64 dirty
  assert.is(hexOf(image.subarray(0, 16)), '7252694d020000006400000000000000');
  assert.is(hexOf(bits), 'f7ffffffffffffff feffffff0f000000'.replace(' ', ''));
  assert.equal(decodeDiskLogHeader(image), { kind: 'log', version: 2, nrRegions: 100 });
  assert.equal(decodeDiskLogHeader(new Uint8Array(16)), { kind: 'fresh' });
  const v1 = image.slice(0, 16);
  v1[4] = 1;
  assert.equal(decodeDiskLogHeader(v1), { kind: 'log', version: 1, nrRegions: 100 });
  v1[4] = 3;
  assert.match((decodeDiskLogHeader(v1) as { why: string }).why, /incompatible disk log version 3/);
  assert.match((decodeDiskLogHeader(Uint8Array.of(1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) as { why: string }).why, /not a dirty log \(magic 0x04030201/);
});

test('CTR arguments: accepted, and refused naming the word', () => {
  assert.equal(parseLogArgs('2097152 clustered-disk 253:3 1024 nosync block_on_error'), {
    type: 'clustered-disk', targetSectors: 2097152, device: '253:3', regionSectors: 1024, sync: 'nosync', blockOnError: true, regionCount: 2048, text: 'clustered-disk 253:3 1024 nosync block_on_error',
  });
  assert.is((parseLogArgs('1000 core 8') as { regionCount: number }).regionCount, 125);
  for (const [ctr, why] of [
    ['', /expected/], ['1000', /expected/], ['0 core 8', /target length/], ['1000 core 0x8', /region_size "0x8"/], ['1000 core 6', /power of two/],
    ['1000 core 8 sync sync', /unrecognised core argument "sync"/], ['1000 core 8 block_on_error', /unrecognised core argument "block_on_error"/],
    ['1000 disk 8', /takes <dev> <region_size>/], ['1000 raid 8', /unknown log type "raid"/], ['4 core 8', /larger than the target/],
  ] as const) {
    const got = parseLogArgs(ctr);
    assert.type(got, 'string', ctr);
    assert.match(got as string, why, ctr);
  }
});

test('mirror tables: parsed, printed back as dm prints them, refused naming the word', () => {
  const line = 'mirror disk 3 log.img 1024 nosync 2 a.img 0 b.img 2048 2 handle_errors keep_log';
  const table = parseMirrorTable(line);
  assert.equal(table, { logType: 'disk', logArgs: ['log.img', '1024', 'nosync'], legs: [{ device: 'a.img', offsetSectors: 0 }, { device: 'b.img', offsetSectors: 2048 }], handleErrors: true, keepLog: true });
  assert.is(formatMirrorTable(table as Exclude<typeof table, string>), line);
  assert.is(formatMirrorTable(parseMirrorTable('core 1 1024 2 a 0 b 0') as Exclude<typeof table, string>), 'mirror core 1 1024 2 a 0 b 0', 'the leading word is optional');
  for (const [bad, why] of [
    ['mirror', /ends before the log type/], ['mirror tape 1 8 2 a 0 b 0', /unknown mirror log type "tape"/], ['mirror core 5 8 2 a 0', /insufficient mirror log arguments/],
    ['mirror core 1 8 10 a 0', /invalid number of legs "10"/], ['mirror core 1 8 2 a 0 b', /too few leg arguments/], ['mirror core 1 8 2 a 0 b -1', /offset "-1"/],
    ['mirror core 1 8 2 a 0 b 0 1 fast', /unrecognised mirror feature "fast"/], ['mirror core 1 8 2 a 0 b 0 1 keep_log', /keep_log needs handle_errors/],
    ['mirror core 1 8 2 a 0 b 0 1 handle_errors extra', /too many mirror arguments: "extra"/], ['mirror core 0 2 a 0 b 0', /core log takes/],
    ['mirror userspace 2 u core 2 a 0 b 0', /userspace log takes/],
  ] as const) {
    const got = parseMirrorTable(bad);
    assert.type(got, 'string', bad);
    assert.match(got as string, why, bad);
  }
});

test('seeded fuzz: CTR arguments, table lines and disk log headers give a value or a reason, never a throw', () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const words = ['mirror', 'core', 'disk', 'userspace', 'clustered-core', 'clustered-disk', 'sync', 'nosync', 'handle_errors', 'keep_log', 'block_on_error', 'integrated_flush', '0', '1', '2', '3', '8', '1024', '-1', '1e9', '9007199254740993', 'a.img', 'b.img', '', ' ', '\u0000', 'é'];
  for (let i = 0; i < 5000; i++) {
    const line = Array.from({ length: prng.below(14) }, () => words[prng.below(words.length)]!).join(prng.chance(0.9) ? ' ' : '\t');
    for (const parse of [parseLogArgs, parseMirrorTable]) {
      try {
        const got = parse(line);
        assert.ok(typeof got === 'string' || typeof got === 'object', `seed ${seed}: "${line}"`);
      } catch (error) {
        assert.unreachable(`seed ${seed}: ${parse.name}("${line}") threw ${String(error)}`);
      }
    }
    const header = prng.fill(new Uint8Array(16));
    if (prng.chance(0.3)) new DataView(header.buffer).setUint32(0, 0x4d695272, true);
    try {
      decodeDiskLogHeader(header);
    } catch (error) {
      assert.unreachable(`seed ${seed}: decodeDiskLogHeader(${hexOf(header)}) threw ${String(error)}`);
    }
  }
});

test.run();
