/** The public shapes of the NBD server (the contract server/service.ts builds on). */
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import type { NbdTlsOptions } from './tls.ts';

export interface NbdExport {
  name: string;
  device: BlockDevice;
  readOnly: boolean;
  description?: string;
}

export type NbdEvent =
  | { type: 'connect' | 'disconnect'; connectionId: number; exportName: string; remote: string }
  | { type: 'protocol-error'; connectionId: number; remote: string; message: string };

export interface NbdServerOptions {
  lookup(name: string): NbdExport | undefined;
  list(): NbdExport[];
  onEvent?(event: NbdEvent): void;
  /** Open sockets allowed at once (handshaking or connected); more are closed at accept. Default 128. */
  maxConnections?: number;
  /**
   * Send large reads from file-backed devices with sendfile where the runtime can (Node, Bun):
   * see runtime/net/output-queue.ts. Default true; false reads every reply into memory first.
   */
  zeroCopy?: boolean;
  /** STARTTLS with these credentials (server/nbd/tls.ts); absent: no TLS (STARTTLS is refused). Bad credentials throw TlsConfigError here. */
  tls?: NbdTlsOptions;
  /** Request decoding, 'wasm' or 'ts' (server/nbd/request-codec.ts); default: what the runtime adapter names. */
  requestDecoder?: 'wasm' | 'ts';
}

export type NbdAddress = { host: string; port: number } | { path: string };

export interface NbdConnectionInfo {
  id: number;
  exportName: string;
  remote: string;
  connectedAtMs: number;
}

/** Cumulative since the server was made. */
export interface NbdCounters {
  /** Connections accepted (refused ones over maxConnections are not counted). */
  connections: number;
  /** Transmission requests received (DISC included, refused ones included). */
  requests: number;
  /** Data bytes served by successful READs. */
  bytesRead: number;
  /** Data bytes stored by successful WRITEs (not WRITE_ZEROES or TRIM). */
  bytesWritten: number;
  /** Error replies sent plus connections closed for a protocol error. */
  errors: number;
}
