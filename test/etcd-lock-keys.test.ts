/**
 * The etcd lock manager's on-etcd format (runtime/locks/etcd/lock-keys.ts), frozen: the key
 * layout and the exact bytes of each value, so a change that would strand a running cluster's
 * state shows here first. The decoders refuse what they did not write with an error naming the
 * key, and a seeded fuzz feeds them mutated and random values (BLOCKCORE_SEED replays).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  decodeEntry, decodeHead, decodeMember, encodeEntry, encodeHead, encodeMember, KeyValueError, LockspaceKeys,
} from '../runtime/locks/etcd/lock-keys.ts';
import { LockMode } from '../runtime/locks/modes.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';

const test = suite('etcd lock keys');
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const bytes = (value: string) => new TextEncoder().encode(value);
const keys = new LockspaceKeys('/blockcore/locks/', 'md/cluster 1');

test('the key layout: names percent-encoded under the lockspace prefix', () => {
  assert.is(keys.prefix, '/blockcore/locks/md%2Fcluster%201/');
  assert.is(keys.member('7587'), '/blockcore/locks/md%2Fcluster%201/members/7587');
  assert.is(keys.name('node/a'), '/blockcore/locks/md%2Fcluster%201/names/node%2Fa');
  assert.is(keys.slot(2), '/blockcore/locks/md%2Fcluster%201/slots/2');
  assert.is(keys.head('bitmap0001'), '/blockcore/locks/md%2Fcluster%201/res/bitmap0001/head');
  assert.is(keys.lock('a/b', '7587', 12), '/blockcore/locks/md%2Fcluster%201/res/a%2Fb/lock/7587/12');
  assert.equal(keys.parse(keys.lock('a/b', '7587', 12)), { kind: 'lock', resource: 'a/b', lease: '7587', lockId: 12 });
  assert.equal(keys.parse(keys.head('token')), { kind: 'head', resource: 'token' });
  assert.equal(keys.parse(keys.member('99')), { kind: 'member', lease: '99' });
  for (const other of [keys.sync, keys.slot(1), `${keys.resources}x/lock/notalease/1`, `${keys.resources}%E0%A4%A/head`, '/elsewhere']) {
    assert.equal(keys.parse(other), { kind: 'other' }, other);
  }
});

test('values are frozen byte for byte', () => {
  assert.is(text(encodeMember({ name: 'node1', slot: 3 })), '{"name":"node1","slot":3}');
  assert.is(text(encodeMember({ name: 'node1', slot: 3, node: '6f1c' })), '{"name":"node1","slot":3,"node":"6f1c"}');
  const lvb = new Uint8Array(64);
  lvb[0] = 0xab;
  lvb[63] = 0x01;
  assert.is(text(encodeHead({ seq: 42, lvb, valid: false })), `{"seq":42,"lvb":"ab${'00'.repeat(62)}01","valid":false}`);
  assert.is(
    text(encodeEntry({ slot: 2, g: LockMode.PR, r: LockMode.EX, q: 7, c: 9, hb: LockMode.PW, told: [LockMode.CW, LockMode.PW], gs: 3 })),
    '{"slot":2,"g":3,"r":5,"q":7,"c":9,"hb":4,"told":[2,4],"gs":3}',
  );
  assert.is(text(encodeEntry({ slot: 1, g: null, r: LockMode.CR, q: 1, c: 0, hb: -1, told: [], gs: 0 })), '{"slot":1,"g":null,"r":1,"q":1,"c":0,"hb":-1,"told":[],"gs":0}');
});

test('each value decodes to what was encoded', () => {
  assert.equal(decodeMember('k', encodeMember({ name: 'n', slot: 1 })), { name: 'n', slot: 1 });
  const head = { seq: 5, lvb: new Uint8Array(64).fill(0x5a), valid: true };
  assert.equal(decodeHead('k', encodeHead(head)), head);
  const entry = { slot: 4, g: LockMode.EX, r: null, q: 3, c: 0, hb: -1, told: [], gs: 1 };
  assert.equal(decodeEntry('k', encodeEntry(entry)), entry);
});

test('values it did not write are refused with an error naming the key and the field', () => {
  const refused = (decode: () => unknown, pattern: RegExp) => {
    try {
      decode();
    } catch (error) {
      assert.instance(error, KeyValueError);
      assert.match((error as Error).message, /^etcd key \/x\/y: /);
      assert.match((error as Error).message, pattern);
      return;
    }
    assert.unreachable(`decoded: ${pattern}`);
  };
  refused(() => decodeEntry('/x/y', bytes('not json')), /not JSON/);
  refused(() => decodeEntry('/x/y', bytes('[1,2]')), /not a JSON object/);
  refused(() => decodeEntry('/x/y', bytes('{"slot":1,"g":null,"r":null,"q":0,"c":0,"hb":-1,"told":[],"gs":0}')), /neither granted/);
  refused(() => decodeEntry('/x/y', bytes('{"slot":1,"g":6,"r":null,"q":0,"c":0,"hb":-1,"told":[],"gs":0}')), /g is not a lock mode/);
  refused(() => decodeEntry('/x/y', bytes('{"slot":1,"g":5,"r":null,"q":-1,"c":0,"hb":-1,"told":[],"gs":0}')), /q is not/);
  refused(() => decodeEntry('/x/y', bytes('{"slot":1,"g":5,"r":null,"q":0,"c":0,"hb":-1,"told":[9],"gs":0}')), /told/);
  refused(() => decodeHead('/x/y', bytes('{"seq":1,"lvb":"00","valid":true}')), /64 bytes/);
  refused(() => decodeHead('/x/y', bytes('{"seq":1.5,"lvb":"00","valid":true}')), /seq/);
  refused(() => decodeMember('/x/y', bytes('{"name":"","slot":1}')), /name/);
  refused(() => decodeMember('/x/y', new Uint8Array([0xff, 0xfe])), /not JSON/);
});

test('seeded fuzz: mutated and random values decode or are refused with a KeyValueError, nothing else', () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const samples = [
    encodeMember({ name: 'node1', slot: 2 }),
    encodeHead({ seq: 9, lvb: new Uint8Array(64).fill(7), valid: true }),
    encodeEntry({ slot: 2, g: LockMode.PR, r: LockMode.EX, q: 7, c: 9, hb: LockMode.PW, told: [2, 4], gs: 3 }),
  ];
  const decoders = [decodeMember, decodeHead, decodeEntry];
  for (let round = 0; round < 3000; round++) {
    let value: Uint8Array;
    if (prng.chance(0.3)) {
      value = new Uint8Array(prng.below(80));
      prng.fill(value);
    } else {
      value = samples[prng.below(samples.length)]!.slice();
      for (let flips = 1 + prng.below(4); flips > 0; flips--) value[prng.below(value.length)] = prng.below(256);
    }
    for (const decode of decoders) {
      try {
        decode('/f', value);
      } catch (error) {
        if (!(error instanceof KeyValueError)) throw new Error(`seed ${seed} round ${round}: ${String(error)} (replay with BLOCKCORE_SEED=${seed})`);
      }
    }
  }
});

test.run();
