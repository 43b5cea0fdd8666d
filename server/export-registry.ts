/**
 * The service's exports by name, and its side of the NBD server. An export serves a device under a
 * name: a file in the data directory (opened here, read-only or not, and closed with the export) or
 * an engine device (`clone:c1`: the engine of that kind gives it, and the export does not own it).
 * An engine device is served through a SwitchDevice, so the engine can replace it under connected
 * clients (a finalized clone becomes its destination file, which the export then owns and holds).
 * Each export keeps I/O counters that every NBD connection to it adds to (a fresh MeteredDevice
 * per lookup).
 *
 * An export with connected clients cannot be deleted; the connections come from the running NBD
 * server (attachNbd), whose connect, disconnect and protocol-error events become service events.
 * One that cannot be reopened after a restart is kept with its error, holds its file, and is not
 * served.
 */
import type { BlockDevice } from '../runtime/devices/block-device.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { SwitchDevice } from '../runtime/devices/switch-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { devicePath, statDevice } from './device-files.ts';
import { checkCanHold, type Hold } from './device-holders.ts';
import type { Engine, ServiceContext } from './engine.ts';
import { invalid, ServiceError } from './errors.ts';
import { MeteredDevice, newIoCounters, type IoCounters } from './metered-device.ts';
import { formatDeviceRef, parseDeviceRef, type DeviceRef } from './names.ts';
import type { NbdView } from './nbd-port.ts';
import { addCounts } from './nbd/threads.ts';
import type { WriteGeneration, WriteGenerations } from './data-plane/write-generation.ts';
import type { NbdConnectionInfo, NbdCounters, NbdEvent, NbdExport } from './nbd/types.ts';
import type { ExportRecord } from './state-file.ts';

export interface ExportInfo extends ExportRecord {
  sizeBytes: number | null;
  error: string | null;
  clients: Array<{ id: number; remote: string; connectedAtMs: number }>;
  io: IoCounters;
}

interface ExportEntry {
  record: ExportRecord;
  ref: DeviceRef;
  holds: Hold[];
  device: BlockDevice | null;
  /** True when the device is a file opened for this export (closed with it). */
  ownsDevice: boolean;
  /** For an engine device: the switch it is served through (`device` is this switch). */
  switch: SwitchDevice | null;
  error: string | null;
  counters: IoCounters;
}

export class ExportRegistry {
  private readonly entries = new Map<string, ExportEntry>();
  private nbd: NbdView | null = null;

  /** `engines` give `<kind>:<name>` exports their devices; writes count in `generations` (the data plane's versions). */
  constructor(private readonly service: ServiceContext, private readonly engines: ReadonlyMap<string, Engine>, private readonly generations: WriteGenerations) {}

  /** Reopens the state file's exports (after the clones); one that cannot be is kept with its error. */
  async restore(records: readonly ExportRecord[]): Promise<void> {
    for (const record of records) {
      const entry = await this.open(record).catch((error) => this.failed(record, error));
      this.entries.set(record.name, entry);
    }
  }

  /** What the state file keeps, in creation order. */
  records(): ExportRecord[] {
    return [...this.entries.values()].map((entry) => ({ ...entry.record }));
  }

  holds(): Hold[] {
    return [...this.entries.values()].flatMap((entry) => entry.holds);
  }

  /** The names of the exports that serve device reference `ref` (`clone:c1`). */
  exportsOf(ref: string): string[] {
    return [...this.entries.values()].filter((e) => e.record.device === ref).map((e) => e.record.name);
  }

