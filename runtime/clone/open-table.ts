/**
 * Opens a clone from its table line, with devices named in one DeviceStore (a data directory's
 * files: file-store.ts):
 *   [0 <length>] clone <metadata dev> <destination dev> <source dev> <region size> [...]
 * The metadata and destination devices must exist (create them first, e.g. sparse files); the
 * source is opened read-only, from the store, for an http(s) URL over Range requests,
 * or, for an engine reference `<kind>:<name>` (`remote:r1`, when the caller gives `engineDevice`),
 * as that engine's device, borrowed: the clone reads it and closing the clone leaves it open. Every check (table syntax, names, sizes, metadata format) runs before anything is
 * written; on any refusal every device opened so far is closed again and nothing was written.
 */
import type { BlockDevice } from '../devices/block-device.ts';
import type { DeviceStore } from '../devices/device-store.ts';
import { HttpDevice, type HttpDeviceOptions } from '../devices/http-device.ts';
import { SwitchDevice } from '../devices/switch-device.ts';
import { BlockError } from '../errors.ts';
import { CloneDevice, type CloneOptions } from './clone-device.ts';
import { parseCloneTable, TableError, type CloneTable } from './table.ts';

export type TableDeviceRole = 'metadata dev' | 'destination dev' | 'source dev';

export interface OpenTableOptions extends Pick<CloneOptions, 'commitIntervalMs' | 'maxConsecutiveCopyFailures' | 'name'> {
  http?: HttpDeviceOptions;
  /** A layer over each device the table names, as it opens (a FaultDevice in tests); it then owns the device. */
  layer?: (role: TableDeviceRole, device: BlockDevice) => BlockDevice;
  /** The device behind an engine reference (`remote:r1`), for a source that names one. */
  engineDevice?: (ref: string) => BlockDevice;
}

export function isUrl(name: string): boolean {
  return /^https?:\/\//i.test(name);
}

/** `<kind>:<name>` that is not a URL: a device an engine provides (device names have no ':'). */
export function isEngineRef(name: string): boolean {
  return /^[a-z]+:[^/]/.test(name) && !isUrl(name);
}

async function openNamed(store: DeviceStore, name: string, field: TableDeviceRole, readOnly: boolean, options: OpenTableOptions): Promise<BlockDevice> {
  const device = isEngineRef(name) ? borrowEngineDevice(name, field, readOnly, options) : await openBare(store, name, field, readOnly, options.http);
  return options.layer ? options.layer(field, device) : device;
}

/** An engine's device, through a SwitchDevice: closing the view does not close the device. */
function borrowEngineDevice(name: string, field: TableDeviceRole, readOnly: boolean, options: OpenTableOptions): BlockDevice {
  if (!readOnly) throw new TableError(field, 'only the source may be an engine device');
  if (options.engineDevice === undefined) throw new TableError(field, `"${name}" names an engine device, which only the service can open`);
  try {
    return new SwitchDevice(options.engineDevice(name));
  } catch (error) {
    throw new TableError(field, (error as Error).message.replace(/^[A-Za-z]+: /, ''));
  }
}

async function openBare(store: DeviceStore, name: string, field: TableDeviceRole, readOnly: boolean, http: HttpDeviceOptions | undefined): Promise<BlockDevice> {
  if (isUrl(name)) {
    if (!readOnly) throw new TableError(field, 'only the source may be a URL');
    return HttpDevice.open(name, http);
  }
  try {
    store.holdKey(name, field); // the name's check, before anything opens
  } catch (error) {
    throw new TableError(field, (error as Error).message.replace(/^EINVAL: /, ''));
  }
  try {
    return await store.open(name, { readOnly, field });
  } catch (error) {
    if (error instanceof BlockError && error.code === 'ENOENT') throw new TableError(field, `device "${name}" does not exist in ${store.where}`);
    throw error;
  }
}

export async function openCloneFromTable(store: DeviceStore, line: string, options: OpenTableOptions = {}): Promise<CloneDevice> {
  const table: CloneTable = parseCloneTable(line);
  const names = [table.metadataDevice, table.destinationDevice, table.sourceDevice];
  if (new Set(names).size !== names.length) throw new TableError('devices', 'the metadata, destination and source devices must be three different devices');
  const opened: BlockDevice[] = [];
  try {
    const source = await openNamed(store, table.sourceDevice, 'source dev', true, options);
    opened.push(source);
    const destination = await openNamed(store, table.destinationDevice, 'destination dev', false, options);
    opened.push(destination);
    const metadata = await openNamed(store, table.metadataDevice, 'metadata dev', false, options);
    opened.push(metadata);
    return await CloneDevice.open({
      metadata, destination, source,
      regionSectors: table.regionSectors,
      targetSectors: table.targetSectors,
      features: table.features,
      hydrationThreshold: table.hydrationThreshold,
      hydrationBatchSize: table.hydrationBatchSize,
      commitIntervalMs: options.commitIntervalMs,
      maxConsecutiveCopyFailures: options.maxConsecutiveCopyFailures,
      name: options.name,
    });
  } catch (error) {
    await Promise.allSettled(opened.map((device) => device.close()));
    throw error;
  }
}
