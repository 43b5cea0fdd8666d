import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCloneMessage } from '../runtime/clone/messages.ts';
import { formatCloneTable, parseCloneTable, TableError } from '../runtime/clone/table.ts';
import { BlockError } from '../runtime/errors.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';

const table = suite('clone table');

table('defaults: four words after clone', () => {
  const t = parseCloneTable('clone meta dest src 8');
  assert.equal(t, {
    targetSectors: undefined, metadataDevice: 'meta', destinationDevice: 'dest', sourceDevice: 'src',
    regionSectors: 8, features: [], hydrationThreshold: 1, hydrationBatchSize: 1,
  });
});

table('dmsetup prefix, features and core args', () => {
  const t = parseCloneTable('0 1048576000 clone m d https://example.test/img.raw 64 2 no_hydration no_discard_passdown 4 hydration_threshold 256 hydration_batch_size 32');
  assert.is(t.targetSectors, 1048576000);
  assert.equal(t.features, ['no_hydration', 'no_discard_passdown']);
  assert.is(t.hydrationThreshold, 256);
  assert.is(t.hydrationBatchSize, 32);
  assert.is(t.sourceDevice, 'https://example.test/img.raw');
});

table('largest and smallest region sizes are accepted', () => {
  assert.is(parseCloneTable('clone m d s 2097152').regionSectors, 2097152);
  assert.is(parseCloneTable('clone m d s 8').regionSectors, 8);
});

const refusals: Array<[string, string]> = [
  ['', 'target'],
  ['linear a 0', 'target'],
  ['clone m d', 'source dev'],
  ['clone m d s', 'region size'],
  ['clone m d s 12', 'region size'], // not a power of two
  ['clone m d s 4', 'region size'], // too small
  ['clone m d s 4194304', 'region size'], // too large
  ['clone m d s 0', 'region size'],
  ['clone m d s -8', 'region size'],
  ['clone m d s 8x', 'region size'],
  ['clone m d s 8 3 no_hydration no_hydration no_hydration', '#feature args'],
  ['clone m d s 8 1 turbo', 'feature args'],
  ['clone m d s 8 2 no_hydration', 'feature args'],
  ['clone m d s 8 2 no_hydration no_hydration', 'feature args'],
  ['clone m d s 8 0 1 hydration_threshold', '#core args'],
  ['clone m d s 8 0 6 a 1 b 2 c 3', '#core args'],
  ['clone m d s 8 0 2 hydration_speed 5', 'core args'],
  ['clone m d s 8 0 2 hydration_threshold x', 'hydration_threshold'],
  ['clone m d s 8 0 2 hydration_threshold 4294967296', 'hydration_threshold'],
  ['clone m d s 8 0 2 hydration_batch_size 0', 'hydration_batch_size'],
  ['clone m d s 8 0 4 hydration_threshold 1 hydration_threshold 2', 'core args'],
  ['clone m d s 8 0 0 extra', 'table'],
  ['5 100 clone m d s 8', 'start'],
  ['0 0 clone m d s 8', 'length'],
];
for (const [line, field] of refusals) {
  table(`refused: "${line}" names ${field}`, () => {
    try {
      parseCloneTable(line);
      assert.unreachable('accepted');
    } catch (error) {
      assert.instance(error, TableError);
      assert.is((error as TableError).field, field, (error as Error).message);
      assert.is((error as TableError).code, 'EINVAL');
    }
  });
}

table('format then parse is the identity (seeded)', () => {
  const prng = new Prng(20261121);
  const featureSets = [[], ['no_hydration'], ['no_discard_passdown'], ['no_hydration', 'no_discard_passdown']] as const;
  for (let i = 0; i < 200; i++) {
    const t = parseCloneTable(
      `${prng.chance(0.5) ? `0 ${prng.range(1, 1e9)} ` : ''}clone m${i} d s ${2 ** prng.range(3, 21)} ` +
        `${featureSets[i % 4]!.length} ${featureSets[i % 4]!.join(' ')} 4 hydration_threshold ${prng.range(0, 1000)} hydration_batch_size ${prng.range(1, 1000)}`,
    );
    assert.equal(parseCloneTable(formatCloneTable(t)), t);
  }
});

table('seeded garbage never escapes as anything but a TableError', () => {
  const prng = new Prng(7);
  const vocabulary = ['clone', '0', '8', '4', '2', 'no_hydration', 'hydration_threshold', 'x', '-1', '99999999999999999999', 'm', ''];
  for (let i = 0; i < 2000; i++) {
    const words = Array.from({ length: prng.range(0, 12) }, () => vocabulary[prng.below(vocabulary.length)]);
    try {
      parseCloneTable(words.join(' '));
    } catch (error) {
      assert.instance(error, TableError, `${words.join(' ')}: ${error}`);
    }
  }
});

table('messages: seeded garbage parses to a valid message or EINVAL naming it', () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const vocabulary = ['enable_hydration', 'disable_hydration', 'hydration_threshold', 'hydration_batch_size', '0', '1', '4294967295', '4294967296', '-1', 'x', '1.5', ''];
  for (let i = 0; i < 2000; i++) {
    const text = Array.from({ length: prng.range(0, 4) }, () => vocabulary[prng.below(vocabulary.length)]).join(' ');
    try {
      const message = parseCloneMessage(text);
      assert.is(message.type, text.trim().split(/\s+/)[0], `seed ${seed}: ${text}`);
      if ('regions' in message) {
        assert.ok(Number.isSafeInteger(message.regions) && message.regions >= (message.type === 'hydration_batch_size' ? 1 : 0) && message.regions <= 0xffffffff, `seed ${seed}: ${text}`);
      }
    } catch (error) {
      assert.instance(error, BlockError, `seed ${seed}: ${text}: ${error}`);
      assert.is((error as BlockError).code, 'EINVAL');
      assert.match(String(error), /message/, text);
    }
  }
  assert.equal(parseCloneMessage(' hydration_threshold  0 '), { type: 'hydration_threshold', regions: 0 });
  assert.equal(parseCloneMessage('hydration_batch_size 4294967295'), { type: 'hydration_batch_size', regions: 4294967295 });
});

table.run();
