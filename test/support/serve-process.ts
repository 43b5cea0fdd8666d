/**
 * `blockcore serve` as a child process, started the ways a user starts it:
 *   npm start        `npm start -- ARGS` through the npm beside this Node (only when the tests run
 *                    under Node: that npm needs this node), with `--prefix` the repository, from a
 *                    temporary working directory;
 *   node bin         what `npm start` execs: `node bin/blockcore.mjs serve ARGS`;
 *   <runtime> bin    bin/blockcore.mjs under the runtime running the tests (`bun bin/...`,
 *                    `deno run -A bin/...`); the same as `node bin` under Node, so not repeated.
 * Every child leads its own process group, so a test can signal the group the way a terminal's
 * Ctrl-C does; `killServeChildren()` SIGKILLs the groups still alive (by their PIDs) in teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { detectRuntime, type RuntimeName } from '../../runtime/adapter/index.ts';
import { BIN_PATH, childEnv, cliCommand } from './cli-run.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const STARTED_PATTERN = /^nbd {2}\S+$/m;

export interface Launcher {
  name: string;
  /** The runtime the service runs on (what it prints and /v1/health reports). */
  runtime: RuntimeName;
  /** The command line for `serve ARGS`. */
  command(args: readonly string[]): [string, string[]];
}

/** `npm start`, `node bin/blockcore.mjs serve` and bin/blockcore.mjs under this runtime. */
export function launchers(): Launcher[] {
  const runtime = detectRuntime();
  const found: Launcher[] = [];
  const npm = runtime === 'node' ? join(dirname(process.execPath), 'npm') : null;
  if (npm !== null && existsSync(npm)) {
    // --silent: npm's own banner and warnings stay out of the output under test.
    found.push({ name: 'npm start', runtime: 'node', command: (args) => [npm, ['--silent', '--prefix', REPO_ROOT, 'start', '--', ...args]] });
  }
  const node = runtime === 'node' ? process.execPath : 'node';
  found.push({ name: 'node bin/blockcore.mjs serve', runtime: 'node', command: (args) => [node, [BIN_PATH, 'serve', ...args]] });
  if (runtime !== 'node') found.push({ name: `${runtime} bin/blockcore.mjs serve`, runtime, command: (args) => cliCommand(['serve', ...args]) });
  return found;
}

/**
 * `launcher` started by a parent that never reaps it (`sh -c 'SERVE & exec sleep'`): once the
 * service is killed it stays a zombie, dead but with its pid still taken, until the test ends, as
 * under a supervisor or a container's init that is slow to reap. The first line it prints is
 * `service-pid N` (see `servicePid`); signals to the ServeChild's pid reach the sleeping parent.
 */
export function unreapedLauncher(launcher: Launcher): Launcher {
  return {
    name: `${launcher.name} (under a parent that does not reap it)`,
    runtime: launcher.runtime,
    command(args) {
      const [command, argv] = launcher.command(args);
      return ['sh', ['-c', '"$@" & echo "service-pid $!"; exec sleep 600', 'sh', command, ...argv]];
    },
  };
}

/** The pid of the service itself: from `service-pid N` (unreapedLauncher), else the child's. */
export function servicePid(served: ServeChild): number {
  const printed = /^service-pid (\d+)$/m.exec(served.stdout());
  return printed === null ? served.pid : Number(printed[1]);
}

/**
 * A port nobody listens on right now, for a child to bind a moment later. Drawn below the kernel's
 * ephemeral range (32768-60999 by default): a port the kernel picked and released is handed out
 * again to the next outgoing connection of any process, which took it from a child once
 * (EADDRINUSE in serve-start); ports below that range are only ever taken by an explicit bind.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = FREE_PORT_LOW + Math.floor(Math.random() * (FREE_PORT_HIGH - FREE_PORT_LOW));
    if (await canListen(port)) return port;
  }
}

const FREE_PORT_LOW = 20000;
const FREE_PORT_HIGH = 32000;

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export interface Exit {
  code: number | null;
  signal: string | null;
}

export interface ServeChild {
  launcher: string;
  child: ChildProcess;
  pid: number;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  /** From the `http ...` line. */
  url: string;
  /** From the `nbd  ...` line. */
  nbdUrl: string;
  exited: Promise<Exit>;
  /** To the child's PID (for `npm start`, npm's, which forwards it). */
  signal(name: NodeJS.Signals): void;
  /** To the child's process group: what a terminal's Ctrl-C does. */
  signalGroup(name: NodeJS.Signals): void;
}

export interface SpawnOptions {
  /** Added to the environment, which starts without any BLOCKCORE_* variable. */
  env?: Record<string, string>;
  cwd?: string;
}

const alive = new Set<number>();

/** The environment of a child: ours without BLOCKCORE_* (and without npm's), plus `extra`. */
/** Starts a launcher; does not wait. */
export function spawnServe(launcher: Launcher, args: readonly string[], options: SpawnOptions = {}): { child: ChildProcess; exited: Promise<Exit>; stdout(): string; stderr(): string } {
  const [command, argv] = launcher.command(args);
  const child = spawn(command, argv, { cwd: options.cwd ?? REPO_ROOT, env: childEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  if (child.pid !== undefined) alive.add(child.pid);
  const exited = new Promise<Exit>((resolve) => {
    child.on('error', (error) => {
      stderr += `spawn failed: ${error.message}`;
      resolve({ code: 127, signal: null });
    });
    child.on('close', (code, signal) => {
      if (child.pid !== undefined) alive.delete(child.pid);
      resolve({ code, signal });
    });
  });
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Starts a launcher and resolves once it printed both addresses. */
export async function startServe(launcher: Launcher, args: readonly string[], options: SpawnOptions = {}, timeoutMs = 30_000): Promise<ServeChild> {
  const started = spawnServe(launcher, args, options);
  const { child } = started;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(`not started within ${timeoutMs} ms`), timeoutMs);
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new Error(`${launcher.name}: ${why}\nstdout: ${started.stdout()}\nstderr: ${started.stderr()}`));
    };
    const check = () => {
      if (!STARTED_PATTERN.test(started.stdout())) return;
      clearTimeout(timer);
      resolve();
    };
    child.stdout!.on('data', () => setTimeout(check, 0));
    void started.exited.then((exit) => fail(`exited (${exit.code ?? exit.signal}) before printing its addresses`));
  });
  const out = started.stdout();
  const url = /^http (http:\/\/\S+)$/m.exec(out)?.[1];
  const nbdUrl = /^nbd {2}(\S+)$/m.exec(out)?.[1];
  if (url === undefined || nbdUrl === undefined) throw new Error(`${launcher.name}: no addresses in ${out}`);
  const pid = child.pid!;
  return {
    launcher: launcher.name,
    child,
    pid,
    stdout: started.stdout,
    stderr: started.stderr,
    url,
    nbdUrl,
    exited: started.exited,
    // process.kill, not child.kill: Deno's child_process reports a child it signalled as killed by
    // the signal even when the child handled it and exited 0.
    signal: (name) => process.kill(pid, name),
    signalGroup: (name) => process.kill(-pid, name),
  };
}

/** SIGKILLs the process group of every child still running (teardown). */
export function killServeChildren(): void {
  for (const pid of alive) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  alive.clear();
}
