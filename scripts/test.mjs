#!/usr/bin/env node
// The README's test command (`npm test`, after the WASM build): type-checks, then runs the whole uvu
// suite under Node (tsx), Bun and Deno in turn. Prints `<runtime>: N passed, N failed` per runtime and
// a last line `N passed, N failed` overall; exits non-zero when anything failed or no test ran.
//   BLOCKCORE_TEST_RUNTIMES=node,bun   run only these runtimes
//   node scripts/test.mjs clone nbd    run only test files whose path contains one of the words
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ensureTools } from './ensure-tools.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (name) => `${root}node_modules/.bin/${name}`;
const filters = process.argv.slice(2);
const DENO_PERMISSIONS = ['--allow-read', '--allow-write', '--allow-env', '--allow-net', '--allow-ffi', '--allow-run', '--allow-sys'];

const RUNTIMES = {
  node: [process.execPath, ['--import', 'tsx', 'test/driver.ts', ...filters]],
  bun: [bin('bun'), ['test/driver.ts', ...filters]],
  deno: [bin('deno'), ['run', ...DENO_PERMISSIONS, 'test/driver.ts', ...filters]],
};

// A test that hangs must fail the run, not stall it past CI's limit: a runtime's driver that prints
// nothing for this long (uvu prints a dot per test; the slowest test takes about a minute) is
// killed with everything it started, and counted as one failure naming the file it was in.
const SILENCE_MS = Number(process.env.BLOCKCORE_TEST_SILENCE_MS ?? 5 * 60_000);

function runStreaming(command, args, env = {}) {
  return new Promise((resolve) => {
    let output = '';
    let hung = false;
    const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        hung = true;
        const note = `\n!! no output for ${SILENCE_MS / 1000} s: a test hangs; killing the run (it was in the last file named above)\n`;
        output += note;
        process.stderr.write(note);
        try { process.kill(-child.pid, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
      }, SILENCE_MS);
    };
    arm();
    const take = (sink) => (chunk) => { output += chunk; sink.write(chunk); arm(); };
    child.stdout.on('data', take(process.stdout));
    child.stderr.on('data', take(process.stderr));
    child.on('error', (error) => { clearTimeout(watchdog); resolve({ code: 127, output: `${output}\n${error.message}`, hung }); });
    child.on('close', (code, signal) => { clearTimeout(watchdog); resolve({ code: code ?? (signal ? 128 : 1), output, hung }); });
  });
}

function summary(output) {
  const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
  const total = plain.match(/Total:\s+(\d+)/);
  const passed = plain.match(/Passed:\s+(\d+)/);
  const skipped = plain.match(/Skipped:\s+(\d+)/);
  if (!total || !passed) return null;
  return { total: +total[1], passed: +passed[1], skipped: skipped ? +skipped[1] : 0 };
}

/** Lines of a failed run's output repeated at the end, at most (see below). */
const TAIL_LINES = 40;
const tails = [];

const chosen = (process.env.BLOCKCORE_TEST_RUNTIMES || 'node,bun,deno').split(',').map((s) => s.trim()).filter(Boolean);
const lines = [];
let passedAll = 0;
let failedAll = 0;

// Real peers the tests drive (NBD clients, qemu): installed here when we are root.
// The kernel's NBD client only where the kernel has the nbd module to attach it to.
ensureTools(['nbdinfo', 'nbdcopy', 'qemu-img', 'qemu-io', 'script', 'mdadm', 'losetup', 'cc', 'etcd', 'openssl', 'curl', ...(existsSync('/sys/block/nbd0') ? ['nbd-client'] : [])]);

process.stdout.write('== typecheck (tsc --noEmit)\n');
const typecheck = await runStreaming(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', 'tsconfig.json', '--noEmit']);
if (typecheck.code !== 0) {
  failedAll += 1;
  lines.push('typecheck: 0 passed, 1 failed');
}

for (const name of chosen) {
  const entry = RUNTIMES[name];
  if (!entry) {
    console.error(`unknown runtime "${name}" in BLOCKCORE_TEST_RUNTIMES (use node, bun, deno)`);
    process.exit(2);
  }
  const [command, args] = entry;
  if (command !== process.execPath && !existsSync(command)) {
    console.error(`${name} is not installed: run npm install`);
    process.exit(2);
  }
  process.stdout.write(`\n== ${name}\n`);
  const { code, output, hung } = await runStreaming(command, args, { BLOCKCORE_TEST_RUNTIME: name, FORCE_COLOR: '0' });
  const counts = summary(output);
  // A crash before uvu's summary, a non-zero exit or zero tests are all failures of the run.
  let passed = counts ? counts.passed : 0;
  let failed = counts ? counts.total - counts.passed - counts.skipped : 0;
  if ((code !== 0 || hung) && failed === 0) failed = 1;
  if (!counts || counts.total === 0) failed = Math.max(failed, 1);
  passedAll += passed;
  failedAll += failed;
  lines.push(`${name}: ${passed} passed, ${failed} failed`);
  // A run that ended without its summary (a crash, an early exit, a hang) is explained by its last
  // lines, an error outside any test by the driver's "!!" lines: both are repeated at the end, where
  // a log cut to its tail still shows them.
  if (!counts || code !== 0 || hung) {
    const plain = output.replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n');
    const flagged = plain.flatMap((line, i) => (line.startsWith('!!') ? plain.slice(i, i + 4) : [])).slice(0, TAIL_LINES);
    const shown = counts ? flagged : plain.slice(-TAIL_LINES);
    tails.push(`== what ${name} printed last (exit ${code}${hung ? ', killed as hung' : ''})\n${shown.join('\n')}`);
  }
}
if (tails.length > 0) process.stdout.write(`\n${tails.join('\n')}\n`);

process.stdout.write('\n');
for (const line of lines) process.stdout.write(`${line}\n`);
process.stdout.write(`${passedAll} passed, ${failedAll} failed\n`);
process.exit(failedAll === 0 && passedAll > 0 ? 0 : 1);
