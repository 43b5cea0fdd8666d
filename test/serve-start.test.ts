/**
 * The service as users start it: `npm start` (under Node), `node bin/blockcore.mjs serve` (what
 * `npm start` execs) and bin/blockcore.mjs under the runtime running the tests, each a child process
 * in its own process group on free loopback ports over a temporary data directory. Configured by
 * flags and by BLOCKCORE_DATA/BLOCKCORE_HTTP/BLOCKCORE_NBD; both addresses printed; /v1/health and
 * `nbdinfo --list` answer; Ctrl-C (SIGINT to the process group, as a terminal sends it: npm gets it
 * too and forwards it to the service) and SIGTERM stop it with exit 0 after the clone's metadata is
 * committed, and the next start has the clone, its hydrated regions and its export. The default
 * data directory is ./data of the working directory; a non-loopback API without a token refuses to
 * start with one line.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { REPEAT_GRACE_MS, watchStopSignals } from '../server/stop-signals.ts';
import { VERSION } from '../server/version.ts';
import { callApi, writeImage } from './support/blockcore-server.ts';
import { freePort, killServeChildren, launchers, spawnServe, startServe, type Launcher, type ServeChild } from './support/serve-process.ts';
import { killRunningTools, mustRun, requireTools, runTool } from './support/tools.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const REGION_BYTES = 4 * KiB;
const CLONE_BYTES = MiB;
const PAUSED_TABLE = 'clone meta dst.img src.img 8 1 no_hydration';
const HYDRATING_TABLE = 'clone meta dst.img src.img 8';
/** The write the first run makes over NBD: regions 2 and 4 partly, region 3 whole. */
const WRITE_OFFSET_BYTES = 10 * KiB;
const WRITE_BYTES = 8 * KiB;
const WRITE_PATTERN = 0xcd;

const start = suite('serve: npm start and bin/blockcore.mjs serve as processes');
let root = '';

start.before.each(() => {
  requireTools(['nbdinfo', 'qemu-io']);
  root = mkdtempSync(join(tmpdir(), 'blockcore-serve-start-'));
});
start.after.each(() => {
  killServeChildren();
  killRunningTools();
  rmSync(root, { recursive: true, force: true });
});

const call = (base: string, method: string, path: string, body?: unknown) => callApi(base, method, path, body);

async function mustCall(base: string, method: string, path: string, body: unknown, status: number) {
  const answer = await call(base, method, path, body);
  assert.is(answer.status, status, `${method} ${path}: ${answer.text}`);
  return answer.json;
}

async function twoFreePorts(): Promise<[number, number]> {
  const first = await freePort();
  let second = await freePort();
  while (second === first) second = await freePort();
  return [first, second];
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The three lines `serve` prints once listening. */
function expectBanner(served: ServeChild, launcher: Launcher, dataDir: string, httpPort: number, nbdPort: number): void {
  const out = served.stdout();
  assert.match(out, new RegExp(`^blockcore ${escape(VERSION)} on ${launcher.runtime}, data ${escape(dataDir)}$`, 'm'), out);
  assert.match(out, new RegExp(`^http http://127\\.0\\.0\\.1:${httpPort}$`, 'm'), out);
  assert.match(out, new RegExp(`^nbd  nbd://127\\.0\\.0\\.1:${nbdPort}$`, 'm'), out);
  assert.is(served.url, `http://127.0.0.1:${httpPort}`);
}

async function expectHealthy(served: ServeChild, launcher: Launcher): Promise<void> {
  const health = await call(served.url, 'GET', '/v1/health');
  assert.is(health.status, 200, health.text);
  assert.equal(health.json, { status: 'ok', version: VERSION, runtime: launcher.runtime });
}

async function listedExports(nbdPort: number): Promise<string[]> {
  const listed = JSON.parse(await mustRun('nbdinfo', ['--list', '--json', `nbd://127.0.0.1:${nbdPort}`])) as { exports: Array<{ 'export-name': string }> };
  return listed.exports.map((entry) => entry['export-name']).sort();
}

/** Waits for the exit and checks it was the clean stop: exit 0 after `<SIGNAL>: stopping`, `stopped`. */
async function expectCleanStop(served: ServeChild, signal: string, dataDir: string): Promise<void> {
  const exit = await served.exited;
  assert.equal(exit, { code: 0, signal: null }, `${served.launcher} after ${signal}: stdout ${served.stdout()} stderr ${served.stderr()}`);
  assert.match(served.stdout(), new RegExp(`\\n${signal}: stopping\\nstopped\\n$`), served.stdout());
  assert.not.ok(existsSync(join(dataDir, '.blockcore', 'lock')), 'the lock is released');
}

/** Devices src.img (seeded), dst.img and meta through the API, then clone c1 exported as e1. */
async function makeExportedClone(url: string, dataDir: string, table: string): Promise<Uint8Array> {
  await mustCall(url, 'POST', '/v1/devices', { name: 'dst.img', sizeBytes: CLONE_BYTES }, 201);
  await mustCall(url, 'POST', '/v1/devices', { name: 'meta', sizeBytes: 64 * KiB }, 201);
  const source = writeImage(dataDir, 'src.img', CLONE_BYTES, 7);
  await mustCall(url, 'POST', '/v1/clones', { name: 'c1', table }, 201);
  await mustCall(url, 'POST', '/v1/exports', { name: 'e1', device: 'clone:c1' }, 201);
  return source;
}

function sameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let at = 0; at < actual.length; at++) {
    if (actual[at] !== expected[at]) assert.unreachable(`${what}: byte ${at} is ${actual[at]}, expected ${expected[at]}`);
  }
}

