/**
 * One path of a client session (rtrs-clt.c's clt_path): `connectionCount` TCP connections to one
 * server address, connection 0 for control and heartbeats, the others for IO.
 *
 * States (the kernel's names):
 *   CONNECTING ──all CON_RSP + INFO_RSP──► CONNECTED ──error, heartbeat timeout──► RECONNECTING
 *   CONNECTING ──failure──► CONNECTING_ERR ──(first connect: the caller gives up)
 *   RECONNECTING ──delay + backoff──► CONNECTING ... ; attempts exhausted ──► DEAD (final)
 *   any ──disconnect()──► CLOSED (stays until reconnect())   any ──remove()──► DEAD
 * Every change goes through `enter`, which tells the session (it re-issues IO, picks paths and
 * raises link events from there). Connecting: connection 0 first (the session is created by a
 * first connection), then the rest in parallel; each reads the hello, sends conn_req (+ the key's
 * proof), checks conn_rsp (+ the server's proof); then INFO_REQ on connection 0, and INFO_RSP's
 * descriptors must add up to queue depth chunks of max_io + max_hdr bytes.
 */
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { ERRNO, RemoteError } from './rtrs-api.ts';
import { formatHostPort, type HostPort } from './rtrs-address.ts';
import {
  clientAuth, type Crc32c, decodeHello, FRAME_OP, type FrameHeader, NONCE_BYTES, serverProofValid, MAC_BYTES,
} from './rtrs-frame.ts';
import { Heartbeat } from './rtrs-heartbeat.ts';
import { type IoThreads, ThreadLink } from './rtrs-io-threads.ts';
import { connectLink, type FrameLink, RtrsLink, type LinkHandlers } from './rtrs-link.ts';
import {
  CONN_RSP_BYTES, CONN_RSP_NEW_RKEY, type ConnRsp, decodeConnRsp, decodeInfoRsp, type Desc, encodeConnReq, encodeInfoReq, IMM_TYPE, imm, immType,
  RTRS_MAGIC, RTRS_VERSION, RTRS_VERSION_MAJOR,
} from './rtrs-messages.ts';

export type ClientPathState = 'CONNECTING' | 'CONNECTING_ERR' | 'RECONNECTING' | 'CONNECTED' | 'CLOSED' | 'DEAD';

export interface ClientPathStats {
  /** "<ok> <failed>" reconnects, as sysfs shows them. */
  reconnects: { ok: number; failed: number };
  readCount: number;
  readBytes: number;
  writeCount: number;
  writeBytes: number;
  inflight: number;
  failoverCount: number;
  curLatencyMs: number;
  state: ClientPathState;
}

export interface PathTiming {
  connectionCount: number;
  heartbeatIntervalMs: number;
  heartbeatMissedMax: number;
  reconnectDelayMs: number;
  reconnectBackoffMs: number;
  /** -1: forever. */
  maxReconnectAttempts: number;
  connectTimeoutMs: number;
}

/** What a path needs from its session. */
export interface PathHost {
  readonly sessionName: string;
  readonly sessionUuid: string;
  readonly key: Uint8Array | null;
  readonly tls: ConnectionOptions | null;
  readonly digest: boolean;
  /** Ask the server to rotate keys after every IO, and refuse a server that will not. */
  readonly alwaysInvalidate: boolean;
  readonly crc32c: Crc32c;
  readonly timing: PathTiming;
  /** Where the path's IO connections are served once connected (null: on this thread). */
  readonly ioThreads: IoThreads | null;
  /** A path finished connecting: the session checks its geometry (a string refuses it). */
  pathConnected(path: ClientPath, rsp: ConnRsp, descs: Desc[]): string | null;
  pathStateChanged(path: ClientPath, from: ClientPathState, why: string | null): void;
  /** An IO frame (IO_RSP, RKEY_RSP + IO_RSP, read data) on one of the path's connections. */
  ioFrame(path: ClientPath, header: FrameHeader, payload: Uint8Array): string | null;
  /** Requests waiting on this path (for the heartbeat's busy rule). */
  inflightOn(path: ClientPath): number;
  /** Where a WRITE frame's payload (read data) goes as it arrives, or null. */
  readTarget(path: ClientPath, header: FrameHeader): Uint8Array | null;
  log(line: string): void;
}

