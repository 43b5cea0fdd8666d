/**
 * Two blockcore services as two cluster nodes: separate processes and data directories, the leg
 * files shared through a bind mount (shared-legs.ts), coordinating through a real etcd started
 * for the suite. Node 0 is "node-a", node 1 "node-b". Helpers call the API of either and wait for
 * what an array shows there.
 */
import { callApi } from './blockcore-server.ts';
import { killEtcds, startEtcd, type TestEtcd } from './etcd.ts';
import { killServeChildren, launchers, startServe, type ServeChild } from './serve-process.ts';
import { makeSharedLegs, type SharedLegs } from './shared-legs.ts';

export const equal = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((byte, i) => byte === b[i]);

/**
 * The first 512-byte sector of `data` equal to the same sector of none of `candidates`, or null:
 * what a chunk may hold after a node died mid-write is, sector by sector, one of the writes it
 * could hold (a write cut by a SIGKILL or a fence may land in part).
 */
export function sectorNotFrom(data: Uint8Array, candidates: Uint8Array[]): number | null {
  for (let sector = 0; sector * 512 < data.length; sector++) {
    const piece = data.subarray(sector * 512, sector * 512 + 512);
    if (!candidates.some((c) => equal(piece, c.subarray(sector * 512, sector * 512 + 512)))) return sector;
  }
  return null;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 20 ms until it gives a value (not null or false). */
export async function until<T>(check: () => Promise<T | null | false>, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export class ServicePair {
  readonly services: (ServeChild | null)[] = [null, null];
  readonly launcher = launchers().at(-1)!;
  /** The etcd URL a node is started with when it is not etcd's own (a proxy in between). */
  readonly etcdUrlOf: (string | null)[] = [null, null];
  /** Run each service's dirty-log server (a clustered mirror log needs it); off by default. */
  logServer = false;

  private constructor(readonly etcd: TestEtcd, readonly shared: SharedLegs, readonly ttlSeconds: number) {}

  static async start(legCount: number, legBytes: number, ttlSeconds = 1): Promise<ServicePair> {
    const etcd = await startEtcd();
    try {
      return new ServicePair(etcd, makeSharedLegs(2, legCount, legBytes), ttlSeconds);
    } catch (error) {
      await etcd.stop();
      throw error;
    }
  }

  /** The command line of node `node`'s service. */
  args(node: number, extra: string[] = []): string[] {
    return [
      '--data', this.shared.dataDirs[node]!, '--http', '127.0.0.1:0', '--nbd', '127.0.0.1:0', '--rtrs', 'off', ...(this.logServer ? [] : ['--ulog', 'off']),
      '--etcd', this.etcdUrlOf[node] ?? this.etcd.url, '--node-name', `node-${'ab'[node]}`, '--lease-ttl', String(this.ttlSeconds), ...extra,
    ];
  }

  async startNode(node: number): Promise<ServeChild> {
    const served = await startServe(this.launcher, this.args(node), { cwd: this.shared.root });
    this.services[node] = served;
    return served;
  }

  service(node: number): ServeChild {
    const served = this.services[node];
    if (!served) throw new Error(`node ${node} is not running`);
    return served;
  }

  api(node: number, method: string, path: string, body?: unknown) {
    return callApi(this.service(node).url, method, path, body);
  }

  /** The answer's JSON; a status of 300 or more throws, with the service's log for a 5xx. */
  async ok(node: number, method: string, path: string, body?: unknown): Promise<any> {
    const answer = await this.api(node, method, path, body);
    if (answer.status >= 300) {
      const log = answer.status >= 500 ? `\nits log:\n${this.service(node).stderr().slice(-3000)}` : '';
      throw new Error(`${method} ${path} on node ${node}: ${answer.status} ${JSON.stringify(answer.json)}${log}`);
    }
    return answer.json;
  }

  nbdAddress(node: number): { host: string; port: number } {
    const url = new URL(this.service(node).nbdUrl);
    return { host: url.hostname, port: Number(url.port) };
  }

  /** Waits until `check` holds for what node `node` answers to GET `path`; returns that answer. */
  answerOn(node: number, path: string, check: (info: any) => boolean, what: string, timeoutMs = 20_000): Promise<any> {
    return until(async () => {
      const info = await this.ok(node, 'GET', path);
      return check(info) ? info : null;
    }, `node ${node}: ${path}: ${what}`, timeoutMs);
  }

  /** Waits until `check` holds for array `name` as node `node` reports it; returns that report. */
  arrayOn(node: number, name: string, check: (info: any) => boolean, what: string, timeoutMs = 20_000): Promise<any> {
    return this.answerOn(node, `/v1/arrays/${name}`, check, what, timeoutMs);
  }

  /** Waits until node `node` reports array `name` with no node recovery and no resync running or pending. */
  settled(node: number, name: string, timeoutMs = 30_000): Promise<any> {
    return this.arrayOn(node, name, (info) => !info.recoveringNodes && info.resync.state === 'idle' && !info.legs.some((leg: { recovering: boolean }) => leg.recovering), 'no recovery or resync', timeoutMs);
  }

  /** Stops array `name` on every running node that has it. */
  async stopArray(name: string): Promise<void> {
    for (const node of [0, 1]) {
      if (!this.services[node]) continue;
      const answer = await this.api(node, 'POST', `/v1/arrays/${name}/stop`);
      if (answer.status !== 204 && answer.status !== 404) throw new Error(`stopping ${name} on node ${node}: ${answer.status} ${answer.text}`);
    }
  }

  async close(): Promise<void> {
    for (const served of this.services) {
      try {
        served?.signal('SIGTERM');
      } catch {
        // gone already (a test killed it)
      }
    }
    await Promise.all(this.services.map((served) => served?.exited));
    killServeChildren();
    this.shared.unmount();
    await this.etcd.stop();
    killEtcds();
  }
}
