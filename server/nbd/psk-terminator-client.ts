/**
 * TLS-PSK on runtimes whose node:tls has no PSK (Bun ignores pskCallback; Deno's rustls has none):
 * the handshake and the record layer run in a Node child (psk-terminator.mjs), and the NBD
 * connection here goes on over a plain Unix socket to it. Node's TLS is what nbdkit's and qemu's
 * clients were tested against on Node; an FFI binding of GnuTLS or OpenSSL with memory BIOs would
 * avoid the child, at the price of a TLS stack of ours.
 *
 * Per upgrade: two Unix connections to the child with one random token ('c' cipher, 'p' plain);
 * the client's socket and the cipher connection are piped into each other (the bytes read past
 * STARTTLS first); the plain connection's first byte says how the handshake went (1: secured,
 * the decrypted stream follows; 0: a reason). The child starts with the first upgrade (its keys
 * go on its stdin, never in argv), lives in a directory only we can read, and ends with close()
 * or with this process (its stdin closes).
 *
 * Costs: every byte crosses two more Unix sockets and a process; PSK connections are for
 * authentication off loopback, not for speed (X.509 runs in-process on every runtime).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TlsUpgrade } from './tls.ts';

const TERMINATOR = fileURLToPath(new URL('./psk-terminator.mjs', import.meta.url));
const START_TIMEOUT_MS = 10_000;
const SECURED = 1;

/** The Node the terminator runs on: BLOCKCORE_NODE, or `node` on PATH. */
function nodeCommand(): string {
  return process.env.BLOCKCORE_NODE ?? 'node';
}

/** Why a Node to run the terminator cannot be found, or null. */
export function terminatorProblem(): string | null {
  const node = nodeCommand();
  const probe = spawnSync(node, ['--version'], { encoding: 'utf8' });
  return probe.status === 0 ? null : `TLS-PSK on this runtime runs in a Node child process, and \`${node} --version\` failed: put Node on PATH or name it in BLOCKCORE_NODE (or use X.509 certificates)`;
}

export class PskTerminator {
  private starting: Promise<string> | null = null;
  private child: ChildProcess | null = null;
  private dir: string | null = null;
  private closed = false;

  constructor(private readonly keys: ReadonlyMap<string, Uint8Array>) {}

  /** As NbdTls.upgrade: `raw` paused, its data listeners detached; `leftover` goes first. */
  upgrade(raw: net.Socket, leftover: Uint8Array, upgrade: TlsUpgrade): void {
    this.start().then((socketPath) => this.pipe(socketPath, raw, leftover, upgrade), (error: unknown) => {
      raw.destroy();
      upgrade.failed(`TLS-PSK terminator: ${(error as Error).message}`);
    });
  }

  close(): void {
    this.closed = true;
    this.child?.kill('SIGKILL');
    this.child = null;
    if (this.dir !== null) fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }

  private pipe(socketPath: string, raw: net.Socket, leftover: Uint8Array, upgrade: TlsUpgrade): void {
    const token = crypto.getRandomValues(new Uint8Array(16));
    const header = (kind: string) => Buffer.concat([Buffer.from(kind), token]);
    const cipher = net.connect(socketPath);
    const plain = net.connect(socketPath);
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      raw.destroy();
      cipher.destroy();
      plain.destroy();
      upgrade.failed(why);
    };
    for (const socket of [cipher, plain]) socket.on('error', () => {});
    cipher.write(header('c'));
    if (leftover.length > 0) cipher.write(leftover);
    raw.pipe(cipher);
    cipher.pipe(raw);
    raw.once('close', () => cipher.destroy());
    cipher.once('close', () => raw.destroy());
    plain.write(header('p'));
    let status = Buffer.alloc(0);
    const onStatus = (chunk: Buffer) => {
      status = Buffer.concat([status, chunk]);
      if (status[0] === SECURED) {
        plain.off('data', onStatus);
        plain.off('close', onClose);
        plain.pause();
        if (status.length > 1) plain.unshift(status.subarray(1));
        settled = true;
        upgrade.secure(plain);
        plain.resume();
        return;
      }
      const end = status.indexOf(0x0a);
      if (end >= 0) fail(status.subarray(1, end).toString('utf8') || 'TLS handshake failed');
    };
    const onClose = () => fail('TLS handshake failed: the terminator ended the connection');
    plain.on('data', onStatus);
    plain.once('close', onClose);
  }

  /** The terminator's socket path, once it is up (started at the first call). */
  private start(): Promise<string> {
    if (this.closed) return Promise.reject(new Error('the server is closing'));
    this.starting ??= new Promise<string>((resolve, reject) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'blockcore-psk-'));
      fs.chmodSync(dir, 0o700);
      this.dir = dir;
      const socketPath = path.join(dir, 'terminator.sock');
      const child = spawn(nodeCommand(), [TERMINATOR], { stdio: ['pipe', 'pipe', 'inherit'] });
      this.child = child;
      const timer = setTimeout(() => reject(new Error(`not up within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      child.once('error', (error) => reject(error));
      child.once('exit', (code) => {
        this.child = null;
        this.starting = null; // the next upgrade starts another
        reject(new Error(`exited (${code})`));
      });
      let said = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        said += chunk.toString('utf8');
        if (!said.includes('ready\n')) return;
        clearTimeout(timer);
        resolve(socketPath);
      });
      const keys = Object.fromEntries([...this.keys].map(([identity, key]) => [identity, Buffer.from(key).toString('hex')]));
      child.stdin!.write(`${JSON.stringify({ socketPath, keys })}\n`);
      // Not what keeps this process up: its stdin staying open is what keeps the child up.
      child.unref();
      for (const stream of [child.stdin, child.stdout]) (stream as unknown as { unref?: () => void } | null)?.unref?.();
    });
    return this.starting;
  }
}
