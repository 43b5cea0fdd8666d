/**
 * What serves dm-log-userspace requests: the log server (runtime/dirty-log/log-server.ts) in this
 * process, reached straight or through a socket (server/ulog/). Requests reach it checked once, at
 * the boundary: the header decoded, the payload of the right shape for its type.
 */
import type { UlogHeader } from './ulog-frame.ts';

export interface UlogRequest {
  header: UlogHeader;
  data: Uint8Array;
}

export interface UlogReply {
  /** 0 or a negative errno (ulog-errno.ts). */
  error: number;
  data?: Uint8Array;
}

export interface UlogHandler {
  /** Never rejects: a failure is a reply with its errno. */
  handle(request: UlogRequest): Promise<UlogReply>;
}
