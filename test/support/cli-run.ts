/** Runs the `blockcore` command (bin/blockcore.mjs) as a child under the runtime running the tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { detectRuntime } from '../../runtime/adapter/index.ts';

export const BIN_PATH = fileURLToPath(new URL('../../bin/blockcore.mjs', import.meta.url));

export function cliCommand(args: readonly string[]): [string, string[]] {
  switch (detectRuntime()) {
    case 'node':
    case 'bun':
      return [process.execPath, [BIN_PATH, ...args]];
    case 'deno': {
      const deno = (globalThis as unknown as { Deno: { execPath(): string } }).Deno;
      return [deno.execPath(), ['run', '-A', BIN_PATH, ...args]];
    }
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment for a blockcore child: ours without BLOCKCORE_* and npm_* (a developer's token
 * or URL must not reach the server or CLI under test), NO_COLOR, RTRS on a port the kernel picks
 * (a service under test must not take, or find taken, the default 10900), then `extra` (undefined
 * drops).
 */
export function childEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('BLOCKCORE_') || key.startsWith('npm_')) continue;
    env[key] = value;
  }
  env.NO_COLOR = '1';
  env.BLOCKCORE_RTRS = '127.0.0.1:0';
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export function spawnCli(args: readonly string[], env: Record<string, string | undefined> = {}): ChildProcess {
  const [command, argv] = cliCommand(args);
  return spawn(command, argv, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
}

export function runBin(args: readonly string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** Resolves with stdout so far once it matches `pattern`. */
export function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    let errors = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in ${timeoutMs} ms; stdout: ${seen} stderr: ${errors}`)), timeoutMs);
    child.stderr!.on('data', (chunk) => (errors += chunk));
    child.stdout!.on('data', (chunk) => {
      seen += chunk;
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve(seen);
      }
    });
    child.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`exited before ${pattern}; stdout: ${seen} stderr: ${errors}`));
    });
  });
}
