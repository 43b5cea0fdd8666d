/**
 * The Worker (server/edge/worker.ts) under a real workerd for tests: built once per run by
 * scripts/build-worker.mjs (run with node, whatever runtime the test is on), started on a free
 * port with its Durable Object's storage in a directory of the test's, stopped by PID.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WORKERD, workerdArgs, workerdConfig } from '../../scripts/workerd.mjs';
import { freePort } from './serve-process.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

let built = false;

/** Bundles the Worker (skipped by the script when up to date). */
export function buildWorkerBundle(): void {
  if (built) return;
  const result = spawnSync('node', [join(ROOT, 'scripts', 'build-worker.mjs')], { cwd: ROOT, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`building the Worker failed: ${result.stderr || result.stdout}`);
  built = true;
}

export interface RunningWorker {
  url: string;
  pid: number;
  /** What workerd printed. */
  output(): string;
  /** Stops workerd (SIGTERM, SIGKILL after STOP_TIMEOUT_MS) and removes its config directory; the storage stays. */
  stop(): Promise<void>;
}

/** Starts workerd on a free port with its storage in `storageDir`; resolves once /v1/health answers. */
export async function startWorker(storageDir: string, options: { token?: string } = {}): Promise<RunningWorker> {
  buildWorkerBundle();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'blockcore-workerd-'));
  const config = workerdConfig(dir, { port, storageDir, token: options.token ?? null });
  const child = spawn(WORKERD, workerdArgs(config), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let alive = true;
  void exited.then(() => (alive = false));
  const url = `http://127.0.0.1:${port}`;
  const worker: RunningWorker = {
    url,
    pid: child.pid!,
    output: () => output,
    async stop() {
      if (alive) {
        process.kill(child.pid!, 'SIGTERM');
        const timer = setTimeout(() => alive && process.kill(child.pid!, 'SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (!alive) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`workerd exited at start: ${output}`);
    }
    try {
      if ((await fetch(`${url}/v1/health`)).ok) return worker;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await worker.stop();
      throw new Error(`workerd did not answer within ${START_TIMEOUT_MS} ms: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
