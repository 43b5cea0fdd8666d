/**
 * The service: the registry of devices, clones and exports over one data directory, and the only
 * place that changes them. The HTTP routes validate their input and call in here; the NBD server
 * asks in here which exports exist. This file is the facade and the orchestration (open, close, one
 * change at a time, the state file); each kind of thing lives in its own file:
 *
 *   devices  files in the data directory (device-files.ts); created, listed and deleted here
 *   clones   CloneDevices opened from a dm-clone table line whose devices name files in the data
 *            directory; the effective table (messages included) is what the state file keeps
 *            (clone-registry.ts for the set and its changes, clone-entry.ts for one clone)
 *   exports  a name under which the NBD server serves a device: a file (opened here, read-only or
 *            not) or an engine device (`clone:c1`, the clone itself) (export-registry.ts, which
 *            also answers the NBD server)
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
import type { CloneInfo } from './clone-entry.ts';
import { CloneRegistry } from './clone-registry.ts';
import { lockDataDir, type DataLock } from './data-lock.ts';
import { createDevice, devicePath, listDevices, deleteDevice, statDevice, type DeviceFile } from './device-files.ts';
import { holdersOf, type Hold } from './device-holders.ts';
import { ServiceError } from './errors.ts';
import { EventHub } from './event-hub.ts';
import { ExportRegistry, type ExportInfo } from './export-registry.ts';
import type { NbdView } from './nbd-port.ts';
import type { NbdCounters, NbdEvent, NbdExport } from './nbd/types.ts';
import type { ServiceContext } from './service-context.ts';
import { readState, writeState, type ExportRecord } from './state-file.ts';

export type { CloneInfo } from './clone-entry.ts';
export type { ExportInfo } from './export-registry.ts';

export interface DeviceInfo extends DeviceFile {
  inUse: boolean;
  usedBy: string[];
}

export interface ServiceOptions {
  dataDir: string;
  /** One line per notable thing (reopen failures); default console.error. */
  log?: (line: string) => void;
}

export class Service {
  readonly events = new EventHub();
  readonly startedAtMs = Date.now();
  private readonly clones: CloneRegistry;
  private readonly exports: ExportRegistry;
  private tail: Promise<unknown> = Promise.resolve();
  private stopping = false;

  private constructor(readonly dataDir: string, private readonly lock: DataLock, log: (line: string) => void) {
    const context: ServiceContext = {
      dataDir,
      events: this.events,
      log,
      holds: () => this.allHolds(),
      saveApplied: (what) => this.saveApplied(what),
      saveOrUndo: (undo) => this.saveOrUndo(undo),
    };
    this.clones = new CloneRegistry(context, (cloneName) => this.exports.exportsOf(cloneName));
    this.exports = new ExportRegistry(context, this.clones);
  }

  /** Creates the data directory if needed, takes its lock and reopens the saved clones and exports. */
  static async open(options: ServiceOptions): Promise<Service> {
    fs.mkdirSync(options.dataDir, { recursive: true });
    const dataDir = fs.realpathSync(options.dataDir);
    const lock = lockDataDir(dataDir);
    try {
      const state = readState(dataDir);
      const service = new Service(dataDir, lock, options.log ?? ((line) => console.error(line)));
      await service.clones.restore(state.clones);
      await service.exports.restore(state.exports);
      return service;
    } catch (error) {
      lock.release();
      throw error;
    }
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

  // ---- clones (clone-registry.ts) ----

  listClones(): CloneInfo[] {
    return this.clones.list();
  }

  /** One clone, with its status after a commit if its metadata changed (as dm-clone's INFO does). */
  getClone(name: string): Promise<CloneInfo> {
    return this.clones.get(name);
  }

  createClone(name: string, table: string): Promise<CloneInfo> {
    return this.exclusive(() => this.clones.create(name, table));
  }

  /** A dm-clone message; the effective table (threshold, batch size, no_hydration) is saved. */
  messageClone(name: string, message: string): Promise<CloneInfo> {
    return this.exclusive(() => this.clones.message(name, message));
  }

  suspendClone(name: string): Promise<CloneInfo> {
    return this.exclusive(() => this.clones.suspend(name));
  }

  resumeClone(name: string): Promise<CloneInfo> {
    return this.exclusive(() => this.clones.resume(name));
  }

  /** Replaces the clone by its destination, which stays as a plain device file. */
  finalizeClone(name: string): Promise<{ clone: string; device: string }> {
    return this.exclusive(() => this.clones.finalize(name));
  }

  deleteClone(name: string): Promise<void> {
    return this.exclusive(() => this.clones.delete(name));
  }

  // ---- exports (export-registry.ts) ----

  listExports(): ExportInfo[] {
    return this.exports.list();
  }

  createExport(record: ExportRecord): Promise<ExportInfo> {
    return this.exclusive(() => this.exports.create(record));
  }

  deleteExport(name: string): Promise<void> {
    return this.exclusive(() => this.exports.delete(name));
  }

  /** For the NBD server: the export, over a fresh counting view of its device; undefined if not served. */
  lookupExport(name: string): NbdExport | undefined {
    return this.stopping ? undefined : this.exports.lookup(name);
  }

  listNbdExports(): NbdExport[] {
    return this.stopping ? [] : this.exports.views();
  }

  /** For the NBD server: connections and protocol errors become events. */
  onNbdEvent(event: NbdEvent): void {
    this.exports.onNbdEvent(event);
  }

  // ---- lifecycle ----

  /** Closes every export's file and every clone (which commits its metadata), then frees the lock. */
  close(): Promise<void> {
    this.stopping = true;
    return this.exclusive(async () => {
      this.events.close();
      await this.exports.closeAll();
      await this.clones.closeAll();
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

  private allHolds(): Hold[] {
    return [...this.clones.holds(), ...this.exports.holds()];
  }

  private async save(): Promise<void> {
    writeState(this.dataDir, { clones: this.clones.records(), exports: this.exports.records() });
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
