/**
 * The transport engine in the service (kind `remote`): RTRS client sessions to other machines,
 * remote devices mapped over them with RNBD (`remote:<name>`, usable by exports and clones like any
 * device), and the service's own RTRS server (rnbd-listener.ts) that serves this machine's devices
 * to others. Sessions and mappings are saved in the state file before the API answers, and
 * reopened after a restart (in the background: the server may come up later than we do).
 *
 * A device mapped on a session that is not open (yet) is kept with its error and opened as soon as
 * the session is. A session with mapped devices cannot be deleted, nor a device that an export
 * serves.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { RemoteDevice } from '../../runtime/transport/rnbd-client.ts';
import { ERRNO, RemoteError } from '../../runtime/transport/rtrs-api.ts';
import type { PathInfo } from '../../runtime/transport/rtrs-client.ts';
import type { Hold } from '../device-holders.ts';
import type { Engine, EngineContext } from '../engine.ts';
import { ServiceError } from '../errors.ts';
import type { PromText } from '../prometheus.ts';
import { transportMetrics } from './metrics.ts';
import type { AccessMode, DeviceRecord, PathRecord, SessionRecord, TransportRecord } from './records.ts';
import { parseListenList, RnbdListener, type ListenerInfo } from './rnbd-listener.ts';
import { transportRoutes } from './routes.ts';
import { checkDistinctPaths, pathAddress, SessionEntry } from './session-entry.ts';

export interface SessionInfo extends Omit<SessionRecord, 'type'> {
  state: 'connected' | 'connecting' | 'closed';
  error: string | null;
  maxIoBytes: number | null;
  devices: string[];
  pathStats: PathInfo[];
}

export interface DeviceInfo extends Omit<DeviceRecord, 'type'> {
  open: boolean;
  error: string | null;
  sizeBytes: number | null;
  exports: string[];
}

interface DeviceEntry {
  record: DeviceRecord;
  device: RemoteDevice | null;
  error: string | null;
}

/** How long restore waits for the first attempt to reach each saved session's server. */
const RESTORE_WAIT_MS = 5000;

export class TransportRegistry implements Engine {
  readonly kind = 'remote';
  private readonly sessions = new Map<string, SessionEntry>();
  private readonly devices = new Map<string, DeviceEntry>();
  private listener: RnbdListener | null = null;

  constructor(private readonly context: EngineContext) {}

  /** Starts the RTRS server when `--rtrs` was given (serve gives it by default). */
  async startListener(): Promise<void> {
    const addresses = this.context.setting('--rtrs');
    if (addresses === null || addresses === 'off') return;
    const ioThreads = Number(this.context.setting('--rtrs-threads') ?? 0); // checked by the flag's problem()
    this.listener = await RnbdListener.start(this.context, parseListenList(addresses), this.context.setting('--rtrs-key-file'), ioThreads);
  }

  listening(): string[] {
    return this.listener === null ? [] : [`rtrs ${this.listener.listening.join(' ')}`];
  }

  routes(app: OpenAPIHono): void {
    transportRoutes(app, this, this.context);
  }

  metrics(out: PromText): void {
    transportMetrics(out, this.listSessions(), this.listener?.info() ?? null);
  }

