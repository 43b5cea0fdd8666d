/**
 * A hand-driven RTRS client for tests that need to say things RtrsClient never says (a stale key,
 * another session's chunk, a conn_req without the key's proof): one RtrsLink over a plain TCP
 * socket, every frame built with the codecs and every frame received queued for the test to read.
 * It is a test client, not a model of the server: the server under test answers it.
 *
 *   const raw = await RawRtrs.connect(address, { crc32c });    // hello read
 *   const rsp = await raw.handshake({ key });                   // CON_REQ -> CON_RSP (+ proof)
 *   const descs = await raw.info('name');                       // INFO_REQ -> INFO_RSP
 *   raw.write({ bufferId, key, seq, data, header });            // IO_REQ, as RtrsClient sends it
 *   const reply = await raw.response();                         // the IO_RSP (+ RKEY_RSP)
 *
 * Heartbeats from the server are answered as they come and never queued.
 */
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import {
  clientAuth, type Crc32c, decodeHello, FRAME_OP, type FrameHeader, type Hello, MAC_BYTES, NONCE_BYTES, serverProofValid,
} from '../../runtime/transport/rtrs-frame.ts';
import { RtrsLink } from '../../runtime/transport/rtrs-link.ts';
import {
  CONN_RSP_BYTES, type ConnReq, type ConnRsp, decodeConnRsp, decodeInfoRsp, decodeRkeyRsp, type Desc, encodeConnReq, encodeInfoReq, encodeRdmaRead,
  encodeRdmaWrite, imm, IMM_TYPE, immPayload, immType, ioReqImm, ioRspOf, memBitsFor, RDMA_WRITE_BYTES, rdmaReadBytes, RTRS_MAGIC, RTRS_VERSION,
} from '../../runtime/transport/rtrs-messages.ts';

export interface Frame {
  header: FrameHeader;
  payload: Uint8Array;
}

export interface IoResponse {
  bufferId: number;
  errno: number;
  /** The chunk's new key when the server rotates keys (RKEY_RSP), else null. */
  newKey: number | null;
  /** Read data that came before the response (the server's WRITE), if any. */
  data: Uint8Array | null;
}

export async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
}

export class RawRtrs {
  readonly frames: Frame[] = [];
  /** undefined while open; the link's reason once closed (null: we closed it). */
  closedWhy: string | null | undefined = undefined;
  hello: Hello | null = null;
  sessionUuid = randomUUID().replaceAll('-', '');
  pathUuid = randomUUID().replaceAll('-', '');
  queueDepth = 0;
  memBits = 0;
  chunks: Desc[] = [];
  private waiter: (() => void) | null = null;

  private constructor(readonly link: RtrsLink) {
    link.start({
      onFrame: (header, payload) => {
        // Heartbeats are answered here, as RtrsClient does, so an idle test session stays up.
        if (header.op === FRAME_OP.WRITE_IMM && header.lengthBytes === 0 && immType(header.imm) === IMM_TYPE.HB_MSG) {
          this.link.send({ op: FRAME_OP.WRITE_IMM, imm: imm(IMM_TYPE.HB_ACK, 0) });
          return;
        }
        this.frames.push({ header, payload: new Uint8Array(payload) }); // a copy, and a plain Uint8Array (not a Buffer)
        this.wake();
      },
      onClose: (why) => {
        this.closedWhy = why;
        this.wake();
      },
    });
  }

  /** Connects and waits for the server's hello. */
  static async connect(address: string, crc32c: Crc32c, timeoutMs = 5000): Promise<RawRtrs> {
    const socket: Socket = connect(splitAddress(address));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const raw = new RawRtrs(new RtrsLink(socket, crc32c));
    const first = await raw.next(timeoutMs);
    if (first.header.op !== FRAME_OP.HELLO) throw new Error(`expected HELLO, got op ${first.header.op}`);
    const hello = decodeHello(first.payload);
    if (typeof hello === 'string') throw new Error(hello);
    raw.hello = hello;
    return raw;
  }

  get isOpen(): boolean {
    return this.closedWhy === undefined;
  }

