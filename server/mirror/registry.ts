/**
 * The mirror engine in the service (runtime/mirror/ is dm-raid1 itself, runtime/dirty-log/ the
 * log server): mirrors by name over device files of the data directory, served under /v1/mirrors
 * and exported as `mirror:<name>`; and the service's dirty-log server, cmirrord's role, listening
 * on a Unix socket (`--ulog`, default `<data>/.blockcore/ulog.sock`) for userspace logs, which
 * this service's own mirrors reach in process. Both live here because the mirror is the log
 * server's client in this process and they start and stop together.
 *
 * Each mirror is served through a SwitchDevice, so replace-table (dm's inactive table) can swap
 * the mirror under its exports on resume: the new table's mirror is opened with its log
 * constructed, not resumed (a userspace log: a second instance of the uuid, inactive); resume
 * suspends the old one, resumes the new one (its log instance becomes the live one) and switches,
 * then closes the old one (DTR of its own instance only). Changes are saved in the state file
 * before they answer and published as `mirror.*` events; a leg removed or added by a failure
 * policy updates the saved table as it happens.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { OpenAPIHono, z } from '@hono/zod-openapi';
import { parseLogArgs } from '../../runtime/dirty-log/log-args.ts';
import { LogServer } from '../../runtime/dirty-log/log-server.ts';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { SwitchDevice } from '../../runtime/devices/switch-device.ts';
import { BlockError } from '../../runtime/errors.ts';
import { MirrorDevice, type MirrorEvent } from '../../runtime/mirror/mirror-device.ts';
import { parseMirrorTable } from '../../runtime/mirror/mirror-table.ts';
import { UlogError } from '../../runtime/ulog/ulog-client.ts';
import { localLink } from '../../runtime/ulog/ulog-link.ts';
import { devicePath, statDevice } from '../device-files.ts';
import { checkCanHold, type Hold } from '../device-holders.ts';
import type { Engine, EngineContext } from '../engine.ts';
import { invalid, ServiceError } from '../errors.ts';
import { RESERVED_SEGMENT } from '../names.ts';
import type { PromText } from '../prometheus.ts';
import { UlogServer } from '../ulog/ulog-server.ts';
import { mirrorMetrics } from './metrics.ts';
import { tableFiles, type MirrorRecord } from './records.ts';
import { mirrorRoutes } from './routes.ts';
import type { MirrorInfo as MirrorInfoSchema, NewMirror } from './schemas.ts';

export type MirrorInfo = z.infer<typeof MirrorInfoSchema>;

interface MirrorEntry {
  record: MirrorRecord;
  mirror: MirrorDevice | null;
  served: SwitchDevice | null;
  error: string | null;
  holds: Hold[];
  pending: { table: string; mirror: MirrorDevice } | null;
  /**
   * Suspended: I/O is held in the SwitchDevice (a switch under way), so on resume it goes to the
   * table in place then, the new one after a replace-table.
   */
  held: { release(target: () => Promise<MirrorDevice>): void; switching: Promise<unknown> } | null;
}

export class MirrorRegistry implements Engine {
  readonly kind = 'mirror';
  readonly logs: LogServer;
  private listener: UlogServer | null = null;
  socketPath: string | null = null;
  private readonly entries = new Map<string, MirrorEntry>();

  constructor(private readonly service: EngineContext) {
    this.logs = new LogServer({
      // Clustered logs: one group per log uuid across every service on the same etcd (--etcd),
      // else a group of this service's log servers only.
      ordering: service.cluster.ordering,
      openDevice: (name) => this.openFile(name, 'table'),
      log: (line) => service.log(line),
    });
  }

