/**
 * The service's side of the data plane (DataDevices): which device a reference names, and who may
 * touch it while a request runs.
 *   `<kind>:<name>`     the engine's device (clone:c1), shared with its exports and other users;
 *   a file an export serves   that export's open file (a read-only export's file refuses writes);
 *   any other file      opened for the requests that use it and closed after the last one, each
 *                       request holding it (device-holders.ts) for reading or writing meanwhile, so a
 *                       file a clone writes is refused (409) and a clone cannot take a file a PUT is
 *                       writing.
 * Versions live in one WriteGenerations shared with the exports' views (export-registry.ts), keyed
 * by the reference as the state file writes it.
 */
import { FileDevice } from '../../runtime/devices/file-device.ts';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import { BlockError } from '../../runtime/errors.ts';
import { devicePath, statDevice } from '../device-files.ts';
import { checkCanHold, type Hold } from '../device-holders.ts';
import type { Engine } from '../engine.ts';
import { invalid } from '../errors.ts';
import { formatDeviceRef, parseDeviceRef } from '../names.ts';
import type { DataAccess, DataDeviceLease, DataDevices } from './data-devices.ts';
import type { WriteGenerations } from './write-generation.ts';

export const DATA_HOLDER = 'http:data';

interface OpenFile {
  device: Promise<BlockDevice>;
  users: number;
}

export interface ServiceDataDevicesOptions {
  dataDir: string;
  engines: ReadonlyMap<string, Engine>;
  generations: WriteGenerations;
  /** Every hold but the data plane's own. */
  otherHolds(): Hold[];
  /** The open device of an export serving file `name`, if one does. */
  exportedFile(name: string): BlockDevice | null;
}

export class ServiceDataDevices implements DataDevices {
  private readonly files = new Map<string, OpenFile>();
  private readonly requestHolds = new Set<Hold>();

  constructor(private readonly options: ServiceDataDevicesOptions) {}

  /** The holds of the requests running now (the service adds them to everyone else's). */
  holds(): Hold[] {
    return [...this.requestHolds];
  }

  async acquire(refText: string, access: DataAccess): Promise<DataDeviceLease> {
    const { engines, generations, dataDir } = this.options;
    const ref = parseDeviceRef(refText, 'ref', [...engines.keys()]);
    const generation = generations.of(formatDeviceRef(ref));
    const engine = engines.get(ref.kind);
    if (engine !== undefined) return { device: engine.deviceOf(ref.name, 'ref'), generation, release: () => {} };
    const exported = this.options.exportedFile(ref.name);
    if (exported !== null) return { device: exported, generation, release: () => {} };
    const path = devicePath(dataDir, ref.name, 'ref');
    statDevice(dataDir, ref.name, 'ref');
    const hold: Hold = { path, name: ref.name, access, holder: DATA_HOLDER };
    checkCanHold(this.options.otherHolds(), hold, 'ref');
    this.requestHolds.add(hold);
    let file = this.files.get(path);
    if (file === undefined) {
      file = { device: openFile(path, ref.name), users: 0 };
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

/** Read-write, or read-only when that is all the file allows (no write permission, a read-only filesystem): writes then answer 409. */
async function openFile(path: string, name: string): Promise<BlockDevice> {
  try {
    return await FileDevice.open(path).catch((error: unknown) => FileDevice.open(path, { readOnly: true }).catch(() => Promise.reject(error)));
  } catch (error) {
    if (error instanceof BlockError && error.code !== 'EIO') throw invalid('ref', `${name}: ${error.message}`);
    throw error;
  }
}
