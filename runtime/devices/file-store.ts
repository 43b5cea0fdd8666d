/** The DeviceStore of a data directory: device names are paths inside it (runtime/data-dir.ts rules). */
import { resolveDevicePath } from '../data-dir.ts';
import type { BlockDevice } from './block-device.ts';
import type { DeviceStore } from './device-store.ts';
import { FileDevice } from './file-device.ts';

export class FileStore implements DeviceStore {
  readonly where = 'the data directory';

  constructor(readonly dataDir: string) {}

  holdKey(name: string, field: string): string {
    return resolveDevicePath(this.dataDir, name, field);
  }

  open(name: string, options: { readOnly: boolean; field: string }): Promise<BlockDevice> {
    return FileDevice.open(resolveDevicePath(this.dataDir, name, options.field), { readOnly: options.readOnly });
  }
}