  /** The log server's Unix socket, where `--ulog` says ("off": none). */
  async startListener(): Promise<void> {
    const setting = this.service.setting('--ulog');
    if (setting === null || setting === 'off') return;
    const socketPath = setting === 'default' ? path.join(this.service.dataDir, RESERVED_SEGMENT, 'ulog.sock') : path.resolve(setting);
    fs.mkdirSync(path.dirname(socketPath), { recursive: true });
    const listener = new UlogServer({ handler: this.logs, log: (line) => this.service.log(line) });
    await listener.listen({ path: socketPath });
    this.listener = listener;
    this.socketPath = socketPath;
  }

  listening(): string[] {
    return this.socketPath === null ? [] : [`ulog ${this.socketPath}`];
  }

  routes(app: OpenAPIHono): void {
    mirrorRoutes(app, this, this.service);
  }

  metrics(out: PromText): void {
    mirrorMetrics(out, [...this.entries.values()].map((entry) => ({ name: entry.record.name, status: entry.mirror?.status() ?? null })), this.logs);
  }

  async restore(records: readonly unknown[]): Promise<void> {
    for (const record of records as MirrorRecord[]) {
      const entry = this.newEntry(record);
      try {
        await this.open(entry, record.table);
      } catch (error) {
        entry.error = (error as Error).message;
        this.service.log(`mirror ${record.name} not opened: ${entry.error}`);
      }
      this.entries.set(record.name, entry);
    }
  }

  records(): MirrorRecord[] {
    return [...this.entries.values()].map((entry) => ({ ...entry.record, ...(entry.record.spares ? { spares: [...entry.record.spares] } : {}) }));
  }

  holds(): Hold[] {
    return [...this.entries.values()].flatMap((entry) => entry.holds);
  }

  deviceOf(name: string, field: string): BlockDevice {
    const entry = this.entry(name, field);
    if (entry.served === null) throw new ServiceError('EBUSY', `mirror "${name}" is not open: ${entry.error}`, field);
    return entry.served;
  }

  async list(): Promise<MirrorInfo[]> {
    return Promise.all([...this.entries.values()].map((entry) => this.info(entry)));
  }

  get(name: string): Promise<MirrorInfo> {
    return this.info(this.entry(name));
  }

  async create(body: z.infer<typeof NewMirror>): Promise<MirrorInfo> {
    if (this.entries.has(body.name)) throw new ServiceError('EEXIST', `mirror "${body.name}" exists already`, 'name');
    const record: MirrorRecord = { name: body.name, table: body.table, ...(body.legFaultPolicy ? { legFaultPolicy: body.legFaultPolicy } : {}), ...(body.spares ? { spares: [...body.spares] } : {}) };
    const table = this.checkTable(body.table, 'table', body.name);
    if (table.legs.length < 2) throw invalid('table', 'a new mirror needs at least 2 legs');
    (body.spares ?? []).forEach((spare, i) => statDevice(this.service.dataDir, spare, `spares[${i}]`));
    const entry = this.newEntry(record);
    entry.holds.forEach((hold) => checkCanHold(this.service.holds(), hold, 'table'));
    await this.open(entry, body.table);
    this.entries.set(body.name, entry);
    await this.service.saveOrUndo(async () => {
      this.entries.delete(body.name);
      await entry.mirror?.close().catch(() => {});
    });
    this.service.events.publish('mirror.created', { mirror: body.name, table: body.table });
    return this.info(entry);
  }

  async failLeg(name: string, leg: string): Promise<MirrorInfo> {
    const { entry, mirror } = this.opened(name);
    if (!(await mirror.failLeg(leg))) throw new ServiceError('ENOENT', `mirror "${name}" has no live leg "${leg}"`, 'leg');
    await this.tableChanged(entry);
    entry.holds = this.holdsOf(entry.record);
    return this.info(entry);
  }

  async resync(name: string): Promise<MirrorInfo> {
    const { entry, mirror } = this.opened(name);
    await mirror.resyncAll();
    await this.tableChanged(entry);
    return this.info(entry);
  }

