/**
 * `blockcore serve`: the service, its HTTP API and its NBD server, started together and stopped
 * together. startBlockcore() is what tests call in-process; serve() is the command: it prints both
 * addresses, and on SIGINT or SIGTERM stops everything and exits 0.
 *
 * Stop order: the HTTP listener (no new requests; event streams end), then the NBD server (clients
 * disconnected), then the service, which closes every export's file and every clone; closing a
 * clone commits its metadata. A second signal while stopping exits at once with 130, unless it came
 * within a second of the first (stop-signals.ts: npm start forwards the terminal's Ctrl-C).
 */
import { ConfigError, formatAddress, parseServeArgs, type ListenAddress, type ServeConfig, type TcpAddress } from './config.ts';
import { createApp } from './http/app.ts';
import { bodyLimitBytes, isDataPut } from './http/route.ts';
import { listenHttp } from './http/node-listen.ts';
import { NbdServer } from './nbd/server.ts';
import { TlsConfigError } from './nbd/tls.ts';
import { nbdThreadsOf, nbdTlsOf } from './nbd-flags.ts';
import { Service } from './service.ts';
import { removeStaleSocket } from './stale-socket.ts';
import { watchStopSignals } from './stop-signals.ts';
import { RUNTIME, VERSION } from './version.ts';

export interface Running {
  service: Service;
  http: TcpAddress;
  nbd: ListenAddress;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Where notable lines go (reopen failures); default stderr. */
  log?: (line: string) => void;
}

export async function startBlockcore(config: Pick<ServeConfig, 'dataDir' | 'http' | 'nbd' | 'token'> & Partial<Pick<ServeConfig, 'settings' | 'nbdTls'>>, options: StartOptions = {}): Promise<Running> {
  const service = await Service.open({ dataDir: config.dataDir, log: options.log, settings: config.settings ?? {} });
  const closers: Array<() => Promise<void>> = [() => service.close()];
  const stop = async () => {
    for (const close of closers.splice(0)) await close().catch((error) => (options.log ?? console.error)(`while stopping: ${error}`));
  };
  try {
    // From the settings when the caller passed none (tests start the service with settings only).
    const nbdTls = config.nbdTls !== undefined ? config.nbdTls : nbdTlsOf(config.settings ?? {});
    if (typeof nbdTls === 'string') throw new ConfigError(nbdTls);
    const nbd = new NbdServer({
      ...(nbdTls === null ? {} : { tls: nbdTls }),
      threads: nbdThreadsOf(config.settings ?? {}),
      onLog: options.log ?? ((line) => console.error(line)),
      lookup: (name) => service.lookupExport(name),
      list: () => service.listNbdExports(),
      onEvent: (event) => service.onNbdEvent(event),
    });
    closers.unshift(() => nbd.close());
    if ('path' in config.nbd) await removeStaleSocket(config.nbd.path);
    const nbdAddress = await nbd.listen(config.nbd);
    service.attachNbd(nbd);
    const app = createApp({ service, token: config.token });
    const http = await listenHttp({ ...config.http, bodyLimitBytes, streamedBody: isDataPut, fetch: (request) => app.fetch(request) });
    closers.unshift(() => http.close());
    return { service, http: { host: http.host, port: http.port }, nbd: nbdAddress, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

export interface ServeIo {
  out(line: string): void;
  err(line: string): void;
}

const STD_IO: ServeIo = { out: (line) => console.log(line), err: (line) => console.error(line) };

/** The `serve` command; resolves with the exit code once stopped by a signal. */
export async function serve(argv: readonly string[], env: Record<string, string | undefined>, io: ServeIo = STD_IO): Promise<number> {
  let config: ServeConfig;
  try {
    config = parseServeArgs(argv, env);
  } catch (error) {
    io.err(`blockcore: ${(error as Error).message}`);
    return error instanceof ConfigError ? 2 : 1;
  }
  for (const warning of config.warnings) io.err(`blockcore: warning: ${warning}`);
  // Listening before the addresses are printed: a signal sent on seeing them must find a listener.
  const signals = watchStopSignals();
  let running: Running;
  try {
    running = await startBlockcore(config, { log: (line) => io.err(`blockcore: ${line}`) });
  } catch (error) {
    signals.dispose();
    io.err(`blockcore: ${(error as Error).message}`);
    return error instanceof TlsConfigError || error instanceof ConfigError ? 2 : 1;
  }
  io.out(`blockcore ${VERSION} on ${RUNTIME}, data ${running.service.dataDir}${config.token ? ', token required' : ''}`);
  io.out(`http ${httpUrl(running.http)}`);
  io.out(`nbd  ${nbdUrl(running.nbd)}${config.nbdTls === null ? '' : ` (TLS ${config.nbdTls.mode === 'require' ? 'required' : 'offered'})`}`);
  for (const line of running.service.listening()) io.out(line);
  const signal = await signals.first;
  io.out(`${signal}: stopping`);
  await running.stop();
  signals.dispose();
  io.out('stopped');
  return 0;
}

export function httpUrl(address: TcpAddress): string {
  return `http://${formatAddress(address)}`;
}

export function nbdUrl(address: ListenAddress): string {
  return 'path' in address ? `nbd+unix:///?socket=${address.path}` : `nbd://${formatAddress(address)}`;
}
