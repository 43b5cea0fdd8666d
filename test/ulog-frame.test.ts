/**
 * dm-log-userspace frames (runtime/ulog/ulog-frame.ts): the 160-byte header's layout as a C
 * compiler lays out the kernel's struct (test/fixtures/ulog/ulog-judge.c, built here with cc),
 * hex vectors our encoder and the C program both write and both read back, every way a frame is
 * refused, and a seeded fuzz of the decoders (never a throw, only a reason).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import {
  decodeHeader, decodePair, decodeRegions, decodeString, decodeU64, encodeHeader, encodePair, encodeRegions, encodeString, encodeU64,
  invalidHeader, invalidRequestPayload, ULOG, ULOG_HEADER_BYTES, ULOG_MAX_DATA_BYTES, type UlogType,
} from '../runtime/ulog/ulog-frame.ts';
import { ULOG_VECTORS, type VectorPayload } from './fixtures/ulog/ulog-vectors.ts';
import { requireTools } from './support/tools.ts';

const test = suite('ulog frames');
const fixtures = fileURLToPath(new URL('./fixtures/ulog/', import.meta.url));
const hexOf = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const bytesOf = (hex: string) => Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));

let judgePath: string | null = null;
/** Builds the C judge once (cc from Debian's gcc; the test command installs it). */
function judge(args: string[]): string {
  if (judgePath === null) {
    requireTools(['cc']);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-ulog-judge-'));
    judgePath = path.join(dir, 'ulog-judge');
    const built = spawnSync('cc', ['-std=c11', '-Wall', '-Wextra', '-Werror', '-I', fixtures, '-o', judgePath, path.join(fixtures, 'ulog-judge.c')], { encoding: 'utf8' });
    assert.is(built.status, 0, `cc: ${built.stderr}`);
  }
  const run = spawnSync(judgePath, args, { encoding: 'utf8' });
  assert.is(run.status, 0, `ulog-judge ${args[0]}: ${run.stderr}`);
  return run.stdout.trim();
}

function payloadBytes(payload: VectorPayload): Uint8Array {
  switch (payload.kind) {
    case 'none': return new Uint8Array(0);
    case 'string': return encodeString(payload.value);
    case 'regions': return encodeRegions(payload.value);
    case 'pair': return encodePair(payload.value[0], payload.value[1]);
    case 'u64': return encodeU64(payload.value);
  }
}

function frameOf(vector: (typeof ULOG_VECTORS)[number]): Uint8Array {
  const data = payloadBytes(vector.payload);
  const frame = new Uint8Array(ULOG_HEADER_BYTES + data.length);
  encodeHeader({ ...vector.header, dataBytes: data.length }, frame);
  frame.set(data, ULOG_HEADER_BYTES);
  return frame;
}

test('the compiler lays the kernel struct out where our codec reads and writes it', () => {
  assert.is(judge(['layout']), 'sizeof=160 luid=0 uuid=8 padding=137 version=140 error=144 seq=148 request_type=152 data_size=156 data=160');
  assert.is(ULOG_HEADER_BYTES, 160);
});

for (const vector of ULOG_VECTORS) {
  test(`vector: ${vector.name}: ours and C write the same bytes and both read them back`, () => {
    const ours = frameOf(vector);
    assert.is(hexOf(ours), vector.hex, 'our encoder');
    const h = vector.header;
    const requestType = (h.typeFlags | h.type) >>> 0;
    const data = hexOf(ours.subarray(ULOG_HEADER_BYTES));
    assert.is(judge(['encode', String(h.luid), h.uuid, String(h.version), String(h.error), String(h.seq), String(requestType), data]), vector.hex, 'the C program');
    const bytes = bytesOf(vector.hex);
    assert.is(invalidHeader(bytes), null);
    assert.equal(decodeHeader(bytes), { ...h, dataBytes: bytes.length - ULOG_HEADER_BYTES });
    const fields = Object.fromEntries(judge(['decode', vector.hex]).split('\n').map((line) => line.split('=') as [string, string]));
    assert.equal(fields, {
      luid: String(h.luid), uuid: h.uuid, version: String(h.version), error: String(h.error), seq: String(h.seq),
      type: String(h.type), flags: String(h.typeFlags), data_size: String(bytes.length - ULOG_HEADER_BYTES),
    });
    const payload = bytes.subarray(ULOG_HEADER_BYTES);
    const p = vector.payload;
    if (p.kind === 'string') assert.is(decodeString(payload), p.value);
    if (p.kind === 'regions') assert.equal(decodeRegions(payload), p.value);
    if (p.kind === 'pair') assert.equal(decodePair(payload), p.value);
    if (p.kind === 'u64') assert.is(decodeU64(payload), p.value);
  });
}

