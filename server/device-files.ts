/**
 * Device files: regular files in the data directory, named by their path inside it. Listing walks
 * the directory (skipping the service's own `.blockcore/` and anything not addressable by a valid
 * name); creating makes a sparse file (FileDevice's create: ftruncate, then fsync of file and
 * directory); deleting removes the name. Every name goes through runtime/data-dir.ts, so `..`,
 * absolute paths and symlinks that lead outside the data directory are refused.
 */
import fs from 'node:fs';
import { dirname, join } from 'node:path';
import { resolveDevicePath } from '../runtime/data-dir.ts';
import { FileDevice } from '../runtime/devices/file-device.ts';
import { BlockError } from '../runtime/errors.ts';
import { invalid, ServiceError } from './errors.ts';
import { asInvalid, checkDeviceFileName, RESERVED_SEGMENT } from './names.ts';
export { checkDeviceSize, DEVICE_BYTES_MAX, SECTOR_BYTES } from './device-size.ts';

/** ext4 with 4 KiB blocks holds files up to 2^32 - 1 blocks. */
const LIST_DEPTH_MAX = 8;
const LIST_ENTRIES_MAX = 10_000;
const STAT_BLOCK_BYTES = 512;

export interface DeviceFile {
  name: string;
  sizeBytes: number;
  allocatedBytes: number;
}


/** The real path of device `name`, refusing names and symlinks that leave the data directory. */
export function devicePath(dataDir: string, name: string, field = 'name'): string {
  checkDeviceFileName(name, field);
  try {
    return resolveDevicePath(dataDir, name, field);
  } catch (error) {
    throw asInvalid(error, field);
  }
}

export function statDevice(dataDir: string, name: string, field = 'name'): DeviceFile {
  const path = devicePath(dataDir, name, field);
  const stats = statOrNull(path);
  if (!stats) throw new ServiceError('ENOENT', `device "${name}" does not exist`, field);
  if (!stats.isFile()) throw invalid(field, `"${name}" is not a regular file`);
  return { name, sizeBytes: stats.size, allocatedBytes: stats.blocks * STAT_BLOCK_BYTES };
}

export function listDevices(dataDir: string): DeviceFile[] {
  const found: DeviceFile[] = [];
  const walk = (relativeDir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(join(dataDir, relativeDir), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (found.length >= LIST_ENTRIES_MAX) return;
      const name = relativeDir === '' ? entry.name : `${relativeDir}/${entry.name}`;
      if (depth === 0 && entry.name === RESERVED_SEGMENT) continue;
      if (entry.isDirectory()) {
        if (depth + 1 < LIST_DEPTH_MAX) walk(name, depth + 1);
        continue;
      }
      if (!entry.isFile() && !entry.isSymbolicLink()) continue;
      try {
        found.push(statDevice(dataDir, name));
      } catch {
        // not addressable (odd characters, a symlink leading out or to a directory): not a device
      }
    }
  };
  walk('', 0);
  return found;
}

export async function createDevice(dataDir: string, name: string, sizeBytes: number): Promise<DeviceFile> {
  const path = devicePath(dataDir, name);
  if (statOrNull(path)) throw new ServiceError('EEXIST', `device "${name}" exists already`, 'name');
  try {
    fs.mkdirSync(dirname(path), { recursive: true });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw invalid('name', `a parent of "${name}" is not a directory`);
    throw error;
  }
  try {
    await (await FileDevice.open(path, { create: { sizeBytes } })).close();
  } catch (error) {
    if (error instanceof BlockError && error.code === 'EEXIST') throw new ServiceError('EEXIST', `device "${name}" exists already`, 'name');
    if (error instanceof BlockError && error.code === 'ERANGE') throw invalid('sizeBytes', `the filesystem cannot hold a file of ${sizeBytes} bytes`);
    if (error instanceof BlockError && error.code === 'EINVAL') throw invalid('name', error.message);
    throw error;
  }
  return statDevice(dataDir, name);
}

/** Removes the name (for a symlink, the link, not its target). */
export function deleteDevice(dataDir: string, name: string): void {
  statDevice(dataDir, name);
  fs.unlinkSync(join(fs.realpathSync(dataDir), name));
}

function statOrNull(path: string): fs.Stats | null {
  try {
    return fs.statSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw error;
  }
}
