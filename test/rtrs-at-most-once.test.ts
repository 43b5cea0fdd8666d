/**
 * At most once, against copies that arrive late (a failed path's socket delivering after the
 * request was sent again elsewhere), driven by hand (support/rtrs-raw.ts): a copy of an earlier
 * attempt, or of an issue number the chunk is past, is dropped unanswered and never applied, even
 * when its key still matches (always_invalidate off); a read re-issued twice after it completed
 * runs each time with the key it was first issued with (the key rotates once per request).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SEQ_ISSUE_BITS } from '../runtime/transport/rtrs-frame.ts';
import { blockHeader, OP_READ, OP_WRITE, rtrsPair } from './support/rtrs-pair.ts';
import { RawRtrs } from './support/rtrs-raw.ts';

const test = suite('rtrs: at most once against late copies');
const fill = (value: number): Uint8Array => new Uint8Array(4096).fill(value);
const seqOf = (issue: number, attempt: number): number => ((attempt << SEQ_ISSUE_BITS) | issue) >>> 0;

async function silent(raw: RawRtrs, what: string): Promise<void> {
  const frame = await raw.next(300).catch(() => null);
  assert.is(frame, null, `${what}: no answer`);
}

test('a late copy of an earlier attempt is dropped; so is an older request, key or no key', async () => {
  for (const alwaysInvalidate of [true, false]) {
    const pair = await rtrsPair({ alwaysInvalidate });
    const raw = await RawRtrs.session(pair.addresses[0]!, pair.crc32c, `late-${alwaysInvalidate}`);
    try {
      const key = raw.chunks[0]!.key;
      raw.write({ bufferId: 0, key, seq: seqOf(5, 1), data: fill(1), header: blockHeader(OP_WRITE, 0) });
      const first = await raw.response();
      assert.is(first.errno, 0);
      // attempt 0 of the same request, late: dropped, not applied, not answered
      raw.write({ bufferId: 0, key, seq: seqOf(5, 0), data: fill(1), header: blockHeader(OP_WRITE, 0) });
      await silent(raw, 'attempt 0 after attempt 1');
      const next = first.newKey ?? key;
      raw.write({ bufferId: 0, key: next, seq: seqOf(6, 0), data: fill(2), header: blockHeader(OP_WRITE, 0) });
      assert.is((await raw.response()).errno, 0);
      // request 5 again, after 6 was applied: an old write must not land over the newer one
      raw.write({ bufferId: 0, key, seq: seqOf(5, 2), data: fill(1), header: blockHeader(OP_WRITE, 0) });
      await silent(raw, 'request 5 after request 6');
      assert.is(pair.handler.writesApplied, 2, `each request applied once (always_invalidate ${alwaysInvalidate})`);
      const device = new Uint8Array(4096);
      await pair.handler.device.read(0, device);
      assert.equal(device, fill(2), 'the newer write stays');
      assert.ok(raw.isOpen);
    } finally {
      raw.close();
      await pair.close();
    }
  }
});

test('a read re-issued twice after it completed runs each time, with the key it was issued with', async () => {
  const pair = await rtrsPair();
  const raw = await RawRtrs.session(pair.addresses[0]!, pair.crc32c, 'reissue-read');
  try {
    await pair.handler.device.write(0, fill(7));
    const key = raw.chunks[1]!.key;
    for (const attempt of [0, 1, 2]) {
      raw.read({ bufferId: 1, key, seq: seqOf(1, attempt), header: blockHeader(OP_READ, 0), lengthBytes: 4096 });
      const answer = await raw.response();
      assert.is(answer.errno, 0, `attempt ${attempt}`);
      assert.equal(answer.data, fill(7), `attempt ${attempt} data`);
    }
    assert.is(pair.handler.readsServed, 3);
  } finally {
    raw.close();
    await pair.close();
  }
});

test.run();