  async suspend(name: string): Promise<MirrorInfo> {
    const { entry, mirror } = this.opened(name);
    if (entry.held !== null) return this.info(entry);
    let suspended!: () => void;
    let failed!: (error: unknown) => void;
    const done = new Promise<void>((resolve, reject) => {
      suspended = resolve;
      failed = reject;
    });
    let release!: (target: () => Promise<MirrorDevice>) => void;
    const released = new Promise<() => Promise<MirrorDevice>>((resolve) => (release = resolve));
    const switching = entry.served!.replace(async () => {
      try {
        await mirror.suspend();
        suspended();
      } catch (error) {
        failed(error);
        throw error;
      }
      return (await released)();
    });
    switching.catch(() => {});
    await done;
    entry.held = { release, switching };
    this.service.events.publish('mirror.suspended', { mirror: name });
    return this.info(entry);
  }

  /** Resumes the mirror; with a table loaded by replace-table, swaps it in: the held I/O goes to it. */
  async resume(name: string): Promise<MirrorInfo> {
    const { entry, mirror } = this.opened(name);
    const pending = entry.pending;
    const target = async (): Promise<MirrorDevice> => {
      if (pending === null) {
        await mirror.resume();
        return mirror;
      }
      try {
        await pending.mirror.resume(); // its log instance becomes the live one of the uuid
        return pending.mirror;
      } catch (error) {
        await mirror.resume(); // the old table goes on
        throw error;
      }
    };
    if (entry.held !== null) {
      const held = entry.held;
      entry.held = null;
      held.release(target);
      await held.switching;
    } else if (pending !== null) {
      await entry.served!.replace(async () => {
        await mirror.suspend();
        return target();
      });
    } else {
      await mirror.resume();
    }
    if (pending === null) {
      this.service.events.publish('mirror.resumed', { mirror: name });
      return this.info(entry);
    }
    entry.pending = null;
    entry.mirror = pending.mirror;
    const previous = entry.record.table;
    entry.record = { ...entry.record, table: pending.mirror.tableLine };
    entry.holds = this.holdsOf(entry.record);
    await mirror.close().catch((error: unknown) => this.service.log(`closing the old table of mirror ${name}: ${String(error)}`)); // DTR of its own log instance only
    await this.service.saveApplied(`mirror ${name}'s new table`);
    this.service.events.publish('mirror.table-swapped', { mirror: name, from: previous, to: entry.record.table });
    return this.info(entry);
  }

  /** Loads `table` beside the live one (its log constructed, inactive); the next resume swaps them. */
  async replaceTable(name: string, table: string): Promise<MirrorInfo> {
    const { entry, mirror } = this.opened(name);
    const parsed = this.checkTable(table, 'table', name);
    if (parsed.legs.length < 1) throw invalid('table', 'a mirror needs a leg');
    const own = new Set(entry.holds.map((hold) => hold.path));
    for (const hold of this.holdsOf({ ...entry.record, table })) if (!own.has(hold.path)) checkCanHold(this.service.holds(), hold, 'table');
    if (entry.pending !== null) await entry.pending.mirror.close().catch(() => {});
    entry.pending = null;
    const next = await this.openMirror(entry, table, true, mirror.sizeBytes);
    if (mirror.logicalBlockBytes % next.logicalBlockBytes !== 0) {
      await next.close().catch(() => {});
      throw invalid('table', `its legs need ${next.logicalBlockBytes}-byte blocks; the mirror's users use ${mirror.logicalBlockBytes}`);
    }
    entry.pending = { table, mirror: next };
    this.service.events.publish('mirror.table-loaded', { mirror: name, table });
    return this.info(entry);
  }

  async remove(name: string): Promise<void> {
    const entry = this.entry(name);
    const users = this.service.usersOf(`mirror:${name}`);
    if (users.length > 0) throw new ServiceError('EBUSY', `mirror "${name}" is in use by ${users.join(', ')}`, 'name');
    this.entries.delete(name);
    await this.service.saveOrUndo(async () => void this.entries.set(name, entry));
    await this.shut(entry);
    this.service.events.publish('mirror.removed', { mirror: name });
  }

