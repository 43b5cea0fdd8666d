/**
 * The RTRS server (rtrs-srv.c over TCP): listens on one or more addresses, takes connections,
 * finds or creates sessions and paths by the document's rules, and hands each IO request to its
 * user (the RNBD server) through RtrsServerHandler.
 *
 * A connection, from accept:
 *   hello sent --CON_REQ--> [checked: magic, major version, cid < cid_num <= 4096, the key's
 *   challenge] --> belongs to a path --> (connection 0) INFO_REQ --> INFO_RSP: the path is
 *   CONNECTED and heartbeats start. All of it within handshakeTimeoutMs of the accept, else the
 *   connection (before its conn_req) or its path (after) is closed.
 * Session lookup (rtrs_rdma_connect): by session uuid; created only for a first connection, else
 * refused (ENXIO). Path lookup: by path uuid inside the session; a new path is created CONNECTING;
 * a path that exists must be CONNECTING with the same cid_num and no connection yet at that cid,
 * else refused (ECONNRESET) — except a path whose reconnect counter differs: the client has given
 * it up and reconnects it, so the old one is closed now rather than when its heartbeats run out
 * (what the document's recon_cnt is for). INFO_REQ's name must have no '/' or '.' (EINVAL) and no
 * other session may use it (EPERM); a refusal closes the path with one log line.
 * Path states: CONNECTING -> CONNECTED -> CLOSING -> CLOSED; any connection's error or a heartbeat
 * timeout closes the whole path. A session whose last path closed lingers (rtrs-server-session.ts).
 *
 * Security: with a key (`key`), every connection must answer the hello's challenge (HMAC-SHA256 of
 * both nonces and its conn_req) and gets the server's proof back; without one, `listen` refuses any
 * address off loopback. TLS (node:tls) wraps every connection when `tls` is given.
 */
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import { BufferPool } from '../net/buffer-pool.ts';
import { describeError, guarded } from '../net/fault-domain.ts';
import { ERRNO, type RtrsServerHandler } from './rtrs-api.ts';
import {
  AUTH_BYTES, clientAuthValid, type Crc32c, encodeHello, FRAME_FLAG_DIGEST, FRAME_OP, type FrameHeader, NONCE_BYTES, newNonce, serverProof,
} from './rtrs-frame.ts';
import { Heartbeat } from './rtrs-heartbeat.ts';
import { IO_THREADS_SUPPORTED, IoThreads, ThreadLink } from './rtrs-io-threads.ts';
import { ACCEPT_PAUSED, acceptLink, type FrameLink, type RtrsLink } from './rtrs-link.ts';
import {
  CONN_REQ_BYTES, CONN_RSP_NEW_RKEY, type ConnReq, decodeConnReq, decodeInfoReq, DEFAULT_CHUNK_BYTES, DEFAULT_QUEUE_DEPTH,
  encodeConnRsp, encodeInfoRsp, HB_INTERVAL_MS, HB_MISSED_MAX, IMM_TYPE, immType, MAX_CONNECTIONS_PER_PATH, MAX_HEADER_BYTES,
  MAX_QUEUE_DEPTH, memBitsFor, MIN_CHUNK_BYTES, pathNameProblem, RTRS_MAGIC, RTRS_VERSION, RTRS_VERSION_MAJOR, imm,
} from './rtrs-messages.ts';
import { ServerSession, type ServerPathCounters } from './rtrs-server-session.ts';
import { isLoopbackHost } from './rtrs-address.ts';

export interface RtrsServerOptions {
  handler: RtrsServerHandler;
  crc32c: Crc32c;
  /** Pre-shared key: required of every client when set; required to listen off loopback. */
  key?: Uint8Array | null;
  tls?: TlsOptions | null;
  queueDepth?: number;
  chunkBytes?: number;
  heartbeatIntervalMs?: number;
  heartbeatMissedMax?: number;
  /**
   * Rotate every chunk's key after each IO (the kernel's module parameter; default on). A client
   * may ask for it per session when it is off (conn_req); it cannot turn it off.
   */
  alwaysInvalidate?: boolean;
  /** How long a session outlives its last path (its at-most-once state and its user's state). */
  sessionLingerMs?: number;
  /** A connection must send its conn_req within this. */
  handshakeTimeoutMs?: number;
  /**
   * Worker threads serving the paths' IO connections (rtrs-io-threads.ts); 0 (the default): all
   * on this thread. Where the runtime cannot hand connections to threads, everything stays here.
   */
  ioThreads?: number;
  log?: (line: string) => void;
}

