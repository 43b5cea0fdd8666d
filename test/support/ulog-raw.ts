/**
 * For tests of the log server: builds the C programs of test/fixtures/ulog once per process
 * (cc; the test command installs it), and a raw frame client over a stream socket that sends
 * whatever bytes a test gives it (good frames, torn ones, garbage) and reads replies in order.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeHeader, encodeHeader, ULOG_HEADER_BYTES, ULOG_VERSION, type UlogHeader, type UlogType } from '../../runtime/ulog/ulog-frame.ts';
import { requireTools } from './tools.ts';

export const ULOG_FIXTURES = fileURLToPath(new URL('../fixtures/ulog/', import.meta.url));
const built = new Map<string, string>();

/** The path of test/fixtures/ulog/<name>.c compiled (once). */
export function ulogProgram(name: string): string {
  const done = built.get(name);
  if (done !== undefined) return done;
  requireTools(['cc']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `blockcore-${name}-`));
  const out = path.join(dir, name);
  const cc = spawnSync('cc', ['-std=c11', '-D_DEFAULT_SOURCE', '-Wall', '-Wextra', '-Werror', '-I', ULOG_FIXTURES, '-o', out, path.join(ULOG_FIXTURES, `${name}.c`)], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cc ${name}.c: ${cc.stderr}`);
  built.set(name, out);
  return out;
}

export interface RawReply {
  header: UlogHeader;
  data: Uint8Array;
}

export class RawUlogClient {
  private buffered = new Uint8Array(0);
  private waiters: Array<() => void> = [];
  private seq = 1;
  ended = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Uint8Array) => {
      const next = new Uint8Array(this.buffered.length + chunk.length);
      next.set(this.buffered);
      next.set(chunk, this.buffered.length);
      this.buffered = next;
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static connect(address: { path: string } | { host: string; port: number }): Promise<RawUlogClient> {
    return new Promise((resolve, reject) => {
      const socket = 'path' in address ? net.connect(address.path) : net.connect(address.port, address.host);
      socket.once('connect', () => resolve(new RawUlogClient(socket)));
      socket.once('error', reject);
    });
  }

  frame(type: UlogType, uuid: string, luid: number, data: Uint8Array = new Uint8Array(0), over: Partial<UlogHeader> = {}): Uint8Array {
    const header = encodeHeader({ luid, uuid, version: ULOG_VERSION, error: 0, seq: this.seq++, type, typeFlags: 0, dataBytes: data.length, ...over });
    const out = new Uint8Array(ULOG_HEADER_BYTES + data.length);
    out.set(header);
    out.set(data, ULOG_HEADER_BYTES);
    return out;
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Sends a request and reads its reply. */
  async request(type: UlogType, uuid: string, luid: number, data?: Uint8Array, over: Partial<UlogHeader> = {}): Promise<RawReply> {
    this.send(this.frame(type, uuid, luid, data, over));
    const reply = await this.reply();
    if (reply === null) throw new Error(`the server closed the connection instead of answering type ${type}`);
    return reply;
  }

  /** The next reply, or null when the connection closed first. */
  async reply(timeoutMs = 10_000): Promise<RawReply | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.buffered.length >= ULOG_HEADER_BYTES) {
        const size = new DataView(this.buffered.buffer, this.buffered.byteOffset).getUint32(156, true);
        if (this.buffered.length >= ULOG_HEADER_BYTES + size) {
          const header = decodeHeader(this.buffered);
          const data = this.buffered.slice(ULOG_HEADER_BYTES, ULOG_HEADER_BYTES + size);
          this.buffered = this.buffered.slice(ULOG_HEADER_BYTES + size);
          return { header, data };
        }
      }
      if (this.ended) return null;
      if (Date.now() > deadline) throw new Error('no reply in time');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}