test('refused with a reason: short, another version, an unknown type, a uuid without NUL or not UTF-8, data_size above the maximum, payloads of the wrong shape', () => {
  const good = bytesOf(ULOG_VECTORS[0]!.hex).subarray(0, ULOG_HEADER_BYTES);
  const bent = (change: (b: Uint8Array, v: DataView) => void) => {
    const b = good.slice();
    change(b, new DataView(b.buffer));
    return invalidHeader(b);
  };
  assert.match(invalidHeader(good.subarray(0, 159))!, /160 bytes/);
  assert.match(bent((_, v) => v.setUint32(140, 1, true))!, /version 1/);
  assert.match(bent((_, v) => v.setUint32(152, 18, true))!, /unknown request type 18/);
  assert.match(bent((_, v) => v.setUint32(152, 0x200, true))!, /unknown request type 0/);
  assert.match(bent((b) => b.fill(0x41, 8, 137))!, /no NUL/);
  assert.match(bent((b) => b.set([0xff, 0xfe], 8))!, /UTF-8/);
  assert.match(bent((_, v) => v.setUint32(156, ULOG_MAX_DATA_BYTES + 1, true))!, /data_size/);
  assert.match(bent((_, v) => v.setUint32(4, 2 ** 21, true))!, /luid/);
  assert.match(invalidRequestPayload(ULOG.MARK_REGION, new Uint8Array(7))!, /multiple of 8/);
  assert.match(invalidRequestPayload(ULOG.CLEAR_REGION, Uint8Array.from([0, 0, 0, 0, 0, 0, 0x20, 0]))!, /2\^53/);
  assert.match(invalidRequestPayload(ULOG.IN_SYNC, new Uint8Array(16))!, /8 bytes/);
  assert.match(invalidRequestPayload(ULOG.SET_REGION_SYNC, new Uint8Array(8))!, /16 bytes/);
  assert.match(invalidRequestPayload(ULOG.SET_REGION_SYNC, encodePair(-1, 1))!, /negative region/);
  assert.match(invalidRequestPayload(ULOG.FLUSH, new Uint8Array(1))!, /multiple of 8/);
  assert.is(invalidRequestPayload(ULOG.FLUSH, new Uint8Array(16)), null); // integrated_flush: the marks ride on FLUSH
  assert.match(invalidRequestPayload(ULOG.RESUME, new Uint8Array(1))!, /no payload/);
  assert.match(invalidRequestPayload(ULOG.CTR, Uint8Array.from([0xc3, 0x28]))!, /UTF-8/);
  assert.is(invalidRequestPayload(ULOG.CTR, encodeString('core 1024 nosync')), null);
  assert.is(invalidRequestPayload(ULOG.MARK_REGION, encodeRegions([])), null);
});

test('seeded fuzz: mutated and random frames never make a decoder throw; accepted headers decode and re-encode to the same bytes', () => {
  const prng = new Prng(seedFromEnv());
  const seeds = ULOG_VECTORS.map((v) => bytesOf(v.hex));
  for (let i = 0; i < 4000; i++) {
    const base = seeds[prng.below(seeds.length)]!;
    const bytes = prng.chance(0.2) ? prng.fill(new Uint8Array(prng.below(400))) : base.slice(0, prng.chance(0.1) ? prng.below(base.length + 1) : base.length);
    for (let flips = prng.below(6); flips > 0 && bytes.length > 0; flips--) bytes[prng.below(bytes.length)] = prng.below(256);
    const why = invalidHeader(bytes);
    if (why !== null) {
      assert.type(why, 'string');
      continue;
    }
    const header = decodeHeader(bytes);
    const again = encodeHeader(header);
    const uuidEnd = 8 + bytes.subarray(8, 137).indexOf(0);
    // Bytes after the uuid's NUL and the padding are not kept (the kernel leaves them unset).
    assert.equal(again.subarray(0, uuidEnd), bytes.subarray(0, uuidEnd));
    assert.equal(again.subarray(140, 160), bytes.subarray(140, 160));
    const data = bytes.subarray(ULOG_HEADER_BYTES, ULOG_HEADER_BYTES + header.dataBytes);
    const payloadWhy = invalidRequestPayload(header.type as UlogType, data);
    assert.ok(payloadWhy === null || typeof payloadWhy === 'string');
  }
});

test.run();
