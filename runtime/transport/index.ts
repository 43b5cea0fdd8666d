/**
 * Transport: RTRS sessions over TCP (../shared/spec/rtrs-README.txt) with RNBD remote block devices
 * on top. The design note for the whole folder; each file has its own.
 *
 * Layers, bottom up:
 *   rtrs-messages.ts   the kernel's message layouts and the 32-bit immediate, byte for byte
 *   rtrs-frame.ts      one TCP frame per RDMA operation (HELLO, CON_REQ/RSP, SEND, SEND_IMM, WRITE,
 *                      WRITE_IMM), optional CRC32C digest, the pre-shared key's challenge
 *   rtrs-link.ts       one connection (the document's QP): frames in, frames out, its own fault domain
 *   rtrs-server*.ts    sessions, paths and chunks on the server; at-most-once IO; heartbeats
 *   rtrs-io-thread*.ts the server's IO connections served by worker threads (one connection per core)
 *   rtrs-client*.ts    a session's paths, permits, policies, failover and reconnect on the client
 *   rtrs-api.ts        the seam RNBD uses: requests of user header + data, link events, errnos
 *   rnbd-*.ts          RNBD: messages, the server over the service's devices, the client device
 *
 * Why TCP frames and not a new protocol: RDMA is not reachable from user space here, so each RDMA
 * operation keeps its meaning and its fields (IMM, chunk address and key, buffer id, offset) and
 * travels as a frame instead of a work request. What RDMA gave for free is added back on purpose:
 * a CRC32C digest per frame (the link CRC is gone and TCP's checksum is 16 bits), and
 * authentication (the document assumes a trusted data centre; over TCP a session proves a
 * pre-shared key, and TLS can wrap every connection).
 *
 * Where the bytes go (what the transport bench measured as the cost, before one event loop per side
 * is): every plain-TCP link reads through one buffer per thread that the runtime fills again on
 * the next read (the adapter's SocketReads: Node's `onread`, on Node and Deno), a large payload
 * copied once, straight into its destination (the server's pooled chunk, the reader's buffer),
 * small frames copied out of it;
 * read answers of 64 KiB and more leave the server straight from the file (sendfile, where the
 * runtime has zero-copy sends), the IO response right behind; what is encoded per request is
 * cut from shared slabs (runtime/net/small-bytes.ts). Receiving through 'data' events had cost
 * 0.5-1.3 CPU s per GiB.
 *
 * State machines: server paths CONNECTING -> CONNECTED -> CLOSING -> CLOSED (rtrs-server.ts);
 * client paths CONNECTING / CONNECTING_ERR / RECONNECTING / CONNECTED / CLOSED / DEAD
 * (rtrs-client-path.ts); server chunks idle -> running -> done (rtrs-server-session.ts).
 *
 * Durability belongs to the devices: RTRS acknowledges a request when the server's user (the RNBD
 * server) has finished it, so a write is as durable as the device's write (FUA and FLUSH are RNBD's
 * to pass on). What RTRS guarantees is delivery: a request is applied at most once per session,
 * even when a failed path makes the client send it again on another.
 */
export { RtrsClient, type RtrsClientOptions, type PathAddress, type PathInfo, type ClientEvent } from './rtrs-client.ts';
export { RtrsServer, type RtrsServerOptions, type ServerSessionInfo } from './rtrs-server.ts';
export { POLICIES, type Policy } from './rtrs-policy.ts';
export { parseHostPort, formatHostPort, isLoopbackHost, type HostPort } from './rtrs-address.ts';
export * from './rtrs-api.ts';
