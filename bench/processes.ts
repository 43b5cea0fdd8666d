/**
 * Child processes of the benchmarks (peers such as nbdkit, nbdcopy, fio; our own server children):
 * every one is registered in `children`, so that however a run ends `stopChildren()` stops what is
 * still alive, by PID. Also a free loopback port and the CPU time of a process (a child by PID,
 * read with `cat`: Deno's permissions do not let a script read /proc short of --allow-all).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export const children: ChildProcess[] = [];

export function stopChildren(): void {
  for (const child of children) if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM');
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, collecting what it prints. */
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

export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** CPU seconds (user + system) used so far by this process ('self') or another one by PID. */
export async function cpuSeconds(pid: number | 'self'): Promise<number> {
  if (pid === 'self') {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  }
  const stat = (await run('cat', [`/proc/${pid}/stat`])).stdout;
  const fields = stat.split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
}
