/**
 * What the service needs from the NBD server (server/nbd/server.ts) and what it gives it, as plain
 * shapes. main.ts hands one to the other, so the compiler checks they still agree with the server's
 * own types; the service and its tests need nothing else from it.
 */
import type { BlockDevice } from '../runtime/devices/block-device.ts';

export interface ExportView {
  name: string;
  device: BlockDevice;
  readOnly: boolean;
  description?: string;
}

export type NbdPortEvent =
  | { type: 'connect' | 'disconnect'; connectionId: number; exportName: string; remote: string }
  | { type: 'protocol-error'; connectionId: number; remote: string; message: string };

export interface NbdConnectionView {
  id: number;
  exportName: string;
  remote: string;
  connectedAtMs: number;
}

export interface NbdCountersView {
  connections: number;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
}

/** The running NBD server, as the service sees it. */
export interface NbdView {
  connections(): NbdConnectionView[];
  readonly counters: NbdCountersView;
}
