/**
 * A real etcd for tests (Debian's etcd-server; the test command installs it when root): one
 * member on free loopback ports with a data directory of its own, started from the test and
 * stopped by its PID. `kill` is a SIGKILL (etcd's own crash), `restart` brings it back on the same
 * data and ports (what a node sees when etcd restarts under it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './serve-process.ts';
import { requireTools } from './tools.ts';

export interface TestEtcd {
  /** The client URL (http://127.0.0.1:PORT). */
  url: string;
  readonly pid: number;
  /** What etcd printed (its log), for failure messages. */
  output(): string;
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** Stops it and removes its data directory. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();

/** Files of a TLS client port (PEM): etcd's certificate and key, and the CA its clients must present certificates of. */
export interface EtcdTls {
  cert: string;
  key: string;
  /** Client certificates are required, signed by this CA (etcd's --client-cert-auth). */
  clientCa: string;
}

/**
 * `clientPort`: listen there (a port a test already handed to a client); default a free one.
 * `tls`: the client URL is https:// (health is then read on a plain metrics port).
 */
export async function startEtcd(timeoutMs = 20_000, clientPort?: number, tls?: EtcdTls): Promise<TestEtcd> {
  requireTools(['etcd']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-etcd-'));
  clientPort ??= await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  let metricsPort = await freePort();
  while (metricsPort === clientPort || metricsPort === peerPort) metricsPort = await freePort();
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  const health = `http://127.0.0.1:${metricsPort}/health`;
  const tlsArgs = tls ? ['--cert-file', tls.cert, '--key-file', tls.key, '--client-cert-auth', '--trusted-ca-file', tls.clientCa] : [];
  const peer = `http://127.0.0.1:${peerPort}`;
  let log = '';
  let child: ChildProcess;
  const launch = async () => {
    child = spawn('etcd', [
      '--name', 'test', '--data-dir', path.join(dir, 'data'),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `test=${peer}`,
      '--listen-metrics-urls', `http://127.0.0.1:${metricsPort}`, ...tlsArgs,
      '--log-level', 'warn',
      // Shorter raft timings than the defaults (100 / 1000 ms) lower etcd's minimum lease TTL
      // (1.5 election timeouts) from 2 s to 1 s, so tests can run leases of 1 s.
      '--heartbeat-interval', '50', '--election-timeout', '600',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    child.stdout!.on('data', (chunk) => (log += chunk));
    child.stderr!.on('data', (chunk) => (log += chunk));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`etcd exited (${child.exitCode}):\n${log.slice(-2000)}`);
      try {
        const answer = await fetch(health);
        if (answer.ok && ((await answer.json()) as { health?: string }).health === 'true') return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy in ${timeoutMs} ms:\n${log.slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const halt = (signal: NodeJS.Signals) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  }).then(() => void running.delete(child));
  await launch();
  return {
    url,
    get pid() {
      return child.pid!;
    },
    output: () => log,
    kill: () => halt('SIGKILL'),
    restart: async () => {
      await halt('SIGKILL');
      await launch();
    },
    stop: async () => {
      await halt('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Kills every etcd the tests started (an after-hook's last resort). */
export function killEtcds(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}
