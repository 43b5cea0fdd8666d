/**
 * The client side of one RTRS session (rtrs-clt.c): several paths to one server, the server's
 * chunks as buffer ids ("permits"), and requests moved over whichever path the policy picks.
 *
 * A request takes a free buffer id (or waits for one: at most queue depth in flight), gets a
 * fresh seq for that buffer, and goes out on a path:
 *   write: one WRITE_IMM frame at the chunk's (addr, key) carrying data + user header +
 *          rdma_write, with the IO_REQ immediate naming the buffer and where the message sits;
 *   read:  the same with user header + rdma_read, whose one descriptor names our buffer (an
 *          address made of buffer id and seq, and a fresh key); the server's WRITE of the data
 *          must name exactly that, or the path is closed as broken.
 * IO_RSP (or RKEY_RSP + IO_RSP: the chunk's new key) completes it: errno 0 resolves, else it
 * rejects with a RemoteError. The buffer id goes back to the pool then.
 *
 * Failover. When a path fails, every request in flight on it is re-issued, same buffer id and seq,
 * on the path the policy picks next (the server answers a write it already applied without
 * applying it again: rtrs-server-session.ts); `failoverCount` counts them on the failed path.
 * With no connected path, requests wait while some path is still (re)connecting and fail with
 * ENOTCONN once none is (all DEAD or CLOSED) or the session closes.
 *
 * Link events: 'disconnected' when the last connected path goes, 'reconnected' when one comes back
 * after that (RNBD re-opens its devices then).
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { ConnectionOptions } from 'node:tls';
import { BlockError } from '../errors.ts';
import { ERRNO, RemoteError, type RtrsClientSession, type RtrsLinkEvent, type RtrsRequest } from './rtrs-api.ts';
import { type HostPort } from './rtrs-address.ts';
import { IO_THREADS_SUPPORTED, IoThreads } from './rtrs-io-threads.ts';
import { ClientPath, type ClientPathState, type ClientPathStats, type PathTiming } from './rtrs-client-path.ts';
import { type Crc32c, FRAME_OP, SEQ_ISSUE_BITS, type FrameHeader } from './rtrs-frame.ts';
import {
  type ConnRsp, decodeRkeyRsp, type Desc, encodeRdmaRead, encodeRdmaWrite, HB_INTERVAL_MS, HB_MISSED_MAX, IMM_TYPE, immPayload, immType,
  ioReqImm, ioRspOf, MAX_PATHS, memBitsFor, pathNameProblem, RDMA_WRITE_BYTES, rdmaReadBytes,
} from './rtrs-messages.ts';
import { randomKey } from './rtrs-keys.ts';
import { choosePath, type Policy } from './rtrs-policy.ts';
import { smallBytes } from '../net/small-bytes.ts';

export interface PathAddress {
  dst: HostPort;
  /** What the path is called in stats and events; default `path<N>` in order of creation. */
  name?: string;
  /** Local address to connect from (a source IP on this machine). */
  src?: string | null;
}

export interface RtrsClientOptions {
  sessionName: string;
  paths: readonly PathAddress[];
  crc32c: Crc32c;
  policy?: Policy;
  key?: Uint8Array | null;
  tls?: ConnectionOptions | null;
  /** CRC32C over every frame (RtrsLink). */
  digest?: boolean;
  /** Ask the server to rotate chunk keys after every IO (it may anyway), and refuse one that will not. */
  alwaysInvalidate?: boolean;
  /** Connections per path: as the kernel, the client's cores + 1 (connection 0 for control and heartbeats). */
  connectionsPerPath?: number;
  heartbeatIntervalMs?: number;
  heartbeatMissedMax?: number;
  reconnectDelayMs?: number;
  reconnectBackoffMs?: number;
  maxReconnectAttempts?: number;
  connectTimeoutMs?: number;
  /**
   * IO threads: each path's IO connections (all but connection 0) served by worker threads the
   * process's sessions share (rtrs-io-threads.ts; the first session to ask sets how many); 0
   * (default): all on this thread. Where the runtime cannot hand connections to threads, all stay
   * here.
   */
  ioThreads?: number;
  log?: (line: string) => void;
}