  /** The next frame received (waiting up to `timeoutMs`); rejects once the link closed with none queued. */
  async next(timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.frames.shift();
      if (frame !== undefined) return frame;
      if (!this.isOpen) throw new Error(`link closed: ${this.closedWhy}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Resolves once the link has closed (rejects after `timeoutMs`). */
  async closed(timeoutMs = 5000): Promise<string | null> {
    await until(() => !this.isOpen, 'the link to close', timeoutMs);
    return this.closedWhy ?? null;
  }

  /** The conn_req this client sends, with `overrides`. */
  connReq(overrides: Partial<ConnReq> = {}): Uint8Array {
    return encodeConnReq({
      magic: RTRS_MAGIC, version: RTRS_VERSION, cid: 0, cidCount: 1, reconnectCount: 0, pathUuid: this.pathUuid, sessionUuid: this.sessionUuid,
      firstConnection: true, ...overrides,
    });
  }

  /**
   * CON_REQ (with the key's auth block when `key` is given and `auth` not false), then the CON_RSP.
   * With a key the server's proof is checked. Turns the digest on first when asked.
   */
  async handshake(options: { key?: Uint8Array | null; digest?: boolean; req?: Partial<ConnReq>; auth?: boolean } = {}): Promise<ConnRsp> {
    this.link.digest = options.digest ?? false;
    const req = this.connReq(options.req);
    const key = options.key ?? null;
    let clientNonce: Uint8Array | null = null;
    if (key !== null && options.auth !== false) {
      const auth = clientAuth(key, this.hello!.nonce, req);
      clientNonce = auth.subarray(0, NONCE_BYTES);
      this.link.send({ op: FRAME_OP.CON_REQ }, req, auth);
    } else this.link.send({ op: FRAME_OP.CON_REQ }, req);
    const frame = await this.next();
    if (frame.header.op !== FRAME_OP.CON_RSP) throw new Error(`expected CON_RSP, got op ${frame.header.op}`);
    const rsp = decodeConnRsp(frame.payload);
    if (typeof rsp === 'string') throw new Error(rsp);
    if (rsp.errno === 0 && key !== null && clientNonce !== null) {
      const proof = frame.payload.subarray(CONN_RSP_BYTES);
      if (proof.length !== MAC_BYTES || !serverProofValid(key, clientNonce, this.hello!.nonce, frame.payload.subarray(0, CONN_RSP_BYTES), proof)) {
        throw new Error('the server did not prove the key');
      }
    }
    if (rsp.errno === 0) {
      this.queueDepth = rsp.queueDepth;
      this.memBits = memBitsFor(rsp.queueDepth);
      this.link.maxPayloadBytes = rsp.maxIoBytes + rsp.maxHeaderBytes;
    }
    return rsp;
  }

  /** INFO_REQ on this (connection 0) link; the chunks from INFO_RSP. */
  async info(sessionName: string): Promise<Desc[]> {
    this.link.send({ op: FRAME_OP.SEND }, encodeInfoReq(sessionName));
    const frame = await this.next();
    if (frame.header.op !== FRAME_OP.SEND) throw new Error(`expected INFO_RSP, got op ${frame.header.op}`);
    const descs = decodeInfoRsp(frame.payload);
    if (typeof descs === 'string') throw new Error(descs);
    this.chunks = descs;
    return descs;
  }

  /** A whole single-connection path: handshake and INFO exchange. */
  static async session(address: string, crc32c: Crc32c, sessionName: string, options: { key?: Uint8Array | null; digest?: boolean } = {}): Promise<RawRtrs> {
    const raw = await RawRtrs.connect(address, crc32c);
    const rsp = await raw.handshake(options);
    if (rsp.errno !== 0) throw new Error(`conn_rsp errno ${rsp.errno}`);
    await raw.info(sessionName);
    return raw;
  }

  /** A write request as RtrsClient sends it: data + user header + rdma_write in chunk `bufferId`. */
  write(fields: { bufferId: number; key: number; seq: number; data: Uint8Array; header: Uint8Array; addr?: bigint }): void {
    const trailer = new Uint8Array(fields.header.length + RDMA_WRITE_BYTES);
    trailer.set(fields.header);
    encodeRdmaWrite(fields.header.length, trailer.subarray(fields.header.length));
    this.link.send({
      op: FRAME_OP.WRITE_IMM, imm: ioReqImm(fields.bufferId, fields.data.length + fields.header.length, this.memBits),
      addr: fields.addr ?? this.chunks[fields.bufferId]!.addr, key: fields.key, seq: fields.seq,
    }, fields.data, trailer);
  }

  /** A read request: user header + rdma_read with one descriptor naming (readAddr, readKey, lengthBytes). */
  read(fields: { bufferId: number; key: number; seq: number; header: Uint8Array; lengthBytes: number; readAddr?: bigint; readKey?: number; addr?: bigint }): void {
    const descs = fields.lengthBytes === 0 ? [] : [{ addr: fields.readAddr ?? 0x1000n, key: fields.readKey ?? 0x5eed, lengthBytes: fields.lengthBytes }];
    const trailer = new Uint8Array(fields.header.length + rdmaReadBytes(descs.length));
    trailer.set(fields.header);
    encodeRdmaRead({ userHeaderBytes: fields.header.length, flags: 0, descs }, trailer.subarray(fields.header.length));
    this.link.send({
      op: FRAME_OP.WRITE_IMM, imm: ioReqImm(fields.bufferId, fields.header.length, this.memBits), addr: fields.addr ?? this.chunks[fields.bufferId]!.addr,
      key: fields.key, seq: fields.seq,
    }, trailer);
  }

  /** The next IO response, skipping heartbeats (answered) and gathering read data before it. */
  async response(timeoutMs = 5000): Promise<IoResponse> {
    let data: Uint8Array | null = null;
    for (;;) {
      const { header, payload } = await this.next(timeoutMs);
      const type = immType(header.imm);
      if (header.op === FRAME_OP.WRITE_IMM && type === IMM_TYPE.HB_ACK) continue;
      if (header.op === FRAME_OP.WRITE) {
        data = payload;
        continue;
      }
      if (type !== IMM_TYPE.IO_RSP && type !== IMM_TYPE.IO_RSP_W_INV) throw new Error(`unexpected frame op ${header.op} imm 0x${header.imm.toString(16)}`);
      const { messageId, errno } = ioRspOf(immPayload(header.imm));
      let newKey: number | null = null;
      if (header.op === FRAME_OP.SEND_IMM) {
        const rkey = decodeRkeyRsp(payload);
        if (typeof rkey === 'string') throw new Error(rkey);
        if (rkey.bufferId !== messageId) throw new Error(`RKEY_RSP for ${rkey.bufferId} with IO_RSP for ${messageId}`);
        newKey = rkey.rkey;
      }
      return { bufferId: messageId, errno, newKey, data };
    }
  }

  close(): void {
    this.link.close();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }
}
