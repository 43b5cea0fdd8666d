/**
 * The byte kernels, in both builds (scalar and SIMD), on seeded random inputs: isZero with one
 * non-zero byte at every position; copy with overlap. Digests: kernels-digests.test.ts; the bitmap
 * kernels: bitmap-kernels.test.ts.
 * Replay a failure with BLOCKCORE_SEED=<seed printed in the message>.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { Kernels, defaultKernels, type KernelFlavor } from '../runtime/wasm/kernels.ts';
import { simdSupported } from '../runtime/wasm/load.ts';
import { BlockError } from '../runtime/errors.ts';

const SEED = seedFromEnv();

function kernelSuite(flavor: KernelFlavor): void {
  const s = suite(`kernels (${flavor})`);
  let k: Kernels;
  const where = (what: string) => `${flavor} seed=${SEED} ${what}`;

  s.before(async () => {
    k = await Kernels.create({ flavor });
  });
  s.after(() => k.release());

  s('loads the requested flavor', () => {
    assert.is(k.flavor, flavor);
  });

  s('isZero: one non-zero byte at every position', () => {
    const prng = new Prng(SEED + 7);
    for (let length = 0; length <= 160; length++) {
      const bytes = new Uint8Array(length);
      const buffer = k.alloc(length);
      assert.ok(k.isZero(bytes), where(`zero ${length} bytes`));
      assert.ok(k.isZero(buffer), where(`zero buffer of ${length} bytes`));
      for (let at = 0; at < length; at++) {
        bytes.fill(0);
        bytes[at] = 1 + prng.below(255);
        buffer.view().set(bytes);
        assert.not.ok(k.isZero(bytes), where(`byte ${at} of ${length}`));
        assert.not.ok(k.isZero(buffer), where(`buffer byte ${at} of ${length}`));
        assert.ok(k.isZero(bytes, at + 1), where(`after byte ${at} of ${length}`));
        assert.ok(k.isZero(buffer, 0, at), where(`buffer before byte ${at} of ${length}`));
        assert.not.ok(k.isZero(buffer, at, 1), where(`buffer just byte ${at} of ${length}`));
      }
      buffer.free();
    }
    const large = new Uint8Array(300_000);
    assert.ok(k.isZero(large), where('300 kB of zeros'));
    large[299_999] = 1;
    assert.not.ok(k.isZero(large), where('300 kB, last byte set'));
  });

  s('copy: overlapping and disjoint ranges behave like copyWithin', () => {
    const prng = new Prng(SEED + 8);
    const lengthBytes = 1000;
    const buffer = k.alloc(lengthBytes);
    const other = k.alloc(lengthBytes);
    const model = prng.fill(new Uint8Array(lengthBytes));
    buffer.view().set(model);
    for (let step = 0; step < 300; step++) {
      const length = prng.chance(0.2) ? prng.below(8) : prng.below(lengthBytes + 1);
      const src = prng.below(lengthBytes - length + 1);
      const dst = prng.chance(0.5) ? Math.min(lengthBytes - length, Math.max(0, src + prng.range(-70, 70))) : prng.below(lengthBytes - length + 1);
      k.copy(buffer, dst, buffer, src, length);
      model.copyWithin(dst, src, src + length);
      assert.equal(buffer.view(), model, where(`copy ${length} bytes ${src} -> ${dst}`));
    }
    k.copy(other, 10, buffer, 20, 900);
    assert.equal(other.view().subarray(10, 910), model.subarray(20, 920), where('copy between buffers'));
    assert.ok(k.isZero(other, 0, 10) && k.isZero(other, 910), where('copy stays inside its range'));
    buffer.free();
    other.free();
  });

  s.run();
}

kernelSuite('scalar');
kernelSuite('simd');

const shared = suite('defaultKernels');

shared('one shared instance, best flavor, cannot be released', async () => {
  const k = await defaultKernels();
  assert.is(await defaultKernels(), k);
  assert.is(k.flavor, simdSupported() ? 'simd' : 'scalar');
  assert.is(k.crc32c(new TextEncoder().encode('123456789')), 0xe3069283);
  assert.throws(() => k.release(), (err: unknown) => err instanceof BlockError && err.code === 'EINVAL');
  assert.not.ok(k.released);
});

shared.run();