export interface PathInfo {
  name: string;
  dst: string;
  src: string | null;
  pathUuid: string;
  /** Of the path's connections, how many IO threads serve (ioThreads). */
  threadedConnections: number;
  stats: ClientPathStats;
}

export type ClientEvent =
  | { type: 'path-state'; path: string; from: ClientPathState; to: ClientPathState; why: string | null }
  | { type: 'failover'; path: string; requests: number }
  | { type: 'link'; event: RtrsLinkEvent };

interface Pending {
  readonly request: RtrsRequest;
  bufferId: number;
  /** The frame's seq: the issue number (low 24 bits) and the attempt (high 8), +1 at every re-issue. */
  seq: number;
  readKey: number;
  path: ClientPath | null;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface Geometry {
  queueDepth: number;
  maxIoBytes: number;
  maxHeaderBytes: number;
  memBits: number;
  chunks: { addr: bigint; key: number }[];
}

const SEQ_BITS = SEQ_ISSUE_BITS;
const SEQ_MASK = (1 << SEQ_BITS) - 1;

/** The largest rdma_read this client sends (one descriptor) and the write trailer, both inside the header room. */
const TRAILER_BYTES = rdmaReadBytes(1);

export class RtrsClient implements RtrsClientSession {
  readonly sessionUuid: string;
  readonly paths: ClientPath[] = [];
  readonly key: Uint8Array | null;
  readonly tls: ConnectionOptions | null;
  readonly digest: boolean;
  readonly alwaysInvalidate: boolean;
  readonly crc32c: Crc32c;
  readonly timing: PathTiming;
  readonly policy: Policy;
  readonly ioThreads: IoThreads | null;
  private geometry: Geometry | null = null;
  private readonly free: number[] = [];
  private readonly permitWaiters: ((bufferId: number | null) => void)[] = [];
  private readonly inflight = new Map<number, Pending>();
  private readonly seqs: number[] = [];
  private readonly waiting: Pending[] = [];
  private readonly linkListeners = new Set<(event: RtrsLinkEvent) => void>();
  private readonly eventListeners = new Set<(event: ClientEvent) => void>();
  private turn = 0;
  /** The paths CONNECTED now, in order of connection (kept by pathStateChanged; read per request). */
  private readonly connected: ClientPath[] = [];
  private wasDisconnected = false;
  private closed = false;
  /** 'closed' was raised: no path will connect again. */
  private gone = false;
  private pathSerial = 0;
  readonly log: (line: string) => void;

  private constructor(readonly sessionName: string, options: RtrsClientOptions) {
    this.sessionUuid = randomUUID().replaceAll('-', '');
    this.key = options.key ?? null;
    this.tls = options.tls ?? null;
    this.digest = options.digest ?? false;
    this.alwaysInvalidate = options.alwaysInvalidate ?? false;
    this.crc32c = options.crc32c;
    this.policy = options.policy ?? 'min-inflight';
    this.log = options.log ?? ((line) => console.error(line));
    const threads = options.ioThreads ?? 0;
    this.ioThreads = threads > 0 && IO_THREADS_SUPPORTED ? IoThreads.forClients(threads, this.log) : null;
    this.timing = {
      connectionCount: options.connectionsPerPath ?? defaultConnections(),
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? HB_INTERVAL_MS,
      heartbeatMissedMax: options.heartbeatMissedMax ?? HB_MISSED_MAX,
      reconnectDelayMs: options.reconnectDelayMs ?? 1000,
      reconnectBackoffMs: options.reconnectBackoffMs ?? 1000,
      maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    };
  }

