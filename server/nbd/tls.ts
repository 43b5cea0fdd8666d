/**
 * TLS for the NBD server, as proto.md defines it: the client asks with NBD_OPT_STARTTLS during
 * option haggling, we answer ACK, and both run a TLS handshake on the same TCP stream; haggling
 * then starts over inside TLS (negotiation.ts forgets what was agreed before).
 *
 *   mode 'on'       STARTTLS is offered; a client may also go on in plain text;
 *   mode 'require'  every option but STARTTLS and ABORT is refused NBD_REP_ERR_TLS_REQD until TLS
 *                   is up (EXPORT_NAME, which cannot be refused, closes the connection).
 *
 * Credentials, in the layouts nbdkit and qemu read:
 *   X.509  a directory with server-cert.pem and server-key.pem (and ca-cert.pem, which, with
 *          verifyPeer, client certificates must chain to);
 *   PSK    a file of `identity:hexkey` lines (nbdkit --tls-psk, qemu tls-creds-psk's keys.psk).
 *          Bun's node:tls ignores pskCallback and Deno's (rustls) has no PSK at all: there
 *          (`pskTlsSupported` false) the TLS runs in a Node child (psk-terminator-client.ts), and
 *          a server with a PSK file and no `node` on PATH refuses to start.
 *
 * How a socket is upgraded (the same on Node, Bun and Deno): one tls.Server that never listens is
 * handed the accepted socket with emit('connection'), once our ACK is out (Node's TLS layer writes
 * past the socket's JS queue) and any bytes read past the STARTTLS option are put back
 * (unshift). It reports 'secureConnection' or 'tlsClientError'; a handshake that stalls fails
 * after HANDSHAKE_TIMEOUT_MS. This way client certificates are checked on every runtime (a bare
 * `new TLSSocket(socket, { isServer })` let untrusted ones through on Node and Deno).
 * After the upgrade nothing is sent with sendfile: bytes on the fd must be encrypted.
 */
import fs from 'node:fs';
import type { Socket } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { PskTerminator, terminatorProblem } from './psk-terminator-client.ts';

/** TLS handshakes that take longer than this fail (the client's connection is closed). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

export type NbdTlsMode = 'on' | 'require';

export interface NbdTlsOptions {
  mode: NbdTlsMode;
  /** X.509: a directory with server-cert.pem, server-key.pem and (for verifyPeer) ca-cert.pem. */
  certificatesDir?: string;
  /** PSK: a file of identity:hexkey lines. Exactly one of certificatesDir and pskFile. */
  pskFile?: string;
  /** X.509: ask for a client certificate and refuse clients without one that chains to ca-cert.pem. */
  verifyPeer?: boolean;
}

/** Whether this runtime's node:tls does TLS-PSK on the server side (Node: yes; Bun, Deno: no). */
export function pskTlsSupported(): boolean {
  const versions = process.versions as Record<string, string | undefined>;
  return versions.bun === undefined && versions.deno === undefined;
}

/** Thrown for credentials that cannot be used: one line naming the file or the option. */
export class TlsConfigError extends Error {}

/** The keys of a PSK file: identity -> key bytes. */
export function parsePskFile(text: string, file: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const identity = colon < 0 ? '' : line.slice(0, colon);
    const hex = colon < 0 ? '' : line.slice(colon + 1);
    if (identity === '' || !/^([0-9a-fA-F]{2})+$/.test(hex)) throw new TlsConfigError(`${file}:${index + 1}: not an identity:hexkey line`);
    if (keys.has(identity)) throw new TlsConfigError(`${file}:${index + 1}: identity "${identity}" appears twice`);
    keys.set(identity, Buffer.from(hex, 'hex'));
  });
  if (keys.size === 0) throw new TlsConfigError(`${file}: no identity:hexkey lines`);
  return keys;
}