  /**
   * Reopens the saved sessions and mappings. The first attempt of each is awaited (up to
   * RESTORE_WAIT_MS), so that engines after this one (a clone reading remote:r1) find the devices
   * open when the servers answer; later attempts run in the background.
   */
  async restore(records: readonly unknown[]): Promise<void> {
    const attempts: Promise<void>[] = [];
    for (const record of records as TransportRecord[]) {
      if (record.type === 'device') {
        this.devices.set(record.name, { record, device: null, error: `session ${record.session} is not open yet` });
        continue;
      }
      const entry = new SessionEntry(record, this.context);
      this.sessions.set(record.name, entry);
      this.watchSession(entry);
      attempts.push(entry.openInBackground());
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(attempts), new Promise<void>((resolve) => (timer = setTimeout(resolve, RESTORE_WAIT_MS)))]);
    clearTimeout(timer);
  }

  records(): TransportRecord[] {
    return [...[...this.sessions.values()].map((entry) => ({ ...entry.record })), ...[...this.devices.values()].map((entry) => ({ ...entry.record }))];
  }

  holds(): Hold[] {
    return this.listener?.heldFiles() ?? [];
  }

  deviceOf(name: string, field: string): RemoteDevice {
    const entry = this.devices.get(name);
    if (entry === undefined) throw new ServiceError('ENOENT', `no remote device "${name}"`, field);
    if (entry.device === null) throw new ServiceError('EBUSY', `remote device "${name}" is not open: ${entry.error}`, field);
    return entry.device;
  }

  serverInfo(): ListenerInfo {
    return this.listener?.info() ?? { listen: [], keyRequired: false, ioThreads: 0, sessions: [] };
  }

  // ---- sessions ----

  listSessions(): SessionInfo[] {
    return [...this.sessions.values()].map((entry) => this.sessionInfo(entry));
  }

  getSession(name: string): SessionInfo {
    return this.sessionInfo(this.session(name));
  }

  async createSession(record: SessionRecord): Promise<SessionInfo> {
    if (this.sessions.has(record.name)) throw new ServiceError('EEXIST', `session "${record.name}" exists already`, 'name');
    checkDistinctPaths(record.paths, 'paths');
    const entry = new SessionEntry(record, this.context);
    try {
      await entry.open();
    } catch (error) {
      await entry.close();
      throw refusal(error, 'paths');
    }
    this.sessions.set(record.name, entry);
    this.watchSession(entry);
    await this.context.saveOrUndo(async () => {
      this.sessions.delete(record.name);
      await entry.close();
    });
    this.context.events.publish('remote.session-created', { session: record.name, paths: record.paths.map((path) => path.dst) });
    return this.sessionInfo(entry);
  }

  async deleteSession(name: string): Promise<void> {
    const entry = this.session(name);
    const mapped = this.devicesOn(name);
    if (mapped.length > 0) throw new ServiceError('EBUSY', `session "${name}" has mapped devices: ${mapped.join(', ')}; unmap them first`, 'name');
    this.sessions.delete(name);
    await this.context.saveOrUndo(async () => void this.sessions.set(name, entry));
    await entry.close();
    this.context.events.publish('remote.session-removed', { session: name });
  }

  async addPath(name: string, path: PathRecord): Promise<SessionInfo> {
    const entry = this.openSession(name);
    checkDistinctPaths([...entry.record.paths, path], 'dst');
    try {
      await entry.client!.addPath(pathAddress(path));
    } catch (error) {
      throw refusal(error, 'dst');
    }
    entry.record.paths.push(path);
    await this.context.saveApplied(`adding path ${path.dst} to session "${name}"`);
    this.context.events.publish('remote.path-added', { session: name, path: path.dst });
    return this.sessionInfo(entry);
  }

  async removePath(name: string, pathName: string): Promise<SessionInfo> {
    const entry = this.openSession(name);
    const at = entry.record.paths.findIndex((path) => path.dst === pathName);
    if (at < 0) throw new ServiceError('ENOENT', `session "${name}" has no path ${pathName}`, 'path');
    try {
      entry.client!.removePath(pathName);
    } catch (error) {
      throw refusal(error, 'path');
    }
    entry.record.paths.splice(at, 1);
    await this.context.saveApplied(`removing path ${pathName} from session "${name}"`);
    this.context.events.publish('remote.path-removed', { session: name, path: pathName });
    return this.sessionInfo(entry);
  }

  pathAction(name: string, pathName: string, action: 'reconnect' | 'disconnect'): SessionInfo {
    const entry = this.openSession(name);
    let path;
    try {
      path = entry.client!.findPath(pathName);
    } catch {
      throw new ServiceError('ENOENT', `session "${name}" has no path ${pathName}`, 'path');
    }
    if (action === 'reconnect') path.reconnectNow();
    else path.disconnect();
    return this.sessionInfo(entry);
  }

  resetStats(name: string): SessionInfo {
    const entry = this.openSession(name);
    entry.client!.resetStats();
    return this.sessionInfo(entry);
  }

  // ---- devices ----

  listDevices(): DeviceInfo[] {
    return [...this.devices.values()].map((entry) => this.deviceInfo(entry));
  }

  getDevice(name: string): DeviceInfo {
    return this.deviceInfo(this.deviceEntry(name));
  }

  async mapDevice(record: DeviceRecord): Promise<DeviceInfo> {
    if (this.devices.has(record.name)) throw new ServiceError('EEXIST', `remote device "${record.name}" exists already`, 'name');
    const session = this.openSession(record.session, 'session');
    let device: RemoteDevice;
    try {
      device = await session.rnbd!.open(record.device, record.access);
    } catch (error) {
      throw refusal(error, 'device');
    }
    const entry: DeviceEntry = { record, device, error: null };
    this.devices.set(record.name, entry);
    await this.context.saveOrUndo(async () => {
      this.devices.delete(record.name);
      await device.close();
    });
    this.context.events.publish('remote.mapped', { device: record.name, session: record.session, name: record.device, access: record.access });
    return this.deviceInfo(entry);
  }

  async unmapDevice(name: string): Promise<void> {
    const entry = this.deviceEntry(name);
    const users = this.context.usersOf(`remote:${name}`);
    if (users.length > 0) throw new ServiceError('EBUSY', `remote device "${name}" is in use by ${users.join(', ')}; delete those first`, 'name');
    this.devices.delete(name);
    await this.context.saveOrUndo(async () => void this.devices.set(name, entry));
    await entry.device?.close().catch((error: unknown) => this.context.log(`unmapping ${name}: ${(error as Error).message}`));
    this.context.events.publish('remote.unmapped', { device: name });
  }

  async closeAll(): Promise<void> {
    for (const entry of this.devices.values()) await entry.device?.close().catch(() => {});
    this.devices.clear();
    for (const entry of this.sessions.values()) await entry.close();
    this.sessions.clear();
    await this.listener?.close();
    this.listener = null;
  }

  // ---- inside ----

  /** Devices mapped on a session open once it is (restored mappings, or after a failed restore). */
  private watchSession(entry: SessionEntry): void {
    entry.onOpen = async () => {
      const waiting = [...this.devices.values()].filter((device) => device.record.session === entry.name && device.device === null);
      await Promise.all(waiting.map(async (device) => {
        try {
          const opened = await entry.rnbd!.open(device.record.device, device.record.access as AccessMode);
          if (this.devices.get(device.record.name) === device) {
            device.device = opened;
            device.error = null;
          } else await opened.close();
        } catch (error) {
          device.error = (error as Error).message;
          this.context.log(`remote device ${device.record.name} not open: ${device.error}`);
        }
      }));
    };
  }

  private session(name: string, field = 'name'): SessionEntry {
    const entry = this.sessions.get(name);
    if (entry === undefined) throw new ServiceError('ENOENT', `no session "${name}"`, field);
    return entry;
  }

  private openSession(name: string, field = 'name'): SessionEntry {
    const entry = this.session(name, field);
    if (entry.client === null) throw new ServiceError('EBUSY', `session "${name}" is not open: ${entry.error}`, field);
    return entry;
  }

  private deviceEntry(name: string): DeviceEntry {
    const entry = this.devices.get(name);
    if (entry === undefined) throw new ServiceError('ENOENT', `no remote device "${name}"`, 'name');
    return entry;
  }

  private devicesOn(session: string): string[] {
    return [...this.devices.values()].filter((entry) => entry.record.session === session).map((entry) => entry.record.name);
  }

  private sessionInfo(entry: SessionEntry): SessionInfo {
    const { type: _type, ...record } = entry.record;
    const client = entry.client;
    const paths = client?.pathsInfo() ?? [];
    const state = client === null ? 'closed' : paths.some((path) => path.stats.state === 'CONNECTED') ? 'connected' : 'connecting';
    return { ...record, paths: record.paths.map((path) => ({ ...path })), state, error: entry.error, maxIoBytes: client?.maxIoBytes ?? null, devices: this.devicesOn(entry.name), pathStats: paths };
  }

  private deviceInfo(entry: DeviceEntry): DeviceInfo {
    const { type: _type, ...record } = entry.record;
    return { ...record, open: entry.device !== null, error: entry.error, sizeBytes: entry.device?.sizeBytes ?? null, exports: this.context.exportsOf(`remote:${record.name}`) };
  }
}

/** A refusal from the transport as the API's error, naming `field`. */
function refusal(error: unknown, field: string): unknown {
  if (error instanceof ServiceError) return error;
  const message = (error as Error)?.message ?? String(error);
  const errno = error instanceof RemoteError ? error.errno : -1;
  const code = error instanceof RemoteError ? null : (error as { code?: string }).code;
  if (code === 'EEXIST') return new ServiceError('EEXIST', message, field);
  if (code === 'ENOENT' || errno === ERRNO.ENOENT) return new ServiceError('ENOENT', `${field}: ${message}`, field);
  if (code === 'EINVAL' || errno === ERRNO.EINVAL) return new ServiceError('EINVAL', `${field}: ${message}`, field);
  if (code === 'EBUSY' || code === 'EROFS' || ([ERRNO.EPERM, ERRNO.EBUSY, ERRNO.EEXIST, ERRNO.EROFS] as number[]).includes(errno)) {
    return new ServiceError('EBUSY', `${field}: ${message}`, field);
  }
  // The server could not be reached, refused the connection, or failed.
  return new ServiceError('ENOTCONN', `${field}: ${message}`, field);
}