/** IO requests from this size up are received straight into a pooled chunk (smaller ones are cheaper gathered). */
const SINK_MIN_BYTES = 16 * 1024;

export type ServerPathState = 'CONNECTING' | 'CONNECTED' | 'CLOSING' | 'CLOSED';

export interface ServerPathInfo {
  pathUuid: string;
  state: ServerPathState;
  connections: number;
  /** Of those, served by IO threads. */
  threadedConnections: number;
  remote: string;
  stats: ServerPathCounters & { curLatencyMs: number };
}

export interface ServerSessionInfo {
  sessionName: string;
  sessionUuid: string;
  /** Keys rotate after every IO in this session. */
  alwaysInvalidate: boolean;
  requestsInFlight: number;
  paths: ServerPathInfo[];
}

/** The most IO threads a server starts (a path has at most cores + 1 connections; more threads than cores only cost). */
export const MAX_IO_THREADS = 64;

/** Where a connection belongs once its conn_req was taken: its session, path, cid and the link that serves it. */
interface PathPlace {
  session: ServerSession;
  path: ServerPath;
  cid: number;
  link: FrameLink;
}

class ServerPath {
  state: ServerPathState = 'CONNECTING';
  readonly links: (FrameLink | null)[];
  readonly counters: ServerPathCounters = { readCount: 0, readBytes: 0, writeCount: 0, writeBytes: 0 };
  heartbeat: Heartbeat | null = null;
  remote = '';

  constructor(
    readonly session: ServerSession,
    readonly pathUuid: string,
    readonly reconnectCount: number,
    connectionCount: number,
  ) {
    this.links = new Array<RtrsLink | null>(connectionCount).fill(null);
  }
}

export class RtrsServer {
  private readonly sessions = new Map<string, ServerSession>();
  private readonly paths = new Map<ServerSession, Map<string, ServerPath>>();
  private readonly listeners: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly pool = new BufferPool();
  private readonly queueDepth: number;
  private readonly chunkBytes: number;
  private readonly log: (line: string) => void;
  private closing = false;
  private threads: IoThreads | null = null;

  constructor(private readonly options: RtrsServerOptions) {
    this.queueDepth = options.queueDepth ?? DEFAULT_QUEUE_DEPTH;
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.log = options.log ?? ((line) => console.error(line));
    if (!Number.isInteger(this.queueDepth) || this.queueDepth < 1 || this.queueDepth > MAX_QUEUE_DEPTH) throw new RangeError(`queueDepth must be 1..${MAX_QUEUE_DEPTH}, got ${this.queueDepth}`);
    const chunk = this.chunkBytes;
    if (!Number.isInteger(chunk) || chunk < MIN_CHUNK_BYTES || (chunk & (chunk - 1)) !== 0 || chunk > 2 ** 24) {
      throw new RangeError(`chunkBytes must be a power of two from ${MIN_CHUNK_BYTES} to 16 MiB, got ${chunk}`);
    }
    if (2 ** memBitsFor(this.queueDepth) < chunk) throw new RangeError(`${this.queueDepth} chunks of ${chunk} bytes do not fit the 28-bit immediate: reduce queueDepth or chunkBytes`);
    const ioThreads = options.ioThreads ?? 0;
    if (!Number.isInteger(ioThreads) || ioThreads < 0 || ioThreads > MAX_IO_THREADS) throw new RangeError(`ioThreads must be 0..${MAX_IO_THREADS}, got ${ioThreads}`);
  }

  /** IO threads actually serving connections (0 where the runtime cannot, or none were asked for). */
  get ioThreadCount(): number {
    return this.threads?.aliveCount ?? 0;
  }

  /** The IO threads (null: none), for what an operator or a test does to one thread (IoThreads.stopThread). */
  get ioThreads(): IoThreads | null {
    return this.threads;
  }

