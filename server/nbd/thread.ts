/**
 * An NBD thread (the worker side of threads.ts, which says who does what): serves the
 * connections it is given, in transmission, over files it opens itself, one descriptor per file
 * shared by its connections and closed with the last of them. A connection's I/O counts go back
 * to the server's thread as deltas, at most COUNTS_EVERY_MS late and all of them before it is
 * reported closed.
 *
 * Faults: a connection's fault closes that connection (NbdConnection's fault domain); a file that
 * cannot be opened hangs up on the connection that wanted it, with a protocol-error naming why.
 */
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { loadAdapter } from '../../runtime/adapter/index.ts';
import { FileDevice } from '../../runtime/devices/file-device.ts';
import { BufferPool } from '../../runtime/net/buffer-pool.ts';
import { describeError, guarded } from '../../runtime/net/fault-domain.ts';
import { WriteGeneration } from '../data-plane/write-generation.ts';
import { MeteredDevice, newIoCounters } from '../metered-device.ts';
import { NbdConnection, type ConnectionHost } from './connection.ts';
import { contextsOf } from './meta-contexts.ts';
import { loadRequestDecoders } from './request-codec.ts';
import { COUNTS_EVERY_MS, type FromNbdThread, type ThreadFile, type ToNbdThread } from './threads.ts';
import type { IoCounts, NbdCounters, NbdExport } from './types.ts';

const port = parentPort;
if (port === null) throw new Error('server/nbd/thread.ts runs as a worker thread');
const adapter = await loadAdapter();
const threadSockets = adapter.threadSockets;
if (threadSockets === null) throw new Error('this runtime cannot serve connections on other threads');
const requestDecoder = await loadRequestDecoders(adapter.nbdRequestDecoder);
const pool = new BufferPool();
const post = (message: FromNbdThread): void => port.postMessage(message);

const newNbdCounters = (): NbdCounters => ({ connections: 0, requests: 0, bytesRead: 0, bytesWritten: 0, errors: 0 });

/** The files this thread has open, by path and access, with how many connections use each. */
const files = new Map<string, { device: Promise<FileDevice>; users: number }>();

function openFile(file: ThreadFile): { device: Promise<FileDevice>; release(): void } {
  const key = `${file.readOnly ? 'ro' : 'rw'}:${file.path}`;
  let entry = files.get(key);
  if (entry === undefined) {
    entry = { device: FileDevice.open(file.path, { readOnly: file.readOnly, logicalBlockBytes: file.logicalBlockBytes }), users: 0 };
    files.set(key, entry);
  }
  entry.users++;
  const held = entry;
  let released = false;
  return {
    device: held.device,
    release: () => {
      if (released) return;
      released = true;
      if (--held.users > 0) return;
      files.delete(key);
      void held.device.then((device) => device.close(), () => {});
    },
  };
}

/** One moved connection: its counts since they were last sent. */
class Served {
  readonly nbd = newNbdCounters();
  readonly io = newIoCounters();
  connection: NbdConnection | null = null;

  constructor(readonly id: number) {}

  sendCounts(): void {
    if (isZero(this.nbd) && isZero(this.io)) return;
    post({ t: 'counts', id: this.id, nbd: { ...this.nbd }, io: { ...this.io } });
    zero(this.nbd);
    zero(this.io);
  }
}

const served = new Map<number, Served>();
// Counted in place by the connection and its view; sent from here (no work per request).
setInterval(() => {
  for (const entry of served.values()) entry.sendCounts();
}, COUNTS_EVERY_MS).unref();

async function attach(message: Extract<ToNbdThread, { t: 'attach' }>): Promise<void> {
  const entry = new Served(message.id);
  served.set(message.id, entry);
  const file = openFile(message.file);
  let device: FileDevice;
  try {
    device = await file.device;
  } catch (error) {
    file.release();
    fs.close(message.fd, () => {});
    served.delete(message.id);
    post({ t: 'protocol-error', id: message.id, message: `the NBD thread could not open the export's file: ${describeError(error)}` });
    post({ t: 'closed', id: message.id });
    return;
  }
  const writeCounts = message.file.writeCounts === null ? null : WriteGeneration.over(message.file.writeCounts);
  const view = new MeteredDevice(device, entry.io, { readOnly: message.readOnly, ...(writeCounts === null ? {} : { generation: () => writeCounts }) });
  const exported: NbdExport = { name: message.exportName, device: view, readOnly: message.readOnly };
  const metaContexts = contextsOf(exported).filter((context) => message.metaContexts.includes(context.name));
  const host: ConnectionHost = {
    tls: null,
    threads: null,
    counters: entry.nbd,
    pool,
    socketSend: adapter.socketSend,
    requestDecoder,
    lookup: () => undefined,
    list: () => [],
    emit: (event) => {
      if (event.type === 'protocol-error') post({ t: 'protocol-error', id: message.id, message: event.message });
    },
    closed: () => {
      served.delete(message.id);
      entry.sendCounts();
      file.release();
      post({ t: 'closed', id: message.id });
    },
  };
  const socket = threadSockets!.adopt(message.fd);
  const agreement = { exported, structuredReplies: message.structuredReplies, extendedHeaders: message.extendedHeaders, metaContexts };
  entry.connection = new NbdConnection(message.id, message.remote, socket, host, { agreement, unread: message.unread });
}

function handle(message: ToNbdThread): void {
  switch (message.t) {
    case 'attach':
      void attach(message).catch((error: unknown) => fail(message.id, error));
      return;
    case 'shutdown':
      void served.get(message.id)?.connection?.shutdown(message.graceMs);
      return;
  }
}

function fail(id: number, error: unknown): void {
  post({ t: 'log', line: `nbd: thread: connection ${id}: ${describeError(error)}` });
  const entry = served.get(id);
  if (entry?.connection) void entry.connection.shutdown(0);
  else post({ t: 'closed', id });
}

port.on('message', (message: ToNbdThread) => guarded(() => handle(message), (error) => fail(message.id, error)));

function isZero(counts: IoCounts | NbdCounters): boolean {
  return Object.values(counts).every((value) => value === 0);
}

function zero(counts: IoCounts | NbdCounters): void {
  for (const key of Object.keys(counts)) (counts as unknown as Record<string, number>)[key] = 0;
}