function readCredential(dir: string, name: string): Buffer {
  const file = path.join(dir, name);
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new TlsConfigError(`${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

/** The keys of the PSK file (read now: a bad file fails the start, not a client). */
function readPskFile(file: string): Map<string, Buffer> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new TlsConfigError(`${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  return parsePskFile(text, file);
}

/** The server options for `options`' credentials (read now: a bad file fails the start, not a client). */
function serverOptions(options: NbdTlsOptions, pskKeys: Map<string, Buffer> | null): tls.TlsOptions {
  const base: tls.TlsOptions = { handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS };
  if (pskKeys !== null) {
    // 'PSK' adds the TLS 1.2 PSK suites (Node's default list excludes them); TLS 1.3 needs none.
    return { ...base, ciphers: 'PSK', pskCallback: (_socket, identity) => pskKeys.get(identity) ?? null };
  }
  const dir = options.certificatesDir!;
  const withCa = options.verifyPeer === true;
  const context: tls.TlsOptions = { ...base, cert: readCredential(dir, 'server-cert.pem'), key: readCredential(dir, 'server-key.pem') };
  if (withCa) Object.assign(context, { ca: readCredential(dir, 'ca-cert.pem'), requestCert: true, rejectUnauthorized: true });
  return context;
}

/** What an upgrade reports, once. */
export interface TlsUpgrade {
  /** The stream in clear from now on: the TLS socket, or (PSK in a child) a socket to the child. */
  secure(socket: Socket): void;
  failed(why: string): void;
}

/** The TLS side of one NBD server: its mode and a never-listening tls.Server that upgrades sockets. */
export class NbdTls {
  readonly mode: NbdTlsMode;
  /** The in-process TLS (null: PSK in a Node child). */
  private readonly server: tls.Server | null = null;
  private readonly pending = new Map<Socket, TlsUpgrade>();
  /** PSK where this runtime's TLS has none: handshakes in a Node child. */
  private readonly terminator: PskTerminator | null = null;

  constructor(options: NbdTlsOptions) {
    this.mode = options.mode;
    if ((options.certificatesDir === undefined) === (options.pskFile === undefined)) {
      throw new TlsConfigError('NBD TLS needs exactly one of a certificates directory and a PSK file');
    }
    const pskKeys = options.pskFile === undefined ? null : readPskFile(options.pskFile);
    if (pskKeys !== null && !pskTlsSupported()) {
      const problem = terminatorProblem();
      if (problem !== null) throw new TlsConfigError(problem);
      this.terminator = new PskTerminator(pskKeys);
      return;
    }
    let server: tls.Server;
    try {
      server = tls.createServer(serverOptions(options, pskKeys));
    } catch (error) {
      if (error instanceof TlsConfigError) throw error;
      throw new TlsConfigError(`NBD TLS credentials refused: ${(error as Error).message}`);
    }
    server.on('secureConnection', (socket: tls.TLSSocket) => this.settle(socket, (upgrade) => upgrade.secure(socket)));
    server.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => this.settle(socket, (upgrade) => upgrade.failed(`TLS handshake failed: ${error.message}`)));
    this.server = server;
  }

  /**
   * Runs the handshake on `raw` (whose data listeners are detached and which is paused), with
   * `leftover` (bytes read past the STARTTLS option) put back first. `upgrade` hears once.
   */
  upgrade(raw: Socket, leftover: Uint8Array, upgrade: TlsUpgrade): void {
    if (this.terminator !== null) return this.terminator.upgrade(raw, leftover, upgrade);
    if (leftover.length > 0) raw.unshift(Buffer.from(leftover));
    this.pending.set(raw, upgrade);
    // A peer that hangs up mid-handshake gives only 'close' on some runtimes.
    raw.once('close', () => this.settleRaw(raw, (pending) => pending.failed('the client went away during the TLS handshake')));
    this.server!.emit('connection', raw);
  }

  /** Stops what the TLS runs in (the PSK child); the server is closing. */
  close(): void {
    this.terminator?.close();
  }

  private settle(socket: tls.TLSSocket, report: (upgrade: TlsUpgrade) => void): void {
    const raw = (socket as unknown as { _parent?: Socket })._parent;
    if (raw === undefined) {
      socket.destroy();
      return;
    }
    this.settleRaw(raw, report);
  }

  private settleRaw(raw: Socket, report: (upgrade: TlsUpgrade) => void): void {
    const upgrade = this.pending.get(raw);
    if (upgrade === undefined) return;
    this.pending.delete(raw);
    report(upgrade);
  }
}
