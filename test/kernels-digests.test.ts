/**
 * The digest kernels (CRC32C, XXH64) in both builds: published vectors first, then seeded random
 * data against the plain JavaScript references in support/digests.ts. Lengths sit on every
 * boundary of the CRC kernel's paths: the table method below 512 bytes, the fold with its
 * 266-byte span and 16-byte steps, and the 8192-byte scratch blocks (a fold that ends exactly on
 * a block, one step before and after). Replay a failure with BLOCKCORE_SEED=<seed in the message>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { Kernels, type KernelFlavor } from '../runtime/wasm/kernels.ts';
import { crc32cBitwise, crc32cSliceBy8, xxh64Reference } from './support/digests.ts';

const SEED = seedFromEnv();
const SPAN_BYTES = 266;
const BLOCK_BYTES = 8192;
const utf8 = (text: string) => new TextEncoder().encode(text);

/** xxHash's sanity buffer (xxhsum of the 0.6 era): byte i = top byte of 2654435761^(2^i) mod 2^32. */
function sanityBuffer(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let gen = 2654435761;
  for (let i = 0; i < length; i++) {
    bytes[i] = gen >>> 24;
    gen = Math.imul(gen, gen) >>> 0;
  }
  return bytes;
}

function boundaryLengths(prng: Prng): number[] {
  const lengths = [0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 255, 511, 512, 513, 527, 528, 529, 1000, 1024, 4096];
  for (const blocks of [1, 2, 3]) {
    const exact = blocks * BLOCK_BYTES + SPAN_BYTES; // folded bytes end exactly on a block
    for (let d = -17; d <= 17; d++) lengths.push(exact + d);
  }
  lengths.push(65536 + 7, 200003);
  for (let i = 0; i < 16; i++) lengths.push(prng.below(40000));
  return lengths;
}

