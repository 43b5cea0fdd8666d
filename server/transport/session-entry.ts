/**
 * One RTRS client session of the service and the RNBD client on it, from its record: opened at
 * once when created through the API (a failure refuses the request), and on restore opened in the
 * background, again and again with a growing pause (1 s up to 30 s) until the server answers, so a
 * client that restarts before its server does still comes up. While it is not open its record is
 * kept with the last error; devices mapped on it wait for it (device-entry.ts).
 */
import { BlockError } from '../../runtime/errors.ts';
import { RnbdClient } from '../../runtime/transport/rnbd-client.ts';
import { parseHostPort } from '../../runtime/transport/rtrs-address.ts';
import { RtrsClient, type ClientEvent, type PathAddress } from '../../runtime/transport/rtrs-client.ts';
import { defaultKernels } from '../../runtime/wasm/kernels.ts';
import { devicePath, statDevice } from '../device-files.ts';
import type { EngineContext } from '../engine.ts';
import { invalid } from '../errors.ts';
import { readKeyFile } from './key-file.ts';
import type { PathRecord, SessionRecord } from './records.ts';

const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30_000;

export class SessionEntry {
  client: RtrsClient | null = null;
  rnbd: RnbdClient | null = null;
  error: string | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retryMs = RETRY_FIRST_MS;
  private closed = false;
  private opening: Promise<void> | null = null;
  /** Called after every (re)open, for the devices waiting on this session; awaited. */
  onOpen: (() => Promise<void>) | null = null;

  constructor(readonly record: SessionRecord, private readonly context: EngineContext) {}

  get name(): string {
    return this.record.name;
  }

  /** Opens now; rejects (and leaves the entry closed) when it cannot. */
  open(): Promise<void> {
    this.opening ??= this.connect().finally(() => {
      this.opening = null;
    });
    return this.opening;
  }

  /**
   * Opens in the background, retrying until it works or the entry closes. Resolves when the first
   * attempt has settled (opened, devices included, or failed and scheduled a retry).
   */
  openInBackground(): Promise<void> {
    return this.open().catch((error: unknown) => {
      this.error = (error as Error).message;
      this.context.log(`transport session ${this.name} not open: ${this.error} (retrying in ${this.retryMs / 1000} s)`);
      this.scheduleRetry();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    await this.opening?.catch(() => {});
    await this.rnbd?.close().catch(() => {});
    await this.client?.close();
    this.rnbd = null;
    this.client = null;
  }

  private scheduleRetry(): void {
    if (this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.openInBackground();
    }, this.retryMs);
    (this.retryTimer as { unref?: () => void }).unref?.();
    this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
  }

  private async connect(): Promise<void> {
    if (this.closed) throw new BlockError('EBADF', `session ${this.name} is closed`);
    const record = this.record;
    const key = record.keyFile === null ? null : readKeyFile(keyFilePath(this.context, record.keyFile), 'keyFile');
    const kernels = await defaultKernels();
    const client = await RtrsClient.open({
      sessionName: record.name,
      paths: record.paths.map(pathAddress),
      crc32c: (bytes, seed) => kernels.crc32c(bytes, seed),
      policy: record.policy,
      key,
      digest: record.digest,
      alwaysInvalidate: record.alwaysInvalidate,
      ioThreads: Number(this.context.setting('--rtrs-threads') ?? 0), // checked by the flag's problem()
      log: (line) => this.context.log(line),
    });
    let rnbd: RnbdClient;
    try {
      rnbd = await RnbdClient.connect(client, { log: (line) => this.context.log(line) });
    } catch (error) {
      await client.close();
      throw error;
    }
    if (this.closed) {
      await rnbd.close();
      await client.close();
      throw new BlockError('EBADF', `session ${this.name} closed while opening`);
    }
    client.onEvent((event) => this.publish(event));
    this.client = client;
    this.rnbd = rnbd;
    this.error = null;
    this.retryMs = RETRY_FIRST_MS;
    await this.onOpen?.();
  }

  private publish(event: ClientEvent): void {
    const session = this.name;
    if (event.type === 'path-state') this.context.events.publish('remote.path-state', { session, path: event.path, from: event.from, to: event.to, why: event.why });
    else if (event.type === 'failover') this.context.events.publish('remote.failover', { session, path: event.path, requests: event.requests });
    else this.context.events.publish(`remote.${event.event}`, { session });
  }
}

/** A key file named inside the data directory, checked to exist. */
export function keyFilePath(context: EngineContext, name: string): string {
  statDevice(context.dataDir, name, 'keyFile');
  return devicePath(context.dataDir, name, 'keyFile');
}

export function pathAddress(path: PathRecord): PathAddress {
  return { dst: parseHostPort(path.dst, 'dst'), src: path.src ?? null, name: path.dst };
}

/** Refuses two paths to one destination in a session (their names would collide). */
export function checkDistinctPaths(paths: readonly PathRecord[], field: string): void {
  const seen = new Set<string>();
  for (const path of paths) {
    if (seen.has(path.dst)) throw invalid(field, `two paths to ${path.dst}`);
    seen.add(path.dst);
  }
}