for (const launcher of launchers()) {
  start(`${launcher.name}: flags; addresses, health, nbdinfo --list; Ctrl-C commits the clone, exits 0; the next start has it`, async () => {
    const dataDir = join(root, 'data');
    const [httpPort, nbdPort] = await twoFreePorts();
    const args = (h: number, n: number) => ['--data', dataDir, '--http', `127.0.0.1:${h}`, '--nbd', `127.0.0.1:${n}`];
    const first = await startServe(launcher, args(httpPort, nbdPort), { cwd: root });
    expectBanner(first, launcher, dataDir, httpPort, nbdPort);
    await expectHealthy(first, launcher);
    const source = await makeExportedClone(first.url, dataDir, PAUSED_TABLE);
    assert.equal(await listedExports(nbdPort), ['e1']);
    // An unaligned write: regions 2 and 4 are copied from the source first, region 3 is covered.
    await mustRun('qemu-io', ['-f', 'raw', '-c', `write -P ${WRITE_PATTERN} ${WRITE_OFFSET_BYTES} ${WRITE_BYTES}`, `nbd://127.0.0.1:${nbdPort}/e1`]);
    first.signalGroup('SIGINT');
    await expectCleanStop(first, 'SIGINT', dataDir);

    // The destination file: the three regions hydrated (source around the pattern), nothing else.
    const expected = new Uint8Array(CLONE_BYTES);
    expected.set(source.subarray(2 * REGION_BYTES, 5 * REGION_BYTES), 2 * REGION_BYTES);
    expected.fill(WRITE_PATTERN, WRITE_OFFSET_BYTES, WRITE_OFFSET_BYTES + WRITE_BYTES);
    sameBytes(new Uint8Array(readFileSync(join(dataDir, 'dst.img'))), expected, 'dst.img after the stop');
    const state = JSON.parse(readFileSync(join(dataDir, '.blockcore', 'state.json'), 'utf8'));
    assert.equal(state.engines.clone, [{ name: 'c1', table: PAUSED_TABLE, suspended: false }]);
    assert.equal(state.exports, [{ name: 'e1', device: 'clone:c1', readOnly: false }]);

    const [httpPort2, nbdPort2] = await twoFreePorts();
    const second = await startServe(launcher, args(httpPort2, nbdPort2), { cwd: root });
    expectBanner(second, launcher, dataDir, httpPort2, nbdPort2);
    const clone = await mustCall(second.url, 'GET', '/v1/clones/c1', undefined, 200);
    assert.is(clone.error, null);
    assert.is(clone.table, PAUSED_TABLE);
    assert.equal(clone.exports, ['e1']);
    assert.is(clone.hydratedRegions, 3, 'the regions the write hydrated were committed');
    assert.equal(await listedExports(nbdPort2), ['e1']);
    const read = await runTool('qemu-io', ['-r', '-f', 'raw', '-c', `read -P ${WRITE_PATTERN} ${WRITE_OFFSET_BYTES} ${WRITE_BYTES}`, `nbd://127.0.0.1:${nbdPort2}/e1`]);
    assert.is(read.code, 0, read.stderr);
    assert.not.match(read.stdout, /Pattern verification failed/);
    second.signalGroup('SIGINT');
    await expectCleanStop(second, 'SIGINT', dataDir);
  });

  start(`${launcher.name}: BLOCKCORE_DATA/HTTP/NBD; SIGTERM exits 0; flags win over the environment`, async () => {
    const dataDir = join(root, 'state');
    const [httpPort, nbdPort] = await twoFreePorts();
    const env = { BLOCKCORE_DATA: dataDir, BLOCKCORE_HTTP: `127.0.0.1:${httpPort}`, BLOCKCORE_NBD: `127.0.0.1:${nbdPort}` };
    const first = await startServe(launcher, [], { cwd: root, env });
    expectBanner(first, launcher, dataDir, httpPort, nbdPort);
    await expectHealthy(first, launcher);
    const source = await makeExportedClone(first.url, dataDir, HYDRATING_TABLE);
    assert.equal(await listedExports(nbdPort), ['e1']);
    const deadline = Date.now() + 20_000;
    while (!(await mustCall(first.url, 'GET', '/v1/clones/c1', undefined, 200)).hydrationComplete) {
      if (Date.now() > deadline) assert.unreachable('c1 did not hydrate within 20 s');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    first.signal('SIGTERM');
    await expectCleanStop(first, 'SIGTERM', dataDir);
    sameBytes(new Uint8Array(readFileSync(join(dataDir, 'dst.img'))), source, 'dst.img once hydrated');

    // The environment names ports; the --http flag overrides one of them.
    const [envHttpPort, nbdPort2] = await twoFreePorts();
    let flagHttpPort = await freePort();
    while (flagHttpPort === envHttpPort || flagHttpPort === nbdPort2) flagHttpPort = await freePort();
    const second = await startServe(launcher, ['--http', `127.0.0.1:${flagHttpPort}`], {
      cwd: root,
      env: { BLOCKCORE_DATA: dataDir, BLOCKCORE_HTTP: `127.0.0.1:${envHttpPort}`, BLOCKCORE_NBD: `127.0.0.1:${nbdPort2}` },
    });
    expectBanner(second, launcher, dataDir, flagHttpPort, nbdPort2);
    const clone = await mustCall(second.url, 'GET', '/v1/clones/c1', undefined, 200);
    assert.is(clone.hydrationComplete, true);
    assert.is(clone.hydratedRegions, CLONE_BYTES / REGION_BYTES);
    assert.equal(clone.exports, ['e1']);
    assert.equal(await listedExports(nbdPort2), ['e1']);
    second.signal('SIGTERM');
    await expectCleanStop(second, 'SIGTERM', dataDir);
  });

  start(`${launcher.name}: a non-loopback API without a token refuses to start: exit 2, one line, nothing created`, async () => {
    const port = await freePort();
    const cases: Array<{ args: string[]; env: Record<string, string>; shown: string }> = [
      { args: ['--http', `0.0.0.0:${port}`, '--data', join(root, 'never')], env: {}, shown: `0.0.0.0:${port}` },
      { args: [], env: { BLOCKCORE_HTTP: `[::]:${port}`, BLOCKCORE_DATA: join(root, 'never') }, shown: `[::]:${port}` },
    ];
    for (const { args, env, shown } of cases) {
      const refused = spawnServe(launcher, args, { cwd: root, env });
      const exit = await refused.exited;
      assert.equal(exit, { code: 2, signal: null }, `${args.join(' ')} ${JSON.stringify(env)}: ${refused.stderr()}`);
      assert.is(refused.stdout(), '');
      const lines = refused.stderr().trimEnd().split('\n');
      assert.equal(lines, [
        `blockcore: refusing to serve the API on ${shown} without a token: set BLOCKCORE_TOKEN or pass --token-file FILE (or bind 127.0.0.1)`,
      ]);
      assert.not.ok(existsSync(join(root, 'never')), 'no data directory');
    }
  });

  if (launcher.name !== 'npm start') {
    // npm runs its scripts in the package directory, so only the direct starts can show this.
    start(`${launcher.name}: without --data or BLOCKCORE_DATA the data directory is ./data of the working directory`, async () => {
      const [httpPort, nbdPort] = await twoFreePorts();
      const served = await startServe(launcher, ['--http', `127.0.0.1:${httpPort}`, '--nbd', `127.0.0.1:${nbdPort}`], { cwd: root });
      const dataDir = join(root, 'data');
      expectBanner(served, launcher, dataDir, httpPort, nbdPort);
      assert.ok(existsSync(join(dataDir, '.blockcore', 'lock')));
      await mustCall(served.url, 'POST', '/v1/devices', { name: 'here.img', sizeBytes: 64 * KiB }, 201);
      assert.is(readFileSync(join(dataDir, 'here.img')).length, 64 * KiB);
      served.signal('SIGINT');
      await expectCleanStop(served, 'SIGINT', dataDir);
    });
  }
}

const signals = suite('serve: stop signals');

signals('the first SIGINT or SIGTERM stops; a repeat within the grace period is the same request, a later one forces', async () => {
  const before = { SIGINT: process.listenerCount('SIGINT'), SIGTERM: process.listenerCount('SIGTERM') };
  let nowMs = 0;
  const forced: string[] = [];
  const watch = watchStopSignals({ onForced: (signal) => forced.push(signal), nowMs: () => nowMs });
  try {
    const emit = (signal: 'SIGINT' | 'SIGTERM') => (process.emit as (event: string, signal: string) => boolean)(signal, signal);
    emit('SIGTERM');
    assert.is(await watch.first, 'SIGTERM');
    nowMs = REPEAT_GRACE_MS;
    emit('SIGINT');
    emit('SIGTERM');
    assert.equal(forced, [], 'repeats within the grace period');
    nowMs = REPEAT_GRACE_MS + 1;
    emit('SIGINT');
    assert.equal(forced, ['SIGINT']);
  } finally {
    watch.dispose();
  }
  assert.equal({ SIGINT: process.listenerCount('SIGINT'), SIGTERM: process.listenerCount('SIGTERM') }, before, 'dispose removes the listeners');
});

start.run();
signals.run();
