/** The public shapes of the NBD server (the contract server/service.ts builds on). */
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import type { NbdTlsOptions } from './tls.ts';

export interface NbdExport {
  name: string;
  device: BlockDevice;
  readOnly: boolean;
  description?: string;
  /** A file a thread may serve on its own (threads.ts); absent: served on the server's thread. */
  threadable?: ThreadableFile;
}

/**
 * A device file that an NBD thread opens itself, for connections it takes over: every write on
 * it counts in `writeCounts` (the data plane's version, shared memory: WriteGeneration.over) and
 * its I/O counters come back to `addIo`.
 */
export interface ThreadableFile {
  path: string;
  /** Open it read-only (the export is, or the file is). */
  readOnly: boolean;
  logicalBlockBytes: number;
  writeCounts: SharedArrayBuffer | null;
  addIo(delta: Readonly<IoCounts>): void;
}

/** An export's I/O counts (server/metered-device.ts IoCounters). */
export interface IoCounts {
  reads: number;
  writes: number;
  flushes: number;
  discards: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
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
  /**
   * Worker threads that serve connections to threadable exports once in transmission (threads.ts);
   * default 0 (all on the server's thread). Where the runtime cannot move sockets, ignored.
   */
  threads?: number;
  /** Lines about the threads (one died...); default console.error. */
  onLog?(line: string): void;
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
