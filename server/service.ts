/**
 * The service: devices, engines and exports over one data directory, and the only place that
 * changes them. The HTTP routes validate their input and call in here; the NBD server asks in
 * here which exports exist. This file is the facade and the orchestration (open, close, one change
 * at a time, the state file); each kind of thing lives in its own file:
 *
 *   devices  files in the data directory (device-files.ts); created, listed and deleted here
 *   engines  one per entry of engines.ts (engine.ts): each holds its objects (clones, ...), their
 *            state-file records, routes and metrics, and gives its devices as `<kind>:<name>`
 *   exports  a name under which the NBD server serves a device: a file (opened here, read-only or
 *            not) or an engine device (export-registry.ts, which also answers the NBD server)
 *
 * Every change runs one at a time (a promise chain), writes the state file before it answers (so a
 * change that was acknowledged survives a restart) and publishes an event. On open the state file's
 * engine records and exports are reopened; one that cannot be (a device gone, a source
 * unreachable) is kept with its error, listed, and can be deleted, rather than stopping the whole
 * service.
 *
 * In use: files follow device-holders.ts (many readers or one writer). An engine device that is
 * exported cannot be deleted, and an export with connected clients cannot be deleted.
 */
import fs from 'node:fs';
import { Coordinator } from './cluster/coordinator.ts';
import { lockDataDir, type DataLock } from './data-lock.ts';
import { createDevice, devicePath, listDevices, deleteDevice, statDevice, type DeviceFile } from './device-files.ts';
import { holdersOf, type Hold } from './device-holders.ts';
import type { Engine, EngineContext } from './engine.ts';
import { ENGINES } from './engines.ts';
import { ServiceError } from './errors.ts';
import { EventHub } from './event-hub.ts';
import { ExportRegistry, type ExportInfo } from './export-registry.ts';
import { FileStore } from '../runtime/devices/file-store.ts';
import { ChangeChain } from './change-chain.ts';
import { engineDeviceOf } from './engine-device.ts';
import { StoreDataDevices } from './data-plane/store-data-devices.ts';
import { WriteGenerations } from './data-plane/write-generation.ts';
import type { NbdView } from './nbd-port.ts';
import type { NbdCounters, NbdEvent, NbdExport } from './nbd/types.ts';
import { readState, writeState, type ExportRecord } from './state-file.ts';

export type { ExportInfo } from './export-registry.ts';

export interface DeviceInfo extends DeviceFile {
  inUse: boolean;
  usedBy: string[];
}

export interface ServiceOptions {
  dataDir: string;
  /** Values of the engines' own serve flags (config.ts); absent ones are null to the engine. */
  settings?: Readonly<Record<string, string>>;
  /** One line per notable thing (reopen failures); default console.error. */
  log?: (line: string) => void;
}

export class Service {
  readonly events = new EventHub();
  readonly startedAtMs = Date.now();
  /** The open engines by kind, in the order of engines.ts. */
  readonly engines = new Map<string, Engine>();
  private readonly exports: ExportRegistry;
  /** The HTTP data plane's devices (server/http/data.ts). */
  readonly data: StoreDataDevices;
  /** The devices' versions (the data plane's ETags). */
  private readonly generations = new WriteGenerations();
  private readonly context: EngineContext;
  /** One change at a time (change-chain.ts). */
  private readonly changes: ChangeChain;

  private constructor(
    readonly dataDir: string,
    private readonly lock: DataLock,
    log: (line: string) => void,
    settings: Readonly<Record<string, string>>,
    readonly cluster: Coordinator,
  ) {
    this.changes = new ChangeChain(this.generations, () => this.holdsBesidesData());
    this.context = {
      dataDir,
      store: new FileStore(dataDir),
      cluster,
      setting: (flag) => settings[flag] ?? null,
      events: this.events,
      log,
      holds: () => this.allHolds(),
      saveApplied: (what) => this.saveApplied(what),
      saveOrUndo: (undo) => this.saveOrUndo(undo),
      exclusive: (work) => this.changes.exclusive(work),
      exportsOf: (ref) => this.exports.exportsOf(ref),
      usersOf: (ref) => [
        ...this.exports.exportsOf(ref).map((name) => `export:${name}`),
        ...[...this.engines.values()].flatMap((engine) => engine.usersOf?.(ref) ?? []),
      ],
      engineDevice: (ref, field) => engineDeviceOf(this.engines, ref, field),
      engineKinds: () => ENGINES.map((engine) => engine.kind),
      replaceUnderExports: (ref, replace) => this.exports.replaceUnderExports(ref, replace),
    };
    this.exports = new ExportRegistry(this.context, this.engines, this.generations);
    this.data = new StoreDataDevices({
      store: this.context.store,
      engines: this.engines,
      generations: this.generations,
      otherHolds: () => this.holdsBesidesData(),
      exportedFile: (name) => this.exports.exportedFile(name),
      serialized: (work) => this.changes.serialized(work),
    });
  }

