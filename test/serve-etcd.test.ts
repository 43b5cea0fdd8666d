/**
 * `blockcore serve --etcd` when etcd is not there: without --etcd-wait it exits non-zero with one
 * line naming the URL; with --etcd-wait it says so once a second and starts as soon as etcd does.
 * And a service with etcd answers GET /v1/cluster with itself registered. etcd's own security as
 * its clients use it: TLS with client certificates (--etcd-cacert, --etcd-cert, --etcd-key) and
 * a user with a password (--etcd-user); a missing certificate or a wrong password is one line and
 * exit 1.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Etcd3 } from 'etcd3';
import { callApi } from './support/blockcore-server.ts';
import { makeCerts } from './support/certs.ts';
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

/** Starts a service and checks it registered itself in etcd; then stops it. */
async function servesWith(data: string, url: string, extra: string[], name: string): Promise<void> {
  const served = await startServe(launcher, args(data, url, ['--node-name', name, ...extra]), { cwd: root });
  try {
    const cluster = (await callApi(served.url, 'GET', '/v1/cluster')).json;
    assert.is(cluster.etcd.reachable, true);
    assert.ok(cluster.etcd.nodes.some((node: { name: string }) => node.name === name), JSON.stringify(cluster.etcd.nodes));
  } finally {
    served.signal('SIGTERM');
    assert.is((await served.exited).code, 0);
  }
}

/** A service that must not start: exit `code` (2: a flag's usage) and one line matching `why`. */
async function refused(data: string, url: string, extra: string[], why: RegExp, code = 1): Promise<void> {
  const child = spawnServe(launcher, args(data, url, extra), { cwd: root });
  const exit = await child.exited;
  assert.is(exit.code, code, child.stderr());
  const lines = child.stderr().trim().split('\n');
  assert.is(lines.length, 1, child.stderr());
  assert.match(lines[0]!, why);
}

test('etcd over TLS (named by IP) with client certificates: served with --etcd-cacert/--etcd-cert/--etcd-key; refused without the client certificate, or when the certificate is for another address', async () => {
  const certs = makeCerts(path.join(root, 'pki'));
  const secure = await startEtcd(20_000, undefined, { cert: certs.serverCert, key: certs.serverKey, clientCa: certs.ca });
  try {
    assert.match(secure.url, /^https:/);
    await servesWith('tls1', secure.url, ['--etcd-cacert', certs.ca, '--etcd-cert', certs.clientCert, '--etcd-key', certs.clientKey], 'tls-node');
    await refused('tls2', secure.url, ['--etcd-cacert', certs.ca], /^blockcore: etcd at https:\/\/127\.0\.0\.1:\d+ is not reachable/);
    await refused('tls3', secure.url, ['--etcd-cert', certs.clientCert, '--etcd-key', certs.clientKey], /--etcd-cert needs --etcd-cacert/);
  } finally {
    await secure.stop();
  }
  // A certificate of the same CA for another address is not etcd's: refused, not trusted.
  const impostor = await startEtcd(20_000, undefined, { cert: certs.otherCert, key: certs.otherKey, clientCa: certs.ca });
  try {
    await refused('tls4', impostor.url, ['--etcd-cacert', certs.ca, '--etcd-cert', certs.clientCert, '--etcd-key', certs.clientKey], /is not reachable: .*IP: 127\.0\.0\.1 is not in the cert's list: 127\.0\.0\.9/);
  } finally {
    await impostor.stop();
  }
});

test('etcd with authentication: served with --etcd-user USER:PASSWORD; a wrong password is refused', async () => {
  const guarded = await startEtcd();
  try {
    const admin = new Etcd3({ hosts: guarded.url });
    try {
      await admin.role('root').create();
      await admin.user('root').create('s3cret');
      await admin.user('root').addRole('root');
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
    await servesWith('auth1', guarded.url, ['--etcd-user', 'root:s3cret'], 'auth-node');
    await refused('auth2', guarded.url, ['--etcd-user', 'root:wrong'], /^blockcore: .*(authentication failed|invalid auth|password)/i);
    await refused('auth3', guarded.url, ['--etcd-user', 'nocolon'], /--etcd-user.*USER:PASSWORD/, 2);
  } finally {
    await guarded.stop();
  }
});

test.run();
