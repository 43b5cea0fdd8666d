/**
 * A clustered array whose nodes coordinate through etcd (runtime/locks/etcd/), each node with a
 * connection of its own as two machines would have, over shared leg files, against a real etcd:
 * - the nodes see each other's writes; a node killed mid-write (no goodbye, its lease ended) is
 *   recovered by the survivor, which resyncs what it may have left half written: the legs end
 *   identical and every flushed write is there;
 * - a node cut off from etcd while it writes (a proxy stalls its connection) fences itself: no
 *   write of it reaches a leg once the survivor has started recovering it (the legs record when
 *   each write arrives); after the cut heals it assembles again as a new member and the legs end
 *   identical.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { WriteOptions } from '../runtime/devices/block-device.ts';
import { EtcdLockManager } from '../runtime/locks/etcd/etcd-lock-manager.ts';
import { EtcdStore } from '../runtime/locks/etcd/etcd-store.ts';
import type { JoinOptions, LockManager } from '../runtime/locks/lock-manager.ts';
import { assertLegsEqual, legFiles, MIB, node, pattern, readBytes, recoveredFrom, removeTempDir, sleep, spec } from './support/cluster-nodes.ts';
import { killEtcds, startEtcd, type TestEtcd } from './support/etcd.ts';
import { PassThroughDevice } from './support/pass-through-device.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const test = suite('cluster array on etcd');
let etcd: TestEtcd;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
let roots = 0;

test.before(async () => {
  etcd = await startEtcd();
});
test.after.each(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => {});
});
test.after(async () => {
  await etcd?.stop();
  killEtcds();
  removeTempDir();
});

/** A machine: its own etcd connection (through `proxy` if given) and lock manager; recoverSlot times noted. */
async function machine(root: string, options: { proxy?: TcpProxy; ttlSeconds?: number } = {}) {
  const url = options.proxy ? `http://${options.proxy.address}` : etcd.url;
  const store = await EtcdStore.connect({ urls: [url], requestTimeoutMs: 1000 });
  const manager = new EtcdLockManager(store, { root, leaseTtlSeconds: options.ttlSeconds ?? 2 });
  const recoveries: { memberName: string; atMs: number }[] = [];
  const watched: LockManager = {
    join: (lockspace: string, join: JoinOptions) => manager.join(lockspace, {
      ...join,
      callbacks: {
        ...join.callbacks,
        recoverSlot: (member) => {
          recoveries.push({ memberName: member.memberName, atMs: performance.now() });
          join.callbacks?.recoverSlot?.(member);
        },
      },
    }),
    close: () => manager.close(),
  };
  cleanups.push(() => store.close());
  cleanups.push(() => manager.close());
  return { manager, store, watched, recoveries };
}

/** A leg that notes when each write reaches it. */
class RecordingLeg extends PassThroughDevice {
  static readonly writes: { leg: string; atMs: number }[] = [];
  override async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    RecordingLeg.writes.push({ leg: this.name, atMs: performance.now() });
    return this.inner.write(offsetBytes, data, options);
  }
  override async flush(): Promise<void> {
    RecordingLeg.writes.push({ leg: this.name, atMs: performance.now() });
    return this.inner.flush();
  }
}

