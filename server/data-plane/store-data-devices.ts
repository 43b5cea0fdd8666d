/**
 * A host's side of the data plane (DataDevices) over its DeviceStore: which device a reference
 * names, and who may touch it while a request runs.
 *   `<kind>:<name>`     the engine's device (clone:c1), shared with its exports and other users;
 *   a device an export serves   that export's open device (a read-only export's refuses writes);
 *   any other device    opened from the store for the requests that use it and closed after the
 *                       last one, each request holding it (device-holders.ts) for reading or
 *                       writing meanwhile, so a device a clone writes is refused (409) and a clone
 *                       cannot take a device a PUT is writing.
 * Versions live in one WriteGenerations shared with the exports' views (export-registry.ts), keyed
 * by the reference as the state file writes it. The service's store is its data directory's files
 * (FileStore), an edge host's its storage (KvDevice).
 */
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import type { DeviceStore } from '../../runtime/devices/device-store.ts';
import { BlockError } from '../../runtime/errors.ts';
import { checkCanHold, type Hold } from '../device-holders.ts';
import type { Engine } from '../engine.ts';
import { ServiceError } from '../errors.ts';
import { asInvalid, formatDeviceRef, parseDeviceRef } from '../names.ts';
import type { DataAccess, DataDeviceLease, DataDevices } from './data-devices.ts';
import type { WriteGenerations } from './write-generation.ts';

export const DATA_HOLDER = 'http:data';

interface OpenFile {
  device: Promise<BlockDevice>;
  users: number;
}

export interface StoreDataDevicesOptions {
  store: DeviceStore;
  engines: ReadonlyMap<string, Engine>;
  generations: WriteGenerations;
  /** Every hold but the data plane's own. */
  otherHolds(): Hold[];
  /** The open device of an export serving device `name` (and whether it is read-only), if one does. */
  exportedFile?(name: string): { device: BlockDevice; readOnly: boolean } | null;
  /**
   * Runs `work` in the host's one change at a time, without counting as a change: a request takes
   * its hold there, so it never slips between an engine's check of the holds and its own hold.
   */
  serialized<T>(work: () => T | Promise<T>): Promise<T>;
}

export class StoreDataDevices implements DataDevices {
  private readonly files = new Map<string, OpenFile>();
  private readonly requestHolds = new Set<Hold>();

  constructor(private readonly options: StoreDataDevicesOptions) {}

  /** The holds of the requests running now (the service adds them to everyone else's). */
  holds(): Hold[] {
    return [...this.requestHolds];
  }

  async acquire(refText: string, access: DataAccess): Promise<DataDeviceLease> {
    const { engines, generations, store } = this.options;
    const ref = parseDeviceRef(refText, 'ref', [...engines.keys()]);
    const engine = engines.get(ref.kind);
    if (engine !== undefined) {
      const device = engine.deviceOf(ref.name, 'ref');
      return { device, generation: generations.ofDevice(device), release: () => {} };
    }
    let path: string;
    try {
      path = store.holdKey(ref.name, 'ref');
    } catch (error) {
      throw asInvalid(error, 'ref');
    }
    const generation = generations.ofFile(path);
    const exported = this.options.exportedFile?.(ref.name) ?? null;
    if (exported !== null) {
      if (access === 'write' && exported.readOnly) throw new ServiceError('EROFS', `ref: ${ref.name} is exported read-only`, 'ref');
      return { device: exported.device, generation, release: () => {} };
    }
    const hold: Hold = { path, name: ref.name, access, holder: DATA_HOLDER };
    await this.options.serialized(() => {
      checkCanHold(this.options.otherHolds(), hold, 'ref');
      this.requestHolds.add(hold);
    });
    let file = this.files.get(path);
    if (file === undefined) {
      file = { device: openForData(store, ref.name), users: 0 };
      this.files.set(path, file);
    }
    file.users++;
    const release = () => {
      this.requestHolds.delete(hold);
      if (--file.users > 0) return;
      if (this.files.get(path) === file) this.files.delete(path);
      void file.device.then((device) => device.close()).catch(() => {});
    };
    try {
      return { device: await file.device, generation, release };
    } catch (error) {
      release();
      throw error;
    }
  }
}

/**
 * Read-write, or read-only when that is all the device allows (a file without write permission, on
 * a read-only filesystem): writes then answer 409.
 */
async function openForData(store: DeviceStore, name: string): Promise<BlockDevice> {
  try {
    return await store.open(name, { readOnly: false, field: 'ref' }).catch((error: unknown) => {
      if (error instanceof BlockError && (error.code === 'ENOENT' || error.code === 'EINVAL')) throw error;
      return store.open(name, { readOnly: true, field: 'ref' }).catch(() => Promise.reject(error));
    });
  } catch (error) {
    if (error instanceof BlockError && error.code === 'ENOENT') throw new ServiceError('ENOENT', `device "${name}" does not exist`, 'ref');
    if (error instanceof BlockError && error.code !== 'EIO') throw asInvalid(error, 'ref');
    throw error;
  }
}