  /** See EngineContext.replaceUnderExports. */
  async replaceUnderExports(ref: string, replace: () => Promise<{ device: BlockDevice; deviceName: string }>): Promise<void> {
    const entries = [...this.entries.values()].filter((e) => e.record.device === ref && e.switch !== null);
    if (entries.length === 0) {
      const { device } = await replace();
      await device.close();
      return;
    }
    // One export takes the new device; it holds the file alone (EngineContext callers keep it at one).
    const [entry, ...others] = entries;
    if (others.length > 0) throw new ServiceError('EBUSY', `${ref} is exported as ${entries.map((e) => e.record.name).join(', ')}: one export at most can take its replacement`);
    let deviceName = '';
    await entry!.switch!.replace(async () => {
      const next = await replace();
      deviceName = next.deviceName;
      return next.device;
    });
    const record = { ...entry!.record, device: deviceName };
    entry!.record = record;
    entry!.ref = { kind: 'file', name: deviceName };
    entry!.holds = [fileHold(record, deviceName, devicePath(this.service.dataDir, deviceName))];
    entry!.ownsDevice = true;
  }

  /** Connects the running NBD server, for connected clients and counters. */
  attachNbd(nbd: NbdView | null): void {
    this.nbd = nbd;
  }

  get nbdCounters(): NbdCounters | null {
    return this.nbd?.counters ?? null;
  }

  list(): ExportInfo[] {
    const connections = this.nbd?.connections() ?? [];
    return [...this.entries.values()].map((entry) => ({
      ...entry.record,
      sizeBytes: entry.device?.sizeBytes ?? null,
      error: entry.error,
      clients: connections.filter((c) => c.exportName === entry.record.name).map(({ id, remote, connectedAtMs }) => ({ id, remote, connectedAtMs })),
      io: { ...entry.counters },
    }));
  }

  async create(record: ExportRecord): Promise<ExportInfo> {
    if (this.entries.has(record.name)) throw new ServiceError('EEXIST', `export "${record.name}" exists already`, 'name');
    const entry = await this.open(record, true);
    this.entries.set(record.name, entry);
    await this.service.saveOrUndo(async () => {
      this.entries.delete(record.name);
      if (entry.ownsDevice) await entry.device?.close();
    });
    this.service.events.publish('export.added', { export: record.name, device: record.device, readOnly: record.readOnly });
    return this.list().find((info) => info.name === record.name)!;
  }