export class ClientPath {
  state: ClientPathState = 'CONNECTING';
  links: FrameLink[] = [];
  reconnectCount = 0;
  /** Requests in flight on this path (the session keeps it). */
  inflight = 0;
  readonly stats = { reconnectsOk: 0, reconnectsFailed: 0, readCount: 0, readBytes: 0, writeCount: 0, writeBytes: 0, failoverCount: 0 };
  private attempts = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private heartbeat: Heartbeat | null = null;
  /** Bumped on every (re)connect and close, so a stale attempt's results are dropped. */
  private epoch = 0;
  private nextLink = 0;

  constructor(
    private readonly host: PathHost,
    readonly name: string,
    readonly dst: HostPort,
    readonly src: string | null,
    readonly pathUuid: string,
  ) {}

  get address(): string {
    return formatHostPort(this.dst);
  }

  get latencyMs(): number {
    return this.heartbeat?.latencyMs ?? 0;
  }

  snapshot(inflight: number): ClientPathStats {
    const s = this.stats;
    return {
      reconnects: { ok: s.reconnectsOk, failed: s.reconnectsFailed }, readCount: s.readCount, readBytes: s.readBytes, writeCount: s.writeCount,
      writeBytes: s.writeBytes, inflight, failoverCount: s.failoverCount, curLatencyMs: this.latencyMs, state: this.state,
    };
  }

  resetStats(): void {
    Object.assign(this.stats, { reconnectsOk: 0, reconnectsFailed: 0, readCount: 0, readBytes: 0, writeCount: 0, writeBytes: 0, failoverCount: 0 });
    if (this.heartbeat !== null) this.heartbeat.latencyMs = 0;
  }

  /** Of the path's connections, how many IO threads serve. */
  get threadedConnections(): number {
    return this.links.filter((link) => link instanceof ThreadLink).length;
  }

  /** The connection for the next IO: connections 1.. in turn (0 carries control and heartbeats), 0 when it is the only one. */
  ioLink(): FrameLink {
    if (this.links.length === 1) return this.links[0]!;
    this.nextLink = this.nextLink % (this.links.length - 1) + 1;
    return this.links[this.nextLink]!;
  }

  /** First connect: rejects when it fails (the path is then CONNECTING_ERR). */
  async connect(): Promise<void> {
    const epoch = ++this.epoch;
    this.enter('CONNECTING', null);
    try {
      await this.establish(epoch);
    } catch (error) {
      if (epoch === this.epoch) {
        this.closeLinks();
        this.enter('CONNECTING_ERR', (error as Error).message);
      }
      throw error;
    }
  }

  /** The path failed (or the user asked): close it and reconnect in the background. */
  fail(why: string): void {
    if (this.state === 'DEAD' || this.state === 'CLOSED' || this.state === 'RECONNECTING') return;
    this.epoch += 1;
    this.closeLinks();
    if (this.host.timing.maxReconnectAttempts === 0) return this.enter('DEAD', why);
    this.enter('RECONNECTING', why);
    this.scheduleReconnect(0);
  }

  /** sysfs reconnect: drop the connections now and connect again at once. */
  reconnectNow(): void {
    if (this.state === 'DEAD') return;
    this.epoch += 1;
    this.closeLinks();
    this.attempts = 0;
    this.enter('RECONNECTING', 'reconnect asked');
    this.scheduleReconnect(0, true);
  }

  /** sysfs disconnect: close and stay closed until reconnectNow(). */
  disconnect(): void {
    if (this.state === 'DEAD' || this.state === 'CLOSED') return;
    this.epoch += 1;
    this.closeLinks();
    this.enter('CLOSED', 'disconnect asked');
  }

  /** remove_path / session close: final. */
  remove(why: string): void {
    if (this.state === 'DEAD') return;
    this.epoch += 1;
    this.closeLinks();
    this.enter('DEAD', why);
  }