test('two nodes on their own etcd connections: each reads the other\'s writes; a node killed mid-write is recovered and resynced', async () => {
  const files = legFiles(2, 4 * MIB);
  const root = `/array/${++roots}/`;
  const one = await machine(root);
  const two = await machine(root);
  const a = await node(one.watched, files, 'A', { create: spec() });
  cleanups.push(() => a.array.close());
  const b = await node(two.watched, files, 'B');
  cleanups.push(() => b.array.close());
  await a.array.write(0, pattern(64 * 1024, 1));
  await a.array.flush();
  assert.equal(await readBytes(b.array, 0, 64 * 1024), pattern(64 * 1024, 1), 'B reads A\'s flushed write');
  await b.array.write(MIB, pattern(64 * 1024, 2), { fua: true });
  assert.equal(await readBytes(a.array, MIB, 64 * 1024), pattern(64 * 1024, 2), 'A reads B\'s write');
  // B writes on and is killed with writes in flight: its machine stops, its lease ends. What a
  // chunk may hold after: B's last flushed write there, or a later write of B's (not flushed).
  const allowed = new Map<number, Set<number>>();
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      const chunk = 2 + (i % 16);
      const seed = 10 + (i % 200);
      allowed.get(chunk)?.add(seed);
      try {
        await b.array.write(chunk * 64 * 1024, pattern(64 * 1024, seed));
        await b.array.flush();
        allowed.set(chunk, new Set([seed]));
      } catch {
        return;
      }
    }
  })();
  await sleep(150);
  b.array.abandon();
  await two.manager.kill(b.array.cluster.lockspace);
  writing = false;
  await writer;
  await recoveredFrom(a.array, 1);
  assert.ok(one.recoveries.some((r) => r.memberName === 'B'), 'A ran recovery for B');
  assertLegsEqual(files, 'after A recovered B');
  assert.ok(allowed.size > 0, 'B flushed writes before it died');
  for (const [chunk, seeds] of allowed) {
    const back = await readBytes(a.array, chunk * 64 * 1024, 64 * 1024);
    const found = [...seeds].find((seed) => pattern(64 * 1024, seed).every((byte, i) => byte === back[i]));
    assert.ok(found !== undefined, `chunk ${chunk} holds none of B's writes since its last flush (${[...seeds].join(', ')})`);
  }
});

test('a node cut off from etcd while it writes fences before the survivor recovers it, then assembles again', async () => {
  RecordingLeg.writes.length = 0;
  const files = legFiles(2, 4 * MIB);
  const root = `/array/${++roots}/`;
  const port = Number(new URL(etcd.url).port);
  const proxy = new TcpProxy({ host: '127.0.0.1', port });
  await proxy.listen('127.0.0.1');
  cleanups.push(() => proxy.close());
  const one = await machine(root);
  const two = await machine(root, { proxy });
  const a = await node(one.watched, files, 'A', { create: spec() });
  cleanups.push(() => a.array.close());
  const b = await node(two.watched, files, 'B', { wrap: (legs) => legs.map((leg) => new RecordingLeg(leg)) });
  const fenced: string[] = [];
  const lastAcked = new Map<number, number>();
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      const chunk = i % 32;
      try {
        await b.array.write(chunk * 64 * 1024, pattern(64 * 1024, i % 251), { fua: true });
        lastAcked.set(chunk, i % 251);
      } catch (error) {
        fenced.push(String(error));
        await sleep(20);
      }
    }
  })();
  await sleep(300);
  const cutAtMs = performance.now();
  proxy.stall();
  for (let i = 0; i < 1000 && one.recoveries.length === 0; i++) await sleep(10);
  assert.is(one.recoveries.length, 1, 'A recovered B');
  const recoveredAtMs = one.recoveries[0]!.atMs;
  writing = false;
  await writer;
  const late = RecordingLeg.writes.filter((w) => w.atMs >= recoveredAtMs);
  assert.equal(late, [], `B wrote to a leg after A began recovering it (cut at ${Math.round(cutAtMs)}, recovery at ${Math.round(recoveredAtMs)})`);
  assert.ok(fenced.some((line) => /fenced/.test(line)), `B's writes were refused as fenced: ${fenced.slice(0, 3).join(' | ')}`);
  assert.ok(b.array.status().fenced, 'B reports itself fenced');
  assert.ok(recoveredAtMs - cutAtMs <= 2 * 2000 + 1000, `recovery began ${Math.round(recoveredAtMs - cutAtMs)} ms after the cut (TTL 2 s)`);
  await recoveredFrom(a.array, 1);
  // Every write B had acknowledged is on the legs, as A reads it.
  for (const [chunk, seed] of lastAcked) assert.equal(await readBytes(a.array, chunk * 64 * 1024, 64 * 1024), pattern(64 * 1024, seed), `chunk ${chunk}`);
  assertLegsEqual(files, 'after A recovered B');
  // The cut heals: B stops its fenced array and assembles again on a fresh connection.
  await b.array.close().catch(() => {});
  proxy.heal();
  const again = await machine(root, { proxy });
  const b2 = await node(again.watched, files, 'B');
  cleanups.push(() => b2.array.close());
  await b2.array.write(0, pattern(64 * 1024, 77), { fua: true });
  assert.equal(await readBytes(a.array, 0, 64 * 1024), pattern(64 * 1024, 77), 'A reads the rejoined B');
  await b2.array.quiet();
  await a.array.quiet();
  assertLegsEqual(files, 'after B rejoined');
});

test.run();
