/**
 * TLS to etcd named by IP address, on every runtime. grpc-js gives the TLS layer the host of the
 * URL as the server name (SNI); an IP address is not a server name: Node warns on every
 * connection (DEP0123), Bun and Deno refuse to connect at all. etcd is usually named by IP and
 * its certificates carry IP subject alternative names, so when a URL names an IP address:
 *   - the server name sent is a placeholder (grpc's ssl_target_name_override; etcd serves one
 *     certificate and ignores SNI), and
 *   - the certificate is checked here instead: it must be valid (node:tls checkServerIdentity,
 *     IP SANs included) for one of the hosts of the URLs given, and signed by the CA given (the
 *     TLS layer checks the chain as before).
 * With several URLs, a certificate valid for any of them is taken: they name one etcd cluster,
 * whose members the same CA vouches for.
 */
import { isIP } from 'node:net';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

/** What SNI carries when the URLs name IP addresses. */
const PLACEHOLDER_SERVER_NAME = 'etcd';

/** Hosts of `urls` (brackets off IPv6 literals). */
function hostsOf(urls: string[]): string[] {
  return urls.map((url) => new URL(url).hostname.replace(/^\[(.*)\]$/, '$1'));
}

/** True when some URL names its host by IP address: then `withIpIdentity` is needed. */
export function namesIpHost(urls: string[]): boolean {
  return hostsOf(urls).some((host) => isIP(host) !== 0);
}

/** grpc channel options for URLs naming IP hosts: the placeholder server name. */
export function ipServerNameOptions(): Record<string, string> {
  return { 'grpc.ssl_target_name_override': PLACEHOLDER_SERVER_NAME };
}

/** Checks `cert` against the hosts of `urls`: undefined when valid for one of them, else the error. */
export function identityCheck(urls: string[]): (name: string, cert: PeerCertificate) => Error | undefined {
  const hosts = hostsOf(urls);
  return (_name, cert) => {
    let first: Error | undefined;
    for (const host of hosts) {
      const problem = checkServerIdentity(host, cert);
      if (problem === undefined) return undefined;
      first ??= problem;
    }
    return first;
  };
}

/**
 * Runs `make` (which builds the etcd3 client, creating its grpc credentials synchronously) with
 * grpc's createSsl giving every credential it makes the identity check for `urls`. etcd3 has no
 * way to pass grpc's verify options, so createSsl is wrapped for that one synchronous call only.
 */
export function withIpIdentity<T>(urls: string[], make: () => T): T {
  const credentials = grpc.credentials as { createSsl: typeof grpc.credentials.createSsl };
  const createSsl = credentials.createSsl;
  const check = identityCheck(urls);
  credentials.createSsl = (rootCerts, privateKey, certChain, verifyOptions) => createSsl(rootCerts, privateKey, certChain, { ...verifyOptions, checkServerIdentity: check });
  try {
    return make();
  } finally {
    credentials.createSsl = createSsl;
  }
}