function digestSuite(flavor: KernelFlavor): void {
  const s = suite(`kernels digests (${flavor})`);
  let k: Kernels;
  const where = (what: string) => `${flavor} seed=${SEED} ${what}`;

  s.before(async () => {
    k = await Kernels.create({ flavor });
  });
  s.after(() => k.release());

  s('crc32c: published vectors', () => {
    assert.is(k.crc32c(utf8('123456789')), 0xe3069283);
    assert.is(k.crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4
    assert.is(k.crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    assert.is(k.crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
    assert.is(k.crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
    assert.is(k.crc32c(new Uint8Array(0)), 0);
    assert.is(k.crc32c(new Uint8Array(0), 0x12345678), 0x12345678);
    // Long enough for the fold: 4 KiB of zeros and of 0xff, checked against the bitwise model.
    for (const fill of [0, 0xff]) {
      const bytes = new Uint8Array(4096).fill(fill);
      assert.is(k.crc32c(bytes), crc32cBitwise(bytes), `4096 bytes of ${fill}`);
    }
  });

  s('crc32c: random data and seeds against the bitwise model, chained, in buffers, at offsets', () => {
    const prng = new Prng(SEED + 11);
    for (const length of boundaryLengths(prng)) {
      const bytes = prng.fill(new Uint8Array(length));
      const copy = bytes.slice();
      const seed = prng.nextU32();
      const expected = crc32cBitwise(bytes, seed);
      assert.is(k.crc32c(bytes, seed), expected, where(`crc32c of ${length} bytes, seed ${seed}`));
      assert.equal(bytes, copy, where('the input is not written'));
      const cut = prng.below(length + 1);
      assert.is(k.crc32c(bytes.subarray(cut), k.crc32c(bytes.subarray(0, cut), seed)), expected, where(`chained at ${cut} of ${length}`));
      const shift = 1 + prng.below(15); // an unaligned start inside wasm memory
      const buffer = k.alloc(length + shift);
      buffer.view().set(bytes, shift);
      assert.is(k.crc32c(buffer, seed, shift, length), expected, where(`buffer range at ${shift}, ${length} bytes`));
      assert.is(k.crc32c(buffer.view().subarray(shift), seed), expected, where(`view over wasm memory, ${length} bytes`));
      buffer.free();
    }
  });

  s('xxh64: published vectors (xxHash sanity check and strings)', () => {
    const prime = 2654435761n;
    const sanity = sanityBuffer(101);
    const vectors: Array<[Uint8Array, bigint, bigint]> = [
      [new Uint8Array(0), 0n, 0xef46db3751d8e999n],
      [new Uint8Array(0), prime, 0xac75fda2929b17efn],
      [sanity.subarray(0, 1), 0n, 0x4fce394cc88952d8n],
      [sanity.subarray(0, 1), prime, 0x739840cb819fa723n],
      [sanity.subarray(0, 14), 0n, 0xcffa8db881bc3a3dn],
      [sanity.subarray(0, 14), prime, 0x5b9611585efcc9cbn],
      [sanity, 0n, 0x0eab543384f878adn],
      [sanity, prime, 0xcaa65939306f1e21n],
      [utf8('a'), 0n, 0xd24ec4f1a98c6e5bn],
      [utf8('abc'), 0n, 0x44bc2cf5ad770999n],
      [utf8('Nobody inspects the spammish repetition'), 0n, 0xfbcea83c8a378bf1n],
    ];
    for (const [bytes, seed, expected] of vectors) {
      assert.is(k.xxh64(bytes, seed), expected, `${bytes.length} bytes, seed ${seed}`);
      assert.is(xxh64Reference(bytes, seed), expected, `reference: ${bytes.length} bytes, seed ${seed}`);
    }
  });

  s('xxh64 and xxh64Into: random data and seeds against the BigInt reference, in buffers, staged past the scratch', () => {
    const prng = new Prng(SEED + 12);
    const lengths = [0, 1, 3, 4, 5, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 1000, 65536 + 33];
    for (let i = 0; i < 24; i++) lengths.push(prng.below(3000));
    for (const length of lengths) {
      const bytes = prng.fill(new Uint8Array(length));
      const seed = (BigInt(prng.nextU32()) << 32n) | BigInt(prng.nextU32());
      const expected = xxh64Reference(bytes, seed);
      assert.is(k.xxh64(bytes, seed), expected, where(`xxh64 of ${length} bytes`));
      const halves = new Uint32Array(2);
      k.xxh64Into(halves, bytes, Number(seed >> 32n), Number(seed & 0xffffffffn));
      assert.is((BigInt(halves[0]!) << 32n) | BigInt(halves[1]!), expected, where(`xxh64Into of ${length} bytes`));
      const shift = prng.below(8);
      const buffer = k.alloc(length + shift);
      buffer.view().set(bytes, shift);
      assert.is(k.xxh64(buffer, seed, shift, length), expected, where(`xxh64 of a buffer range at ${shift}, ${length} bytes`));
      buffer.free();
    }
  });

  s('digests refuse bad seeds and ranges', () => {
    const code = (fn: () => unknown, expected: string) =>
      assert.throws(fn, (err: unknown) => err instanceof BlockError && err.code === expected);
    code(() => k.crc32c(new Uint8Array(4), -1), 'EINVAL');
    code(() => k.crc32c(new Uint8Array(4), 0, 2, 3), 'ERANGE');
    code(() => k.xxh64(new Uint8Array(4), -1n), 'EINVAL');
    code(() => k.xxh64(new Uint8Array(4), 1n << 64n), 'EINVAL');
    code(() => k.xxh64(new Uint8Array(4), 0n, 5), 'ERANGE');
    code(() => k.xxh64Into(new Uint32Array(1), new Uint8Array(4)), 'EINVAL');
    code(() => k.xxh64Into(new Uint32Array(2), new Uint8Array(4), 2 ** 32), 'EINVAL');
    code(() => k.xxh64Into(new Uint32Array(2), new Uint8Array(4), 0, -1), 'EINVAL');
  });

  s.run();
}

digestSuite('scalar');
digestSuite('simd');

const references = suite('digest references');

references('slice-by-8 agrees with the bitwise CRC32C (it is the benchmark peer)', () => {
  const prng = new Prng(SEED + 13);
  for (let i = 0; i < 40; i++) {
    const bytes = prng.fill(new Uint8Array(prng.below(5000)));
    const seed = prng.nextU32();
    assert.is(crc32cSliceBy8(bytes, seed), crc32cBitwise(bytes, seed), `seed=${SEED} ${bytes.length} bytes`);
  }
});

references.run();
