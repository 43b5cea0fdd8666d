/**
 * Real NBD clients (libnbd-bin, qemu-utils) as child processes for interoperability tests. A
 * missing tool fails the test with the exact install line. Every child runs asynchronously (the
 * server under test lives in this process, so blocking on a child would deadlock it) and is killed
 * by its PID if it outlives its deadline.
 */
import { spawn, spawnSync } from 'node:child_process';

const PACKAGE_OF: Record<string, string> = {
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  losetup: 'mount',
  cc: 'gcc libc6-dev',
  etcd: 'etcd-server',
};

/** Throws naming the apt-get line when any of `commands` is not installed. */
export function requireTools(commands: string[]): void {
  const missing = commands.filter((command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((command) => PACKAGE_OF[command] ?? command))];
  throw new Error(`missing ${missing.join(', ')}: install with\n  apt-get install -y ${packages.join(' ')}`);
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

const running = new Set<number>();

/** Runs a tool to completion (or kills it by PID after `timeoutMs`). */
export function runTool(command: string, args: string[], timeoutMs = 30_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const pid = child.pid;
    if (pid !== undefined) running.add(pid);
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${timeoutMs} ms)`;
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
    }, timeoutMs);
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: stderr + error.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (pid !== undefined) running.delete(pid);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** Runs a tool that must succeed; returns its stdout. */
export async function mustRun(command: string, args: string[], timeoutMs?: number): Promise<string> {
  const result = await runTool(command, args, timeoutMs);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
  return result.stdout;
}

/** Kills (by PID) any tool still running, for test teardown. */
export function killRunningTools(): void {
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}
