/**
 * This service as a node of a cluster: its identity, its lock managers, and its etcd connection.
 *
 * - Identity: a node name (--node-name, default the host name) and a node id, a random UUID kept
 *   in the data directory's `.blockcore/node-id` file from the first start on (the same data directory is the
 *   same node across restarts; a copied one is not, since the id travels with it: give it a new
 *   name).
 * - Without --etcd: the in-process lock manager only (each service a cluster of one per array).
 * - With --etcd: one connection (EtcdStore), one EtcdLockManager for every array with lock
 *   "etcd", and one EtcdOrdering for every clustered mirror log (log servers of every service on
 *   that etcd share a log uuid's group, as cmirrord's do over corosync); the node registers `/blockcore/nodes/<name>` = its id on a lease
 *   of its own (create-if-absent), so a second service claiming the name is refused at start; the
 *   same node restarted takes its key over. An unreachable etcd at start is an error naming the
 *   URLs, or with --etcd-wait a line a second until it answers.
 * - Which lock manager an array was created with is kept in etcd (`/blockcore/arrays/<uuid>`), so
 *   assembling it with the other kind is refused.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EtcdOrdering } from '../../runtime/dirty-log/etcd-ordering.ts';
import { InProcessOrdering } from '../../runtime/dirty-log/in-process-ordering.ts';
import type { Ordering } from '../../runtime/dirty-log/ordering.ts';
import { EtcdLockManager, type LockspaceStatus } from '../../runtime/locks/etcd/etcd-lock-manager.ts';
import { EtcdStore, type EtcdConnectOptions } from '../../runtime/locks/etcd/etcd-store.ts';
import { LeaseKeeper } from '../../runtime/locks/etcd/lease-keeper.ts';
import { InProcessLockManager } from '../../runtime/locks/in-process/in-process-lock-manager.ts';
import type { LockManager } from '../../runtime/locks/lock-manager.ts';
import { invalid, ServiceError } from '../errors.ts';
import { RESERVED_SEGMENT } from '../names.ts';
import { DEFAULT_LEASE_TTL_SECONDS } from './flags.ts';

export type LockKind = 'in-process' | 'etcd';

const NODES_PREFIX = '/blockcore/nodes/';
const ARRAYS_PREFIX = '/blockcore/arrays/';
const WAIT_RETRY_MS = 1000;

export interface ClusterInfo {
  node: { name: string; id: string };
  etcd: null | {
    urls: string[];
    reachable: boolean;
    leaseTtlSeconds: number;
    /** Our node registration's lease. */
    leaseId: string;
    nodes: { name: string; id: string }[];
    lockspaces: LockspaceStatus[];
  };
}

interface EtcdSide {
  urls: string[];
  store: EtcdStore;
  manager: EtcdLockManager;
  ordering: EtcdOrdering;
  ttlSeconds: number;
  registration: LeaseKeeper;
}

export class Coordinator {
  readonly inProcess = new InProcessLockManager();
  private registrationLost: string | null = null;

  private constructor(readonly nodeName: string, readonly nodeId: string, private readonly etcd: EtcdSide | null, private readonly log: (line: string) => void) {}

  /** Reads or makes the node id, connects to etcd when configured and registers the node name. */
  static async open(setting: (flag: string) => string | null, dataDir: string, log: (line: string) => void): Promise<Coordinator> {
    const nodeName = setting('--node-name') ?? (os.hostname() || 'blockcore');
    const nodeId = readNodeId(dataDir);
    const urlsSetting = setting('--etcd');
    if (urlsSetting === null) return new Coordinator(nodeName, nodeId, null, log);
    const urls = urlsSetting.split(',').map((url) => url.trim());
    const ttlSeconds = Number(setting('--lease-ttl') ?? DEFAULT_LEASE_TTL_SECONDS);
    const store = await connectEtcd(connectOptions(urls, setting), setting('--etcd-wait') === 'true', log);
    let coordinator: Coordinator | null = null;
    let registration: LeaseKeeper | null = null;
    try {
      registration = await LeaseKeeper.grant(store, ttlSeconds, (why) => coordinator?.onRegistrationLost(why));
      await claimNodeName(store, nodeName, nodeId, registration.id, urls);
      const manager = new EtcdLockManager(store, { leaseTtlSeconds: ttlSeconds, warn: (line) => log(line) });
      const ordering = new EtcdOrdering(store, { leaseTtlSeconds: ttlSeconds, log });
      coordinator = new Coordinator(nodeName, nodeId, { urls, store, manager, ordering, ttlSeconds, registration }, log);
      return coordinator;
    } catch (error) {
      await registration?.revoke();
      store.close();
      throw error;
    }
  }

