/**
 * Splits a byte stream into dm-log-userspace frames (one 160-byte header plus `data_size` bytes;
 * ulog-frame.ts), for the log server and its client alike.
 *
 * Two kinds of bad input, told apart because only one of them leaves the stream readable:
 *  - a frame whose header we can still measure (a known version, data_size within the maximum)
 *    but whose contents are wrong (unknown type, uuid without NUL, luid past 2^53): it is read
 *    whole and handed on as `refused` with the header bytes, so the server answers it with an
 *    error and goes on with the next frame;
 *  - an unframeable stream (a version we cannot measure, data_size above the maximum): the
 *    header's bytes are handed on as `unframeable` and the reader stops; the connection answers
 *    it (when it can) and closes. Nothing after it is parsed.
 *
 * The payload of a frame is a copy of its own (frames are kept while a request is served).
 */
import { InputBuffer } from '../net/input-buffer.ts';
import { decodeHeader, invalidHeader, ULOG_HEADER_BYTES, ULOG_MAX_DATA_BYTES, ULOG_VERSION, type UlogHeader } from './ulog-frame.ts';

export type UlogFrame =
  | { kind: 'frame'; header: UlogHeader; headerBytes: Uint8Array; data: Uint8Array }
  | { kind: 'refused'; why: string; headerBytes: Uint8Array }
  | { kind: 'unframeable'; why: string; headerBytes: Uint8Array };

export class UlogReader {
  private readonly input = new InputBuffer();
  private stopped = false;

  constructor(private readonly maxDataBytes = ULOG_MAX_DATA_BYTES) {}

  /** Bytes received and not yet taken as frames. */
  get bufferedBytes(): number {
    return this.input.length;
  }

  push(chunk: Uint8Array): void {
    if (!this.stopped) this.input.push(chunk);
  }

  /** The next whole frame, or null when more bytes are needed (or the stream was unframeable). */
  next(): UlogFrame | null {
    if (this.stopped || this.input.length < ULOG_HEADER_BYTES) return null;
    const chunk = this.input.contiguous(ULOG_HEADER_BYTES);
    const at = this.input.front;
    // A copy of its own, at offset 0 of its own buffer (a socket chunk may be a Buffer, whose slice is a view).
    const headerBytes = Uint8Array.prototype.slice.call(chunk, at, at + ULOG_HEADER_BYTES);
    const view = new DataView(headerBytes.buffer);
    const version = view.getUint32(140, true);
    const dataBytes = view.getUint32(156, true);
    if (version !== 0 && version !== ULOG_VERSION) return this.stop(`version ${version} (0 or ${ULOG_VERSION} are served)`, headerBytes);
    if (dataBytes > this.maxDataBytes) return this.stop(`data_size ${dataBytes} is above ${this.maxDataBytes}`, headerBytes);
    if (this.input.length < ULOG_HEADER_BYTES + dataBytes) return null;
    this.input.consume(ULOG_HEADER_BYTES);
    const data = dataBytes === 0 ? new Uint8Array(0) : Uint8Array.prototype.slice.call(this.input.take(dataBytes));
    const why = invalidHeader(headerBytes, this.maxDataBytes);
    if (why !== null) return { kind: 'refused', why, headerBytes };
    return { kind: 'frame', header: decodeHeader(headerBytes), headerBytes, data };
  }

  private stop(why: string, headerBytes: Uint8Array): UlogFrame {
    this.stopped = true;
    this.input.clear();
    return { kind: 'unframeable', why, headerBytes };
  }
}

/** A reply to a request: its header bytes as they came, with `error` and `data_size` set, then `data`. */
export function replyFrame(requestHeader: Uint8Array, error: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(ULOG_HEADER_BYTES + data.length);
  out.set(requestHeader.subarray(0, ULOG_HEADER_BYTES));
  const view = new DataView(out.buffer);
  view.setInt32(144, error, true);
  view.setUint32(156, data.length, true);
  out.set(data, ULOG_HEADER_BYTES);
  return out;
}
