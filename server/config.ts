/**
 * `blockcore serve` settings from flags and the environment (flags win):
 *   --data DIR            BLOCKCORE_DATA    data directory (created), default ./data
 *   --http HOST:PORT      BLOCKCORE_HTTP    control API, default 127.0.0.1:8420
 *   --nbd HOST:PORT|PATH  BLOCKCORE_NBD     NBD server, default 127.0.0.1:10809; a value with a "/"
 *                                           (or unix:PATH) is a Unix socket path
 *   --token-file FILE     BLOCKCORE_TOKEN   API token (the file's first line, or the variable)
 * and the cluster's flags (cluster/flags.ts: `--etcd`, `--node-name` ...) and each engine's own
 * (EngineDefinition.serveFlags: `--rtrs`, `--rtrs-key-file` ...), with their variables and
 * defaults, checked by their rule, into `settings`.
 * Safe by default: the API binds loopback; bound to any other address it refuses to start without a
 * token. NBD off loopback needs TLS required (--nbd-tls require) or --nbd-insecure (then a warning).
 */
import { isIP } from 'node:net';
import type { ServeFlag } from './engine.ts';
import { CLUSTER_FLAGS } from './cluster/flags.ts';
import { NBD_FLAGS, nbdTlsOf } from './nbd-flags.ts';
import type { NbdTlsOptions } from './nbd/tls.ts';
import { ENGINES } from './engines.ts';
import { loadToken } from './token.ts';

export const DEFAULT_DATA_DIR = './data';
export const DEFAULT_HTTP = '127.0.0.1:8420';
export const DEFAULT_NBD = '127.0.0.1:10809';

export type TcpAddress = { host: string; port: number };
export type ListenAddress = TcpAddress | { path: string };

export interface ServeConfig {
  dataDir: string;
  http: TcpAddress;
  nbd: ListenAddress;
  /** STARTTLS on the NBD server (nbd-flags.ts), or null. */
  nbdTls: NbdTlsOptions | null;
  token: string | null;
  /** The engines' flags with their values (given, from the environment, or the default). */
  settings: Record<string, string>;
  warnings: string[];
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const FLAGS = ['--data', '--http', '--nbd', '--token-file'] as const;
type Flag = (typeof FLAGS)[number];
const ENGINE_FLAGS: readonly ServeFlag[] = [...NBD_FLAGS, ...CLUSTER_FLAGS, ...ENGINES.flatMap((engine) => engine.serveFlags ?? [])];
const ALL_FLAGS: readonly string[] = [...FLAGS, ...ENGINE_FLAGS.map((flag) => flag.flag)];

export function parseServeArgs(argv: readonly string[], env: Record<string, string | undefined>): ServeConfig {
  const fromEnv = (key: string) => (env[key] === '' ? undefined : env[key]);
  const flags = new Map<string, string>();
  for (let at = 0; at < argv.length; at++) {
    const arg = argv[at]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (!ALL_FLAGS.includes(flag)) throw new ConfigError(`unknown argument "${arg}" (serve takes ${ALL_FLAGS.join(', ')})`);
    if (ENGINE_FLAGS.find((f) => f.flag === flag)?.boolean) {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') throw new ConfigError(`${flag} is a switch: give it alone (or =true / =false)`);
      flags.set(flag, inline ?? 'true');
      continue;
    }
    const value = inline ?? argv[++at];
    if (value === undefined || value === '') throw new ConfigError(`${flag} needs a value`);
    flags.set(flag, value);
  }
  const settings: Record<string, string> = {};
  for (const engineFlag of ENGINE_FLAGS) {
    const envValue = engineFlag.boolean ? (fromEnv(engineFlag.env) === undefined ? undefined : String(/^(1|true)$/i.test(fromEnv(engineFlag.env)!))) : fromEnv(engineFlag.env);
    const value = flags.get(engineFlag.flag) ?? envValue ?? engineFlag.defaultValue;
    if (value === null || (engineFlag.boolean && value === 'false')) continue;
    const problem = engineFlag.problem?.(value) ?? null;
    if (problem !== null) throw new ConfigError(`${flags.has(engineFlag.flag) ? engineFlag.flag : fromEnv(engineFlag.env) !== undefined ? engineFlag.env : engineFlag.flag}: ${problem}`);
    settings[engineFlag.flag] = value;
  }
  const http = parseTcpAddress(flags.get('--http') ?? fromEnv('BLOCKCORE_HTTP') ?? DEFAULT_HTTP, flags.has('--http') ? '--http' : 'BLOCKCORE_HTTP');
  const nbd = parseListenAddress(flags.get('--nbd') ?? fromEnv('BLOCKCORE_NBD') ?? DEFAULT_NBD, flags.has('--nbd') ? '--nbd' : 'BLOCKCORE_NBD');
  const token = loadToken(flags.get('--token-file'), fromEnv('BLOCKCORE_TOKEN'));
  const warnings: string[] = [];
  if (!isLoopback(http.host) && token === null) {
    throw new ConfigError(`refusing to serve the API on ${formatAddress(http)} without a token: set BLOCKCORE_TOKEN or pass --token-file FILE (or bind 127.0.0.1)`);
  }
  const nbdTls = nbdTlsOf(settings);
  if (typeof nbdTls === 'string') throw new ConfigError(nbdTls);
  if ('host' in nbd && !isLoopback(nbd.host) && nbdTls?.mode !== 'require') {
    if (settings['--nbd-insecure'] !== 'true') {
      throw new ConfigError(`refusing to serve NBD on ${formatAddress(nbd)} without TLS: pass --nbd-tls require with --nbd-tls-certificates DIR or --nbd-tls-psk FILE, or --nbd-insecure to serve it in the clear (or bind 127.0.0.1)`);
    }
    warnings.push(`NBD listens on ${formatAddress(nbd)} without TLS required (--nbd-insecure): anyone who reaches it can read and write the exports`);
  }
  return { dataDir: flags.get('--data') ?? fromEnv('BLOCKCORE_DATA') ?? DEFAULT_DATA_DIR, http, nbd, nbdTls, token, settings, warnings };
}

export function parseTcpAddress(value: string, field: string): TcpAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value);
  if (!match) throw new ConfigError(`${field}: "${value}" is not HOST:PORT (e.g. 127.0.0.1:8420 or [::1]:8420)`);
  const host = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (port > 65535) throw new ConfigError(`${field}: port ${port} is above 65535`);
  if (match[1] !== undefined && isIP(host) !== 6) throw new ConfigError(`${field}: "${host}" is not an IPv6 address`);
  return { host, port };
}

export function parseListenAddress(value: string, field: string): ListenAddress {
  if (value.startsWith('unix:')) return { path: value.slice('unix:'.length) };
  if (value.includes('/')) return { path: value };
  return parseTcpAddress(value, field);
}

export function isLoopback(host: string): boolean {
  const bare = host.toLowerCase().replace(/^::ffff:/, '');
  return bare === 'localhost' || bare === '::1' || (isIP(bare) === 4 && bare.startsWith('127.'));
}

export function formatAddress(address: ListenAddress): string {
  if ('path' in address) return address.path;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
