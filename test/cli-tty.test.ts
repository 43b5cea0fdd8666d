/**
 * `blockcore clone status NAME --watch` as a child process (bin/blockcore.mjs under the runtime
 * running the tests) against a service in this process: on a real terminal (a pty from util-linux
 * `script`) one line redrawn in place, a bar with percent, bytes, rate and ETA, ending with the
 * finished bar and a newline; through a pipe, plain lines without escape codes or carriage returns.
 *
 * The clone hydrates exactly as fast as the test lets it: created with hydration_threshold 0 (enabled,
 * but no background copy may run), it moves only when the test sends NBD CACHE for the next region,
 * and finishes when the test raises the threshold by message. So the watch sees 25.0%, 25.4% and
 * 25.8% (64, 65 and 66 of 256 regions), each just after a copy (a fresh rate, so a number for the
 * ETA), then 100%.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { NBD_CMD_CACHE } from '../server/nbd/constants.ts';
import { makeCloneDevices, startTestServer, type TestServer } from './support/blockcore-server.ts';
import { childEnv, cliCommand } from './support/cli-run.ts';
import { RawNbd } from './support/nbd-client.ts';

const KiB = 1024;
const REGION_BYTES = 4 * KiB;
const REGIONS = 256;
/** Enabled, but no background copy may start until a message raises the threshold. */
const THROTTLED_TABLE = 'clone meta dst.img src.img 8 0 2 hydration_threshold 0';
const SIZE = String.raw`[\d.]+ (?:B|KiB|MiB)`;
const ETA = String.raw`(?:\d+s|\d+m\d\ds|\d+h\d\dm|\?)`;
/** A frame as the terminal shows it (the \r before it and the erase-to-end after it removed). */
const TTY_FRAME = new RegExp(String.raw`^c1 \[(#*)(\.*)\] +(\d+\.\d)%  ${SIZE}/1\.0 MiB  (${SIZE})/s  (ETA ${ETA}|done)  rw$`);
const PLAIN_LINE = new RegExp(String.raw`^c1 (\d+\.\d)% ${SIZE}/1\.0 MiB (${SIZE})/s (ETA ${ETA}|done) rw$`);
/** The percentages the test steps through: 64, 65 and 66 of 256 regions. */
const STEPS = ['25.0', '25.4', '25.8'];

const tty = suite('cli: clone status --watch on a terminal and in a pipe');
let server: TestServer;
let nbd: RawNbd | null = null;
const children: ChildProcess[] = [];

