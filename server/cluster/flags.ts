/**
 * The service's cluster flags (config.ts reads them with the engines' own): where etcd is, how to
 * reach it (TLS and user as etcdctl takes them), this node's name, and the lease TTL every lock
 * manager membership and the node's own registration live by.
 */
import os from 'node:os';
import type { ServeFlag } from '../engine.ts';

export const DEFAULT_LEASE_TTL_SECONDS = 5;
export const LEASE_TTL_MAX_SECONDS = 60;

export const CLUSTER_FLAGS: readonly ServeFlag[] = [
  {
    flag: '--etcd', env: 'BLOCKCORE_ETCD', valueName: 'URL[,URL...]', defaultValue: null,
    summary: 'etcd client URLs: arrays and mirror logs with lock "etcd" coordinate through it',
    problem: (value) => {
      for (const part of value.split(',')) {
        let url: URL;
        try {
          url = new URL(part.trim());
        } catch {
          return `"${part}" is not a URL (http://HOST:PORT or https://HOST:PORT)`;
        }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') return `"${part}" is not http:// or https://`;
        if (url.pathname !== '/' || url.search !== '' || url.username !== '') return `"${part}" must be scheme://host:port only (user with --etcd-user)`;
      }
      return null;
    },
  },
  {
    flag: '--etcd-wait', env: 'BLOCKCORE_ETCD_WAIT', valueName: '', defaultValue: null, boolean: true,
    summary: 'keep retrying an unreachable etcd at start (saying so once a second) instead of exiting',
  },
  {
    flag: '--etcd-user', env: 'BLOCKCORE_ETCD_USER', valueName: 'USER:PASSWORD', defaultValue: null,
    summary: 'etcd user and password (etcdctl --user)',
    problem: (value) => (/^[^:]+:.*$/.test(value) ? null : 'expected USER:PASSWORD'),
  },
  { flag: '--etcd-cacert', env: 'BLOCKCORE_ETCD_CACERT', valueName: 'FILE', defaultValue: null, summary: 'CA bundle etcd\'s certificate is checked against (PEM)' },
  { flag: '--etcd-cert', env: 'BLOCKCORE_ETCD_CERT', valueName: 'FILE', defaultValue: null, summary: 'client certificate for etcd (PEM, with --etcd-key)' },
  { flag: '--etcd-key', env: 'BLOCKCORE_ETCD_KEY', valueName: 'FILE', defaultValue: null, summary: 'client key for etcd (PEM, with --etcd-cert)' },
  {
    flag: '--node-name', env: 'BLOCKCORE_NODE_NAME', valueName: 'NAME', defaultValue: null,
    summary: `this node's name in the cluster (default the host name, "${os.hostname()}" here); one service per name`,
    problem: (value) => (/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(value) ? null : 'expected 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit'),
  },
  {
    flag: '--lease-ttl', env: 'BLOCKCORE_LEASE_TTL', valueName: 'SECONDS', defaultValue: String(DEFAULT_LEASE_TTL_SECONDS),
    summary: `etcd lease TTL: a node that cannot renew stops writing after 3/4 of it, the others recover it after it (1 to ${LEASE_TTL_MAX_SECONDS})`,
    problem: (value) => (/^\d{1,2}$/.test(value) && Number(value) >= 1 && Number(value) <= LEASE_TTL_MAX_SECONDS ? null : `expected a whole number of seconds from 1 to ${LEASE_TTL_MAX_SECONDS}`),
  },
];
