/**
 * The seam between RTRS (sessions, paths, chunks, keys, failover: runtime/transport/rtrs-*) and its
 * users (RNBD: runtime/transport/rnbd-*; the service). RTRS moves opaque requests, each a user
 * header plus data, exactly as the kernel's rtrs_clt_request() / rdma_ev() callback pair does; RNBD
 * puts its messages (SESS_INFO, OPEN, IO, CLOSE) in the user header and never sees a path.
 *
 * Semantics (both sides):
 * - A request is 'write' (header and data go to a server chunk; nothing comes back but the errno)
 *   or 'read' (the header goes; the server fills `data.length` bytes of the client's buffer, then
 *   answers the errno). RNBD sends its control messages as reads whose data is the response
 *   buffer, like the kernel's rnbd-clt.
 * - `header.length + data.length` (+ the RTRS message trailer) must fit the session's
 *   `maxIoBytes` / `maxHeaderBytes` (from CON_RSP): larger requests are refused with EINVAL before
 *   anything is sent.
 * - A request resolves once the server's IO_RSP arrived with errno 0; a non-zero errno rejects it
 *   with a RemoteError carrying that errno. On a path failure it is re-issued on another connected
 *   path with the same buffer id (chunks belong to the session), and only when no path is left
 *   (or the session closes) does it reject with ENOTCONN. The server applies each buffer id's
 *   request at most once per issue, so a write never lands twice.
 */
import type { FileSpan } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';

export type RtrsDirection = 'read' | 'write';

export interface RtrsRequest {
  readonly direction: RtrsDirection;
  /** The user header (an RNBD message). */
  readonly header: Uint8Array;
  /** 'write': the payload sent; 'read': where the server's bytes land (its length is what is read). */
  readonly data: Uint8Array;
  /**
   * Server side, 'read' only: true when the answer can go out straight from a file (zero copy: a
   * plain TCP link without digest, on a runtime with SocketSend). The handler may then lend the
   * range instead of filling `data` (`span`, from BlockDevice.fileSpan); the server sends it and
   * releases it.
   */
  readonly spanWelcome?: boolean;
  /** Set by the handler instead of filling `data`, only when `spanWelcome`. */
  span?: FileSpan | null;
}

/**
 * A session's events that its user reacts to: 'disconnected' when its last connected path goes
 * (requests wait: paths reconnect), 'reconnected' when one is back (RNBD re-opens its devices),
 * 'closed' when no path will ever connect again (each gave up, or the session closed): final.
 */
export type RtrsLinkEvent = 'disconnected' | 'reconnected' | 'closed';

/** The client side of one RTRS session, as RNBD uses it. */
export interface RtrsClientSession {
  readonly sessionName: string;
  /** From CON_RSP: the largest header + data one request may carry. */
  readonly maxIoBytes: number;
  readonly maxHeaderBytes: number;
  request(request: RtrsRequest): Promise<void>;
  /** Listener for link events; returns the function that removes it. */
  onLinkEvent(listener: (event: RtrsLinkEvent) => void): () => void;
  close(): Promise<void>;
}

/** One client session as the server's user sees it (the RNBD server keys its open devices by it). */
export interface RtrsServerSession {
  readonly sessionName: string;
  /** The session uuid from CON_REQ, 32 lowercase hex digits. */
  readonly sessionUuid: string;
}

/** What the RTRS server hands each request to (the RNBD server). */
export interface RtrsServerHandler {
  /**
   * One request. For 'write', `data` is the payload (a view into the session's chunk, valid until
   * the promise settles); for 'read', `data` is the buffer of the requested length to fill. Resolve
   * to answer errno 0; reject with a BlockError or RemoteError to answer its errno.
   */
  handle(session: RtrsServerSession, request: RtrsRequest): Promise<void>;
  /** The session is gone (every path closed and not re-established): release what it holds. */
  sessionClosed(session: RtrsServerSession): Promise<void>;
}

/** Linux errno numbers carried in IMM (9 bits) and RNBD answers; the BlockError code for each. */
export const ERRNO = { EPERM: 1, ENOENT: 2, EIO: 5, ENXIO: 6, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EFAULT: 14, EBUSY: 16, EEXIST: 17, EINVAL: 22, ENOSPC: 28, EROFS: 30, ERANGE: 34, EPROTO: 71, EOPNOTSUPP: 95, ECONNRESET: 104, ENOTCONN: 107, ETIMEDOUT: 110, ECONNREFUSED: 111, EKEYREJECTED: 129 } as const;

/** An error answered by the remote side (or raised by the transport), with its Linux errno. */
export class RemoteError extends Error {
  override name = 'RemoteError';
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

const BLOCK_CODE_BY_ERRNO = new Map<number, BlockError['code']>([
  [ERRNO.ENOENT, 'ENOENT'], [ERRNO.EIO, 'EIO'], [ERRNO.EBADF, 'EBADF'], [ERRNO.EEXIST, 'EEXIST'], [ERRNO.EINVAL, 'EINVAL'],
  [ERRNO.EROFS, 'EROFS'], [ERRNO.ERANGE, 'ERANGE'], [ERRNO.EOPNOTSUPP, 'ENOTSUP'],
]);
const ERRNO_BY_BLOCK_CODE = new Map<BlockError['code'], number>([...BLOCK_CODE_BY_ERRNO].map(([errno, code]) => [code, errno]));

/** The errno a failed handler answers with: a BlockError's code, a RemoteError's errno, else EIO. */
export function errnoOf(error: unknown): number {
  if (error instanceof RemoteError) return error.errno;
  if (error instanceof BlockError) return ERRNO_BY_BLOCK_CODE.get(error.code) ?? ERRNO.EIO;
  return ERRNO.EIO;
}

/** A remote errno as a BlockError for BlockDevice callers (unknown errnos become EIO). */
export function blockErrorOf(errno: number, message: string, device?: string): BlockError {
  return new BlockError(BLOCK_CODE_BY_ERRNO.get(errno) ?? 'EIO', `${message} (remote errno ${errno})`, device === undefined ? {} : { device });
}
