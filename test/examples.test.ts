import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { quickstart } from '../examples/quickstart.ts';

test('the README library example runs and prints what the README says', async () => {
  const log = await quickstart();
  assert.equal(log[0], 'read back ab at the last block');
  assert.match(log[1]!, /^discard: (punched|zeroed)$/);
  assert.equal(log.slice(2), [
    'first set region 1000, 64 set',
    'next run of zeros from 1000: {"start":1064,"length":256}',
    'crc32c("123456789") = e3069283',
  ]);
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  for (const line of log.slice(2)) assert.ok(readme.includes(line), `README shows "${line}"`);
});

test.run();
