/**
 * How a log client reaches its log server: one frame out, replies back in any order (matched by
 * seq by the client). `socketLink` speaks frames over a Unix or TCP stream (the server of
 * server/ulog/); `localLink` hands requests to a UlogHandler in this process (the same server,
 * no socket). A link that goes down tells its client, which treats it like -ESRCH (the server
 * restarted: construct the log again) and makes a new one.
 */
import net from 'node:net';
import { encodeHeader, ULOG_HEADER_BYTES, type UlogHeader } from './ulog-frame.ts';
import type { UlogHandler } from './ulog-handler.ts';
import { UlogReader } from './ulog-reader.ts';

export interface UlogLinkEvents {
  reply(header: UlogHeader, data: Uint8Array): void;
  /** The link went down (once); `why` says how. */
  down(why: string): void;
}

export interface UlogLink {
  send(header: UlogHeader, data: Uint8Array): void;
  close(): void;
}

export type UlogLinkFactory = (events: UlogLinkEvents) => Promise<UlogLink>;

export type UlogAddress = { path: string } | { host: string; port: number };

/** Frames over a stream socket to `address`; rejects when it cannot connect. */
export function socketLink(address: UlogAddress): UlogLinkFactory {
  return (events) => new Promise((resolve, reject) => {
    const socket = 'path' in address ? net.connect(address.path) : net.connect(address.port, address.host);
    socket.setNoDelay?.(true);
    const reader = new UlogReader();
    let up = false;
    let down = false;
    const goDown = (why: string) => {
      if (down) return;
      down = true;
      socket.destroy();
      if (up) events.down(why);
      else reject(new Error(why));
    };
    socket.once('connect', () => {
      up = true;
      resolve({
        send(header, data) {
          if (down) return; // the client resends after its reconnect
          const frame = new Uint8Array(ULOG_HEADER_BYTES + data.length);
          encodeHeader({ ...header, dataBytes: data.length }, frame);
          frame.set(data, ULOG_HEADER_BYTES);
          socket.write(frame);
        },
        close() {
          down = true;
          socket.destroy();
        },
      });
    });
    socket.on('data', (chunk: Uint8Array) => {
      reader.push(chunk);
      for (let frame = reader.next(); frame !== null; frame = reader.next()) {
        if (frame.kind === 'frame') events.reply(frame.header, frame.data);
        else if (frame.kind === 'unframeable') goDown(`the server sent an unframeable reply: ${frame.why}`);
        // a reply with a bad header matches no request: dropped (its request times out and is resent)
      }
    });
    socket.on('error', (error) => goDown(`log server ${'path' in address ? address.path : `${address.host}:${address.port}`}: ${error.message}`));
    socket.on('close', () => goDown('the log server closed the connection'));
  });
}

/** Requests handed to `handler` in this process (no frames, same replies). */
export function localLink(handler: UlogHandler): UlogLinkFactory {
  return async (events) => {
    let closed = false;
    return {
      send(header, data) {
        if (closed) return;
        void handler.handle({ header: { ...header, dataBytes: data.length }, data }).then((reply) => {
          if (closed) return;
          const out = reply.data ?? new Uint8Array(0);
          events.reply({ ...header, error: reply.error, dataBytes: out.length }, out);
        });
      },
      close() {
        closed = true;
      },
    };
  };
}
