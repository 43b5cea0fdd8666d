import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../server/cli/client.ts';
import { parseSize } from '../server/cli/format.ts';
import { progressLine, watchClone } from '../server/clone/progress.ts';
import { makeCloneDevices, startTestServer, writeImage, type TestServer } from './support/blockcore-server.ts';
import { runCli as runCliInProcess } from '../server/cli/main.ts';
import { runBin, spawnCli, waitForOutput, type CliResult } from './support/cli-run.ts';

const TOKEN = 'cli-token-0123456789abcdef';
const cli = suite('cli');
let server: TestServer;
let env: Record<string, string>;

cli.before.each(async () => {
  server = await startTestServer();
  env = { BLOCKCORE_URL: server.url, BLOCKCORE_TOKEN: '' };
});
cli.after.each(async () => {
  await server.dispose();
});

/**
 * The CLI in this process (cli/main.ts, what bin/blockcore.mjs runs): fast, so most cases use it;
 * the bin itself runs as a child in the cases that say so (exit codes, serve, the shim).
 */
async function runCli(args: readonly string[], env: Record<string, string | undefined>): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCliInProcess(args, env, {
    out: (line) => (stdout += `${line}\n`),
    err: (line) => (stderr += `${line}\n`),
    write: (text) => (stdout += text),
    isTty: false,
  });
  return { code, stdout, stderr };
}

function expectOk(result: CliResult, what: string): string {
  assert.is(result.code, 0, `${what}: ${result.stderr}`);
  assert.is(result.stderr, '', what);
  return result.stdout;
}

/** One line on stderr, `blockcore: ...`, nothing on stdout, and the exit code. */
function expectFailure(result: CliResult, code: number, text: RegExp): void {
  assert.is(result.code, code, `${result.stdout} ${result.stderr}`);
  assert.is(result.stdout, '');
  const lines = result.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, result.stderr);
  assert.match(lines[0]!, /^blockcore: /);
  assert.match(lines[0]!, text);
}

cli('devices: create, ls, rm, and their errors (the bin, as a child, for some)', async () => {
  assert.match(expectOk(await runBin(['device', 'create', 'disk.img', '10M'], env), 'create'), /^created disk\.img \(10\.0 MiB\)\n$/);
  const listing = expectOk(await runBin(['device', 'ls'], env), 'ls');
  assert.match(listing, /^NAME\s+SIZE\s+ALLOCATED\s+USED BY\ndisk\.img\s+10\.0 MiB\s+0 B\s+-\n$/);
  expectFailure(await runBin(['device', 'create', 'disk.img', '1M'], env), 1, /device "disk\.img" exists already \(HTTP 409 EEXIST\)/);
  expectFailure(await runCli(['device', 'create', '../x', '1M'], env), 1, /name: .*\(HTTP 400 EINVAL\)/);
  expectFailure(await runBin(['device', 'create', 'x.img', '12Q'], env), 2, /SIZE "12Q" is not a size/);
  expectFailure(await runCli(['device', 'create', 'x.img'], env), 2, /expected NAME SIZE/);
  expectFailure(await runCli(['device', 'rm', 'nope.img'], env), 1, /HTTP 404 ENOENT/);
  assert.match(expectOk(await runCli(['device', 'rm', 'disk.img'], env), 'rm'), /^deleted disk\.img\n$/);
  assert.not.ok(existsSync(join(server.dataDir, 'disk.img')));
});

