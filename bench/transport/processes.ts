/**
 * The peer's runs for bench/transport.ts (nbdkit file, nbdcopy, fio's nbd engine) and the command
 * line of a child under our own runtime; the process bookkeeping is bench/processes.ts's.
 */
import { spawn } from 'node:child_process';
import { detectRuntime } from '../../runtime/adapter/index.ts';
import { children, run } from '../processes.ts';

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
