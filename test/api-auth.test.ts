import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULT_HTTP, isLoopback, parseServeArgs } from '../server/config.ts';
import { serve } from '../server/main.ts';
import { TokenError, tokenMatches } from '../server/token.ts';
import { startTestServer } from './support/blockcore-server.ts';

const TOKEN = 'test-token-0123456789abcdef';
const auth = suite('api: token and binding');

auth('with a token: 401 without the header or with a wrong one, on every route but /v1/health', async () => {
  const server = await startTestServer({ token: TOKEN });
  try {
    const bare = (path: string, headers: Record<string, string> = {}, method = 'GET') => fetch(`${server.url}${path}`, { method, headers });
    for (const [method, path] of [['GET', '/v1/devices'], ['GET', '/v1/clones'], ['GET', '/v1/clones/x'], ['GET', '/v1/exports'], ['GET', '/v1/events'], ['GET', '/metrics'], ['GET', '/v1/openapi.json'], ['POST', '/v1/devices'], ['DELETE', '/v1/devices/a.img'], ['GET', '/v1/nothing']] as const) {
      const response = await bare(path, {}, method);
      assert.is(response.status, 401, `${method} ${path}`);
      assert.equal(await response.json(), { error: 'missing Authorization: Bearer <token>', code: 'EACCES' });
      assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer/);
      for (const header of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, TOKEN, 'Bearer ']) {
        assert.is((await bare(path, { authorization: header }, method)).status, 401, `${method} ${path} with ${header}`);
      }
    }
    const health = await bare('/v1/health');
    assert.is(health.status, 200);
    assert.is(((await health.json()) as { status: string }).status, 'ok');
    assert.is((await server.call('GET', '/v1/devices')).status, 200, 'the right token passes');
    assert.is((await bare('/v1/devices', { authorization: `bearer ${TOKEN}` })).status, 200, 'the scheme is case-insensitive');
  } finally {
    await server.dispose();
  }
});

auth('tokens compare in full', () => {
  assert.ok(tokenMatches(TOKEN, TOKEN));
  assert.not.ok(tokenMatches(TOKEN, `${TOKEN} `));
  assert.not.ok(tokenMatches(TOKEN, ''));
});

auth('config: defaults, environment, flags win', () => {
  const defaults = parseServeArgs([], {});
  assert.equal(defaults, { dataDir: './data', http: { host: '127.0.0.1', port: 8420 }, nbd: { host: '127.0.0.1', port: 10809 }, nbdTls: null, token: null, settings: { '--lease-ttl': '5', '--rtrs': '127.0.0.1:10900,127.0.0.2:10900', '--ulog': 'default' }, warnings: [] });
  assert.is(DEFAULT_HTTP, '127.0.0.1:8420');
  const env = { BLOCKCORE_DATA: '/srv/a', BLOCKCORE_HTTP: '127.0.0.2:1', BLOCKCORE_NBD: '/run/nbd.sock', BLOCKCORE_TOKEN: TOKEN };
  const fromEnv = parseServeArgs([], env);
  assert.equal([fromEnv.dataDir, fromEnv.http, fromEnv.nbd, fromEnv.token], ['/srv/a', { host: '127.0.0.2', port: 1 }, { path: '/run/nbd.sock' }, TOKEN]);
  const flags = parseServeArgs(['--data', '/srv/b', '--http=[::1]:9000', '--nbd', 'unix:nbd.sock'], env);
  assert.equal([flags.dataDir, flags.http, flags.nbd], ['/srv/b', { host: '::1', port: 9000 }, { path: 'nbd.sock' }]);
  // An engine's own flags (transport: --rtrs, --rtrs-key-file): flag over variable over default, checked by the engine.
  assert.equal(parseServeArgs([], { BLOCKCORE_RTRS: '127.0.0.3:1' }).settings, { '--lease-ttl': '5', '--rtrs': '127.0.0.3:1', '--ulog': 'default' });
  assert.equal(parseServeArgs(['--rtrs', 'off', '--rtrs-key-file', '/k', '--ulog', 'off'], { BLOCKCORE_RTRS: '127.0.0.3:1' }).settings, { '--lease-ttl': '5', '--rtrs': 'off', '--rtrs-key-file': '/k', '--ulog': 'off' });
  // The cluster's flags: etcd URLs checked, a switch given alone or by its variable, the TTL bounded.
  const cluster = parseServeArgs(['--etcd', 'http://127.0.0.1:2379,https://e2:2379', '--etcd-wait', '--node-name', 'n1', '--lease-ttl', '2'], {}).settings;
  assert.equal([cluster['--etcd'], cluster['--etcd-wait'], cluster['--node-name'], cluster['--lease-ttl']], ['http://127.0.0.1:2379,https://e2:2379', 'true', 'n1', '2']);
  assert.is(parseServeArgs([], { BLOCKCORE_ETCD_WAIT: '1' }).settings['--etcd-wait'], 'true');
  assert.is(parseServeArgs([], { BLOCKCORE_ETCD_WAIT: '0' }).settings['--etcd-wait'], undefined);
  for (const [argv, message] of [
    [['--etcd', 'etcd:2379'], /--etcd: "etcd:2379" is not http/],
    [['--etcd', 'http://u@e:2379'], /user with --etcd-user/],
    [['--lease-ttl', '0'], /--lease-ttl: expected a whole number of seconds from 1 to 60/],
    [['--node-name', '-x'], /--node-name: expected 1 to 63/],
    [['--etcd-wait=maybe'], /--etcd-wait is a switch/],
  ] as const) {
    assert.throws(() => parseServeArgs(argv, {}), (error: Error) => message.test(error.message), argv.join(' '));
  }
  assert.throws(() => parseServeArgs(['--rtrs', '127.0.0.1'], {}), /--rtrs: expected HOST:PORT/);
  assert.throws(() => parseServeArgs([], { BLOCKCORE_RTRS: '127.0.0.1:99999' }), /BLOCKCORE_RTRS: port 99999 is not 0..65535/);
  for (const argv of [['--http', 'localhost'], ['--http', '1.2.3.4:70000'], ['--http', '[nothex]:1'], ['--nbd', 'x:y'], ['--port', '1'], ['--data'], ['serve'], ['--rtrs', 'x']]) {
    assert.throws(() => parseServeArgs(argv, {}), (error: Error) => error instanceof ConfigError, argv.join(' '));
  }
  assert.ok(isLoopback('127.0.0.1') && isLoopback('127.8.0.1') && isLoopback('::1') && isLoopback('localhost') && isLoopback('::ffff:127.0.0.1'));
  assert.not.ok(isLoopback('0.0.0.0') || isLoopback('::') || isLoopback('10.0.0.1') || isLoopback('128.0.0.1'));
});

