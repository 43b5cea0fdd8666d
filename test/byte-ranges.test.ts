/**
 * The data plane's header parsers (server/http/byte-ranges.ts): vectors for every form, and a
 * seeded fuzz of each (BLOCKCORE_SEED replays): any string gives a span inside the device or a
 * ServiceError naming the header, never anything else.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ServiceError } from '../server/errors.ts';
import { etagMatches, parseContentRange, parseEtagList, parseRange } from '../server/http/byte-ranges.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';

const test = suite('byte ranges');
const SIZE = 10_000;

function refusedWith(run: () => unknown, code: string, field: string): void {
  try {
    run();
  } catch (error) {
    assert.instance(error, ServiceError);
    assert.is((error as ServiceError).code, code);
    assert.is((error as ServiceError).field, field);
    return;
  }
  assert.unreachable('expected a refusal');
}

test('Range vectors', () => {
  assert.is(parseRange(undefined, SIZE), null);
  assert.equal(parseRange('bytes=0-0', SIZE), { offsetBytes: 0, lengthBytes: 1 });
  assert.equal(parseRange('bytes=100-199', SIZE), { offsetBytes: 100, lengthBytes: 100 });
  assert.equal(parseRange('bytes=9990-', SIZE), { offsetBytes: 9990, lengthBytes: 10 });
  assert.equal(parseRange('bytes=-10', SIZE), { offsetBytes: 9990, lengthBytes: 10 });
  assert.equal(parseRange('bytes=-20000', SIZE), { offsetBytes: 0, lengthBytes: SIZE });
  assert.equal(parseRange('bytes=9999-20000', SIZE), { offsetBytes: 9999, lengthBytes: 1 });
  assert.equal(parseRange(' BYTES=1-2 ', SIZE), { offsetBytes: 1, lengthBytes: 2 });
  refusedWith(() => parseRange('bytes=10000-', SIZE), 'ENXIO', 'range');
  refusedWith(() => parseRange('bytes=-0', SIZE), 'ENXIO', 'range');
  refusedWith(() => parseRange('bytes=0-', 0), 'ENXIO', 'range');
  assert.is(parseRange('bits=0-1', SIZE), null, 'another unit is ignored');
  assert.is(parseRange('bytes 0-1', SIZE), null, 'so is a header that is not bytes=');
  for (const bad of ['bytes=1-0', 'bytes=-', 'bytes=', 'bytes=0-1,2-3', 'bytes=a-b', 'bytes=1234567890123456-']) {
    refusedWith(() => parseRange(bad, SIZE), 'EINVAL', 'range');
  }
});

test('Content-Range vectors', () => {
  assert.equal(parseContentRange(undefined, 4096, 512), { offsetBytes: 0, lengthBytes: 4096 });
  assert.equal(parseContentRange('bytes 512-1023/*', 4096, 512), { offsetBytes: 512, lengthBytes: 512 });
  assert.equal(parseContentRange('bytes 0-4095/4096', 4096, 512), { offsetBytes: 0, lengthBytes: 4096 });
  refusedWith(() => parseContentRange('bytes 1-512/*', 4096, 512), 'EINVAL', 'content-range');
  refusedWith(() => parseContentRange('bytes 0-510/*', 4096, 512), 'EINVAL', 'content-range');
  refusedWith(() => parseContentRange('bytes 0-511/8192', 4096, 512), 'EINVAL', 'content-range');
  refusedWith(() => parseContentRange('bytes 4096-4607/*', 4096, 512), 'ENXIO', 'content-range');
  refusedWith(() => parseContentRange('bytes 511-0/*', 4096, 512), 'EINVAL', 'content-range');
  refusedWith(() => parseContentRange('bytes */4096', 4096, 512), 'EINVAL', 'content-range');
});

test('entity tag lists and strong comparison', () => {
  assert.is(parseEtagList(undefined, 'if-match'), null);
  assert.is(parseEtagList(' * ', 'if-match'), '*');
  assert.equal(parseEtagList('"a", W/"b" ,"c"', 'if-match'), ['"a"', 'W/"b"', '"c"']);
  refusedWith(() => parseEtagList('a', 'if-match'), 'EINVAL', 'if-match');
  refusedWith(() => parseEtagList('"a" "b"', 'if-none-match'), 'EINVAL', 'if-none-match');
  refusedWith(() => parseEtagList('', 'if-match'), 'EINVAL', 'if-match');
  assert.ok(etagMatches(['"x"', '"a"'], '"a"'));
  assert.not.ok(etagMatches(['W/"a"'], '"a"'), 'a weak tag never matches strongly');
  assert.not.ok(etagMatches('*', null), 'nothing matches while a write is in flight');
  assert.ok(etagMatches('*', '"a"'));
});

test('seeded fuzz: every header gives a span inside the device or a refusal naming it', () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const alphabet = 'bytes=-0123456789, */"W\u00e9xB';
  const pieces = ['bytes=', 'bytes ', '-', ',', '/', '*', '"', 'W/', ' ', '0', '511', '512', '4095', '4096', '99999999999999999', String(SIZE)];
  for (let i = 0; i < 20_000; i++) {
    const text = prng.chance(0.5)
      ? Array.from({ length: prng.below(24) }, () => alphabet[prng.below(alphabet.length)]).join('')
      : Array.from({ length: 1 + prng.below(6) }, () => pieces[prng.below(pieces.length)]).join('');
    const size = prng.chance(0.1) ? 0 : 512 * prng.below(40);
    const what = `seed ${seed} #${i}: ${JSON.stringify(text)} on ${size} bytes`;
    for (const [field, run] of [
      ['range', () => {
        const span = parseRange(text, size);
        if (span === null) return assert.not.match(text.trim(), /^bytes=/i, what);
        assert.ok(span.lengthBytes >= 1 && span.offsetBytes >= 0 && span.offsetBytes + span.lengthBytes <= size, what);
      }],
      ['content-range', () => {
        const span = parseContentRange(text, size, 512);
        assert.ok(span.offsetBytes % 512 === 0 && span.lengthBytes % 512 === 0 && span.offsetBytes + span.lengthBytes <= size, what);
      }],
      ['if-match', () => {
        const list = parseEtagList(text, 'if-match');
        assert.ok(list === '*' || (Array.isArray(list) && list.length > 0 && list.every((tag) => /^(W\/)?".*"$/.test(tag))), what);
      }],
    ] as const) {
      try {
        run();
      } catch (error) {
        if (!(error instanceof ServiceError)) throw error;
        assert.is(error.field, field, what);
        assert.ok(error.code === 'EINVAL' || error.code === 'ENXIO', what);
      }
    }
  }
});

test.run();
