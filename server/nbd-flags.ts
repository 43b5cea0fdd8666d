/**
 * The service's NBD flags (config.ts reads them with the engines' own): TLS as nbdkit and qemu-nbd
 * offer it (X.509 certificates in a directory, or a PSK file), worker threads for file exports,
 * and the switch that allows plain NBD off loopback.
 */
import type { ServeFlag } from './engine.ts';
import type { NbdTlsOptions } from './nbd/tls.ts';

export const NBD_FLAGS: readonly ServeFlag[] = [
  {
    flag: '--nbd-tls', env: 'BLOCKCORE_NBD_TLS', valueName: 'off|on|require', defaultValue: null,
    summary: 'NBD STARTTLS: off (the default), on (offered), require (nothing but STARTTLS before TLS); needs --nbd-tls-certificates or --nbd-tls-psk',
    problem: (value) => (['off', 'on', 'require'].includes(value) ? null : 'expected off, on or require'),
  },
  {
    flag: '--nbd-tls-certificates', env: 'BLOCKCORE_NBD_TLS_CERTIFICATES', valueName: 'DIR', defaultValue: null,
    summary: 'NBD TLS X.509: a directory with server-cert.pem, server-key.pem (and ca-cert.pem for --nbd-tls-verify-peer), as nbdkit reads it',
  },
  {
    flag: '--nbd-tls-psk', env: 'BLOCKCORE_NBD_TLS_PSK', valueName: 'FILE', defaultValue: null,
    summary: 'NBD TLS-PSK: a file of identity:hexkey lines, as nbdkit --tls-psk reads it (Bun, Deno: the TLS runs in a Node child; BLOCKCORE_NODE names it)',
  },
  {
    flag: '--nbd-tls-verify-peer', env: 'BLOCKCORE_NBD_TLS_VERIFY_PEER', valueName: '', defaultValue: null, boolean: true,
    summary: 'NBD TLS X.509: clients must present a certificate that chains to ca-cert.pem',
  },
  {
    flag: '--nbd-threads', env: 'BLOCKCORE_NBD_THREADS', valueName: 'N', defaultValue: null,
    summary: 'worker threads that serve NBD connections to file exports (Node; server/nbd/threads.ts); 0 serves all on the main thread',
    problem: (value) => (/^\d+$/.test(value) && Number(value) <= 64 ? null : 'expected a whole number from 0 to 64'),
  },
  {
    flag: '--nbd-insecure', env: 'BLOCKCORE_NBD_INSECURE', valueName: '', defaultValue: null, boolean: true,
    summary: 'allow NBD off loopback without --nbd-tls require (anyone who reaches it can read and write the exports)',
  },
];

/**
 * The NBD server's TLS options from the settings (null: no TLS), or why they cannot be used.
 */
export function nbdTlsOf(settings: Record<string, string>): NbdTlsOptions | null | string {
  const mode = settings['--nbd-tls'] ?? 'off';
  const certificatesDir = settings['--nbd-tls-certificates'];
  const pskFile = settings['--nbd-tls-psk'];
  const verifyPeer = settings['--nbd-tls-verify-peer'] === 'true';
  if (mode === 'off') {
    if (certificatesDir !== undefined || pskFile !== undefined || verifyPeer) return '--nbd-tls is off: --nbd-tls-certificates, --nbd-tls-psk and --nbd-tls-verify-peer need --nbd-tls on or require';
    return null;
  }
  if ((certificatesDir === undefined) === (pskFile === undefined)) return `--nbd-tls ${mode} needs exactly one of --nbd-tls-certificates DIR and --nbd-tls-psk FILE`;
  if (verifyPeer && certificatesDir === undefined) return '--nbd-tls-verify-peer needs --nbd-tls-certificates (client certificates are X.509)';
  return { mode: mode as 'on' | 'require', ...(certificatesDir !== undefined ? { certificatesDir } : { pskFile: pskFile! }), ...(verifyPeer ? { verifyPeer } : {}) };
}

/** Worker threads for NBD connections to file exports (--nbd-threads; checked by the flag's problem()). */
export function nbdThreadsOf(settings: Record<string, string>): number {
  return Number(settings['--nbd-threads'] ?? 0);
}
