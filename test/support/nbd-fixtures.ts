/**
 * Fixtures for NBD tests: a server over given exports on a free TCP port (or a Unix socket) that
 * records its events, and a device wrapper that records calls and can hold requests back.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BlockDevice, BlockExtent, DiscardOutcome, WriteOptions } from '../../runtime/devices/block-device.ts';
import { NbdServer } from '../../server/nbd/server.ts';
import type { NbdTlsOptions } from '../../server/nbd/tls.ts';
import type { NbdEvent, NbdExport } from '../../server/nbd/types.ts';

export interface Served {
  server: NbdServer;
  tcp: { host: string; port: number };
  unix: { path: string };
  events: NbdEvent[];
  exports: NbdExport[];
  stop(): Promise<void>;
}

export async function serve(exports: NbdExport[], options: { maxConnections?: number; zeroCopy?: boolean; requestDecoder?: 'wasm' | 'ts'; tls?: NbdTlsOptions; threads?: number } = {}): Promise<Served> {
  const events: NbdEvent[] = [];
  const server = new NbdServer({
    lookup: (name) => exports.find((exported) => exported.name === name),
    list: () => exports,
    onEvent: (event) => events.push(event),
    maxConnections: options.maxConnections,
    zeroCopy: options.zeroCopy,
    requestDecoder: options.requestDecoder,
    tls: options.tls,
    threads: options.threads,
  });
  const tcp = (await server.listen({ host: '127.0.0.1', port: 0 })) as { host: string; port: number };
  const socketDir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-nbd-'));
  const unix = (await server.listen({ path: path.join(socketDir, 'nbd.sock') })) as { path: string };
  return {
    server, tcp, unix, events, exports,
    async stop() {
      await server.close();
      fs.rmSync(socketDir, { recursive: true, force: true });
    },
  };
}

/** Resolves when `check` holds, polling; throws after `timeoutMs`. */
export async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export type Call = { op: 'read' | 'write' | 'flush' | 'discard' | 'status' | 'hydrate'; offsetBytes?: number; lengthBytes?: number; fua?: boolean };

/**
 * Wraps a device: records every call, counts reads in flight (and the most seen at once), and,
 * while `hold` is set, keeps reads waiting until `release()`.
 */
export class RecordingDevice implements BlockDevice {
  readonly calls: Call[] = [];
  readsInFlight = 0;
  maxReadsInFlight = 0;
  hold = false;
  private held: Array<() => void> = [];

  constructor(readonly inner: BlockDevice, readonly overrides: { discardZeroes?: boolean } = {}) {}

  get name() { return `recording(${this.inner.name})`; }
  get sizeBytes() { return this.inner.sizeBytes; }
  get logicalBlockBytes() { return this.inner.logicalBlockBytes; }
  get canWrite() { return this.inner.canWrite; }
  get canDiscard() { return this.inner.canDiscard; }
  get discardZeroes() { return this.overrides.discardZeroes ?? this.inner.discardZeroes; }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    this.calls.push({ op: 'read', offsetBytes, lengthBytes: target.length });
    this.readsInFlight++;
    this.maxReadsInFlight = Math.max(this.maxReadsInFlight, this.readsInFlight);
    try {
      if (this.hold) await new Promise<void>((resolve) => this.held.push(resolve));
      await this.inner.read(offsetBytes, target);
    } finally {
      this.readsInFlight--;
    }
  }

  write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    this.calls.push({ op: 'write', offsetBytes, lengthBytes: data.length, fua: options?.fua === true });
    return this.inner.write(offsetBytes, data, options);
  }

  flush(): Promise<void> {
    this.calls.push({ op: 'flush' });
    return this.inner.flush();
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    this.calls.push({ op: 'discard', offsetBytes, lengthBytes });
    return this.inner.discard(offsetBytes, lengthBytes);
  }

  blockStatus(offsetBytes: number, lengthBytes: number): Promise<BlockExtent[]> {
    this.calls.push({ op: 'status', offsetBytes, lengthBytes });
    return this.inner.blockStatus!(offsetBytes, lengthBytes);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  release(): void {
    this.hold = false;
    for (const wake of this.held.splice(0)) wake();
  }

  count(op: Call['op']): number {
    return this.calls.filter((call) => call.op === op).length;
  }
}
