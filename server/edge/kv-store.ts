/**
 * An edge host's devices: KvDevices in its key-value storage (a Durable Object's), as the
 * DeviceStore engines open them by name and the DeviceCatalog the API lists, creates and deletes.
 * Names follow the data directory's rules (runtime/device-name.ts); a device is held under its
 * name. The catalog is one key, `catalog:devices` (a JSON array of names), written with each
 * create and delete after the device itself, so a device in the catalog always exists.
 */
import { checkDeviceName } from '../../runtime/device-name.ts';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import type { DeviceStore } from '../../runtime/devices/device-store.ts';
import { KvDevice, readKvManifest, type KvStorage } from '../../runtime/devices/kv-device.ts';
import { BlockError } from '../../runtime/errors.ts';
import { holdersOf, type Hold } from '../device-holders.ts';
import { checkDeviceSize } from '../device-size.ts';
import { ServiceError } from '../errors.ts';
import type { DeviceCatalog } from '../http/devices.ts';
import { checkDeviceFileName } from '../names.ts';
import type { DeviceInfo } from '../service.ts';

const CATALOG_KEY = 'catalog:devices';

export class KvDeviceStore implements DeviceStore, DeviceCatalog {
  readonly where = "the Durable Object's storage";

  constructor(private readonly storage: KvStorage, private readonly holds: () => Hold[]) {}

  holdKey(name: string, field: string): string {
    return checkDeviceName(name, field);
  }

  open(name: string, options: { readOnly: boolean; field: string }): Promise<BlockDevice> {
    checkDeviceName(name, options.field);
    return KvDevice.open(this.storage, name, { readOnly: options.readOnly });
  }

  async listDevices(): Promise<DeviceInfo[]> {
    const devices: DeviceInfo[] = [];
    for (const name of await this.names()) {
      const manifest = await readKvManifest(this.storage, name);
      if (manifest === null) continue;
      const usedBy = holdersOf(this.holds(), name);
      devices.push({ name, sizeBytes: manifest.sizeBytes, allocatedBytes: await KvDevice.allocatedBytes(this.storage, name, manifest), inUse: usedBy.length > 0, usedBy });
    }
    return devices;
  }

  async createDevice(name: string, sizeBytes: number): Promise<DeviceInfo> {
    checkDeviceFileName(name, 'name');
    checkDeviceSize(sizeBytes, 'sizeBytes');
    try {
      await KvDevice.create(this.storage, name, { sizeBytes });
    } catch (error) {
      if (error instanceof BlockError && error.code === 'EEXIST') throw new ServiceError('EEXIST', `device "${name}" exists already`, 'name');
      throw error;
    }
    await this.storage.put({ [CATALOG_KEY]: JSON.stringify([...new Set([...(await this.names()), name])].sort()) });
    await this.storage.sync();
    return { name, sizeBytes, allocatedBytes: 0, inUse: false, usedBy: [] };
  }

  async deleteDevice(name: string): Promise<void> {
    checkDeviceFileName(name, 'name');
    const usedBy = holdersOf(this.holds(), name);
    if (usedBy.length > 0) throw new ServiceError('EBUSY', `device "${name}" is in use by ${usedBy.join(', ')}`, 'name');
    try {
      await KvDevice.remove(this.storage, name);
    } catch (error) {
      if (error instanceof BlockError && error.code === 'ENOENT') throw new ServiceError('ENOENT', `device "${name}" does not exist`, 'name');
      throw error;
    }
    await this.storage.put({ [CATALOG_KEY]: JSON.stringify((await this.names()).filter((other) => other !== name)) });
    await this.storage.sync();
  }

  private async names(): Promise<string[]> {
    const value = (await this.storage.get([CATALOG_KEY])).get(CATALOG_KEY);
    return typeof value === 'string' ? (JSON.parse(value) as string[]) : [];
  }
}
