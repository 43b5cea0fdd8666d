/**
 * The clone engine in the service: the clones by name, and what the API does to them: create from
 * a dm-clone table line, message, suspend, resume, finalize (the destination stays as a plain
 * device file, and an export of the clone goes on serving it) and delete. Each change is saved in
 * the state file before it answers and published as a `clone.*` event; creating and deleting are
 * undone in memory when the save fails.
 *
 * A clone that an export serves cannot be deleted; one that is not open (entry.ts) refuses
 * everything but deletion.
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { CloneDevice } from '../../runtime/clone/clone-device.ts';
import type { CloneStatus } from '../../runtime/clone/status.ts';
import { BlockError } from '../../runtime/errors.ts';
import type { Hold } from '../device-holders.ts';
import type { Engine, EngineContext } from '../engine.ts';
import { invalid, ServiceError } from '../errors.ts';
import type { PromText } from '../prometheus.ts';
import { closeCloneEntry, cloneInfo, effectiveTable, failedCloneEntry, openCloneEntry, type CloneEntry, type CloneInfo } from './entry.ts';
import { cloneMetrics } from './metrics.ts';
import type { CloneRecord } from './records.ts';
import { cloneRoutes } from './routes.ts';

export class CloneRegistry implements Engine {
  readonly kind = 'clone';
  private readonly entries = new Map<string, CloneEntry>();

  constructor(private readonly service: EngineContext) {}

  routes(app: OpenAPIHono): void {
    cloneRoutes(app, this, this.service);
  }

  metrics(out: PromText): void {
    cloneMetrics(out, this.list());
  }

  /** Reopens the state file's clones; one that cannot be is kept with its error. */
  async restore(records: readonly unknown[]): Promise<void> {
    for (const record of records as CloneRecord[]) {
      const entry = await openCloneEntry(this.service, record).catch((error) => failedCloneEntry(this.service, record, error));
      this.entries.set(record.name, entry);
    }
  }

  /** What the state file keeps, in creation order. */
  records(): CloneRecord[] {
    return [...this.entries.values()].map((entry) => ({ ...entry.record }));
  }

  holds(): Hold[] {
    return [...this.entries.values()].flatMap((entry) => entry.holds);
  }

  /** Clones whose source is `ref` (an engine device such as `remote:r1`). */
  usersOf(ref: string): string[] {
    return [...this.entries.values()].filter((entry) => entry.table?.sourceDevice === ref).map((entry) => `clone:${entry.record.name}`);
  }

  /** The open device of clone `name`, for an export of it (`clone:<name>`); refusals name `field`. */
  deviceOf(name: string, field: string): CloneDevice {
    return this.openDevice(this.entry(name, field), field);
  }

  list(): CloneInfo[] {
    return [...this.entries.values()].map((entry) => this.info(entry, entry.device?.statusNow() ?? null));
  }

  /** One clone, with its status after a commit if its metadata changed (as dm-clone's INFO does). */
  async get(name: string): Promise<CloneInfo> {
    const entry = this.entry(name);
    try {
      return this.info(entry, entry.device ? await entry.device.status() : null);
    } catch (error) {
      // finalized or deleted while we asked
      if (error instanceof BlockError && error.code === 'EBADF') throw new ServiceError('ENOENT', `no clone "${name}"`, 'name');
      throw error;
    }
  }

  async create(name: string, table: string): Promise<CloneInfo> {
    if (this.entries.has(name)) throw new ServiceError('EEXIST', `clone "${name}" exists already`, 'name');
    const entry = await openCloneEntry(this.service, { name, table, suspended: false }, true);
    this.entries.set(name, entry);
    await this.service.saveOrUndo(async () => {
      this.entries.delete(name);
      await closeCloneEntry(this.service, entry);
    });
    this.service.events.publish('clone.created', { clone: name, table: entry.record.table });
    // A small clone may finish hydrating (or be complete already) before its events are relayed.
    if (entry.device!.isHydrated && !entry.completionRelayed) {
      entry.completionRelayed = true;
      this.service.events.publish('clone.hydration-complete', { clone: name });
    }
    return this.info(entry, entry.device!.statusNow());
  }

  /** A dm-clone message; the effective table (threshold, batch size, no_hydration) is saved. */
  async message(name: string, message: string): Promise<CloneInfo> {
    const entry = this.entry(name);
    const device = this.openDevice(entry);
    try {
      device.message(message);
    } catch (error) {
      if (error instanceof BlockError && error.code === 'EINVAL') throw invalid('message', error.message.replace(/^EINVAL: /, ''));
      throw error;
    }
    entry.record.table = effectiveTable(entry.table!, device.statusNow());
    await this.service.saveApplied(`message "${message}" to clone "${name}"`);
    this.service.events.publish('clone.message', { clone: name, message });
    return this.info(entry, device.statusNow());
  }

  async suspend(name: string): Promise<CloneInfo> {
    const entry = this.entry(name);
    await this.openDevice(entry).suspend();
    entry.record.suspended = true;
    await this.service.saveApplied(`suspending clone "${name}"`);
    this.service.events.publish('clone.suspended', { clone: name });
    return this.info(entry, entry.device!.statusNow());
  }

  async resume(name: string): Promise<CloneInfo> {
    const entry = this.entry(name);
    this.openDevice(entry).resume();
    entry.record.suspended = false;
    await this.service.saveApplied(`resuming clone "${name}"`);
    this.service.events.publish('clone.resumed', { clone: name });
    return this.info(entry, entry.device!.statusNow());
  }

  /**
   * Replaces the clone by its destination, which stays as a plain device file. An export of the
   * clone goes on serving the destination alone (dm's table swap under an open device): its
   * clients stay connected, their requests during the swap wait for it, and the export's record
   * names the destination from then on. More than one export would leave one file served twice
   * (one writer or many readers: device-holders.ts), so that is refused.
   */
  async finalize(name: string): Promise<{ clone: string; device: string }> {
    const entry = this.entry(name);
    const device = this.openDevice(entry);
    const exports = this.exportsOf(name);
    if (exports.length > 1) {
      throw new ServiceError('EBUSY', `clone "${name}" is exported as ${exports.join(', ')}; finalize keeps at most one export, which then serves the destination: delete the others first`, 'name');
    }
    if (!device.isHydrated) {
      const status = device.statusNow();
      throw new ServiceError('EBUSY', `clone "${name}" is not hydrated yet: ${status.hydratedRegions} of ${status.totalRegions} regions`, 'name');
    }
    if (device.mode !== 'rw') throw new ServiceError('EBUSY', `clone "${name}" is in ${device.mode} mode and cannot be finalized`, 'name');
    const deviceName = entry.table!.destinationDevice;
    entry.stopEvents();
    if (exports.length === 0) {
      const destination = await device.finalize();
      await destination.close();
    } else {
      await this.service.replaceUnderExports(`clone:${name}`, async () => ({ device: await device.finalize(), deviceName }));
    }
    this.entries.delete(name);
    await this.service.saveApplied(`finalizing clone "${name}"`);
    const result = { clone: name, device: deviceName };
    this.service.events.publish('clone.finalized', exports.length === 0 ? result : { ...result, exports });
    return result;
  }

  async delete(name: string): Promise<void> {
    const entry = this.entry(name);
    this.refuseIfExported(entry);
    this.entries.delete(name);
    await this.service.saveOrUndo(async () => void this.entries.set(name, entry));
    await closeCloneEntry(this.service, entry);
    this.service.events.publish('clone.removed', { clone: name });
  }

  /** Closes every clone (each commits its metadata) and forgets them; for the service's close. */
  async closeAll(): Promise<void> {
    for (const entry of this.entries.values()) await closeCloneEntry(this.service, entry);
    this.entries.clear();
  }

  private entry(name: string, field = 'name'): CloneEntry {
    const entry = this.entries.get(name);
    if (!entry) throw new ServiceError('ENOENT', `no clone "${name}"`, field);
    return entry;
  }

  private openDevice(entry: CloneEntry, field = 'name'): CloneDevice {
    if (!entry.device) throw new ServiceError('EBUSY', `clone "${entry.record.name}" is not open: ${entry.error}`, field);
    return entry.device;
  }

  private exportsOf(name: string): string[] {
    return this.service.exportsOf(`clone:${name}`);
  }

  private refuseIfExported(entry: CloneEntry): void {
    const names = this.exportsOf(entry.record.name);
    if (names.length > 0) throw new ServiceError('EBUSY', `clone "${entry.record.name}" is exported as ${names.join(', ')}; delete the export first`, 'name');
  }

  private info(entry: CloneEntry, status: CloneStatus | null): CloneInfo {
    return cloneInfo(entry, status, this.exportsOf(entry.record.name));
  }
}
