/**
 * Child processes of bench/transport.ts: every one is registered in `children` so that however the
 * run ends, `stopChildren()` stops what is still alive, by PID. Also the peer's runs (nbdkit file,
 * nbdcopy, fio's nbd engine) and CPU time of a process by PID (read with `cat`: Deno's permissions
 * do not let a script read /proc short of --allow-all).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { detectRuntime } from '../../runtime/adapter/index.ts';

export const children: ChildProcess[] = [];

export function stopChildren(): void {
  for (const child of children) if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM');
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    child.on('error', (error) => resolve({ code: 127, stdout, stderr: stderr + error.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/**
 * The command line that runs `file` under the runtime running us (the server child must share the
 * benchmark's runtime). Node's execArgv carries the TypeScript loader (`--import tsx`); Deno's is
 * empty, so its permissions are given here, as test/support/cli-run.ts does for the CLI.
 */
export function sameRuntimeCommand(file: string, args: string[]): [string, string[]] {
  switch (detectRuntime()) {
    case 'node':
      return [process.execPath, [...process.execArgv, file, ...args]];
    case 'bun':
      return [process.execPath, [file, ...args]];
    case 'deno':
      return [process.execPath, ['run', '-A', file, ...args]];
  }
}

export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** CPU seconds (user + system) a process has used so far. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = (await run('cat', [`/proc/${pid}/stat`])).stdout;
  const fields = stat.split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
}

/** `nbdkit file FILE` (writable) on 127.0.0.1:port; resolves with its PID once it answers. */
export async function startNbdkit(filePath: string, port: number): Promise<number> {
  const child = spawn('nbdkit', ['-f', '-p', String(port), '-i', '127.0.0.1', 'file', filePath], { stdio: 'ignore' });
  children.push(child);
  for (let attempt = 0; attempt < 100; attempt++) {
    if ((await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/`])).code === 0) return child.pid!;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nbdkit on port ${port} did not come up`);
}

/** nbdcopy SOURCE DESTINATION at its defaults; bytes per second over `totalBytes` (wall time of the process). */
export async function nbdcopyRate(source: string, destination: string, totalBytes: number): Promise<number> {
  const startMs = performance.now();
  const result = await run('nbdcopy', [source, destination]);
  const seconds = (performance.now() - startMs) / 1000;
  if (result.code !== 0) throw new Error(`nbdcopy ${source} ${destination} failed: ${result.stderr}`);
  return totalBytes / seconds;
}

/** fio's nbd engine: 4 KiB random reads at queue depth 32 for `seconds`; IOPS. */
export async function fioRandreadIops(uri: string, fileBytes: number, ioBytes: number, queueDepth: number, seconds: number): Promise<number> {
  const result = await run('fio', [
    '--name=randread', '--ioengine=nbd', `--uri=${uri}`, '--readonly', '--rw=randread', `--bs=${ioBytes}`, `--iodepth=${queueDepth}`,
    '--numjobs=1', `--size=${fileBytes}`, `--runtime=${seconds}`, '--time_based', '--output-format=json',
  ]);
  if (result.code !== 0) throw new Error(`fio ${uri} failed: ${result.stderr}`);
  const report = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: Array<{ read: { iops: number } }> };
  return report.jobs[0]!.read.iops;
}