  async delete(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) throw new ServiceError('ENOENT', `no export "${name}"`, 'name');
    const clients = this.connectionsOf(name);
    if (clients.length > 0) throw new ServiceError('EBUSY', `export "${name}" has ${clients.length} connected client(s)`, 'name');
    this.entries.delete(name);
    await this.service.saveOrUndo(async () => void this.entries.set(name, entry));
    await this.closeEntry(entry);
    this.service.events.publish('export.removed', { export: name });
  }

  /** For the NBD server: the export, over a fresh counting view of its device; undefined if not served. */
  lookup(name: string): NbdExport | undefined {
    const entry = this.entries.get(name);
    if (!entry?.device) return undefined;
    const { readOnly, description } = entry.record;
    // The version counted is the one of what the entry serves when the write happens (a finalized
    // clone's export serves its destination file from then on, connected clients included).
    const generation = () => (entry.ref.kind === 'file' ? this.generations.ofFile(entry.holds[0]?.path ?? entry.record.device) : this.generations.ofDevice(entry.switch?.device ?? entry.device!));
    const view: NbdExport = { name, device: new MeteredDevice(entry.device, entry.counters, { readOnly, generation }), readOnly };
    // A file of its own (not an engine's, not one a finalized clone handed over under a switch): an
    // NBD thread may open it and serve the connection there (server/nbd/threads.ts).
    const path = entry.holds[0]?.path;
    if (entry.ref.kind === 'file' && entry.switch === null && path !== undefined) {
      const counters = entry.counters;
      view.threadable = {
        path, readOnly: readOnly || !entry.device.canWrite, logicalBlockBytes: entry.device.logicalBlockBytes,
        writeCounts: sharedMemoryOf(this.generations.ofFile(path)),
        addIo: (delta) => addCounts(counters, delta),
      };
    }
    return description === undefined ? view : { ...view, description };
  }

  /** The open file of an export that serves device file `name` (the data plane shares it), or null. */
  exportedFile(name: string): { device: BlockDevice; readOnly: boolean } | null {
    for (const entry of this.entries.values()) {
      if (entry.ref.kind === 'file' && entry.ref.name === name && entry.device !== null) return { device: entry.device, readOnly: entry.record.readOnly };
    }
    return null;
  }

  /** For the NBD server's LIST: every export that is served. */
  views(): NbdExport[] {
    return [...this.entries.keys()].map((name) => this.lookup(name)).filter((view) => view !== undefined);
  }

  /** For the NBD server: connections and protocol errors become events. */
  onNbdEvent(event: NbdEvent): void {
    if (event.type === 'protocol-error') {
      this.service.events.publish('nbd.protocol-error', { connectionId: event.connectionId, remote: event.remote, message: event.message });
    } else {
      this.service.events.publish(`export.${event.type}`, { export: event.exportName, connectionId: event.connectionId, remote: event.remote });
    }
  }

  /** Closes every file opened for an export and forgets them all; for the service's close. */
  async closeAll(): Promise<void> {
    for (const entry of this.entries.values()) await this.closeEntry(entry);
    this.entries.clear();
  }

  private async open(record: ExportRecord, checked = false): Promise<ExportEntry> {
    const ref = parseDeviceRef(record.device, 'device', [...this.engines.keys()]);
    const base = { record: { ...record, device: formatDeviceRef(ref) }, ref, error: null, counters: newIoCounters() };
    const engine = this.engines.get(ref.kind);
    if (engine) {
      const served = new SwitchDevice(engine.deviceOf(ref.name, 'device'));
      return { ...base, holds: [], device: served, ownsDevice: false, switch: served };
    }
    const path = devicePath(this.service.dataDir, ref.name, 'device');
    statDevice(this.service.dataDir, ref.name, 'device');
    const hold = fileHold(record, ref.name, path);
    if (checked) checkCanHold(this.service.holds(), hold, 'device');
    try {
      const device = await FileDevice.open(path, { readOnly: record.readOnly });
      return { ...base, holds: [hold], device, ownsDevice: true, switch: null };
    } catch (error) {
      if (error instanceof BlockError && error.code !== 'EIO') throw invalid('device', error.message);
      throw error;
    }
  }

  private failed(record: ExportRecord, error: unknown): ExportEntry {
    const message = (error as Error).message ?? String(error);
    this.service.log(`export ${record.name} not reopened: ${message}`);
    let ref: DeviceRef = { kind: 'file', name: record.device };
    const holds: Hold[] = [];
    try {
      ref = parseDeviceRef(record.device, 'device', [...this.engines.keys()]);
      if (ref.kind === 'file') holds.push(fileHold(record, ref.name, devicePath(this.service.dataDir, ref.name)));
    } catch {
      // holds nothing
    }
    return { record, ref, holds, device: null, ownsDevice: false, switch: null, error: message, counters: newIoCounters() };
  }

  private async closeEntry(entry: ExportEntry): Promise<void> {
    await entry.switch?.close();
    const owned = entry.ownsDevice ? (entry.switch?.device ?? entry.device) : null;
    if (owned) await owned.close().catch((error) => this.service.log(`closing export ${entry.record.name}: ${error}`));
  }

  private connectionsOf(exportName: string): NbdConnectionInfo[] {
    return (this.nbd?.connections() ?? []).filter((c) => c.exportName === exportName);
  }
}

/** A file export holds its file for reading or writing, as the export is read-only or not. */
function fileHold(record: ExportRecord, name: string, path: string): Hold {
  return { path, name, access: record.readOnly ? 'read' : 'write', holder: `export:${record.name}` };
}

/** The generation's counts where another thread can count in them too (SharedArrayBuffer), else null. */
function sharedMemoryOf(generation: WriteGeneration): SharedArrayBuffer | null {
  const memory = generation.memory;
  return typeof SharedArrayBuffer === 'function' && memory instanceof SharedArrayBuffer ? memory : null;
}