  /** Starts listening; resolves with the bound address ("host:port"). */
  async listen(host: string, port: number): Promise<string> {
    if (!isLoopbackHost(host) && (this.options.key ?? null) === null) {
      throw new Error(`refusing to listen for RTRS on ${host}, off loopback, without a key (give one with --rtrs-key-file)`);
    }
    const ioThreads = this.options.ioThreads ?? 0;
    if (this.threads === null && ioThreads > 0 && IO_THREADS_SUPPORTED) this.threads = new IoThreads(ioThreads, this.log);
    const onSocket = (socket: Socket): void => guarded(() => this.accept(socket), (error) => {
      this.log(`rtrs: setting up a connection failed: ${describeError(error)}`);
      socket.destroy();
    });
    const server = this.options.tls ? createTlsServer(this.options.tls, onSocket) : createTcpServer({ pauseOnConnect: ACCEPT_PAUSED }, onSocket);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.log(`rtrs: listener error: ${error.message}`));
    this.listeners.push(server);
    const address = server.address();
    return typeof address === 'object' && address !== null ? `${host}:${address.port}` : `${host}:${port}`;
  }

  sessionsInfo(): ServerSessionInfo[] {
    return [...this.sessions.values()].map((session) => ({
      sessionName: session.sessionName,
      sessionUuid: session.sessionUuid,
      alwaysInvalidate: session.alwaysInvalidate,
      requestsInFlight: session.requestsInFlight,
      paths: [...(this.paths.get(session)?.values() ?? [])].map((path) => ({
        pathUuid: path.pathUuid,
        state: path.state,
        connections: path.links.filter((link) => link !== null).length,
        threadedConnections: path.links.filter((link) => link instanceof ThreadLink).length,
        remote: path.remote,
        stats: { ...path.counters, curLatencyMs: path.heartbeat?.latencyMs ?? 0 },
      })),
    }));
  }

  async close(): Promise<void> {
    this.closing = true;
    const stopped = this.listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const socket of this.sockets) socket.destroy();
    for (const [session, paths] of this.paths) for (const path of paths.values()) this.closePath(session, path, null);
    await Promise.all([...this.sessions.values()].map((session) => session.close()));
    await this.threads?.stop();
    await Promise.all(stopped);
  }

  private accept(accepted: Socket): void {
    if (this.closing) return void accepted.destroy();
    const link = acceptLink(accepted, this.options.crc32c, this.pool, Boolean(this.options.tls));
    try {
      this.setUp(link);
    } catch (error) {
      link.close(`internal error: ${describeError(error)}`); // the link's socket, which may not be `accepted` (adopted)
      throw error;
    }
  }

  private setUp(link: RtrsLink): void {
    const socket = link.socket;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    const nonce = newNonce();
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    // The handshake, for this connection, lasts until its path is CONNECTED: a conn_req, and then
    // (connection 0) the INFO_REQ once the path's other connections are in. A connection that
    // stops short of that would otherwise hold its path, its session and a socket for ever.
    const handshakeMs = this.options.handshakeTimeoutMs ?? 10_000;
    const timer = setTimeout(() => {
      if (owner === null) link.close('no conn_req in time');
      else if (owner.path.state === 'CONNECTING') this.closePath(owner.session, owner.path, `not connected within ${handshakeMs} ms (connection ${owner.cid} of ${owner.path.links.length})`);
    }, handshakeMs);
    (timer as { unref?: () => void }).unref?.();
    let owner: PathPlace | null = null;
    let refused = false;
    const pathFrame = (place: PathPlace, header: FrameHeader, payload: Uint8Array): void => {
      if (place.path.state === 'CONNECTED') clearTimeout(timer);
      this.onPathFrame(place.session, place.path, place.cid, place.link, header, payload);
    };
    const pathClosed = (place: PathPlace, why: string | null): void => {
      clearTimeout(timer);
      this.closePath(place.session, place.path, why ?? 'connection closed');
    };
    link.start({
      // An IO request's bytes go into a chunk of the pool as they arrive (one copy, no gathering,
      // and the memory is used again for the next request), once the connection is a path's.
      // ServerSession.io gives it back, whatever it makes of the request.
      sinkFor: (header) => (owner !== null && header.op === FRAME_OP.WRITE_IMM && header.lengthBytes >= SINK_MIN_BYTES ? this.pool.take(header.lengthBytes) : null),
      onFrame: (header, payload) => {
        if (owner === null) {
          owner = this.handshake(link, header, payload, nonce, remote);
          if (owner === null) {
            refused = true; // logged and answered
            link.end('handshake refused'); // the refusal's CON_RSP goes out first
          } else if (owner.link instanceof ThreadLink) {
            // An IO thread serves it from here; this link and its socket are done (handOff).
            this.sockets.delete(socket);
            const place = owner;
            owner.link.start({ onFrame: (frameHeader, framePayload) => pathFrame(place, frameHeader, framePayload), onClose: (why) => pathClosed(place, why) });
          }
          return;
        }
        pathFrame(owner, header, payload);
      },
      onClose: (why) => {
        if (owner !== null) pathClosed(owner, why);
        // Garbage before the conn_req (a bad frame, a wrong digest, no conn_req in time): one line too.
        else {
          clearTimeout(timer);
          if (!refused && why !== null && !this.closing) this.log(`rtrs: refused a connection from ${remote}: ${why}`);
        }
      },
    });
    link.send({ op: FRAME_OP.HELLO }, encodeHello({ keyRequired: (this.options.key ?? null) !== null, nonce }));
  }

  private refuse(link: RtrsLink, errno: number, why: string, remote: string): null {
    this.log(`rtrs: refused a connection from ${remote}: ${why}`);
    link.send({ op: FRAME_OP.CON_RSP }, encodeConnRsp({ magic: RTRS_MAGIC, version: RTRS_VERSION, errno, queueDepth: 0, maxIoBytes: 0, maxHeaderBytes: 0, flags: 0 }));
    return null;
  }

  /** CON_REQ: checks it and joins the connection to its path; null when refused (answered already). */
  private handshake(link: RtrsLink, header: FrameHeader, payload: Uint8Array, nonce: Uint8Array, remote: string): PathPlace | null {
    // A client that wants digests sends its conn_req with one: every frame from here on has one,
    // the CON_RSP included, a refusal too (the client would drop one without a digest unread).
    link.digest = (header.flags & FRAME_FLAG_DIGEST) !== 0;
    if (header.op !== FRAME_OP.CON_REQ) return this.refuse(link, ERRNO.ECONNRESET, `expected CON_REQ, got frame op ${header.op}`, remote);
    const req = decodeConnReq(payload);
    if (typeof req === 'string') return this.refuse(link, ERRNO.ECONNRESET, req, remote);
    const problem = connReqProblem(req);
    if (problem !== null) return this.refuse(link, ERRNO.ECONNRESET, problem, remote);
    const key = this.options.key ?? null;
    let clientNonce: Uint8Array | null = null;
    if (key !== null) {
      const auth = payload.subarray(CONN_REQ_BYTES);
      if (auth.length === 0) return this.refuse(link, ERRNO.EKEYREJECTED, 'no key offered, and this server requires one', remote);
      if (!clientAuthValid(key, nonce, payload.subarray(0, CONN_REQ_BYTES), auth)) return this.refuse(link, ERRNO.EKEYREJECTED, 'wrong key', remote);
      clientNonce = auth.subarray(0, NONCE_BYTES);
    } else if (payload.length !== CONN_REQ_BYTES && payload.length !== CONN_REQ_BYTES + AUTH_BYTES) {
      return this.refuse(link, ERRNO.ECONNRESET, `conn_req of ${payload.length} bytes`, remote);
    }

    let session = this.sessions.get(req.sessionUuid);
    if (session === undefined) {
      if (!req.firstConnection) return this.refuse(link, ERRNO.ENXIO, `no session ${req.sessionUuid}, and not a first connection`, remote);
      session = new ServerSession(req.sessionUuid, {
        queueDepth: this.queueDepth, chunkBytes: this.chunkBytes, maxHeaderBytes: MAX_HEADER_BYTES,
        alwaysInvalidate: (this.options.alwaysInvalidate ?? true) || req.askInvalidate === true, memBits: memBitsFor(this.queueDepth), lingerMs: this.options.sessionLingerMs ?? 30_000,
      }, this.options.handler, this.pool, this.log, (gone) => {
        this.sessions.delete(gone.sessionUuid);
        this.paths.delete(gone);
      });
      this.sessions.set(req.sessionUuid, session);
      this.paths.set(session, new Map());
    }
    const paths = this.paths.get(session)!;
    let path = paths.get(req.pathUuid);
    if (path !== undefined && path.reconnectCount !== req.reconnectCount && path.state !== 'CONNECTING') {
      this.log(`rtrs: session ${session.sessionName}: path ${req.pathUuid} reconnects (counter ${path.reconnectCount} -> ${req.reconnectCount}): closing the old one`);
      this.closePath(session, path, 'the client reconnected this path');
      path = undefined;
    }
    if (path !== undefined) {
      if (path.state !== 'CONNECTING') return this.refuse(link, ERRNO.ECONNRESET, `path ${req.pathUuid} is ${path.state}`, remote);
      if (path.links.length !== req.cidCount) return this.refuse(link, ERRNO.ECONNRESET, `cid_num ${req.cidCount}, the path has ${path.links.length}`, remote);
      if (path.links[req.cid] !== null) return this.refuse(link, ERRNO.ECONNRESET, `connection ${req.cid} exists already`, remote);
    } else {
      path = new ServerPath(session, req.pathUuid, req.reconnectCount, req.cidCount);
      path.remote = remote;
      paths.set(req.pathUuid, path);
      session.pathUp();
    }
    link.maxPayloadBytes = this.chunkBytes;
    // An IO connection moves to its IO thread now, before its CON_RSP: the client sends nothing
    // more on it until it has that, so no frame is half read here.
    const moveTo = { maxPayloadBytes: this.chunkBytes, sinkOp: FRAME_OP.WRITE_IMM, crc32c: this.options.crc32c, pool: this.pool };
    const placed: FrameLink = (req.cid > 0 ? this.threads?.takeOver(link, req.cid, moveTo) : null) ?? link;
    path.links[req.cid] = placed;
    const rsp = encodeConnRsp({
      magic: RTRS_MAGIC, version: RTRS_VERSION, errno: 0, queueDepth: this.queueDepth, maxIoBytes: this.chunkBytes - MAX_HEADER_BYTES,
      maxHeaderBytes: MAX_HEADER_BYTES, flags: session.alwaysInvalidate ? CONN_RSP_NEW_RKEY : 0,
    });
    if (key !== null && clientNonce !== null) placed.send({ op: FRAME_OP.CON_RSP }, rsp, serverProof(key, clientNonce, nonce, rsp));
    else placed.send({ op: FRAME_OP.CON_RSP }, rsp);
    return { session, path, cid: req.cid, link: placed };
  }

  private onPathFrame(session: ServerSession, path: ServerPath, cid: number, link: FrameLink, header: FrameHeader, payload: Uint8Array): void {
    // Only an IO request's payload is kept (session.io gives it back); any other frame's goes back
    // now: a large one lies in pooled memory. (A SEND's, INFO_REQ,
    // is neither, and infoReq may keep it.)
    const ioRequest = header.op === FRAME_OP.WRITE_IMM && path.state === 'CONNECTED' && immType(header.imm) === IMM_TYPE.IO_REQ;
    if (!ioRequest && header.op !== FRAME_OP.SEND) this.pool.release(payload);
    if (path.state === 'CLOSING' || path.state === 'CLOSED') return;
    path.heartbeat?.heard();
    if (header.op === FRAME_OP.SEND && cid === 0 && path.state === 'CONNECTING') return this.infoReq(session, path, link, payload);
    if (header.op !== FRAME_OP.WRITE_IMM || path.state !== 'CONNECTED') {
      return this.closePath(session, path, `unexpected ${header.op === FRAME_OP.SEND ? 'SEND' : `op ${header.op}`} frame on connection ${cid} of a ${path.state} path`);
    }
    const type = immType(header.imm);
    if (type === IMM_TYPE.HB_MSG) {
      if (header.lengthBytes !== 0) return this.closePath(session, path, 'a heartbeat with a payload');
      return void path.links[0]?.send({ op: FRAME_OP.WRITE_IMM, imm: imm(IMM_TYPE.HB_ACK, 0) });
    }
    if (type === IMM_TYPE.HB_ACK) return void path.heartbeat?.acked();
    if (type !== IMM_TYPE.IO_REQ) return this.closePath(session, path, `immediate of type ${type} from a client`);
    const problem = session.io(link, header, payload, path.counters);
    if (problem !== null) this.closePath(session, path, problem);
  }

  private infoReq(session: ServerSession, path: ServerPath, link: FrameLink, payload: Uint8Array): void {
    const req = decodeInfoReq(payload);
    if (typeof req === 'string') return this.closePath(session, path, req);
    const problem = pathNameProblem(req.pathName);
    if (problem !== null) return this.closePath(session, path, `EINVAL: ${problem}`);
    if (path.links.some((each) => each === null)) return this.closePath(session, path, 'INFO_REQ before every connection of the path was established');
    const holder = [...this.sessions.values()].find((other) => other !== session && other.sessionName === req.pathName && !other.closed);
    if (holder !== undefined && (this.paths.get(holder)?.size ?? 0) > 0) return this.closePath(session, path, `EPERM: session name ${req.pathName} is in use by another session`);
    if (holder !== undefined) {
      // A lingering session (no path left) of that name: its client is gone and a new one claims
      // the name (a restarted client), so the old one closes now and its user releases what it
      // held before the new session is answered.
      this.log(`rtrs: session ${req.pathName}: a new session claims the name; closing the lingering one`);
      path.state = 'CLOSING';
      void holder.close().then(() => {
        if (path.state !== 'CLOSING') return;
        path.state = 'CONNECTING';
        if (!path.links.every((each) => each?.isOpen === true)) return this.closePath(session, path, 'a connection closed while the name was being freed');
        this.infoReq(session, path, link, payload);
      });
      return;
    }
    session.sessionName = req.pathName;
    path.state = 'CONNECTED';
    path.heartbeat = new Heartbeat(
      { intervalMs: this.options.heartbeatIntervalMs ?? HB_INTERVAL_MS, missedMax: this.options.heartbeatMissedMax ?? HB_MISSED_MAX },
      () => path.links[0]?.send({ op: FRAME_OP.WRITE_IMM, imm: imm(IMM_TYPE.HB_MSG, 0) }),
      (why) => this.closePath(session, path, why),
    );
    path.heartbeat.start();
    link.send({ op: FRAME_OP.SEND }, encodeInfoRsp(session.descriptors()));
  }

  /** Closes every connection of the path; the session lingers when it was the last. */
  private closePath(session: ServerSession, path: ServerPath, why: string | null): void {
    if (path.state === 'CLOSING' || path.state === 'CLOSED') return;
    if (why !== null && path.state === 'CONNECTED' && !this.closing) this.log(`rtrs: session ${session.sessionName}: path ${path.pathUuid} closed: ${why}`);
    else if (why !== null && !this.closing) this.log(`rtrs: session ${session.sessionName || session.sessionUuid}: path ${path.pathUuid} refused: ${why}`);
    path.state = 'CLOSING';
    path.heartbeat?.stop();
    for (const link of path.links) link?.close();
    path.state = 'CLOSED';
    const paths = this.paths.get(session);
    if (paths?.get(path.pathUuid) === path) paths.delete(path.pathUuid);
    if (paths !== undefined && paths.size === 0) session.lastPathGone();
  }
}

/** Why a conn_req cannot be taken (rtrs_rdma_connect's checks), or null. */
export function connReqProblem(req: ConnReq): string | null {
  if (req.magic !== RTRS_MAGIC) return `bad magic 0x${req.magic.toString(16)}`;
  if (req.version >> 8 !== RTRS_VERSION_MAJOR) return `unsupported major version ${req.version >> 8}, expected ${RTRS_VERSION_MAJOR}`;
  if (req.cidCount === 0 || req.cidCount > MAX_CONNECTIONS_PER_PATH) return `cid_num ${req.cidCount} (1..${MAX_CONNECTIONS_PER_PATH})`;
  if (req.cid >= req.cidCount) return `cid ${req.cid} >= cid_num ${req.cidCount}`;
  return null;
}