  async closeAll(): Promise<void> {
    for (const entry of this.entries.values()) await this.shut(entry);
    await this.listener?.close();
    await this.logs.close();
  }

  // ---- internals ----

  /** Closes a mirror and whatever it has loaded; I/O held by a suspend is let go to it and fails there (closed). */
  private async shut(entry: MirrorEntry): Promise<void> {
    const mirror = entry.mirror;
    if (entry.held !== null && mirror !== null) {
      entry.held.release(async () => mirror);
      entry.held = null;
    }
    await entry.pending?.mirror.close().catch(() => {});
    await entry.served?.close().catch(() => {});
    await mirror?.close().catch((error: unknown) => this.service.log(`closing mirror ${entry.record.name}: ${String(error)}`));
  }

  private newEntry(record: MirrorRecord): MirrorEntry {
    return { record, mirror: null, served: null, error: null, holds: this.holdsOf(record), pending: null, held: null };
  }

  private async open(entry: MirrorEntry, table: string): Promise<void> {
    const mirror = await this.openMirror(entry, table, false);
    entry.mirror = mirror;
    entry.served = new SwitchDevice(mirror);
    entry.error = null;
  }

  private async openMirror(entry: MirrorEntry, table: string, inactive: boolean, sizeBytes?: number): Promise<MirrorDevice> {
    const name = entry.record.name;
    try {
      return await MirrorDevice.open({
        name, table, inactive,
        ...(sizeBytes !== undefined ? { sizeBytes } : {}),
        openLeg: (device) => this.openFile(device, 'table'),
        openDevice: (device) => this.openFile(device, 'table'),
        userspaceLink: localLink(this.logs),
        legFaultPolicy: entry.record.legFaultPolicy ?? 'remove',
        spare: () => {
          const next = entry.record.spares?.[0] ?? null;
          if (next !== null) entry.record = { ...entry.record, spares: entry.record.spares!.slice(1) };
          return next;
        },
        onEvent: (event) => this.mirrorEvent(entry, event),
        tableChanged: async (line) => {
          entry.record = { ...entry.record, table: line };
          entry.holds = this.holdsOf(entry.record);
          await this.service.saveApplied(`mirror ${name}'s table`);
        },
        log: (line) => this.service.log(line),
      });
    } catch (error) {
      if (error instanceof UlogError) throw invalid('table', `the log refused it: ${error.message}`);
      if (error instanceof BlockError && (error.code === 'EINVAL' || error.code === 'ERANGE')) throw invalid('table', error.message.replace(/^E[A-Z]+: /, ''));
      throw error;
    }
  }

  private mirrorEvent(entry: MirrorEntry, event: MirrorEvent): void {
    this.service.events.publish(`mirror.${event.type}`, { mirror: entry.record.name, message: event.message });
    if (event.type === 'log-failed') void this.tableChanged(entry);
  }

  /** A policy changed the table: the record follows, and is saved. */
  private async tableChanged(entry: MirrorEntry): Promise<void> {
    const mirror = entry.mirror;
    if (mirror === null) return;
    entry.record = { ...entry.record, table: mirror.tableLine };
    entry.holds = this.holdsOf(entry.record);
    await this.service.saveApplied(`mirror ${entry.record.name}'s table`).catch((error: unknown) => this.service.log(String(error)));
  }