  /** Opens a session: resolves once every path is connected; if one cannot be, all are closed and it rejects. */
  static async open(options: RtrsClientOptions): Promise<RtrsClient> {
    const problem = pathNameProblem(options.sessionName);
    if (problem !== null) throw new BlockError('EINVAL', `sessionName: ${problem}`);
    if (options.paths.length === 0 || options.paths.length > MAX_PATHS) throw new BlockError('EINVAL', `paths: 1..${MAX_PATHS} paths, got ${options.paths.length}`);
    const connections = options.connectionsPerPath ?? defaultConnections();
    if (!Number.isInteger(connections) || connections < 1 || connections > 64) throw new BlockError('EINVAL', `connectionsPerPath: 1..64, got ${connections}`);
    const threads = options.ioThreads ?? 0;
    if (!Number.isInteger(threads) || threads < 0 || threads > 64) throw new BlockError('EINVAL', `ioThreads: 0..64, got ${threads}`);
    const client = new RtrsClient(options.sessionName, options);
    const paths = options.paths.map((address) => client.newPath(address));
    try {
      await Promise.all(paths.map((path) => path.connect()));
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  get maxIoBytes(): number {
    return this.geometry?.maxIoBytes ?? 0;
  }

  get maxHeaderBytes(): number {
    return (this.geometry?.maxHeaderBytes ?? TRAILER_BYTES) - TRAILER_BYTES;
  }

  get queueDepth(): number {
    return this.geometry?.queueDepth ?? 0;
  }

  onLinkEvent(listener: (event: RtrsLinkEvent) => void): () => void {
    this.linkListeners.add(listener);
    return () => this.linkListeners.delete(listener);
  }

  onEvent(listener: (event: ClientEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  pathsInfo(): PathInfo[] {
    return this.paths.map((path) => ({
      name: path.name, dst: path.address, src: path.src, pathUuid: path.pathUuid, threadedConnections: path.threadedConnections, stats: path.snapshot(this.inflightOn(path)),
    }));
  }

  resetStats(): void {
    for (const path of this.paths) path.resetStats();
  }

  findPath(name: string): ClientPath {
    const path = this.paths.find((each) => each.name === name);
    if (path === undefined) throw new BlockError('ENOENT', `no path ${name} in session ${this.sessionName}`);
    return path;
  }

  /** add_path: connects one more path (rejects, and keeps nothing, when it cannot). */
  async addPath(address: PathAddress): Promise<ClientPath> {
    if (this.closed) throw new RemoteError(ERRNO.ENOTCONN, `session ${this.sessionName} is closed`);
    if (this.paths.length >= MAX_PATHS) throw new BlockError('EINVAL', `a session has at most ${MAX_PATHS} paths`);
    const path = this.newPath(address);
    try {
      await path.connect();
    } catch (error) {
      this.dropPath(path);
      throw error;
    }
    return path;
  }

  /** remove_path: the path's in-flight IO fails over first; the last path cannot be removed. */
  removePath(name: string): void {
    const path = this.findPath(name);
    if (this.paths.length === 1) throw new BlockError('EINVAL', `path ${name} is the session's last: delete the session instead`);
    path.remove('removed');
    this.dropPath(path);
  }

  request(request: RtrsRequest): Promise<void> {
    if (this.closed) return Promise.reject(new RemoteError(ERRNO.ENOTCONN, `session ${this.sessionName} is closed`));
    const geometry = this.geometry!;
    if (request.header.length > this.maxHeaderBytes) return Promise.reject(new RemoteError(ERRNO.EINVAL, `user header of ${request.header.length} bytes, at most ${this.maxHeaderBytes}`));
    if (request.data.length > geometry.maxIoBytes) return Promise.reject(new RemoteError(ERRNO.EINVAL, `request of ${request.data.length} bytes, at most ${geometry.maxIoBytes}`));
    return new Promise<void>((resolve, reject) => {
      const pending: Pending = { request, bufferId: -1, seq: 0, readKey: 0, path: null, resolve, reject };
      const bufferId = this.free.pop();
      if (bufferId !== undefined) return this.start(pending, bufferId);
      this.permitWaiters.push((granted) => {
        if (granted === null) reject(new RemoteError(ERRNO.ENOTCONN, `session ${this.sessionName} closed`));
        else this.start(pending, granted);
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const path of this.paths) path.remove('session closed');
    if (!this.gone) {
      this.gone = true;
      this.raise('closed');
    }
    const error = (): RemoteError => new RemoteError(ERRNO.ENOTCONN, `session ${this.sessionName} closed`);
    for (const pending of [...this.inflight.values(), ...this.waiting]) pending.reject(error());
    this.inflight.clear();
    this.waiting.length = 0;
    for (const waiter of this.permitWaiters.splice(0)) waiter(null);
  }

  // ---- PathHost ----

  inflightOn(path: ClientPath): number {
    return path.inflight;
  }

  /** The buffer a WRITE of read data goes straight into: the read it names, in flight on `path`; else null. */
  readTarget(path: ClientPath, header: FrameHeader): Uint8Array | null {
    const pending = this.inflight.get(Number(header.addr >> 32n));
    if (pending === undefined || pending.path !== path || pending.request.direction !== 'read') return null;
    if (header.addr !== readAddr(pending.bufferId, pending.seq) || header.key !== pending.readKey || header.lengthBytes !== pending.request.data.length) return null;
    return pending.request.data;
  }

  pathConnected(path: ClientPath, rsp: ConnRsp, descs: Desc[]): string | null {
    const chunkBytes = rsp.maxIoBytes + rsp.maxHeaderBytes;
    const chunks: { addr: bigint; key: number }[] = [];
    for (const desc of descs) {
      if (desc.lengthBytes === 0 || desc.lengthBytes % chunkBytes !== 0) return `INFO_RSP descriptor of ${desc.lengthBytes} bytes is no whole number of ${chunkBytes}-byte chunks`;
      for (let at = 0; at < desc.lengthBytes; at += chunkBytes) chunks.push({ addr: desc.addr + BigInt(at), key: desc.key });
    }
    if (chunks.length !== rsp.queueDepth) return `INFO_RSP describes ${chunks.length} chunks, conn_rsp said ${rsp.queueDepth}`;
    if (2 ** memBitsFor(rsp.queueDepth) < chunkBytes) return `${rsp.queueDepth} chunks of ${chunkBytes} bytes do not fit the immediate`;
    const known = this.geometry;
    if (known === null) {
      this.geometry = { queueDepth: rsp.queueDepth, maxIoBytes: rsp.maxIoBytes, maxHeaderBytes: rsp.maxHeaderBytes, memBits: memBitsFor(rsp.queueDepth), chunks };
      for (let i = rsp.queueDepth - 1; i >= 0; i--) {
        this.free.push(i);
        this.seqs.push(0);
      }
      return null;
    }
    if (known.queueDepth !== rsp.queueDepth || known.maxIoBytes !== rsp.maxIoBytes || known.maxHeaderBytes !== rsp.maxHeaderBytes) {
      return `path ${path.name} reached a server with another geometry (queue depth ${rsp.queueDepth}, max io ${rsp.maxIoBytes})`;
    }
    const sameSession = chunks.every((chunk, i) => chunk.addr === known.chunks[i]!.addr);
    if (!sameSession) {
      // The server let our session go (no path for longer than its linger time) and made a new
      // one: with no other path connected, take its chunks; in-flight requests re-issue there.
      if (this.connected.length > 0) return `path ${path.name} reached a server with other chunks than the session's other paths`;
      this.log(`rtrs: session ${this.sessionName}: the server holds a new session for us; requests in flight are sent again`);
      known.chunks = chunks;
      return null;
    }
    // The same session's chunks: our keys stay. They are newer than INFO_RSP's whenever an IO on
    // another path rotated a key after the server sent it, and never older (a key rotated by an IO
    // whose RKEY_RSP was lost comes back when that IO is re-issued and answered).
    return null;
  }

  pathStateChanged(path: ClientPath, from: ClientPathState, why: string | null): void {
    if (why !== null && path.state !== 'CONNECTED') this.log(`rtrs: session ${this.sessionName}: path ${path.name} (${path.address}) ${from} -> ${path.state}: ${why}`);
    this.emit({ type: 'path-state', path: path.name, from, to: path.state, why });
    if (from === 'CONNECTED') this.connected.splice(this.connected.indexOf(path), 1);
    if (path.state === 'CONNECTED') this.connected.push(path);
    if (from === 'CONNECTED' && path.state !== 'CONNECTED') this.failOver(path);
    if (this.connected.length === 0 && from === 'CONNECTED') {
      this.wasDisconnected = true;
      this.raise('disconnected');
    }
    if (path.state === 'CONNECTED') {
      if (this.wasDisconnected) {
        this.wasDisconnected = false;
        this.raise('reconnected');
      }
      for (const pending of this.waiting.splice(0)) this.dispatch(pending);
    }
    if (this.connected.length === 0 && !this.anyPathMayConnect() && !this.closed) {
      if (!this.gone) {
        this.gone = true;
        this.raise('closed');
      }
      for (const pending of this.waiting.splice(0)) this.finish(pending, new RemoteError(ERRNO.ENOTCONN, `session ${this.sessionName}: no path left`));
    }
  }

  ioFrame(path: ClientPath, header: FrameHeader, payload: Uint8Array): string | null {
    if (header.op === FRAME_OP.WRITE) return this.readData(path, header, payload);
    const type = immType(header.imm);
    if ((header.op !== FRAME_OP.WRITE_IMM && header.op !== FRAME_OP.SEND_IMM) || (type !== IMM_TYPE.IO_RSP && type !== IMM_TYPE.IO_RSP_W_INV)) {
      return `unexpected frame op ${header.op} with an immediate of type ${type}`;
    }
    const { messageId, errno } = ioRspOf(immPayload(header.imm));
    const geometry = this.geometry!;
    if (messageId >= geometry.queueDepth) return `IO_RSP for buffer ${messageId}, the session has ${geometry.queueDepth}`;
    if (header.op === FRAME_OP.SEND_IMM) {
      const rkey = decodeRkeyRsp(payload);
      if (typeof rkey === 'string') return rkey;
      if (rkey.bufferId !== messageId) return `RKEY_RSP for buffer ${rkey.bufferId} with the IO_RSP of ${messageId}`;
      geometry.chunks[messageId]!.key = rkey.rkey;
    } else if (header.lengthBytes !== 0) return 'IO_RSP with a payload';
    const pending = this.inflight.get(messageId);
    if (pending === undefined || pending.path !== path) return null; // answered on another path already, or refused before issue
    this.finish(pending, errno === 0 ? null : new RemoteError(errno, `${pending.request.direction} failed on the server (errno ${errno})`));
    return null;
  }

  // ---- inside ----

  private newPath(address: PathAddress): ClientPath {
    const serial = this.pathSerial++;
    const name = address.name ?? `path${serial}`;
    if (this.paths.some((path) => path.name === name)) throw new BlockError('EEXIST', `session ${this.sessionName} has a path ${name} already`);
    const path = new ClientPath(this, name, address.dst, address.src ?? null, randomUUID().replaceAll('-', ''));
    this.paths.push(path);
    return path;
  }

  private dropPath(path: ClientPath): void {
    const at = this.paths.indexOf(path);
    if (at >= 0) this.paths.splice(at, 1);
  }

  /**
   * Some path is or may become connected: CLOSED counts (a path the user disconnected may be
   * reconnected), DEAD does not. While this holds, requests wait rather than fail: a request
   * failed here without the server's answer would leave its chunk in doubt (still running there,
   * or done with a key we never learned), and the next request on that chunk refused.
   */
  private anyPathMayConnect(): boolean {
    return this.paths.some((path) => path.state !== 'DEAD' && path.state !== 'CONNECTING_ERR');
  }

  private start(pending: Pending, bufferId: number): void {
    if (this.closed) return pending.reject(new RemoteError(ERRNO.ENOTCONN, `session ${this.sessionName} closed`));
    pending.bufferId = bufferId;
    pending.seq = this.seqs[bufferId] = (this.seqs[bufferId]! + 1) & SEQ_MASK;
    if (pending.request.direction === 'read') pending.readKey = randomKey();
    this.inflight.set(bufferId, pending);
    this.dispatch(pending);
  }

  private dispatch(pending: Pending): void {
    const connected = this.connected;
    if (connected.length === 0) {
      this.assign(pending, null);
      if (this.anyPathMayConnect() && !this.closed) this.waiting.push(pending);
      else this.finish(pending, new RemoteError(ERRNO.ENOTCONN, `session ${this.sessionName}: no path left`));
      return;
    }
    const path = connected.length === 1 ? connected[0]! : connected[choosePath(this.policy, connected, this.turn++)]!;
    this.assign(pending, path);
    this.issue(path, pending);
  }

  private issue(path: ClientPath, pending: Pending): void {
    const geometry = this.geometry!;
    const { request, bufferId } = pending;
    const chunk = geometry.chunks[bufferId]!;
    const link = path.ioLink();
    if (request.direction === 'write') {
      const trailer = smallBytes(request.header.length + RDMA_WRITE_BYTES);
      trailer.set(request.header, 0);
      encodeRdmaWrite(request.header.length, trailer.subarray(request.header.length));
      const offsetBytes = request.data.length + request.header.length;
      path.stats.writeCount += 1;
      path.stats.writeBytes += request.data.length;
      link.send({ op: FRAME_OP.WRITE_IMM, imm: ioReqImm(bufferId, offsetBytes, geometry.memBits), addr: chunk.addr, key: chunk.key, seq: pending.seq }, request.data, trailer);
      return;
    }
    const descs = request.data.length === 0 ? [] : [{ addr: readAddr(bufferId, pending.seq), key: pending.readKey, lengthBytes: request.data.length }];
    const trailer = smallBytes(request.header.length + rdmaReadBytes(descs.length));
    trailer.set(request.header, 0);
    encodeRdmaRead({ userHeaderBytes: request.header.length, flags: 0, descs }, trailer.subarray(request.header.length));
    path.stats.readCount += 1;
    path.stats.readBytes += request.data.length;
    link.send({ op: FRAME_OP.WRITE_IMM, imm: ioReqImm(bufferId, request.header.length, geometry.memBits), addr: chunk.addr, key: chunk.key, seq: pending.seq }, trailer);
  }

  /**
   * The server's RDMA write of read data: it must name a read in flight on this path exactly. It
   * normally landed in the read's buffer as it arrived (readTarget); else it is copied here.
   */
  private readData(path: ClientPath, header: FrameHeader, payload: Uint8Array): string | null {
    const bufferId = Number(header.addr >> 32n);
    const pending = this.inflight.get(bufferId);
    if (pending === undefined || pending.path !== path || pending.request.direction !== 'read') return `read data for buffer ${bufferId}, which has no read in flight on this path`;
    if (header.addr !== readAddr(bufferId, pending.seq) || header.key !== pending.readKey) return `read data with a wrong address or key for buffer ${bufferId}`;
    if (payload.length !== pending.request.data.length) return `read data of ${payload.length} bytes for a buffer of ${pending.request.data.length}`;
    if (payload !== pending.request.data) pending.request.data.set(payload);
    return null;
  }

  /** Moves `pending` to `path` (or to none), keeping each path's in-flight count. */
  private assign(pending: Pending, path: ClientPath | null): void {
    if (pending.path !== null) pending.path.inflight -= 1;
    pending.path = path;
    if (path !== null) path.inflight += 1;
  }

  private finish(pending: Pending, error: Error | null): void {
    this.assign(pending, null);
    if (pending.bufferId >= 0 && this.inflight.get(pending.bufferId) === pending) {
      this.inflight.delete(pending.bufferId);
      const waiter = this.permitWaiters.shift();
      if (waiter !== undefined) waiter(pending.bufferId);
      else this.free.push(pending.bufferId);
    }
    if (error === null) pending.resolve();
    else pending.reject(error);
  }

  /** Re-issues everything that was in flight on `failed`. */
  private failOver(failed: ClientPath): void {
    const moved = [...this.inflight.values()].filter((pending) => pending.path === failed);
    if (moved.length === 0) return;
    failed.stats.failoverCount += moved.length;
    this.emit({ type: 'failover', path: failed.name, requests: moved.length });
    for (const pending of moved) {
      // A new attempt: copies of the old one that reach the server late are dropped there.
      pending.seq = ((((pending.seq >>> SEQ_BITS) + 1) & 0xff) << SEQ_BITS | (pending.seq & SEQ_MASK)) >>> 0;
      this.dispatch(pending);
    }
  }

  private raise(event: RtrsLinkEvent): void {
    this.emit({ type: 'link', event });
    for (const listener of [...this.linkListeners]) {
      try {
        listener(event);
      } catch (error) {
        this.log(`rtrs: a link event listener failed: ${(error as Error).message}`);
      }
    }
  }

  private emit(event: ClientEvent): void {
    for (const listener of [...this.eventListeners]) {
      try {
        listener(event);
      } catch (error) {
        this.log(`rtrs: an event listener failed: ${(error as Error).message}`);
      }
    }
  }
}

/** The kernel's count: one connection per core, plus connection 0. */
function defaultConnections(): number {
  return Math.min(64, availableParallelism() + 1);
}

/** The address a read's buffer is named by: buffer id above, seq below. */
function readAddr(bufferId: number, seq: number): bigint {
  return (BigInt(bufferId) << 32n) | BigInt(seq >>> 0);
}