  private enter(next: ClientPathState, why: string | null): void {
    const from = this.state;
    this.state = next;
    if (from !== next) this.host.pathStateChanged(this, from, why);
  }

  private closeLinks(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.heartbeat?.stop();
    const links = this.links;
    this.links = [];
    // Sparse while connecting: connection 2 may be in before connection 1 (openLink fills its own slot).
    for (const link of links) link?.close();
  }

  private scheduleReconnect(attempt: number, now = false): void {
    const { reconnectDelayMs, reconnectBackoffMs } = this.host.timing;
    const delayMs = now ? 0 : reconnectDelayMs + attempt * reconnectBackoffMs;
    const epoch = this.epoch;
    this.timer = setTimeout(() => void this.reconnectAttempt(epoch), delayMs);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private async reconnectAttempt(epoch: number): Promise<void> {
    this.timer = null;
    if (epoch !== this.epoch || this.state !== 'RECONNECTING') return;
    this.reconnectCount = (this.reconnectCount + 1) & 0xffff;
    this.attempts += 1;
    const attemptEpoch = ++this.epoch;
    try {
      await this.establish(attemptEpoch);
      this.stats.reconnectsOk += 1;
      this.attempts = 0;
    } catch (error) {
      if (attemptEpoch !== this.epoch) return;
      this.stats.reconnectsFailed += 1;
      this.closeLinks();
      const max = this.host.timing.maxReconnectAttempts;
      if (max >= 0 && this.attempts >= max) return this.enter('DEAD', `gave up after ${this.attempts} reconnect attempts: ${(error as Error).message}`);
      this.scheduleReconnect(this.attempts);
    }
  }

  /** Opens every connection, INFO_REQ/INFO_RSP, then CONNECTED. Rejects on any failure. */
  private async establish(epoch: number): Promise<void> {
    const count = this.host.timing.connectionCount;
    const links: FrameLink[] = [];
    this.links = links;
    const first = await this.openLink(0, count, epoch);
    links[0] = first.link;
    const rest = await Promise.all(Array.from({ length: count - 1 }, (_, i) => this.openLink(i + 1, count, epoch)));
    for (const [i, opened] of rest.entries()) links[i + 1] = opened.link;
    const control = first.link;
    const rsp = first.rsp;
    for (const other of rest) {
      if (other.rsp.queueDepth !== rsp.queueDepth || other.rsp.maxIoBytes !== rsp.maxIoBytes || other.rsp.maxHeaderBytes !== rsp.maxHeaderBytes) {
        throw new RemoteError(ERRNO.EPROTO, 'connections of one path got different conn_rsp values');
      }
    }
    if (epoch !== this.epoch) throw new RemoteError(ERRNO.ECONNRESET, 'path closed while connecting');
    const chunkBytes = rsp.maxIoBytes + rsp.maxHeaderBytes;
    // The IO connections move to their IO threads now: the server sends nothing on them until
    // answers to IO, which starts once the path is CONNECTED.
    for (let cid = 1; cid < count; cid++) links[cid] = this.toThread(rest[cid - 1]!.link, cid, chunkBytes);
    const descs = await this.infoExchange(control, rsp, epoch);
    const problem = this.host.pathConnected(this, rsp, descs);
    if (problem !== null) throw new RemoteError(ERRNO.EPROTO, problem);
    for (const link of links) this.serve(link, chunkBytes);
    this.heartbeat = new Heartbeat(
      { intervalMs: this.host.timing.heartbeatIntervalMs, missedMax: this.host.timing.heartbeatMissedMax, failFastWhenBusy: true },
      () => links[0]!.send({ op: FRAME_OP.WRITE_IMM, imm: imm(IMM_TYPE.HB_MSG, 0) }),
      (why) => this.fail(why),
      () => this.host.inflightOn(this) > 0,
    );
    this.heartbeat.start();
    this.enter('CONNECTED', null);
  }

  /** An IO connection, after its CON_RSP: served by an IO thread when the session has them and it can move; else as it is. */
  private toThread(link: RtrsLink, cid: number, chunkBytes: number): FrameLink {
    const moved = this.host.ioThreads?.takeOver(link, cid, { maxPayloadBytes: chunkBytes, sinkOp: FRAME_OP.WRITE, crc32c: this.host.crc32c, pool: null }) ?? null;
    if (moved === null) return link;
    this.handlers.delete(link);
    moved.start({
      onFrame: (header, payload) => this.handlers.get(moved)?.onFrame(header, payload),
      onClose: (why) => {
        const handler = this.handlers.get(moved);
        this.handlers.delete(moved);
        handler?.onClose(why);
      },
    });
    // Until serve(): a frame is a protocol error, and a close ends the connecting (connection 0,
    // waiting for INFO_RSP, closes and the attempt fails as for any connection).
    this.handlers.set(moved, {
      onFrame: () => moved.close('a frame before the path was connected'),
      onClose: (why) => this.links[0]?.close(`IO connection ${cid}: ${why ?? 'closed'}`),
    });
    return moved;
  }

  /** After the handshake: frames of a connected path. */
  private serve(link: FrameLink, chunkBytes: number): void {
    if (link instanceof RtrsLink) link.maxPayloadBytes = chunkBytes;
    this.handlers.set(link, {
      sinkFor: (header) => (header.op === FRAME_OP.WRITE ? this.host.readTarget(this, header) : null),
      onFrame: (header, payload) => {
        this.heartbeat?.heard();
        if (header.op === FRAME_OP.WRITE_IMM && header.lengthBytes === 0) {
          const type = immType(header.imm);
          if (type === IMM_TYPE.HB_MSG) return void this.links[0]?.send({ op: FRAME_OP.WRITE_IMM, imm: imm(IMM_TYPE.HB_ACK, 0) });
          if (type === IMM_TYPE.HB_ACK) return void this.heartbeat?.acked();
        }
        const problem = this.host.ioFrame(this, header, payload);
        if (problem !== null) this.fail(`protocol error: ${problem}`);
      },
      onClose: (why) => {
        if (this.links.includes(link)) this.fail(why ?? 'connection closed');
      },
    });
  }

  private readonly handlers = new Map<FrameLink, LinkHandlers>();

  /** One connection through CON_REQ / CON_RSP. */
  private openLink(cid: number, count: number, epoch: number): Promise<{ link: RtrsLink; rsp: ConnRsp }> {
    return new Promise((resolve, reject) => {
      const { host, port } = this.dst;
      const options = { host, port, ...(this.src !== null ? { localAddress: this.src } : {}) };
      const link = this.host.tls !== null ? new RtrsLink(connectTls({ ...this.host.tls, ...options }), this.host.crc32c) : connectLink(options, this.host.crc32c);
      let done = false;
      let clientNonce: Uint8Array | null = null;
      let serverNonce: Uint8Array | null = null;
      const timer = setTimeout(() => settle(new RemoteError(ERRNO.ETIMEDOUT, `connection ${cid} to ${this.address}: no answer in ${this.host.timing.connectTimeoutMs} ms`)), this.host.timing.connectTimeoutMs);
      const settle = (error: Error | null, rsp?: ConnRsp): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (error !== null || epoch !== this.epoch) {
          link.close();
          reject(error ?? new RemoteError(ERRNO.ECONNRESET, 'path closed while connecting'));
          return;
        }
        this.links[cid] = link;
        resolve({ link, rsp: rsp! });
      };
      const handlers = {
        onFrame: (header: FrameHeader, payload: Uint8Array): void => {
          if (done) return;
          if (header.op === FRAME_OP.HELLO && serverNonce === null) {
            const hello = decodeHello(payload);
            if (typeof hello === 'string') return settle(new RemoteError(ERRNO.EPROTO, hello));
            serverNonce = hello.nonce;
            // Frames from conn_req on carry the digest when asked; the server answers in kind.
            link.digest = this.host.digest;
            const key = this.host.key;
            if (hello.keyRequired && key === null) return settle(new RemoteError(ERRNO.EKEYREJECTED, `${this.address} requires a key and the session has none`));
            const req = encodeConnReq({
              magic: RTRS_MAGIC, version: RTRS_VERSION, cid, cidCount: count, reconnectCount: this.reconnectCount,
              pathUuid: this.pathUuid, sessionUuid: this.host.sessionUuid, firstConnection: cid === 0,
              askInvalidate: this.host.alwaysInvalidate,
            });
            if (key !== null) {
              const auth = clientAuth(key, serverNonce, req);
              clientNonce = auth.subarray(0, NONCE_BYTES);
              link.send({ op: FRAME_OP.CON_REQ }, req, auth);
            } else link.send({ op: FRAME_OP.CON_REQ }, req);
            return;
          }
          if (header.op !== FRAME_OP.CON_RSP || serverNonce === null) return settle(new RemoteError(ERRNO.EPROTO, `unexpected frame op ${header.op} while connecting`));
          const rsp = decodeConnRsp(payload);
          if (typeof rsp === 'string') return settle(new RemoteError(ERRNO.EPROTO, rsp));
          if (rsp.magic !== RTRS_MAGIC || rsp.version >> 8 !== RTRS_VERSION_MAJOR) return settle(new RemoteError(ERRNO.EPROTO, 'conn_rsp with a bad magic or major version'));
          if (rsp.errno !== 0) return settle(new RemoteError(rsp.errno, `${this.address} refused connection ${cid} (errno ${rsp.errno})`));
          if (this.host.key !== null && clientNonce !== null) {
            const proof = payload.subarray(CONN_RSP_BYTES);
            if (proof.length !== MAC_BYTES || !serverProofValid(this.host.key, clientNonce, serverNonce, payload.subarray(0, CONN_RSP_BYTES), proof)) {
              return settle(new RemoteError(ERRNO.EKEYREJECTED, `${this.address} could not prove it holds the key`));
            }
          }
          if (this.host.alwaysInvalidate && (rsp.flags & CONN_RSP_NEW_RKEY) === 0) return settle(new RemoteError(ERRNO.EPROTO, `${this.address} does not rotate keys (always_invalidate), which this session requires`));
          if (rsp.queueDepth < 1 || rsp.maxIoBytes < 4096 || rsp.maxHeaderBytes < 64) return settle(new RemoteError(ERRNO.EPROTO, 'conn_rsp with an unusable geometry'));
          settle(null, rsp);
        },
        onClose: (why: string | null): void => settle(new RemoteError(ERRNO.ECONNREFUSED, `connection ${cid} to ${this.address}: ${why ?? 'closed'}`)),
      };
      this.handlers.set(link, handlers);
      link.start({
        sinkFor: (header) => this.handlers.get(link)?.sinkFor?.(header) ?? null,
        onFrame: (header, payload) => this.handlers.get(link)?.onFrame(header, payload),
        onClose: (why) => {
          const handler = this.handlers.get(link);
          this.handlers.delete(link);
          handler?.onClose(why);
        },
      });
    });
  }

