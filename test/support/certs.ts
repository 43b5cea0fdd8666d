/**
 * A throwaway PKI for TLS tests, made by openssl: a CA, a server certificate for 127.0.0.1 and a
 * client certificate, each signed by the CA (P-256 keys: quick to make). Files are PEM in `dir`.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { requireTools } from './tools.ts';

export interface TestCerts {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A server certificate of the same CA for another address (127.0.0.9): not etcd's at 127.0.0.1. */
  otherCert: string;
  otherKey: string;
}

function openssl(dir: string, args: string[]): void {
  const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
}

export function makeCerts(dir: string): TestCerts {
  requireTools(['openssl']);
  fs.mkdirSync(dir, { recursive: true });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, ['req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=blockcore test CA']);
  const signed = (name: string, subject: string, extensions: string) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), extensions);
    openssl(dir, ['req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
  };
  signed('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  signed('client', '/CN=blockcore', 'extendedKeyUsage=clientAuth\n');
  signed('other', '/CN=127.0.0.9', 'subjectAltName=IP:127.0.0.9\nextendedKeyUsage=serverAuth,clientAuth\n');
  const at = (file: string) => path.join(dir, file);
  return { ca: at('ca.pem'), serverCert: at('server.pem'), serverKey: at('server.key'), clientCert: at('client.pem'), clientKey: at('client.key'), otherCert: at('other.pem'), otherKey: at('other.key') };
}

/**
 * The directories NBD TLS peers read (nbdkit --tls-certificates, qemu tls-creds-x509, libnbd
 * tls-certificates, server/nbd/tls.ts): `server/` with ca-cert.pem, server-cert.pem and
 * server-key.pem, and `client/` with ca-cert.pem, under `root`.
 */
export function nbdTlsDirs(certs: TestCerts, root: string): { serverDir: string; clientDir: string } {
  const serverDir = path.join(root, 'server');
  const clientDir = path.join(root, 'client');
  fs.mkdirSync(serverDir, { recursive: true });
  fs.mkdirSync(clientDir, { recursive: true });
  fs.copyFileSync(certs.ca, path.join(serverDir, 'ca-cert.pem'));
  fs.copyFileSync(certs.serverCert, path.join(serverDir, 'server-cert.pem'));
  fs.copyFileSync(certs.serverKey, path.join(serverDir, 'server-key.pem'));
  fs.copyFileSync(certs.ca, path.join(clientDir, 'ca-cert.pem'));
  return { serverDir, clientDir };
}