cli('clones and exports: create, status, watch, message, export, finalize', async () => {
  const image = await makeCloneDevices(server);
  const table = 'clone meta dst.img src.img 8 1 no_hydration';
  assert.match(expectOk(await runCli(['clone', 'create', 'c1', '--table', table], env), 'create'), /^created clone c1: 8 \d+\/16 8 \d+\/256 /);
  expectFailure(await runCli(['clone', 'create', 'c2', '--table', 'clone meta dst.img src.img 7'], env), 1, /table: region size: 7 is not a power of two/);
  expectFailure(await runCli(['clone', 'create', 'c2'], env), 2, /--table is required/);
  const status = expectOk(await runCli(['clone', 'status', 'c1'], env), 'status').split('\n');
  assert.match(status[0]!, /^c1 +\d+\.\d% [\d.]+ \w*B\/1\.0 MiB .* hydration disabled rw$/);
  assert.match(status[1]!, /^status 8 \d+\/16 8 \d+\/256 0 1 no_hydration 4 hydration_threshold 1 hydration_batch_size 1 rw$/);
  expectFailure(await runCli(['clone', 'message', 'c1', 'frobnicate'], env), 1, /message: unknown message "frobnicate".*HTTP 400 EINVAL/);
  expectOk(await runCli(['clone', 'message', 'c1', 'hydration_batch_size', '16'], env), 'message');
  expectOk(await runCli(['clone', 'message', 'c1', 'enable_hydration'], env), 'message');
  const watched = expectOk(await runCli(['clone', 'status', 'c1', '--watch', '--interval-ms', '50'], env), 'watch');
  const lines = watched.trimEnd().split('\n');
  assert.match(lines.at(-1)!, /^c1 100\.0% 1\.0 MiB\/1\.0 MiB .* done rw$/);
  assert.not.ok(watched.includes('\r'), 'plain lines when not a terminal');
  assert.match(expectOk(await runCli(['clone', 'ls'], env), 'ls'), /^NAME\s+PROGRESS\s+EXPORTS\s+TABLE\nc1\s+100\.0%/);

  assert.match(expectOk(await runCli(['export', 'add', 'e1', 'clone:c1', '--read-only'], env), 'export'), /^exported clone:c1 as e1 \(read-only\)\n$/);
  assert.match(expectOk(await runCli(['export', 'ls'], env), 'export ls'), /\ne1\s+clone:c1\s+ro\s+1\.0 MiB\s+-\n$/);
  expectOk(await runCli(['export', 'add', 'e2', 'clone:c1', '--read-only'], env), 'export e2');
  expectFailure(await runCli(['clone', 'finalize', 'c1'], env), 1, /exported as e1, e2; finalize keeps at most one export.*\(HTTP 409 EBUSY\)/);
  expectFailure(await runCli(['export', 'add', 'e3', 'nope:x'], env), 1, /device: unknown device kind "nope"/);
  expectOk(await runCli(['export', 'rm', 'e2'], env), 'export rm');
  assert.match(expectOk(await runCli(['clone', 'finalize', 'c1'], env), 'finalize'), /^finalized c1: dst\.img is now a plain device\n$/);
  assert.match(expectOk(await runCli(['export', 'ls'], env), 'export ls'), /\ne1\s+dst\.img\s+ro\s+1\.0 MiB\s+-\n$/);
  assert.ok(readFileSync(join(server.dataDir, 'dst.img')).equals(image));
  expectFailure(await runCli(['clone', 'status', 'c1'], env), 1, /no clone "c1" \(HTTP 404 ENOENT\)/);
});

cli('usage errors exit 2; an unreachable server exits 3; help is on stdout', async () => {
  expectFailure(await runBin(['frobnicate'], env), 2, /unknown command "frobnicate"/);
  expectFailure(await runCli(['device', 'ls', '--bogus'], env), 2, /unknown option --bogus/);
  const bare = await runBin([], env);
  assert.is(bare.code, 2);
  assert.match(bare.stderr, /^usage: blockcore <command>/);
  const help = await runCli(['help'], env);
  assert.is(help.code, 0);
  assert.match(help.stdout, /clone status NAME \[--watch\]/);
  await server.stop();
  expectFailure(await runBin(['device', 'ls'], env), 3, /cannot reach blockcore at http:\/\/127\.0\.0\.1:\d+/);
  expectFailure(await runCli(['device', 'ls', '--url', 'ftp://x'], env), 2, /must be http/);
});

