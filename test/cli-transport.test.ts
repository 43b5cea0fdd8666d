/**
 * `blockcore transport ...` against two services in this process (A serves RTRS on 127.0.0.1 and
 * 127.0.0.2, B is the client): every command's happy path prints what the README shows, and bad
 * usage or a refusal is one line on stderr with the right exit code. One case runs the real bin.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli as runCliInProcess } from '../server/cli/main.ts';
import { type TestServer, useServicePair, writeImage } from './support/blockcore-server.ts';
import { runBin, type CliResult } from './support/cli-run.ts';

const test = suite('cli: transport');
const services = useServicePair(test);

async function run(server: TestServer, ...args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCliInProcess(args, { BLOCKCORE_URL: server.url }, {
    out: (line) => (stdout += `${line}\n`), err: (line) => (stderr += `${line}\n`), write: (text) => (stdout += text), isTty: false,
  });
  return { code, stdout, stderr };
}

function ok(result: CliResult, what: string): string {
  assert.is(result.code, 0, `${what}: ${result.stderr}`);
  assert.is(result.stderr, '', what);
  return result.stdout;
}

test('sessions, paths and mappings through the CLI', async () => {
  writeImage(services.a.dataDir, 'disk.img', 1 << 20, 4);
  const listen = (await services.a.call('GET', '/v1/transport/server')).json.listen as string[];
  const created = ok(await run(services.b, 'transport', 'session', 'create', 's1', listen[0]!, `127.0.0.1@${listen[1]}`, '--policy', 'round-robin', '--digest'), 'create');
  assert.match(created, /^s1: connected, policy round-robin, digest, max io 124\.0 KiB\n/);
  assert.match(created, new RegExp(`${listen[1]!.replaceAll('.', '\\.')}\\s+CONNECTED`));
  assert.match(ok(await run(services.b, 'transport', 'map', 'r1', '--session', 's1', '--device', 'disk.img', '--access', 'ro'), 'map'), /^mapped disk\.img over s1 as remote:r1 \(ro, 1\.0 MiB\)\n$/);
  assert.match(ok(await run(services.b, 'transport', 'devices'), 'devices'), /remote:r1\s+s1\s+disk\.img\s+ro\s+1\.0 MiB\s+open/);
  assert.match(ok(await run(services.b, 'transport', 'session', 'ls'), 'ls'), /^s1: connected/);
  assert.match(ok(await run(services.b, 'transport', 'session', 'show', 's1'), 'show'), /PATH\s+STATE\s+RECONNECTS\s+READS\s+WRITES\s+INFLIGHT\s+FAILOVERS\s+LATENCY/);
  assert.match(ok(await run(services.b, 'transport', 'path', 'reconnect', 's1', listen[0]!), 'reconnect'), /^reconnecting /);
  assert.match(ok(await run(services.b, 'transport', 'session', 'reset-stats', 's1'), 'reset'), /^s1: /);
  assert.match(ok(await run(services.b, 'transport', 'path', 'rm', 's1', listen[1]!), 'path rm'), /^removed path /);
  assert.match(ok(await run(services.b, 'transport', 'path', 'add', 's1', listen[1]!), 'path add'), new RegExp(listen[1]!.replaceAll('.', '\\.')));
  const server = ok(await run(services.a, 'transport', 'server'), 'server');
  assert.match(server, /^listening on 127\.0\.0\.1:\d+ 127\.0\.0\.2:\d+\n/);
  assert.match(server, /s1 .*disk\.img \(ro\)/);

  const busy = await run(services.b, 'transport', 'session', 'rm', 's1');
  assert.is(busy.code, 1);
  assert.match(busy.stderr, /^blockcore: session "s1" has mapped devices: r1; unmap them first \(HTTP 409 EBUSY\)\n$/);
  assert.match(ok(await run(services.b, 'transport', 'unmap', 'r1'), 'unmap'), /^unmapped remote:r1\n$/);
  assert.match(ok(await run(services.b, 'transport', 'session', 'rm', 's1'), 'rm'), /^closed session s1\n$/);
});

test('bad usage exits 2, a refused request 1, both one line on stderr (the real bin)', async () => {
  const usage = await runBin(['transport', 'session', 'create', 's1'], { BLOCKCORE_URL: services.b.url });
  assert.is(usage.code, 2, usage.stderr);
  assert.match(usage.stderr, /^blockcore: expected NAME and at least one HOST:PORT/);
  assert.is(usage.stderr.trim().split('\n').length, 1);
  const unreachable = await runBin(['transport', 'session', 'create', 's1', '127.0.0.1:1'], { BLOCKCORE_URL: services.b.url });
  assert.is(unreachable.code, 1, unreachable.stderr);
  assert.match(unreachable.stderr, /^blockcore: paths: .*\(HTTP 502 ENOTCONN\)\n$/);
  const noFlag = await runBin(['transport', 'map', 'r1', '--session', 's1'], { BLOCKCORE_URL: services.b.url });
  assert.is(noFlag.code, 2);
  assert.match(noFlag.stderr, /--session and --device are required/);
});

test.run();
