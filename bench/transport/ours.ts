/**
 * Our side of bench/transport.ts: the server child (server-child.ts) started and found, client
 * sessions (RtrsClient + RnbdClient) opened on the device it serves, and the workloads run on the
 * RemoteDevice: whole-file sequential reads and writes (a window of requests in flight, each worker
 * with its own buffer) and random reads for a fixed time.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BlockDevice } from '../../runtime/devices/block-device.ts';
import { Prng } from '../../runtime/prng.ts';
import { RnbdClient } from '../../runtime/transport/rnbd-client.ts';
import type { RnbdAccess } from '../../runtime/transport/rnbd-messages.ts';
import { RtrsClient, type PathAddress, type RtrsClientOptions } from '../../runtime/transport/rtrs-client.ts';
import { defaultKernels } from '../../runtime/wasm/kernels.ts';
import { children } from '../processes.ts';
import { sameRuntimeCommand } from './processes.ts';

export const DEVICE_NAME = 'disk';
export const LISTEN_HOSTS = ['127.0.0.1', '127.0.0.2'] as const;
export type ServerVariant = 'invalidateOn' | 'invalidateOff' | 'ioThreads';
/** IO threads of the 'ioThreads' server variant: one per core the client's path has IO connections for (cores + 1 connections per path). */
export const BENCH_IO_THREADS = 2;

export interface OurServer {
  pid: number;
  /** Per variant, "host:port" on each of LISTEN_HOSTS. */
  addresses: Record<ServerVariant, string[]>;
}

/** Starts server-child.ts serving `filePath`; resolves once it listens. */
export async function startServerChild(filePath: string): Promise<OurServer> {
  const [command, args] = sameRuntimeCommand(fileURLToPath(new URL('./server-child.ts', import.meta.url)), [filePath]);
  // stdin stays a pipe we never close: the child exits when it reads its end (we died).
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const addresses = await new Promise<Record<ServerVariant, string[]>>((resolve, reject) => {
    let pending = '';
    child.stdout!.on('data', (chunk) => {
      pending += chunk;
      const match = /^listening (.*)$/m.exec(pending);
      if (match) resolve(JSON.parse(match[1]!) as Record<ServerVariant, string[]>);
    });
    child.on('error', reject);
    child.on('close', (code) => reject(new Error(`the server child exited (${code}) before listening`)));
  });
  return { pid: child.pid!, addresses };
}

export function pathsTo(addresses: readonly string[]): PathAddress[] {
  return addresses.map((address) => {
    const at = address.lastIndexOf(':');
    return { dst: { host: address.slice(0, at), port: Number(address.slice(at + 1)) } };
  });
}

export interface Remote {
  session: RtrsClient;
  device: BlockDevice;
  close(): Promise<void>;
}

let sessionSerial = 0;

/**
 * RTRS and RNBD log a line per path that closes, which every measurement ends with; the benchmark
 * drops them (failures still surface as the rejected requests that stop the run).
 */
export function quiet(_line: string): void {}

/** A session over `paths` (other RtrsClient options as given) with DEVICE_NAME open for `access`. */
export async function openRemote(paths: PathAddress[], access: RnbdAccess, options: Partial<RtrsClientOptions> = {}): Promise<Remote> {
  const kernels = await defaultKernels();
  const session = await RtrsClient.open({
    sessionName: `bench-${process.pid}-${sessionSerial++}`, paths, crc32c: (bytes, seed = 0) => kernels.crc32c(bytes, seed),
    log: quiet, ...options,
  });
  const rnbd = await RnbdClient.connect(session);
  const device = await rnbd.open(DEVICE_NAME, access);
  return {
    session, device,
    async close() {
      await rnbd.close();
      await session.close();
    },
  };
}

/** Runs `count` workers that take [offset, offset + ioBytes) slices of [0, totalBytes) in order. */
async function slices(totalBytes: number, ioBytes: number, count: number, body: (buffer: Uint8Array, offsetBytes: number) => Promise<void>): Promise<void> {
  let nextBytes = 0;
  const worker = async (): Promise<void> => {
    const buffer = new Uint8Array(ioBytes);
    while (nextBytes < totalBytes) {
      const offsetBytes = nextBytes;
      const lengthBytes = Math.min(ioBytes, totalBytes - offsetBytes);
      nextBytes += lengthBytes;
      await body(buffer.subarray(0, lengthBytes), offsetBytes);
    }
  };
  await Promise.all(Array.from({ length: count }, worker));
}

/** Reads the whole device, `inFlight` reads of `ioBytes` at a time; the bytes are dropped (nbdcopy's null:). */
export function seqRead(device: BlockDevice, ioBytes: number, inFlight: number): Promise<void> {
  return slices(device.sizeBytes, ioBytes, inFlight, (buffer, offsetBytes) => device.read(offsetBytes, buffer));
}

/** Copies the file `sourceFd` onto the device, `inFlight` writes of `ioBytes` at a time (each read from the file first, as nbdcopy's). */
export function seqWrite(device: BlockDevice, sourceFd: number, ioBytes: number, inFlight: number): Promise<void> {
  return slices(device.sizeBytes, ioBytes, inFlight, (buffer, offsetBytes) => {
    for (let doneBytes = 0; doneBytes < buffer.length;) {
      const got = fs.readSync(sourceFd, buffer, doneBytes, buffer.length - doneBytes, offsetBytes + doneBytes);
      if (got === 0) throw new Error(`the source file ends before ${offsetBytes + doneBytes}`);
      doneBytes += got;
    }
    return device.write(offsetBytes, buffer);
  });
}

/** Random aligned reads of `ioBytes`, `queueDepth` at a time, for `seconds`; reads per second. */
export async function randRead(device: BlockDevice, ioBytes: number, queueDepth: number, seconds: number, seed: number): Promise<number> {
  const prng = new Prng(seed);
  const blockCount = Math.floor(device.sizeBytes / ioBytes);
  const startMs = performance.now();
  const endMs = startMs + seconds * 1000;
  let done = 0;
  const worker = async (): Promise<void> => {
    const buffer = new Uint8Array(ioBytes);
    while (performance.now() < endMs) {
      await device.read(prng.below(blockCount) * ioBytes, buffer);
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: queueDepth }, worker));
  return done / ((performance.now() - startMs) / 1000);
}
