/**
 * An RTRS server IO thread (the worker side of rtrs-io-threads.ts, which says who does what):
 * serves the sockets of the connections it is given, frames in, frames out, and nothing about
 * sessions. Every frame read goes to the server's thread; a large WRITE_IMM's payload is received
 * into a buffer of its own and transferred (no copy). What it sends was encoded there.
 *
 * Faults: a connection's bad frame or socket error closes that connection (RtrsLink: its fault
 * domain) and the server's thread is told; a message that cannot be handled closes the
 * connection it names.
 */
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { loadAdapter } from '../adapter/index.ts';
import type { FileSpan } from '../devices/block-device.ts';
import { BufferPool } from '../net/buffer-pool.ts';
import { FileFrame } from '../net/file-frame.ts';
import { describeError, guarded } from '../net/fault-domain.ts';
import { defaultKernels } from '../wasm/kernels.ts';
import type { FrameHeader } from './rtrs-frame.ts';
import { type FromThread, ownsItsBuffer, type ToThread } from './rtrs-io-threads.ts';
import { attachLink, type RtrsLink } from './rtrs-link.ts';

/** As a server's own connections (rtrs-server.ts): payloads from this size up are received into memory of their own. */
const SINK_MIN_BYTES = 16 * 1024;

const port = parentPort;
if (port === null) throw new Error('rtrs-io-thread.ts runs as a worker thread');
const { threadSockets } = await loadAdapter();
if (threadSockets === null) throw new Error('this runtime cannot serve connections on other threads');
const kernels = await defaultKernels();
const crc32c = (bytes: Uint8Array, seed = 0): number => kernels.crc32c(bytes, seed);
const pool = new BufferPool();
const links = new Map<number, RtrsLink>();

const post = (message: FromThread, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

/** A payload the server's thread may keep: memory of its own, moved there. */
function postFrame(id: number, header: FrameHeader, payload: Uint8Array): void {
  const own = ownsItsBuffer(payload) && !pool.owns(payload) ? payload : new Uint8Array(payload);
  post({ t: 'frame', id, header, payload: own }, own.byteLength > 0 ? [own.buffer as ArrayBuffer] : []);
}

function attach(message: Extract<ToThread, { t: 'attach' }>): void {
  const { id } = message;
  // Bytes the server's thread read and did not parse are parsed first, once started.
  const link = attachLink(message.fd, message.unread, crc32c, pool, threadSockets!.attach);
  link.digest = message.digest;
  link.maxPayloadBytes = message.maxPayloadBytes;
  links.set(id, link);
  link.start({
    sinkFor: (header) => (header.op === message.sinkOp && header.lengthBytes >= SINK_MIN_BYTES ? new Uint8Array(header.lengthBytes) : null),
    onFrame: (header, payload) => postFrame(id, header, payload),
    onClose: (why) => {
      links.delete(id);
      post({ t: 'closed', id, why });
    },
  });
}

/** The device's range as this thread reads it (for the part a socket would not take at once): the descriptor is the process's. */
function spanOf(message: Extract<ToThread, { t: 'span' }>): FileSpan {
  let held = true;
  return {
    fd: message.fd,
    fileOffsetBytes: message.fileOffsetBytes,
    lengthBytes: message.lengthBytes,
    read: (spanOffsetBytes, target) => new Promise<void>((resolve, reject) => {
      fs.read(message.fd, target, 0, target.length, message.fileOffsetBytes + spanOffsetBytes, (error, bytesRead) => {
        if (error) reject(error);
        else if (bytesRead !== target.length) reject(new Error(`short read of a file span: ${bytesRead} of ${target.length} bytes`));
        else resolve();
      });
    }),
    release: () => {
      if (!held) return;
      held = false;
      // After this turn: a queue whose send broke releases the span first and tells `cut` next,
      // and the server's thread must hear of the failure before it forgets the span.
      queueMicrotask(() => post({ t: 'spanReleased', spanId: message.spanId }));
    },
  };
}

function handle(message: ToThread): void {
  switch (message.t) {
    case 'attach':
      return attach(message);
    case 'send':
      return links.get(message.id)?.sendEncoded(message.bytes);
    case 'span': {
      const span = spanOf(message);
      const link = links.get(message.id);
      if (link === undefined) return span.release();
      const { spanId, standIn } = message;
      const failed = (): Uint8Array => (post({ t: 'spanFailed', spanId, afterSomeSent: false }), standIn);
      return link.sendEncoded(new FileFrame(message.header, span, failed, message.trailer, () => post({ t: 'spanFailed', spanId, afterSomeSent: true })));
    }
    case 'close':
      return links.get(message.id)?.close(message.why);
  }
}

port.on('message', (message: ToThread) => guarded(() => handle(message), (error) => {
  post({ t: 'log', line: `rtrs: IO thread: ${describeError(error)}` });
  const link = links.get(message.id);
  if (link !== undefined) link.close(`internal error: ${describeError(error)}`);
  else if (message.t === 'attach') fs.close(message.fd, () => {}); // never became a link: nobody else closes it
  else post({ t: 'closed', id: message.id, why: `internal error: ${describeError(error)}` });
}));
