/**
 * NBD threads: connections to file exports served whole by worker threads, so the socket work
 * of several connections (nbdcopy and qemu open several when multi-conn is offered) runs on
 * several cores, where one event loop moving every byte is the limit.
 *
 * Who does what. The server's thread accepts every connection and negotiates it (options, TLS,
 * the export's lookup) exactly as without threads. When GO or EXPORT_NAME picks an export that is
 * a plain file (NbdExport.threadable: no engine beneath, nothing but the file's bytes) on a socket
 * without TLS, the connection's replies so far go out, then its descriptor (dup; the old socket
 * closed without a FIN, nothing unread lost) and the bytes read past GO go to thread
 * (id mod N). The thread (thread.ts) opens the file itself (one descriptor per file per thread)
 * and serves the rest of the connection there: the same NbdConnection and ExportSession, zero
 * copy included, with no message per request. The server's thread keeps a stand-in for it
 * (connections(), events, shutdown).
 *
 * Why whole connections, not sockets only: RTRS's IO threads (runtime/transport/rtrs-io-threads.ts)
 * keep every request on the owning thread and move frames across, a message each way per request;
 * on this 2-core VM that measured 0.34x one thread. Here a request never crosses threads. The
 * price is what a thread may serve: a file, whose every effect is in the kernel (the page cache)
 * or in shared memory, so nothing of the service has to live in two threads:
 *   - writes and discards count in the file's data-plane version through shared memory
 *     (WriteGeneration.over), so an ETag never matches across a write a thread did, and an HTTP
 *     transfer is cut by it as by any other;
 *   - I/O counters (the export's and the server's) come back as deltas, at most COUNTS_EVERY_MS
 *     late and exact once the connection has closed;
 *   - multi-conn stays truthful: FLUSH is fdatasync, which makes durable every write the kernel
 *     has for the file, through whichever descriptor of whichever thread: a write is in the page
 *     cache before its reply, so a FLUSH on any connection covers every write answered on any;
 *   - an export with connected clients cannot be deleted (the stand-ins count as connected), so a
 *     thread's file never outlives its export.
 * Engine devices (clones, remote, arrays, mirrors) stay on the server's thread: their state is
 * theirs alone.
 *
 * Runtimes: Node (ThreadSockets). Bun cannot make a socket from a descriptor in a worker and
 * Deno's node:net takes none: there `threads` is ignored and every connection stays on the
 * server's thread. A thread that dies closes its connections (their clients see the hang-up);
 * new connections then stay on the server's thread.
 */
import type { Socket } from 'node:net';
import type { Worker } from 'node:worker_threads';
import type { ThreadSockets } from '../../runtime/adapter/types.ts';
import { describeError, guarded } from '../../runtime/net/fault-domain.ts';
import type { Agreement } from './negotiation.ts';
import type { IoCounts, NbdCounters, NbdEvent, ThreadableFile } from './types.ts';

/** A thread sends its connections' counts at most this long after they changed. */
export const COUNTS_EVERY_MS = 50;

export interface ThreadFile {
  path: string;
  readOnly: boolean;
  logicalBlockBytes: number;
  writeCounts: SharedArrayBuffer | null;
}

export type ToNbdThread =
  | {
    t: 'attach'; id: number; fd: number; unread: Uint8Array; remote: string; connectedAtMs: number;
    exportName: string; readOnly: boolean; structuredReplies: boolean; extendedHeaders: boolean; metaContexts: string[]; file: ThreadFile;
  }
  | { t: 'shutdown'; id: number; graceMs: number };

export type FromNbdThread =
  | { t: 'counts'; id: number; nbd: NbdCounters; io: IoCounts }
  | { t: 'protocol-error'; id: number; message: string }
  | { t: 'closed'; id: number }
  | { t: 'log'; line: string };

interface Moved {
  thread: NbdThread;
  remote: string;
  file: ThreadableFile;
  onClose: () => void;
}

export interface NbdThreadsHost {
  readonly counters: NbdCounters;
  emit(event: NbdEvent): void;
  log(line: string): void;
}

class NbdThread {
  dead = false;
  private readonly ids = new Set<number>();

  constructor(readonly index: number, private readonly worker: Worker, private readonly owner: NbdThreads) {
    worker.on('message', (message: FromNbdThread) => guarded(() => owner.receive(message), (error) => owner.host.log(`nbd: thread ${index}: ${describeError(error)}`)));
    worker.on('error', (error) => this.die(`failed: ${describeError(error)}`));
    worker.on('exit', (code) => this.die(`exited (${code})`));
    worker.unref(); // after the listeners: adding one refs the port again
  }

