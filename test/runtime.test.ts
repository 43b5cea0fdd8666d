import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadAdapter, detectRuntime } from '../runtime/adapter/index.ts';
import { Prng } from '../runtime/prng.ts';

test('the adapter matches the runtime we run on', async () => {
  const adapter = await loadAdapter();
  assert.is(adapter.name, detectRuntime());
  const expected = process.env.BLOCKCORE_TEST_RUNTIME;
  if (expected) assert.is(adapter.name, expected);
});

test('prng is deterministic per seed and identical across runtimes', () => {
  const a = new Prng(42);
  const b = new Prng(42);
  const seq = Array.from({ length: 5 }, () => a.nextU32());
  assert.equal(seq, Array.from({ length: 5 }, () => b.nextU32()));
  // Frozen vector: the same numbers on Node, Bun and Deno, today and after any refactor.
  assert.equal(seq, [2581720956, 1925393290, 3661312704, 2876485805, 750819978]);
  const c = new Prng(7);
  assert.is(c.below(2 ** 40), 12869512207);
  assert.is(c.range(3, 9), 9);
});

test.run();