auth('a non-loopback API address needs a token; a token file works; NBD off loopback needs TLS required or --nbd-insecure (then warns)', () => {
  for (const http of ['0.0.0.0:8420', '[::]:8420', '10.1.2.3:8420']) {
    assert.throws(() => parseServeArgs(['--http', http], {}), /refusing to serve the API on .* without a token/);
  }
  const dir = mkdtempSync(join(tmpdir(), 'blockcore-token-'));
  try {
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
    assert.throws(() => parseServeArgs(['--nbd', '0.0.0.0:10809'], {}), /refusing to serve NBD on 0\.0\.0\.0:10809 without TLS/);
    assert.throws(() => parseServeArgs(['--nbd', '0.0.0.0:10809', '--nbd-tls', 'on', '--nbd-tls-certificates', dir], {}), /without TLS/, 'TLS offered is not TLS required');
    const secured = parseServeArgs(['--nbd', '0.0.0.0:10809', '--nbd-tls', 'require', '--nbd-tls-certificates', dir], {});
    assert.equal(secured.nbdTls, { mode: 'require', certificatesDir: dir });
    assert.equal(secured.warnings, []);
    assert.throws(() => parseServeArgs(['--nbd-tls', 'require'], {}), /needs exactly one of --nbd-tls-certificates DIR and --nbd-tls-psk FILE/);
    assert.throws(() => parseServeArgs(['--nbd-tls', 'maybe'], {}), /--nbd-tls: expected off, on or require/);
    assert.throws(() => parseServeArgs(['--nbd-tls-psk', 'keys.psk'], {}), /--nbd-tls is off/);
    const config = parseServeArgs(['--http', '0.0.0.0:8420', '--token-file', join(dir, 'token'), '--nbd', '0.0.0.0:10809', '--nbd-insecure'], { BLOCKCORE_TOKEN: 'other-token-0123456789' });
    assert.is(config.token, TOKEN, 'the file wins over the environment');
    assert.is(config.warnings.length, 1);
    assert.match(config.warnings[0]!, /without TLS required \(--nbd-insecure\)/);
    writeFileSync(join(dir, 'short'), 'abc\n');
    assert.throws(() => parseServeArgs(['--token-file', join(dir, 'short')], {}), (error: Error) => error instanceof TokenError);
    assert.throws(() => parseServeArgs(['--token-file', join(dir, 'missing')], {}), /cannot read the token file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

auth('serve refuses to start off loopback without a token, with one line and exit code 2', async () => {
  const lines: string[] = [];
  const code = await serve(['--http', '0.0.0.0:0', '--data', join(tmpdir(), 'never-created')], {}, { out: (line) => lines.push(line), err: (line) => lines.push(line) });
  assert.is(code, 2);
  assert.is(lines.length, 1);
  assert.match(lines[0]!, /^blockcore: refusing to serve the API on 0\.0\.0\.0:0 without a token/);
});

auth('bound to 0.0.0.0 with a token, it serves and asks for the token', async () => {
  const server = await startTestServer({ token: TOKEN });
  await server.stop();
  const { startBlockcore } = await import('../server/main.ts');
  const running = await startBlockcore({ dataDir: server.dataDir, http: { host: '0.0.0.0', port: 0 }, nbd: { host: '127.0.0.1', port: 0 }, token: TOKEN });
  try {
    assert.is(running.http.host, '0.0.0.0');
    assert.is((await fetch(`http://127.0.0.1:${running.http.port}/v1/devices`)).status, 401);
    assert.is((await fetch(`http://127.0.0.1:${running.http.port}/v1/devices`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  } finally {
    await running.stop();
    await server.dispose();
  }
});

auth.run();