  /**
   * A connection is served here: the process stays up while any is (the server's thread holds no
   * handle of a moved connection, and a shutdown waits for this thread's answer).
   */
  add(id: number): void {
    this.ids.add(id);
    if (this.ids.size === 1) this.worker.ref();
  }

  remove(id: number): void {
    if (this.ids.delete(id) && this.ids.size === 0) this.worker.unref();
  }

  post(message: ToNbdThread, transfer: ArrayBuffer[] = []): void {
    if (!this.dead) this.worker.postMessage(message, transfer);
  }

  die(why: string, quiet = false): void {
    if (this.dead) return;
    this.dead = true;
    if (!quiet) this.owner.host.log(`nbd: thread ${this.index} ${why}: its connections close; new ones stay on the server's thread`);
    for (const id of [...this.ids]) this.owner.receive({ t: 'closed', id });
  }

  async stop(): Promise<void> {
    this.die('stopped', true);
    await this.worker.terminate();
  }
}

export class NbdThreads {
  private readonly threads: NbdThread[] = [];
  private readonly moved = new Map<number, Moved>();

  constructor(count: number, private readonly sockets: ThreadSockets, readonly host: NbdThreadsHost) {
    const moduleUrl = new URL(`./thread.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url);
    for (let index = 0; index < count; index++) this.threads.push(new NbdThread(index, sockets.startThread(moduleUrl), this));
  }

  /** Whether a connection that agreed on this would move (a threadable export, a thread alive). */
  takes(agreement: Agreement): boolean {
    const file = agreement.exported.threadable;
    // A writable file's writes must count in its version from the thread: shared memory or stay.
    if (file === undefined || (!file.readOnly && !agreement.exported.readOnly && file.writeCounts === null)) return false;
    return this.threads.some((thread) => !thread.dead);
  }

  /**
   * Moves the connection on `socket` (its replies all out) to a thread: false when it cannot (the
   * socket still holds bytes, no thread is alive), and then the socket is as it was. `onClose` runs
   * once the thread's connection has closed.
   */
  take(id: number, remote: string, socket: Socket, agreement: Agreement, unread: Uint8Array, onClose: () => void): boolean {
    const file = agreement.exported.threadable;
    const alive = this.threads.filter((thread) => !thread.dead);
    if (file === undefined || alive.length === 0) return false;
    const thread = alive[id % alive.length]!;
    const fd = this.sockets.detach(socket);
    if (fd < 0) return false;
    thread.add(id);
    this.moved.set(id, { thread, remote, file, onClose });
    const copy = unread.length > 0 ? unread.slice() : new Uint8Array(0);
    thread.post({
      t: 'attach', id, fd, unread: copy, remote, connectedAtMs: Date.now(),
      exportName: agreement.exported.name, readOnly: agreement.exported.readOnly,
      structuredReplies: agreement.structuredReplies, extendedHeaders: agreement.extendedHeaders,
      metaContexts: agreement.metaContexts.map((context) => context.name),
      file: { path: file.path, readOnly: file.readOnly, logicalBlockBytes: file.logicalBlockBytes, writeCounts: file.writeCounts },
    }, copy.length > 0 ? [copy.buffer as ArrayBuffer] : []);
    return true;
  }

  /** Server shutdown: the thread's connection answers what is in flight for up to `graceMs`, then ends. */
  shutdown(id: number, graceMs: number): void {
    this.moved.get(id)?.thread.post({ t: 'shutdown', id, graceMs });
  }

  /** A message from a thread (or a dead thread's connections closing). */
  receive(message: FromNbdThread): void {
    switch (message.t) {
      case 'counts': {
        const moved = this.moved.get(message.id);
        addCounts(this.host.counters, message.nbd);
        moved?.file.addIo(message.io);
        return;
      }
      case 'protocol-error': {
        const moved = this.moved.get(message.id);
        if (moved !== undefined) this.host.emit({ type: 'protocol-error', connectionId: message.id, remote: moved.remote, message: message.message });
        return;
      }
      case 'closed': {
        const moved = this.moved.get(message.id);
        if (moved === undefined) return;
        this.moved.delete(message.id);
        moved.thread.remove(message.id);
        moved.onClose();
        return;
      }
      case 'log':
        return this.host.log(message.line);
    }
  }

  /** Stops thread `index` as if it had died (tests). */
  async stopThread(index: number): Promise<void> {
    await this.threads[index]?.stop();
  }

  async stop(): Promise<void> {
    await Promise.all(this.threads.map((thread) => thread.stop()));
  }
}

/** Adds each count of `delta` into `into` (counters of numbers only). */
export function addCounts<T extends object>(into: T, delta: Readonly<T>): void {
  for (const key of Object.keys(delta) as (keyof T)[]) (into[key] as number) += delta[key] as number;
}