  /** INFO_REQ on connection 0; resolves with INFO_RSP's descriptors. */
  private infoExchange(link: RtrsLink, rsp: ConnRsp, epoch: number): Promise<Desc[]> {
    return new Promise((resolve, reject) => {
      link.maxPayloadBytes = 8 + 16 * rsp.queueDepth;
      const timer = setTimeout(() => link.close(`no INFO_RSP in ${this.host.timing.connectTimeoutMs} ms`), this.host.timing.connectTimeoutMs);
      this.handlers.set(link, {
        onFrame: (header, payload) => {
          clearTimeout(timer);
          if (header.op !== FRAME_OP.SEND) return link.close(`expected INFO_RSP, got frame op ${header.op}`);
          const descs = decodeInfoRsp(payload);
          if (typeof descs === 'string') return link.close(descs);
          if (epoch !== this.epoch) return reject(new RemoteError(ERRNO.ECONNRESET, 'path closed while connecting'));
          resolve(descs);
        },
        onClose: (why) => {
          clearTimeout(timer);
          reject(new RemoteError(ERRNO.ECONNRESET, `${this.address}: ${why ?? 'closed'} before INFO_RSP`));
        },
      });
      link.send({ op: FRAME_OP.SEND }, encodeInfoReq(this.host.sessionName));
    });
  }
}
