/**
 * Where the devices a table names live: the data directory's files under the service
 * (file-store.ts), or what an edge host has (the Durable Object's storage, memory). Engines open
 * devices by name through one, so the same engine code runs wherever a store exists.
 */
import type { BlockDevice } from './block-device.ts';

export interface DeviceStore {
  /** Where its devices live, for messages: "the data directory". */
  readonly where: string;
  /**
   * The key device `name` is held under (device-holders.ts): two names of one device share it (a
   * file's real path). A bad name is a BlockError EINVAL naming `field`.
   */
  holdKey(name: string, field: string): string;
  /** Opens device `name`; BlockError EINVAL for a bad name, ENOENT when there is none. */
  open(name: string, options: { readOnly: boolean; field: string }): Promise<BlockDevice>;
}