  /** Creates the data directory if needed, takes its lock and reopens the saved engines' objects and exports. */
  static async open(options: ServiceOptions): Promise<Service> {
    fs.mkdirSync(options.dataDir, { recursive: true });
    const dataDir = fs.realpathSync(options.dataDir);
    const lock = lockDataDir(dataDir);
    let service: Service | null = null;
    let cluster: Coordinator | null = null;
    try {
      const state = readState(dataDir, ENGINES);
      const log = options.log ?? ((line: string) => console.error(line));
      const settings = options.settings ?? {};
      cluster = await Coordinator.open((flag) => settings[flag] ?? null, dataDir, log);
      service = new Service(dataDir, lock, log, settings, cluster);
      for (const definition of ENGINES) {
        const engine = await definition.open(service.context);
        service.engines.set(definition.kind, engine);
        await engine.restore(state.engines[definition.kind] ?? []);
      }
      await service.exports.restore(state.exports);
      await service.restored();
      return service;
    } catch (error) {
      // Engines opened so far may hold listeners and files: close them before giving up.
      for (const engine of [...(service?.engines.values() ?? [])].reverse()) await engine.closeAll().catch(() => {});
      await service?.exports.closeAll().catch(() => {});
      await cluster?.close().catch(() => {});
      lock.release();
      throw error;
    }
  }

  /** What the engines listen on, one line each, for `serve` to print. */
  listening(): string[] {
    return [...this.engines.values()].flatMap((engine) => engine.listening?.() ?? []);
  }

  /** Connects the running NBD server, for connected clients and counters. */
  attachNbd(nbd: NbdView | null): void {
    this.exports.attachNbd(nbd);
  }

  get nbdCounters(): NbdCounters | null {
    return this.exports.nbdCounters;
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
    return this.changes.exclusive(async () => {
      const device = await createDevice(this.dataDir, name, sizeBytes);
      this.generations.ofFile(devicePath(this.dataDir, name)).reincarnate();
      this.events.publish('device.created', { device: name, sizeBytes });
      return { ...device, inUse: false, usedBy: [] };
    });
  }

  deleteDevice(name: string): Promise<void> {
    return this.changes.exclusive(async () => {
      statDevice(this.dataDir, name);
      const usedBy = holdersOf(this.allHolds(), devicePath(this.dataDir, name));
      if (usedBy.length > 0) throw new ServiceError('EBUSY', `device "${name}" is in use by ${usedBy.join(', ')}`, 'name');
      const path = devicePath(this.dataDir, name);
      deleteDevice(this.dataDir, name);
      this.generations.ofFile(path).reincarnate();
      this.events.publish('device.removed', { device: name });
    });
  }

  // ---- exports (export-registry.ts) ----

  listExports(): ExportInfo[] {
    return this.exports.list();
  }

  createExport(record: ExportRecord): Promise<ExportInfo> {
    return this.changes.exclusive(() => this.exports.create(record));
  }

  deleteExport(name: string): Promise<void> {
    return this.changes.exclusive(() => this.exports.delete(name));
  }

  /** For the NBD server: the export, over a fresh counting view of its device; undefined if not served. */
  lookupExport(name: string): NbdExport | undefined {
    return this.changes.stopping ? undefined : this.exports.lookup(name);
  }

  listNbdExports(): NbdExport[] {
    return this.changes.stopping ? [] : this.exports.views();
  }

  /** For the NBD server: connections and protocol errors become events. */
  onNbdEvent(event: NbdEvent): void {
    this.exports.onNbdEvent(event);
  }

  // ---- lifecycle ----

  /** Closes every export's file, then every engine (a clone commits its metadata), then frees the lock. */
  close(): Promise<void> {
    this.changes.stop();
    return this.changes.exclusive(async () => {
      this.events.close();
      await this.exports.closeAll();
      for (const engine of [...this.engines.values()].reverse()) await engine.closeAll();
      await this.cluster.close().catch((error) => this.context.log(`leaving the cluster: ${error}`));
      this.lock.release();
    }, true);
  }

  // ---- internals ----

  private allHolds(): Hold[] {
    return [...this.holdsBesidesData(), ...this.data.holds()];
  }

  private holdsBesidesData(): Hold[] {
    return [...[...this.engines.values()].flatMap((engine) => engine.holds()), ...this.exports.holds()];
  }

  /** False until every engine and the exports are restored: a save before then would leave out what is not back yet. */
  private restoreDone = false;
  private savePending = false;

  private async restored(): Promise<void> {
    this.restoreDone = true;
    if (this.savePending) await this.save();
  }

  private async save(): Promise<void> {
    if (!this.restoreDone) {
      // Something changed while the service was restoring (another cluster node added a leg):
      // saved once everything is back.
      this.savePending = true;
      return;
    }
    const engines = Object.fromEntries([...this.engines].map(([kind, engine]) => [kind, engine.records()]));
    writeState(this.dataDir, { engines, exports: this.exports.records() }, ENGINES);
  }

  private async saveApplied(what: string): Promise<void> {
    try {
      await this.save();
    } catch (error) {
      throw new ServiceError('EIO', `${what} is in effect, but the state file could not be written, so it will not survive a restart: ${(error as Error).message}`);
    }
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