  private checkTable(line: string, field: string, mirrorName: string): ReturnType<typeof parseMirrorTable> & object {
    const table = parseMirrorTable(line);
    if (typeof table === 'string') throw invalid(field, table);
    const files = tableFiles(line);
    const twice = files.find((file, i) => files.indexOf(file) !== i);
    if (twice !== undefined) throw invalid(field, `"${twice}" is named twice (a leg twice, or a log on a leg)`);
    if (table.logType === 'userspace') {
      const uuid = table.logArgs[0]!;
      if (!/^[\x21-\x7e]{1,128}$/.test(uuid)) throw invalid(field, 'the log uuid must be 1 to 128 printable ASCII characters');
      const other = [...this.entries.values()].find((entry) => entry.record.name !== mirrorName && logUuid(entry.record.table) === uuid);
      if (other !== undefined) throw new ServiceError('EEXIST', `log uuid "${uuid}" is mirror ${other.record.name}'s`, field);
    }
    const sizes = new Map(tableFiles(line).map((file) => [file, statDevice(this.service.dataDir, file, field).sizeBytes]));
    // The log's arguments as its server will take them, checked here so the refusal says why
    // (a log server answers only an errno).
    const targetSectors = Math.floor(Math.min(...table.legs.map((leg) => sizes.get(leg.device)! - leg.offsetSectors * 512)) / 512);
    if (targetSectors <= 0) throw invalid(field, 'the legs hold nothing past their offsets');
    const logWords = table.logType === 'userspace' ? table.logArgs.slice(table.logArgs[1]?.toLowerCase() === 'integrated_flush' ? 2 : 1) : [table.logType, ...table.logArgs];
    const logArgs = parseLogArgs(`${targetSectors} ${logWords.join(' ')}`);
    if (typeof logArgs === 'string') throw invalid(field, `log: ${logArgs}`);
    return table;
  }

  private holdsOf(record: MirrorRecord): Hold[] {
    const holder = `mirror:${record.name}`;
    return [...tableFiles(record.table), ...(record.spares ?? [])].map((name) => ({ path: devicePath(this.service.dataDir, name, 'table'), name, access: 'write' as const, holder }));
  }

  private async openFile(name: string, field: string): Promise<BlockDevice> {
    const file = devicePath(this.service.dataDir, name, field);
    if (!fs.existsSync(file)) throw new BlockError('ENOENT', `device "${name}" does not exist`);
    return FileDevice.open(file);
  }

  private opened(name: string): { entry: MirrorEntry; mirror: MirrorDevice } {
    const entry = this.entry(name);
    if (entry.mirror === null) throw new ServiceError('EBUSY', `mirror "${name}" is not open: ${entry.error}`, 'name');
    return { entry, mirror: entry.mirror };
  }

  private entry(name: string, field = 'name'): MirrorEntry {
    const entry = this.entries.get(name);
    if (entry === undefined) throw new ServiceError('ENOENT', `no mirror "${name}"`, field);
    return entry;
  }

  private async info(entry: MirrorEntry): Promise<MirrorInfo> {
    const mirror = entry.mirror;
    const status = mirror?.status() ?? null;
    const statusInfo = mirror === null ? null : await mirror.statusInfo().catch(() => null);
    const inSync = statusInfo === null ? null : Number(/ (\d+)\/\d+ 1 /.exec(statusInfo)?.[1] ?? NaN);
    return {
      name: entry.record.name,
      table: entry.record.table,
      statusInfo,
      statusTable: mirror === null ? null : await mirror.statusTable().catch(() => null),
      regionSectors: status?.regionSectors ?? null,
      regionCount: status?.regionCount ?? null,
      inSyncRegions: inSync !== null && Number.isFinite(inSync) ? inSync : null,
      syncPercent: inSync !== null && status !== null && Number.isFinite(inSync) ? Math.floor((inSync / status.regionCount) * 10000) / 100 : null,
      resyncing: status?.resyncing ?? false,
      suspended: mirror?.isSuspended ?? false,
      pendingTable: entry.pending?.table ?? null,
      legs: status?.legs ?? [],
      legFaultPolicy: entry.record.legFaultPolicy ?? 'remove',
      spares: [...(entry.record.spares ?? [])],
      exports: this.service.exportsOf(`mirror:${entry.record.name}`),
      error: entry.error,
    };
  }
}

/** The uuid of a table's userspace log, or null. */
function logUuid(line: string): string | null {
  const table = parseMirrorTable(line);
  return typeof table === 'object' && table.logType === 'userspace' ? table.logArgs[0]! : null;
}
