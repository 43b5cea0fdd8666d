/**
 * The service: the registry of devices, clones and exports over one data directory, and the only
 * place that changes them. The HTTP routes validate their input and call in here; the NBD server
 * asks in here which exports exist.
 *
 *   devices  files in the data directory (device-files.ts); created, listed and deleted here
 *   clones   CloneDevices opened from a dm-clone table line whose devices name files in the data
 *            directory; the effective table (messages included) is what the state file keeps
 *   exports  a name under which the NBD server serves a device: a file (opened here, read-only or
 *            not) or an engine device (`clone:c1`, the clone itself)
 *
 * Every change runs one at a time (a promise chain), writes the state file before it answers (so a
 * change that was acknowledged survives a restart) and publishes an event. On open the state file's
 * clones and exports are reopened; one that cannot be (a device gone, a source unreachable) is kept
 * with its error, listed, and can be deleted, rather than stopping the whole service.
 *
 * In use: files follow device-holders.ts (many readers or one writer). A clone that is exported
 * cannot be deleted or finalized, and an export with connected clients cannot be deleted.
 */
import fs from 'node:fs';
import { openCloneFromTable, isUrl } from '../runtime/clone/open-table.ts';
import type { CloneDevice, CloneEvent } from '../runtime/clone/clone-device.ts';
import type { CloneStatus } from '../runtime/clone/status.ts';
import { formatCloneTable, parseCloneTable, TableError, type CloneFeature, type CloneTable } from '../runtime/clone/table.ts';
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { lockDataDir, type DataLock } from './data-lock.ts';
import { createDevice, devicePath, listDevices, deleteDevice, statDevice, type DeviceFile } from './device-files.ts';
import { checkCanHold, holdersOf, type Hold } from './device-holders.ts';
import { invalid, ServiceError } from './errors.ts';
import { EventHub } from './event-hub.ts';
import { MeteredDevice, newIoCounters, type IoCounters } from './metered-device.ts';
import { parseDeviceRef, type DeviceRef } from './names.ts';
import type { ExportView, NbdConnectionView, NbdCountersView, NbdPortEvent, NbdView } from './nbd-port.ts';
import { readState, writeState, type CloneRecord, type ExportRecord } from './state-file.ts';

export interface DeviceInfo extends DeviceFile {
  inUse: boolean;
  usedBy: string[];
}

export interface CloneInfo extends Partial<Omit<CloneStatus, 'line'>> {
  name: string;
  table: string;
  suspended: boolean;
  /** Why the clone could not be reopened after a restart; null when it is open. */
  error: string | null;
  exports: string[];
  /** The dm-clone status line; null when the clone is not open. */
  status: string | null;
}

export interface ExportInfo extends ExportRecord {
  sizeBytes: number | null;
  error: string | null;
  clients: Array<{ id: number; remote: string; connectedAtMs: number }>;
  io: IoCounters;
}

interface CloneEntry {
  record: CloneRecord;
  table: CloneTable | null;
  holds: Hold[];
  device: CloneDevice | null;
  error: string | null;
  stopEvents: () => void;
  /** Whether the clone's hydration-complete event reached the hub. */
  completionRelayed: boolean;
}

interface ExportEntry {
  record: ExportRecord;
  ref: DeviceRef;
  holds: Hold[];
  device: BlockDevice | null;
  /** True when the device is a file opened for this export (closed with it). */
  ownsDevice: boolean;
  error: string | null;
  counters: IoCounters;
}

export interface ServiceOptions {
  dataDir: string;
  /** One line per notable thing (reopen failures); default console.error. */
  log?: (line: string) => void;
}

export class Service {
  readonly events = new EventHub();
  readonly startedAtMs = Date.now();
  private readonly clones = new Map<string, CloneEntry>();
  private readonly exports = new Map<string, ExportEntry>();
  private nbd: NbdView | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private stopping = false;

  private constructor(readonly dataDir: string, private readonly lock: DataLock, private readonly log: (line: string) => void) {}

