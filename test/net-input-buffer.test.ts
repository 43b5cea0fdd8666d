/**
 * InputBuffer against a model: seeded streams cut into random socket chunks, read back through a
 * random mix of contiguous/consume, take, takeSome and skip, must give back exactly the bytes
 * pushed, in order; takeSome never copies (its views lie in the pushed chunks).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { InputBuffer } from '../runtime/net/input-buffer.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';

const SEED = seedFromEnv();
const test = suite('net: InputBuffer');

test('every way of reading gives back the stream, in order', () => {
  const prng = new Prng(SEED);
  for (let trial = 0; trial < 200; trial++) {
    const stream = prng.fill(new Uint8Array(prng.range(1, 20_000)));
    const input = new InputBuffer();
    const pushed: Uint8Array[] = [];
    for (let at = 0; at < stream.length;) {
      const size = Math.min(stream.length - at, prng.range(1, 3000));
      const chunk = stream.slice(at, at + size);
      pushed.push(chunk);
      input.push(chunk);
      at += size;
    }
    const out: number[] = [];
    while (input.length > 0) {
      const want = prng.range(1, Math.min(input.length, 5000));
      switch (prng.below(4)) {
        case 0: {
          const chunk = input.contiguous(want);
          out.push(...chunk.subarray(input.front, input.front + want));
          input.consume(want);
          break;
        }
        case 1:
          out.push(...input.take(want));
          break;
        case 2: {
          const view = input.takeSome(want);
          assert.ok(view.length >= 1 && view.length <= want, `takeSome(${want}) gave ${view.length}`);
          assert.ok(pushed.some((chunk) => chunk.buffer === view.buffer), 'takeSome returns a view of a pushed chunk');
          out.push(...view);
          break;
        }
        default: {
          const start = stream.length - input.length;
          assert.is(input.skip(want), want);
          out.push(...stream.subarray(start, start + want));
        }
      }
    }
    assert.equal(new Uint8Array(out), stream, `trial ${trial} [seed ${SEED}]`);
  }
});

test('keepUnread: bytes still held in a reused chunk survive it being overwritten, also after contiguous merged it', () => {
  const input = new InputBuffer();
  input.push(Uint8Array.of(1, 2, 3));
  const reused = new Uint8Array(16);
  reused.set([4, 5, 6, 7, 8]);
  input.push(reused.subarray(0, 5));
  const merged = input.contiguous(4); // 1 2 3 4: the rest of the reused chunk is now a view of it
  assert.equal([...merged.subarray(input.front, input.front + 4)], [1, 2, 3, 4]);
  input.consume(4);
  input.keepUnread(reused.subarray(0, 5));
  reused.fill(0xee);
  assert.equal([...input.take(input.length)], [5, 6, 7, 8]);
});

test.run();