cli('the token: refused without it, accepted from BLOCKCORE_TOKEN or --token-file', async () => {
  await server.dispose();
  server = await startTestServer({ token: TOKEN });
  env = { BLOCKCORE_URL: server.url, BLOCKCORE_TOKEN: '' };
  expectFailure(await runBin(['device', 'ls'], env), 1, /missing Authorization: Bearer <token> \(HTTP 401 EACCES\)/);
  expectOk(await runCli(['device', 'ls'], { ...env, BLOCKCORE_TOKEN: TOKEN }), 'env token');
  const tokenFile = join(server.root, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  expectOk(await runCli(['device', 'ls', '--token-file', tokenFile], env), 'token file');
  expectFailure(await runCli(['device', 'ls', '--token-file', join(server.root, 'missing')], env), 2, /cannot read the token file/);
});

cli('serve: prints both addresses, stops on SIGTERM with exit 0, and the next serve has the same state', async () => {
  const root = mkdtempSync(join(tmpdir(), 'blockcore-serve-'));
  let stopOutput = '';
  const data = join(root, 'data');
  const start = async () => {
    const child = spawnCli(['serve', '--data', data, '--http', '127.0.0.1:0', '--nbd', join(root, 'nbd.sock')], { BLOCKCORE_TOKEN: '' });
    const output = await waitForOutput(child, /nbd +\S+\n/);
    const url = /^http (http:\/\/127\.0\.0\.1:\d+)$/m.exec(output)![1]!;
    assert.match(output, new RegExp(`^nbd  nbd\\+unix:///\\?socket=${join(root, 'nbd.sock').replace(/[.]/g, '\\.')}$`, 'm'));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    child.stdout!.on('data', (chunk) => (stopOutput += chunk));
    return { child, url, exited };
  };
  try {
    const first = await start();
    const serveEnv = { BLOCKCORE_URL: first.url, BLOCKCORE_TOKEN: '' };
    expectOk(await runCli(['device', 'create', 'dst.img', '1M'], serveEnv), 'device');
    expectOk(await runCli(['device', 'create', 'meta', '64K'], serveEnv), 'device');
    writeImage(data, 'src.img', 1 << 20);
    expectOk(await runCli(['clone', 'create', 'c1', '--table', 'clone meta dst.img src.img 8 1 no_hydration'], serveEnv), 'clone');
    expectOk(await runCli(['export', 'add', 'e1', 'clone:c1'], serveEnv), 'export');
    // process.kill, not child.kill: Deno's child_process reports a child it signalled as killed by
    // the signal even when the child handled it and exited 0.
    process.kill(first.child.pid!, 'SIGTERM');
    assert.is(await first.exited, 0);
    assert.match(stopOutput, /^SIGTERM: stopping\nstopped\n$/m);
    assert.not.ok(existsSync(join(data, '.blockcore', 'lock')));

    const second = await start();
    const again = { BLOCKCORE_URL: second.url, BLOCKCORE_TOKEN: '' };
    assert.match(expectOk(await runCli(['clone', 'ls'], again), 'ls'), /\nc1 .* e1 +clone meta dst\.img src\.img 8 1 no_hydration\n$/);
    assert.match(expectOk(await runCli(['export', 'ls'], again), 'export ls'), /\ne1\s+clone:c1\s+rw/);
    process.kill(second.child.pid!, 'SIGINT');
    assert.is(await second.exited, 0);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

cli('serve refuses a non-loopback address without a token: one line, exit 2', async () => {
  expectFailure(await runBin(['serve', '--http', '0.0.0.0:0', '--data', join(server.root, 'x')], { BLOCKCORE_TOKEN: '' }), 2, /refusing to serve the API on 0\.0\.0\.0:0 without a token/);
});

cli('progress: a bar with rate and ETA on a terminal', async () => {
  await makeCloneDevices(server);
  await server.call('POST', '/v1/clones', { name: 'c1', table: 'clone meta dst.img src.img 8 0 2 hydration_batch_size 4' });
  let written = '';
  const code = await watchClone(new ApiClient(server.url, null), 'c1', { tty: true, intervalMs: 20, write: (text) => (written += text) });
  assert.is(code, 0);
  assert.ok(written.startsWith('\r'));
  assert.ok(written.endsWith('\n'));
  assert.match(written, /\rc1 \[#{30}\] 100\.0%  1\.0 MiB\/1\.0 MiB  [\d.]+ \w*B\/s  done  rw\x1b\[K\n$/);
  const line = progressLine({ name: 'c2', table: '', suspended: false, error: null, exports: [], status: '', totalBytes: 4 * 2 ** 30, bytesHydrated: 2 ** 30, rateBytesPerSecond: 100 << 20, etaSeconds: 30.7, hydrationEnabled: true, hydrationComplete: false, mode: 'rw' }, true);
  assert.is(line, `c2 [${'#'.repeat(7)}${'.'.repeat(23)}]  25.0%  1.0 GiB/4.0 GiB  100.0 MiB/s  ETA 31s  rw`);
});

cli('events: one JSON object a line until the stream ends', async () => {
  let stdout = '';
  const running = runCliInProcess(['events'], env, { out: (line) => (stdout += `${line}\n`), err: () => {}, write: () => {}, isTty: false });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await server.call('POST', '/v1/devices', { name: 'a.img', sizeBytes: 4096 });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await server.stop();
  assert.is(await running, 0);
  const events = stdout.trimEnd().split('\n').map((line) => JSON.parse(line));
  assert.equal(events.map((e) => [e.type, e.device]), [['device.created', 'a.img']]);
});

cli('sizes', () => {
  assert.equal(['4096', '512K', '10M', '1.5G', '2GiB', '1t', '64KB'].map((s) => parseSize(s, 'SIZE')), [4096, 524288, 10485760, 1610612736, 2147483648, 2 ** 40, 65536]);
  for (const bad of ['', '-1', '1.3', 'G', '1X', '0x10']) assert.throws(() => parseSize(bad, 'SIZE'));
});

cli.run();