  /** Creates the data directory if needed, takes its lock and reopens the saved clones and exports. */
  static async open(options: ServiceOptions): Promise<Service> {
    fs.mkdirSync(options.dataDir, { recursive: true });
    const dataDir = fs.realpathSync(options.dataDir);
    const lock = lockDataDir(dataDir);
    try {
      const state = readState(dataDir);
      const service = new Service(dataDir, lock, options.log ?? ((line) => console.error(line)));
      for (const record of state.clones) {
        const entry = await service.openClone(record).catch((error) => service.failedClone(record, error));
        service.clones.set(record.name, entry);
      }
      for (const record of state.exports) {
        const entry = await service.openExport(record).catch((error) => service.failedExport(record, error));
        service.exports.set(record.name, entry);
      }
      return service;
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /** Connects the running NBD server, for connected clients and counters. */
  attachNbd(nbd: NbdView | null): void {
    this.nbd = nbd;
  }

  get nbdCounters(): NbdCountersView | null {
    return this.nbd?.counters ?? null;
  }

  // ---- devices ----

  listDevices(): DeviceInfo[] {
    const holds = this.allHolds();
    return listDevices(this.dataDir).map((device) => {
      const usedBy = holdersOf(holds, devicePath(this.dataDir, device.name));
      return { ...device, inUse: usedBy.length > 0, usedBy };
    });
  }

  createDevice(name: string, sizeBytes: number): Promise<DeviceInfo> {
    return this.exclusive(async () => {
      const device = await createDevice(this.dataDir, name, sizeBytes);
      this.events.publish('device.created', { device: name, sizeBytes });
      return { ...device, inUse: false, usedBy: [] };
    });
  }

  deleteDevice(name: string): Promise<void> {
    return this.exclusive(async () => {
      statDevice(this.dataDir, name);
      const usedBy = holdersOf(this.allHolds(), devicePath(this.dataDir, name));
      if (usedBy.length > 0) throw new ServiceError('EBUSY', `device "${name}" is in use by ${usedBy.join(', ')}`, 'name');
      deleteDevice(this.dataDir, name);
      this.events.publish('device.removed', { device: name });
    });
  }

  // ---- clones ----

  listClones(): CloneInfo[] {
    return [...this.clones.values()].map((entry) => this.cloneInfo(entry, entry.device?.statusNow() ?? null));
  }

  /** One clone, with its status after a commit if its metadata changed (as dm-clone's INFO does). */
  async getClone(name: string): Promise<CloneInfo> {
    const entry = this.clone(name);
    try {
      return this.cloneInfo(entry, entry.device ? await entry.device.status() : null);
    } catch (error) {
      // finalized or deleted while we asked
      if (error instanceof BlockError && error.code === 'EBADF') throw new ServiceError('ENOENT', `no clone "${name}"`, 'name');
      throw error;
    }
  }

  createClone(name: string, table: string): Promise<CloneInfo> {
    return this.exclusive(async () => {
      if (this.clones.has(name)) throw new ServiceError('EEXIST', `clone "${name}" exists already`, 'name');
      const entry = await this.openClone({ name, table, suspended: false }, true);
      this.clones.set(name, entry);
      await this.saveOrUndo(async () => {
        this.clones.delete(name);
        await this.closeClone(entry);
      });
      this.events.publish('clone.created', { clone: name, table: entry.record.table });
      // A small clone may finish hydrating (or be complete already) before its events are relayed.
      if (entry.device!.isHydrated && !entry.completionRelayed) {
        entry.completionRelayed = true;
        this.events.publish('clone.hydration-complete', { clone: name });
      }
      return this.cloneInfo(entry, entry.device!.statusNow());
    });
  }

  /** A dm-clone message; the effective table (threshold, batch size, no_hydration) is saved. */
  messageClone(name: string, message: string): Promise<CloneInfo> {
    return this.exclusive(async () => {
      const entry = this.clone(name);
      const device = this.openDevice(entry);
      try {
        device.message(message);
      } catch (error) {
        if (error instanceof BlockError && error.code === 'EINVAL') throw invalid('message', error.message.replace(/^EINVAL: /, ''));
        throw error;
      }
      entry.record.table = effectiveTable(entry.table!, device.statusNow());
      await this.save();
      this.events.publish('clone.message', { clone: name, message });
      return this.cloneInfo(entry, device.statusNow());
    });
  }

  suspendClone(name: string): Promise<CloneInfo> {
    return this.exclusive(async () => {
      const entry = this.clone(name);
      await this.openDevice(entry).suspend();
      entry.record.suspended = true;
      await this.save();
      this.events.publish('clone.suspended', { clone: name });
      return this.cloneInfo(entry, entry.device!.statusNow());
    });
  }

  resumeClone(name: string): Promise<CloneInfo> {
    return this.exclusive(async () => {
      const entry = this.clone(name);
      this.openDevice(entry).resume();
      entry.record.suspended = false;
      await this.save();
      this.events.publish('clone.resumed', { clone: name });
      return this.cloneInfo(entry, entry.device!.statusNow());
    });
  }

  /** Replaces the clone by its destination, which stays as a plain device file. */
  finalizeClone(name: string): Promise<{ clone: string; device: string }> {
    return this.exclusive(async () => {
      const entry = this.clone(name);
      const device = this.openDevice(entry);
      this.refuseIfExported(entry);
      if (!device.isHydrated) {
        const status = device.statusNow();
        throw new ServiceError('EBUSY', `clone "${name}" is not hydrated yet: ${status.hydratedRegions} of ${status.totalRegions} regions`, 'name');
      }
      if (device.mode !== 'rw') throw new ServiceError('EBUSY', `clone "${name}" is in ${device.mode} mode and cannot be finalized`, 'name');
      entry.stopEvents();
      const destination = await device.finalize();
      await destination.close();
      this.clones.delete(name);
      await this.save();
      const result = { clone: name, device: entry.table!.destinationDevice };
      this.events.publish('clone.finalized', result);
      return result;
    });
  }

  deleteClone(name: string): Promise<void> {
    return this.exclusive(async () => {
      const entry = this.clone(name);
      this.refuseIfExported(entry);
      this.clones.delete(name);
      await this.saveOrUndo(async () => void this.clones.set(name, entry));
      await this.closeClone(entry);
      this.events.publish('clone.removed', { clone: name });
    });
  }

  // ---- exports ----

  listExports(): ExportInfo[] {
    const connections = this.nbd?.connections() ?? [];
    return [...this.exports.values()].map((entry) => ({
      ...entry.record,
      sizeBytes: entry.device?.sizeBytes ?? null,
      error: entry.error,
      clients: connections.filter((c) => c.exportName === entry.record.name).map(({ id, remote, connectedAtMs }) => ({ id, remote, connectedAtMs })),
      io: { ...entry.counters },
    }));
  }

  createExport(record: ExportRecord): Promise<ExportInfo> {
    return this.exclusive(async () => {
      if (this.exports.has(record.name)) throw new ServiceError('EEXIST', `export "${record.name}" exists already`, 'name');
      const entry = await this.openExport(record, true);
      this.exports.set(record.name, entry);
      await this.saveOrUndo(async () => {
        this.exports.delete(record.name);
        if (entry.ownsDevice) await entry.device?.close();
      });
      this.events.publish('export.added', { export: record.name, device: record.device, readOnly: record.readOnly });
      return this.listExports().find((info) => info.name === record.name)!;
    });
  }

  deleteExport(name: string): Promise<void> {
    return this.exclusive(async () => {
      const entry = this.exports.get(name);
      if (!entry) throw new ServiceError('ENOENT', `no export "${name}"`, 'name');
      const clients = this.connectionsOf(name);
      if (clients.length > 0) throw new ServiceError('EBUSY', `export "${name}" has ${clients.length} connected client(s)`, 'name');
      this.exports.delete(name);
      await this.saveOrUndo(async () => void this.exports.set(name, entry));
      if (entry.ownsDevice) await entry.device?.close().catch((error) => this.log(`closing export ${name}: ${error}`));
      this.events.publish('export.removed', { export: name });
    });
  }

  /** For the NBD server: the export, over a fresh counting view of its device; undefined if not served. */
  lookupExport(name: string): ExportView | undefined {
    const entry = this.exports.get(name);
    if (!entry?.device || this.stopping) return undefined;
    const { readOnly, description } = entry.record;
    const view = { name, device: new MeteredDevice(entry.device, entry.counters, { readOnly }), readOnly };
    return description === undefined ? view : { ...view, description };
  }

  listNbdExports(): ExportView[] {
    return [...this.exports.keys()].map((name) => this.lookupExport(name)).filter((view) => view !== undefined);
  }

  /** For the NBD server: connections and protocol errors become events. */
  onNbdEvent(event: NbdPortEvent): void {
    if (event.type === 'protocol-error') {
      this.events.publish('nbd.protocol-error', { connectionId: event.connectionId, remote: event.remote, message: event.message });
    } else {
      this.events.publish(`export.${event.type}`, { export: event.exportName, connectionId: event.connectionId, remote: event.remote });
    }
  }

  // ---- lifecycle ----

  /** Closes every export's file and every clone (which commits its metadata), then frees the lock. */
  close(): Promise<void> {
    this.stopping = true;
    return this.exclusive(async () => {
      this.events.close();
      for (const entry of this.exports.values()) {
        if (entry.ownsDevice) await entry.device?.close().catch((error) => this.log(`closing export ${entry.record.name}: ${error}`));
      }
      for (const entry of this.clones.values()) await this.closeClone(entry);
      this.exports.clear();
      this.clones.clear();
      this.lock.release();
    }, true);
  }

  // ---- internals ----

  private exclusive<T>(work: () => Promise<T>, evenWhenStopping = false): Promise<T> {
    const run = this.tail.then(() => {
      if (this.stopping && !evenWhenStopping) throw new ServiceError('EAGAIN', 'the service is stopping');
      return work();
    });
    this.tail = run.catch(() => {});
    return run;
  }

  private clone(name: string): CloneEntry {
    const entry = this.clones.get(name);
    if (!entry) throw new ServiceError('ENOENT', `no clone "${name}"`, 'name');
    return entry;
  }

  private openDevice(entry: CloneEntry): CloneDevice {
    if (!entry.device) throw new ServiceError('EBUSY', `clone "${entry.record.name}" is not open: ${entry.error}`, 'name');
    return entry.device;
  }

  private exportsOf(cloneName: string): string[] {
    return [...this.exports.values()].filter((e) => e.ref.kind === 'clone' && e.ref.name === cloneName).map((e) => e.record.name);
  }

  private refuseIfExported(entry: CloneEntry): void {
    const names = this.exportsOf(entry.record.name);
    if (names.length > 0) throw new ServiceError('EBUSY', `clone "${entry.record.name}" is exported as ${names.join(', ')}; delete the export first`, 'name');
  }

  private connectionsOf(exportName: string): NbdConnectionView[] {
    return (this.nbd?.connections() ?? []).filter((c) => c.exportName === exportName);
  }

  private allHolds(): Hold[] {
    return [...this.clones.values(), ...this.exports.values()].flatMap((entry) => entry.holds);
  }

  /** Opens a clone; `checked` runs the in-use rules first (a new clone; a restored one had them). */
  private async openClone(record: CloneRecord, checked = false): Promise<CloneEntry> {
    const table = parseTable(record.table);
    const holder = `clone:${record.name}`;
    const holds = this.cloneHolds(record.name, table);
    // Every name is checked before any hold, so bad input is a 400 even when a device is also busy.
    if (checked) for (const hold of holds) checkCanHold(this.allHolds(), hold, 'table');
    let device: CloneDevice;
    try {
      device = await openCloneFromTable(this.dataDir, record.table, { name: holder });
    } catch (error) {
      if (error instanceof TableError) throw invalid('table', error.message.replace(/^invalid clone table: /, ''));
      if (error instanceof BlockError) throw invalid('table', `cannot open the clone: ${error.message}`);
      throw error;
    }
    if (record.suspended) await device.suspend();
    const entry: CloneEntry = { record: { ...record, table: effectiveTable(table, device.statusNow()) }, table, holds, device, error: null, stopEvents: () => {}, completionRelayed: false };
    entry.stopEvents = device.events.on((event) => {
      if (event.type === 'hydration-complete') {
        if (entry.completionRelayed) return; // announced already (createClone)
        entry.completionRelayed = true;
      }
      this.events.publish(`clone.${event.type}`, cloneEventFields(record.name, device, event));
    });
    return entry;
  }

  /** The files a clone's table holds (an http(s) source holds none). */
  private cloneHolds(cloneName: string, table: CloneTable): Hold[] {
    const roles = [
      ['metadata dev', table.metadataDevice, 'write'],
      ['destination dev', table.destinationDevice, 'write'],
      ['source dev', table.sourceDevice, 'read'],
    ] as const;
    return roles.filter(([role, name]) => role !== 'source dev' || !isUrl(name)).map(([role, name, access]) => {
      try {
        return { path: devicePath(this.dataDir, name, role), name, access, holder: `clone:${cloneName}` };
      } catch (error) {
        throw invalid('table', (error as Error).message);
      }
    });
  }

  private failedClone(record: CloneRecord, error: unknown): CloneEntry {
    const message = (error as Error).message ?? String(error);
    this.log(`clone ${record.name} not reopened: ${message}`);
    let table: CloneTable | null = null;
    let holds: Hold[] = [];
    try {
      table = parseCloneTable(record.table);
      holds = this.cloneHolds(record.name, table);
    } catch {
      // an unreadable table holds nothing
    }
    return { record, table, holds, device: null, error: message, stopEvents: () => {}, completionRelayed: false };
  }

  private async openExport(record: ExportRecord, checked = false): Promise<ExportEntry> {
    const ref = parseDeviceRef(record.device, 'device');
    const base = { record, ref, error: null, counters: newIoCounters() };
    if (ref.kind === 'clone') {
      const clone = this.clones.get(ref.name);
      if (!clone) throw new ServiceError('ENOENT', `no clone "${ref.name}"`, 'device');
      if (!clone.device) throw new ServiceError('EBUSY', `clone "${ref.name}" is not open: ${clone.error}`, 'device');
      return { ...base, holds: [], device: clone.device, ownsDevice: false };
    }
    const path = devicePath(this.dataDir, ref.name, 'device');
    statDevice(this.dataDir, ref.name, 'device');
    const hold: Hold = { path, name: ref.name, access: record.readOnly ? 'read' : 'write', holder: `export:${record.name}` };
    if (checked) checkCanHold(this.allHolds(), hold, 'device');
    try {
      const device = await FileDevice.open(path, { readOnly: record.readOnly });
      return { ...base, holds: [hold], device, ownsDevice: true };
    } catch (error) {
      if (error instanceof BlockError && error.code !== 'EIO') throw invalid('device', error.message);
      throw error;
    }
  }

  private failedExport(record: ExportRecord, error: unknown): ExportEntry {
    const message = (error as Error).message ?? String(error);
    this.log(`export ${record.name} not reopened: ${message}`);
    let ref: DeviceRef = { kind: 'file', name: record.device };
    const holds: Hold[] = [];
    try {
      ref = parseDeviceRef(record.device, 'device');
      if (ref.kind === 'file') holds.push({ path: devicePath(this.dataDir, ref.name), name: ref.name, access: record.readOnly ? 'read' : 'write', holder: `export:${record.name}` });
    } catch {
      // holds nothing
    }
    return { record, ref, holds, device: null, ownsDevice: false, error: message, counters: newIoCounters() };
  }

  private async closeClone(entry: CloneEntry): Promise<void> {
    entry.stopEvents();
    await entry.device?.close().catch((error) => this.log(`closing clone ${entry.record.name}: ${error}`));
  }

  private cloneInfo(entry: CloneEntry, status: CloneStatus | null): CloneInfo {
    const { record } = entry;
    const base = { name: record.name, table: record.table, suspended: record.suspended, error: entry.error, exports: this.exportsOf(record.name) };
    if (!status) return { ...base, status: null };
    const { line, ...fields } = status;
    return { ...base, status: line, ...fields };
  }

  private async save(): Promise<void> {
    writeState(this.dataDir, {
      clones: [...this.clones.values()].map((entry) => ({ ...entry.record })),
      exports: [...this.exports.values()].map((entry) => ({ ...entry.record })),
    });
  }

  /** Saves the state; if that fails, undoes the change in memory and reports the failure. */
  private async saveOrUndo(undo: () => Promise<void>): Promise<void> {
    try {
      await this.save();
    } catch (error) {
      await undo();
      throw new ServiceError('EIO', `cannot write the state file: ${(error as Error).message}`);
    }
  }
}

function parseTable(line: string): CloneTable {
  try {
    return parseCloneTable(line);
  } catch (error) {
    if (error instanceof TableError) throw invalid('table', error.message.replace(/^invalid clone table: /, ''));
    throw error;
  }
}

/** The table line that reopens the clone as it is now: messages change features and core args. */
function effectiveTable(table: CloneTable, status: CloneStatus): string {
  const features: CloneFeature[] = status.hydrationEnabled ? [] : ['no_hydration'];
  if (table.features.includes('no_discard_passdown')) features.push('no_discard_passdown');
  return formatCloneTable({ ...table, features, hydrationThreshold: status.hydrationThreshold, hydrationBatchSize: status.hydrationBatchSize });
}

function cloneEventFields(clone: string, device: CloneDevice, event: CloneEvent): Record<string, unknown> {
  const { type: _type, ...fields } = event;
  if (event.type !== 'commit') return { clone, ...fields };
  const bytesHydrated = Math.min(device.sizeBytes, event.hydratedRegions * device.regionBytes);
  return { clone, ...fields, bytesHydrated, totalBytes: device.sizeBytes };
}
