/**
 * `blockcore serve --etcd` when etcd is not there: without --etcd-wait it exits non-zero with one
 * line naming the URL; with --etcd-wait it says so once a second and starts as soon as etcd does.
 * And a service with etcd answers GET /v1/cluster with itself registered.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { callApi } from './support/blockcore-server.ts';
import { killEtcds, startEtcd, type TestEtcd } from './support/etcd.ts';
import { freePort, killServeChildren, launchers, spawnServe, startServe } from './support/serve-process.ts';

const test = suite('serve with etcd');
const launcher = launchers().at(-1)!;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-serve-etcd-'));
let etcd: TestEtcd | null = null;

test.after(async () => {
  killServeChildren();
  await etcd?.stop();
  killEtcds();
  fs.rmSync(root, { recursive: true, force: true });
});

const args = (data: string, url: string, extra: string[] = []) => [
  '--data', path.join(root, data), '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0', '--rtrs', 'off', '--ulog', 'off', '--etcd', url, ...extra,
];

test('etcd unreachable at start: one line naming the URL, exit 1', async () => {
  const url = `http://127.0.0.1:${await freePort()}`;
  const child = spawnServe(launcher, args('d1', url), { cwd: root });
  const exit = await child.exited;
  assert.is(exit.code, 1);
  const lines = child.stderr().trim().split('\n');
  assert.is(lines.length, 1, child.stderr());
  assert.match(lines[0]!, new RegExp(`^blockcore: etcd at ${url.replace(/[.]/g, '\\.')} is not reachable: .*--etcd-wait`));
});

test('--etcd-wait: says it retries, starts once etcd is up, and registers the node', async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const starting = startServe(launcher, args('d2', url, ['--etcd-wait', '--node-name', 'waiter']), { cwd: root }, 60_000);
  let failed: unknown = null;
  starting.catch((error) => (failed = error));
  await new Promise((resolve) => setTimeout(resolve, 2500));
  assert.is(failed, null, String(failed));
  etcd = await startEtcd(20_000, port);
  const served = await starting;
  assert.match(served.stderr(), /is not reachable: .*retrying in 1 s \(--etcd-wait\)/);
  const cluster = (await callApi(served.url, 'GET', '/v1/cluster')).json;
  assert.equal(cluster.node.name, 'waiter');
  assert.match(cluster.node.id, /^[0-9a-f-]{36}$/);
  assert.equal(cluster.etcd.nodes, [{ name: 'waiter', id: cluster.node.id }]);
  assert.is(cluster.etcd.reachable, true);
  served.signal('SIGTERM');
  assert.is((await served.exited).code, 0);
});

test.run();