  /** What clustered dirty logs order their requests through: etcd (shared across services) or this process. */
  get ordering(): Ordering {
    return this.etcd?.ordering ?? (this.localOrdering ??= new InProcessOrdering());
  }

  private localOrdering: InProcessOrdering | null = null;

  /** The lock manager of `kind`; refusals name `field`. */
  lockManager(kind: LockKind, field: string): LockManager {
    if (kind === 'in-process') return this.inProcess;
    if (this.etcd === null) throw invalid(field, 'is "etcd" but this service was started without --etcd');
    return this.etcd.manager;
  }

  /**
   * Records (at create) or checks (at assemble) which lock manager the array `uuid` is used with:
   * assembling with another kind than it was created with is refused, naming `field`.
   */
  async checkArrayLock(uuid: string, kind: LockKind, mode: 'create' | 'assemble', field: string): Promise<void> {
    if (this.etcd === null) return; // nothing to ask: an in-process array has no record anywhere
    const key = `${ARRAYS_PREFIX}${uuid}`;
    if (mode === 'create') {
      if (kind === 'etcd') await this.etcd.store.txn([], [{ put: { key, value: new TextEncoder().encode(JSON.stringify({ lock: 'etcd', createdBy: this.nodeName })) } }]);
      return;
    }
    const found = (await this.etcd.store.range(key)).kvs.length > 0;
    if (kind === 'etcd' && !found) throw invalid(field, 'the array was not created with lock "etcd" (no record of it in etcd): assemble it with lock "in-process"');
    if (kind === 'in-process' && found) throw invalid(field, 'the array was created with lock "etcd": assemble it with lock "etcd"');
  }

  /** GET /v1/cluster. */
  async info(): Promise<ClusterInfo> {
    const node = { name: this.nodeName, id: this.nodeId };
    if (this.etcd === null) return { node, etcd: null };
    const { urls, store, manager, ttlSeconds, registration } = this.etcd;
    let reachable = true;
    let nodes: { name: string; id: string }[] = [];
    try {
      const read = await store.range(NODES_PREFIX, true);
      nodes = read.kvs.map((kv) => ({ name: kv.key.slice(NODES_PREFIX.length), id: new TextDecoder().decode(kv.value) }));
    } catch {
      reachable = false;
    }
    return { node, etcd: { urls, reachable, leaseTtlSeconds: ttlSeconds, leaseId: registration.id, nodes, lockspaces: manager.lockspaces() } };
  }

  async close(): Promise<void> {
    await this.inProcess.close();
    if (this.etcd === null) return;
    await this.etcd.ordering.close().catch(() => {});
    await this.etcd.manager.close().catch(() => {});
    await this.etcd.registration.revoke();
    this.etcd.store.close();
  }

  /** The node's registration lapsed (etcd unreachable past the lease): claim the name again when it answers. */
  private onRegistrationLost(why: string): void {
    if (this.etcd === null || this.registrationLost !== null) return;
    this.registrationLost = why;
    this.log(`node registration in etcd lapsed (${why}); registering again once etcd answers`);
    const etcd = this.etcd;
    const retry = async (): Promise<void> => {
      let registration: LeaseKeeper | null = null;
      try {
        registration = await LeaseKeeper.grant(etcd.store, etcd.ttlSeconds, (again) => {
          if (etcd.registration === registration) this.onRegistrationLost(again);
        });
        await claimNodeName(etcd.store, this.nodeName, this.nodeId, registration.id, etcd.urls);
        etcd.registration = registration;
        this.registrationLost = null;
        this.log('node registration in etcd renewed');
      } catch {
        await registration?.revoke();
        setTimeout(() => void retry(), WAIT_RETRY_MS).unref?.();
      }
    };
    void retry();
  }
}

