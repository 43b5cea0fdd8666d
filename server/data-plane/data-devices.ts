/**
 * What the HTTP data plane (server/http/data.ts) needs from its host: the device behind a reference
 * for the length of one request, and that device's WriteGeneration. The service gives files in its
 * data directory and engine devices (service-data-devices.ts); an edge host gives what it has.
 */
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import type { WriteGeneration } from './write-generation.ts';

export type DataAccess = 'read' | 'write';

export interface DataDeviceLease {
  device: BlockDevice;
  generation: WriteGeneration;
  /** Ends the request's use of the device (a file opened for it may close); called exactly once. */
  release(): void;
}

export interface DataDevices {
  /**
   * The device behind `ref` (a device name or `<kind>:<name>`), held for `access` until release.
   * Refuses with a ServiceError naming the field "ref": EINVAL malformed, ENOENT unknown, EBUSY held
   * by someone who excludes this access (a clone's destination, a writer elsewhere).
   */
  acquire(ref: string, access: DataAccess): Promise<DataDeviceLease>;
}