tty.before.each(async () => {
  if (spawnSync('sh', ['-c', 'command -v script'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('missing script (util-linux): install with\n  apt-get install -y util-linux');
  }
  server = await startTestServer();
  await makeCloneDevices(server, REGIONS * REGION_BYTES);
  const created = await server.call('POST', '/v1/clones', { name: 'c1', table: THROTTLED_TABLE });
  assert.is(created.status, 201, created.text);
  assert.is((await server.call('POST', '/v1/exports', { name: 'e1', device: 'clone:c1' })).status, 201);
  const address = server.running.nbd;
  if (!('port' in address)) throw new Error('the test server listens for NBD on TCP');
  nbd = await RawNbd.connect(address);
  await nbd.go('e1');
});
tty.after.each(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
  nbd?.close();
  nbd = null;
  await server.dispose();
});

/** Hydrates regions [first, first + count) now, over NBD. */
async function cache(first: number, count: number): Promise<void> {
  nbd!.request(NBD_CMD_CACHE, first * REGION_BYTES, count * REGION_BYTES);
  assert.is((await nbd!.reply()).error, 0, 'CACHE');
}

async function hydratedRegions(): Promise<number> {
  return (await server.call('GET', '/v1/clones/c1')).json.hydratedRegions;
}

function mustMatch(pattern: RegExp, text: string, what: string): RegExpExecArray {
  const match = pattern.exec(text);
  if (match === null) throw new assert.Assertion({ message: `not ${what}: ${JSON.stringify(text)}`, operator: 'match', actual: text, expects: pattern, generated: false });
  return match;
}

const shellQuote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;

interface Watched {
  child: ChildProcess;
  output(): string;
  /** Resolves once the output matches. */
  until(pattern: RegExp, what: string): Promise<void>;
  exited: Promise<number | null>;
}

function watch(onTerminal: boolean): Watched {
  const [command, argv] = cliCommand(['clone', 'status', 'c1', '--watch', '--interval-ms', '20']);
  const env = childEnv({ BLOCKCORE_URL: server.url, SHELL: '/bin/sh' });
  // script -q (no banner) -e (its exit code is the command's) -f (flush at once) -c COMMAND: the
  // command runs with a new pty as its terminal; what it writes comes out on script's stdout.
  const child = onTerminal
    ? spawn('script', ['-qefc', [command, ...argv].map(shellQuote).join(' '), '/dev/null'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(command, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  let errors = '';
  const waiters = new Set<() => void>();
  child.stdout!.on('data', (chunk) => {
    output += chunk;
    for (const wake of waiters) wake();
  });
  child.stderr!.on('data', (chunk) => (errors += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => {
    for (const wake of waiters) wake();
    resolve(code);
  }));
  return {
    child,
    output: () => output,
    exited,
    until(pattern, what) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`no ${what} within 20 s; output: ${JSON.stringify(output)} stderr: ${errors}`)), 20_000);
        const done = (error?: Error) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (error) reject(error);
          else resolve();
        };
        const check = () => {
          if (pattern.test(output)) done();
          else if (child.exitCode !== null || child.signalCode !== null) done(new Error(`exited before ${what}; output: ${JSON.stringify(output)} stderr: ${errors}`));
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * Steps the clone through STEPS while the watch runs, waiting for each to show (`shown(step)`),
 * then lets hydration finish; resolves with the watch's exit code.
 */
async function drive(watched: Watched, shown: (percent: string) => RegExp): Promise<number | null> {
  await watched.until(shown(STEPS[0]!), `a frame at ${STEPS[0]}%`);
  for (let step = 1; step < STEPS.length; step++) {
    await cache(64 + step - 1, 1);
    await watched.until(shown(STEPS[step]!), `a frame at ${STEPS[step]}%`);
  }
  assert.is(await hydratedRegions(), 66, 'no background copy ran while the threshold was 0');
  assert.is((await server.call('POST', '/v1/clones/c1/message', { message: 'hydration_batch_size 32' })).status, 200);
  assert.is((await server.call('POST', '/v1/clones/c1/message', { message: 'hydration_threshold 64' })).status, 200);
  return watched.exited;
}

tty('on a terminal: one line redrawn with a bar, percent, bytes, rate and ETA; ends with the full bar and a newline', async () => {
  await cache(0, 64);
  const watched = watch(true);
  const code = await drive(watched, (percent) => new RegExp(String.raw`\] +${percent.replace('.', '\\.')}%[^\r]*\x1b\[K`));
  const output = watched.output();
  assert.is(code, 0, output);
  // Each frame is "\r<line>\x1b[K"; the terminal turns the last "\n" into "\r\n".
  assert.ok(output.startsWith('\r'), JSON.stringify(output.slice(0, 40)));
  assert.ok(output.endsWith('\x1b[K\r\n'), JSON.stringify(output.slice(-40)));
  const body = output.slice(0, -'\r\n'.length);
  assert.not.ok(body.includes('\n'), 'no line feed before the end: the line is redrawn in place');
  const frames = body.split('\r').slice(1);
  assert.ok(frames.length >= STEPS.length + 1, `${frames.length} frames`);
  const seen = new Map<string, RegExpExecArray>();
  for (const frame of frames) {
    assert.ok(frame.endsWith('\x1b[K'), `frame ${JSON.stringify(frame)} erases to the end of the line`);
    const match = mustMatch(TTY_FRAME, frame.slice(0, -'\x1b[K'.length), 'a progress frame');
    assert.is(match[1]!.length + match[2]!.length, 30, 'the bar has 30 cells');
    // floor(fraction x 30) cells; the percent is rounded to 0.05%, 0.015 of a cell.
    const cells = (Number(match[3]) / 100) * 30;
    assert.ok(match[1]!.length > cells - 1.02 && match[1]!.length <= cells + 0.02, `${match[1]!.length} cells filled at ${match[3]}%`);
    if (!seen.has(match[3]!)) seen.set(match[3]!, match);
  }
  for (const step of STEPS.slice(1)) {
    // Shown right after a copy, so the rate is measured and the ETA a duration.
    const match = seen.get(step)!;
    assert.ok(match, `a frame at ${step}%`);
    assert.is.not(match[4], '0 B', `a rate at ${step}%`);
    assert.match(match[5]!, /^ETA (?:\d+s|\d+m\d\ds|\d+h\d\dm)$/, `an ETA at ${step}%`);
  }
  assert.is(seen.get('25.0')![1], '#'.repeat(7));
  const last = mustMatch(TTY_FRAME, frames.at(-1)!.slice(0, -'\x1b[K'.length), 'the last frame');
  assert.equal([last[1], last[3], last[5]], ['#'.repeat(30), '100.0', 'done']);
  assert.match(frames.at(-1)!, /^c1 \[#{30}\] 100\.0%  1\.0 MiB\/1\.0 MiB  /);
  assert.is(await hydratedRegions(), REGIONS);
});

tty('through a pipe: plain lines, no escape codes or carriage returns; the last one says done', async () => {
  await cache(0, 64);
  const watched = watch(false);
  const code = await drive(watched, (percent) => new RegExp(String.raw`^c1 ${percent.replace('.', '\\.')}% `, 'm'));
  const output = watched.output();
  assert.is(code, 0, output);
  assert.not.ok(output.includes('\x1b'), 'no escape codes');
  assert.not.ok(output.includes('\r'), 'no carriage returns');
  assert.ok(output.endsWith('\n'));
  const lines = output.slice(0, -1).split('\n');
  const percents: string[] = [];
  for (const line of lines) {
    const match = mustMatch(PLAIN_LINE, line, 'a plain progress line');
    percents.push(match[1]!);
  }
  for (const step of STEPS) assert.ok(percents.includes(step), `a line at ${step}%`);
  assert.match(lines.at(-1)!, /^c1 100\.0% 1\.0 MiB\/1\.0 MiB [\d.]+ \w*B\/s done rw$/);
  for (let at = 1; at < lines.length; at++) assert.is.not(lines[at], lines[at - 1], 'a line only when something changed');
});

tty.run();