function readNodeId(dataDir: string): string {
  const dir = path.join(dataDir, RESERVED_SEGMENT);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'node-id');
  try {
    const id = fs.readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f-]{36}$/.test(id)) return id;
    throw new ServiceError('EINVAL', `${file} does not hold a node id (a UUID): remove it to make a new one`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const id = crypto.randomUUID();
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, 'w', 0o644);
  try {
    fs.writeSync(fd, `${id}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  return id;
}

function connectOptions(urls: string[], setting: (flag: string) => string | null): EtcdConnectOptions {
  const user = setting('--etcd-user');
  const read = (flag: string) => {
    const file = setting(flag);
    if (file === null) return undefined;
    try {
      return new Uint8Array(fs.readFileSync(file));
    } catch (error) {
      throw new ServiceError('EINVAL', `${flag} ${file}: ${(error as Error).message}`);
    }
  };
  const ca = read('--etcd-cacert');
  const cert = read('--etcd-cert');
  const key = read('--etcd-key');
  if ((cert === undefined) !== (key === undefined)) throw new ServiceError('EINVAL', '--etcd-cert and --etcd-key go together');
  if (ca === undefined && cert !== undefined) throw new ServiceError('EINVAL', '--etcd-cert needs --etcd-cacert');
  return {
    urls,
    ...(user === null ? {} : { username: user.slice(0, user.indexOf(':')), password: user.slice(user.indexOf(':') + 1) }),
    ...(ca === undefined ? {} : { tls: { ca, ...(cert === undefined ? {} : { cert, key: key! }) } }),
  };
}

async function connectEtcd(options: EtcdConnectOptions, wait: boolean, log: (line: string) => void): Promise<EtcdStore> {
  for (;;) {
    try {
      return await EtcdStore.connect(options);
    } catch (error) {
      if (!wait) throw new ServiceError('EIO', `${(error as Error).message} (start etcd, or pass --etcd-wait to keep trying)`);
      log(`${(error as Error).message}; retrying in ${WAIT_RETRY_MS / 1000} s (--etcd-wait)`);
      await new Promise((resolve) => setTimeout(resolve, WAIT_RETRY_MS));
    }
  }
}

/** `/blockcore/nodes/<name>` = our id on our lease: refused when another node holds the name. */
async function claimNodeName(store: EtcdStore, name: string, id: string, leaseId: string, urls: string[]): Promise<void> {
  const key = `${NODES_PREFIX}${name}`;
  const value = new TextEncoder().encode(id);
  for (;;) {
    const created = await store.txn([{ key, target: 'version', op: '==', value: '0' }], [{ put: { key, value, lease: leaseId } }], [{ range: { key } }]);
    if (created.succeeded) return;
    const holder = created.ranges[0]![0];
    if (holder === undefined) continue; // its lease expired meanwhile
    const holderId = new TextDecoder().decode(holder.value);
    if (holderId !== id) {
      throw new ServiceError('EEXIST', `node name "${name}" is taken in etcd at ${urls.join(',')} by another service (node id ${holderId}): give this one another --node-name`);
    }
    // Our own earlier run (restarted before its lease expired): take the key over.
    const taken = await store.txn([{ key, target: 'modRevision', op: '==', value: holder.modRevision }], [{ put: { key, value, lease: leaseId } }]);
    if (taken.succeeded) {
      if (holder.lease !== '0' && holder.lease !== leaseId) await store.revokeLease(holder.lease).catch(() => {});
      return;
    }
  }
}
