/**
 * smallBytes (runtime/net/small-bytes.ts): every array it hands out is zeroed, 8-byte aligned in
 * its memory, and never shares a byte with another, across slab boundaries and for sizes past the
 * small limit; smallCopy copies.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { smallBytes, smallCopy } from '../runtime/net/small-bytes.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';

const test = suite('net: smallBytes');

test('zeroed, aligned, and no two arrays overlap (filled and checked across several slabs)', () => {
  const prng = new Prng(seedFromEnv());
  const handed: Array<{ bytes: Uint8Array; fill: number }> = [];
  for (let i = 0; i < 3000; i++) {
    const lengthBytes = prng.below(10) === 0 ? prng.range(1025, 5000) : prng.range(0, 300);
    const bytes = smallBytes(lengthBytes);
    assert.is(bytes.length, lengthBytes);
    assert.is(bytes.byteOffset % 8, 0, 'aligned');
    assert.ok(bytes.every((byte) => byte === 0), `array ${i} is zeroed`);
    const fill = (i % 255) + 1;
    bytes.fill(fill);
    handed.push({ bytes, fill });
  }
  // Had any two shared memory, the later fill would show in the earlier array.
  for (const [i, { bytes, fill }] of handed.entries()) assert.ok(bytes.every((byte) => byte === fill), `array ${i} kept its bytes`);
});

test('smallCopy copies', () => {
  const source = Uint8Array.of(1, 2, 3, 4, 5);
  const copy = smallCopy(source);
  source.fill(9);
  assert.equal([...copy], [1, 2, 3, 4, 5]);
});

test.run();
