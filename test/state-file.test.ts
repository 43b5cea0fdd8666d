/**
 * The state file across versions: a version 1 file (test/fixtures/state-v1.json, as blockcore
 * 0.1 wrote it) still opens, its clones read as `engines.clone`, and the first change after it
 * writes version 2 with nothing dropped.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ENGINES } from '../server/engines.ts';
import { readState } from '../server/state-file.ts';
import { makeCloneDevices, startTestServer } from './support/blockcore-server.ts';

const FIXTURE_V1 = readFileSync(new URL('./fixtures/state-v1.json', import.meta.url), 'utf8');

test('a version 1 state file opens with its clone and export, and the next write is version 2', async () => {
  const server = await startTestServer();
  try {
    await makeCloneDevices(server);
    await server.stop();
    const stateDir = join(server.dataDir, '.blockcore');
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(join(stateDir, 'state.json'), FIXTURE_V1);
    const v1 = JSON.parse(FIXTURE_V1);
    assert.equal(readState(server.dataDir, ENGINES), { engines: { clone: v1.clones }, exports: v1.exports });

    await server.restart();
    const clone = (await server.call('GET', '/v1/clones/c1')).json;
    assert.is(clone.error, null);
    assert.is(clone.hydrationEnabled, false, 'no_hydration came back');
    assert.equal(clone.exports, ['e1']);
    const [served] = (await server.call('GET', '/v1/exports')).json.exports;
    assert.equal([served.name, served.device, served.readOnly, served.description, served.error], ['e1', 'clone:c1', true, v1.exports[0].description, null]);

    assert.is((await server.call('POST', '/v1/devices', { name: 'other.img', sizeBytes: 4096 })).status, 201);
    assert.is((await server.call('POST', '/v1/exports', { name: 'e2', device: 'other.img' })).status, 201);
    const written = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8'));
    assert.is(written.version, 2);
    assert.not.ok('clones' in written);
    assert.equal(written.engines.clone, v1.clones);
    assert.equal(written.exports.map((e: { name: string }) => e.name), ['e1', 'e2']);
  } finally {
    await server.dispose();
  }
});

test.run();
