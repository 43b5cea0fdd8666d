/**
 * blkid's job in md-cluster's add protocol (md-cluster.rst, "Adding a new Device"): another node
 * added a leg and sent NEWDISK with its device uuid; this node looks for a device file of its
 * data directory whose md superblock holds that uuid, so it can bind the leg too. Files another
 * holder has (a clone, an export, another array) are passed over: binding one would write it;
 * two files with that uuid (a copy of the leg beside it) find none.
 * Reads only the first 8 KiB of each candidate (where the v1.2 superblock lives).
 */
import { readMdSuperblock } from '../../runtime/cluster/leg-metadata.ts';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { devicePath, listDevices } from '../device-files.ts';

/** Smallest file that can hold a v1.2 superblock at 4 KiB and some data. */
const LEG_BYTES_MIN = 8192;

export interface FoundLeg {
  device: FileDevice;
  /** Its name in the data directory. */
  name: string;
  path: string;
}

/**
 * The device file holding the md leg with `deviceUuid`, opened, or null: also when two files hold
 * it (a copy of a leg beside the leg): which one the other nodes write is not ours to guess.
 */
export async function findLegFile(dataDir: string, deviceUuid: Uint8Array, isHeld: (path: string) => boolean): Promise<FoundLeg | null> {
  let found: FoundLeg | null = null;
  for (const file of listDevices(dataDir)) {
    if (file.sizeBytes < LEG_BYTES_MIN) continue;
    let path: string;
    try {
      path = devicePath(dataDir, file.name);
    } catch {
      continue; // gone or renamed since it was listed
    }
    if (isHeld(path)) continue;
    const device = await FileDevice.open(path).catch(() => null);
    if (device === null) continue;
    const sb = await readMdSuperblock(device).catch(() => null);
    if (sb !== null && sb.deviceUuid.length === deviceUuid.length && sb.deviceUuid.every((byte, i) => byte === deviceUuid[i])) {
      if (found !== null) {
        await Promise.all([found.device.close().catch(() => {}), device.close().catch(() => {})]);
        return null;
      }
      found = { device, name: file.name, path };
      continue;
    }
    await device.close().catch(() => {});
  }
  return found;
}
