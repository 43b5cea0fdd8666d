#!/usr/bin/env node
// `npm run worker -- [--http HOST:PORT] [--storage DIR] [--token-file FILE]`: builds the Worker
// (scripts/build-worker.mjs) and runs it under workerd (the npm package's binary), with its Durable
// Object's storage in DIR (default ./worker-storage), kept across restarts. Off loopback it wants a
// token (every route but /v1/health then needs it). `workerdConfig` writes
// the config file (Cap'n Proto text) beside copies of the bundle, for this command and the tests.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const WORKERD = join(ROOT, 'node_modules', '.bin', 'workerd');
/** Where scripts/build-worker.mjs puts the bundle. */
export const WORKER_DIR = join(ROOT, 'dist', 'worker');
const FILES = ['worker.js', 'blockcore.simd.wasm', 'blockcore.scalar.wasm'];

const quote = (text) => JSON.stringify(text);

/** Only this machine can reach `host`: 127.0.0.0/8, ::1 or localhost. */
export function isLoopback(host) {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Writes `dir/config.capnp` (and the bundle beside it) for a Worker listening on host:port whose
 * Durable Object keeps its storage in `storageDir`; outbound fetches may reach private and local
 * addresses (HTTP sources on this machine). Returns the config's path.
 */
export function workerdConfig(dir, { host = '127.0.0.1', port, storageDir, token = null }) {
  mkdirSync(dir, { recursive: true });
  mkdirSync(storageDir, { recursive: true });
  for (const file of FILES) copyFileSync(join(WORKER_DIR, file), join(dir, file));
  const bindings = ['(name = "BLOCKCORE", durableObjectNamespace = "BlockcoreObject")'];
  if (token !== null) bindings.push(`(name = "BLOCKCORE_TOKEN", text = ${quote(token)})`);
  else if (isLoopback(host)) bindings.push('(name = "BLOCKCORE_ALLOW_NO_TOKEN", text = "1")');
  const config = `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .blockcore),
    (name = "storage", disk = (path = ${quote(realpathSync(storageDir))}, writable = true)),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [ (name = "http", address = ${quote(`${host}:${port}`)}, http = (), service = "main") ],
);

const blockcore :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "blockcore.simd.wasm", wasm = embed "blockcore.simd.wasm"),
    (name = "blockcore.scalar.wasm", wasm = embed "blockcore.scalar.wasm"),
  ],
  compatibilityDate = "2026-11-01",
  durableObjectNamespaces = [ (className = "BlockcoreObject", uniqueKey = "blockcore", enableSql = true) ],
  durableObjectStorage = (localDisk = "storage"),
  bindings = [ ${bindings.join(', ')} ],
  globalOutbound = "internet",
);
`;
  const path = join(dir, 'config.capnp');
  writeFileSync(path, config);
  return path;
}

/** The arguments workerd is started with for `config`. */
export function workerdArgs(config) {
  return ['serve', config, '--experimental'];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const at = args.indexOf(name);
    return at < 0 ? fallback : args[at + 1];
  };
  const [host, port] = option('--http', '127.0.0.1:8787').split(':');
  const tokenFile = option('--token-file', null);
  const token = tokenFile === null ? null : readFileSync(tokenFile, 'utf8').split('\n')[0].trim();
  if (token === null && !isLoopback(host)) {
    console.error(`workerd: ${host} is reachable from other machines: give --token-file FILE`);
    process.exit(2);
  }
  const { buildWorker } = await import('./build-worker.mjs');
  await buildWorker();
  const dir = join(WORKER_DIR, 'run');
  const config = workerdConfig(dir, { host, port: Number(port), storageDir: resolve(option('--storage', 'worker-storage')), token });
  console.log(`workerd: http://${host}:${port} (config ${config})`);
  const child = spawn(WORKERD, workerdArgs(config), { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code) => process.exit(code ?? 1));
}
