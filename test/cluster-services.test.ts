/**
 * A clustered array across two blockcore services (separate processes, separate data
 * directories, the legs shared through a bind mount), coordinating through a real etcd: created
 * on one and assembled on the other, each reading the other's writes over NBD, GET /v1/cluster
 * (the other clustermd_tests scenarios are in cluster-services-md.test.ts), the refusals (a lock kind other than the array's, a node name taken), and node
 * B killed with SIGKILL at random points while it writes: node A recovers B's slot once B's lease
 * expires, resyncs, the legs end identical, and every write B acknowledged (FUA) is there; then B
 * is started again on its data directory and assembles again. Then etcd restarted under both
 * writing (they keep their leases or fence and join again; the legs end identical, no
 * acknowledged write lost), and B cut off from etcd by a stalling proxy while it writes: it
 * fences, A recovers it, and no leg changes after that until the cut heals and B joins again.
 * BLOCKCORE_KILL_TRIALS sets how many
 * kills (default 50 under Node, 8 under Bun and Deno); scripts/cluster-etcd-soak.ts runs more.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { detectRuntime } from '../runtime/adapter/index.ts';
import { Prng, seedFromEnv } from '../runtime/prng.ts';
import { attachNbd, type NbdAttachment } from './support/nbd-attach.ts';
import { spawnServe } from './support/serve-process.ts';
import { equal, sectorNotFrom, ServicePair, sleep, until } from './support/service-pair.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const test = suite('cluster across two services (etcd)');
const MIB = 1024 * 1024;
const LEG_BYTES = 34 * MIB;
const CHUNK = 64 * 1024;
const trials = Number(process.env.BLOCKCORE_KILL_TRIALS ?? (detectRuntime() === 'node' ? 50 : 8));

let pair: ServicePair;
test.before(async () => {
  pair = await ServicePair.start(2, LEG_BYTES);
});
test.after(async () => {
  await pair?.close();
});

const start = (node: number) => pair.startNode(node);
const api = (node: number, method: string, path: string, body?: unknown) => pair.api(node, method, path, body);
const ok = (node: number, method: string, path: string, body?: unknown) => pair.ok(node, method, path, body);
const nbdAddress = (node: number) => pair.nbdAddress(node);

const pattern = (seed: number) => Uint8Array.from({ length: CHUNK }, (_, i) => (i * 13 + seed * 7) & 0xff);

/** Node `node` reports the array with only the node slots in `slots` (its recovery of the others began). */
function sees(node: number, slots: number[]) {
  return until(async () => {
    const info = await ok(node, 'GET', '/v1/arrays/md0');
    return JSON.stringify(info.nodesSeen) === JSON.stringify(slots) ? info : null;
  }, `node ${node} to see slots ${slots.join(',')}`);
}

/** ... and no resync running. */
async function settledWith(node: number, slots: number[]) {
  await sees(node, slots);
  return until(async () => {
    const info = await ok(node, 'GET', '/v1/arrays/md0');
    return JSON.stringify(info.nodesSeen) === JSON.stringify(slots) && !info.recoveringNodes && info.resync.state === 'idle' ? info : null;
  }, `node ${node} to see slots ${slots.join(',')} with no recovery or resync running`);
}

async function legsIdentical(why: string): Promise<void> {
  const [first, second] = await pair.shared.dataAreas();
  assert.ok(first!.equals(second!), `${why}: the legs differ`);
}

test('created on one service, assembled on the other: both in GET /v1/cluster, each reads the other\'s writes (clustermd 00r1_Create)', async () => {
  await Promise.all([start(0), start(1)]);
  const created = await ok(0, 'POST', '/v1/arrays', { name: 'md0', legs: pair.shared.legs, level: 'raid1', lock: 'etcd', assumeClean: true, bitmapChunkBytes: 1 * MIB });
  assert.is(created.lock, 'etcd');
  // The other kind is refused, naming the field; then B assembles with the array's own kind.
  const wrongKind = await api(1, 'POST', '/v1/arrays', { name: 'md0', legs: pair.shared.legs, assemble: true });
  assert.is(wrongKind.status, 400);
  assert.is((wrongKind.json as { field?: string }).field, 'lock');
  await ok(1, 'POST', '/v1/arrays', { name: 'md0', legs: pair.shared.legs, assemble: true, lock: 'etcd' });
  const cluster = await ok(0, 'GET', '/v1/cluster');
  assert.equal(cluster.etcd.nodes.map((n: { name: string }) => n.name).sort(), ['node-a', 'node-b']);
  assert.is(cluster.etcd.reachable, true);
  const space = cluster.etcd.lockspaces[0];
  assert.equal(space.members.map((m: { name: string; slot: number }) => [m.name, m.slot]), [['node-a', 1], ['node-b', 2]]);
  await settledWith(0, [0, 1]);
  for (const node of [0, 1]) await ok(node, 'POST', '/v1/exports', { name: 'md0', device: 'array:md0' });
  const a = await attachNbd(nbdAddress(0), 'md0');
  const b = await attachNbd(nbdAddress(1), 'md0');
  try {
    await a.write(0, pattern(1), true);
    assert.ok(equal(await b.read(0, CHUNK), pattern(1)), 'B reads A\'s write');
    await b.write(CHUNK, pattern(2), true);
    assert.ok(equal(await a.read(CHUNK, CHUNK), pattern(2)), 'A reads B\'s write');
  } finally {
    await a.close();
    await b.close();
  }
  // A second service claiming node-b's name is refused at start with one line, and exits non-zero.
  const clash = spawnServe(pair.launcher, pair.args(1).map((arg) => (arg === pair.shared.dataDirs[1] ? `${pair.shared.root}/clash` : arg)), { cwd: pair.shared.root });
  const exit = await clash.exited;
  assert.is(exit.code, 1);
  assert.match(clash.stderr(), /node name "node-b" is taken in etcd .* by another service/);
});

test(`node B killed at random points while it writes (${trials} trials): A recovers it, the legs end identical, every acknowledged write is there`, async () => {
  const seed = seedFromEnv();
  const prng = new Prng(seed);
  const acked = new Map<number, Uint8Array>(); // chunk -> what it must hold: B's acknowledged writes
  const history = new Map<number, string[]>(); // chunk -> what happened to it, for a failure's message
  const note = (chunk: number, line: string) => history.set(chunk, [...(history.get(chunk) ?? []).slice(-8), line]);
  const recoveryMs: number[] = [];
  for (let trial = 0; trial < trials; trial++) {
    const what = `trial ${trial} (seed ${seed}; replay with BLOCKCORE_SEED=${seed})`;
    const b: NbdAttachment = await attachNbd(nbdAddress(1), 'md0');
    const inFlight = new Map<number, number>(); // chunk -> seed being written, unacknowledged
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const chunk = 2 + prng.below(64);
        const value = 1 + prng.below(250);
        inFlight.set(chunk, value);
        note(chunk, `trial ${trial}: write ${value} sent`);
        try {
          await b.write(chunk * CHUNK, pattern(value), true);
        } catch (error) {
          note(chunk, `trial ${trial}: write ${value} failed: ${String(error).slice(0, 120)}`);
          return;
        }
        note(chunk, `trial ${trial}: write ${value} acknowledged`);
        acked.set(chunk, pattern(value));
        inFlight.delete(chunk);
      }
    })();
    await sleep(20 + prng.below(300));
    const killedAt = performance.now();
    pair.services[1]!.signal('SIGKILL');
    await pair.services[1]!.exited;
    stop = true;
    await writer;
    await sees(0, [0]);
    recoveryMs.push(performance.now() - killedAt);
    await settledWith(0, [0]);
    await legsIdentical(what);
    const a = await attachNbd(nbdAddress(0), 'md0');
    try {
      // Each chunk holds B's last acknowledged write there; where a write was in flight at the
      // kill, any 512-byte sector may hold that write instead (a SIGKILL can cut a buffered write
      // between pages: an unacknowledged write may be torn, at sector granularity, never lost
      // when acknowledged). What the chunk holds now is what the next trials expect of it.
      for (const chunk of new Set([...acked.keys(), ...inFlight.keys()])) {
        const back = await a.read(chunk * CHUNK, CHUNK);
        const before = acked.get(chunk) ?? new Uint8Array(CHUNK);
        const pending = inFlight.get(chunk);
        const candidates = [before, ...(pending === undefined ? [] : [pattern(pending)])];
        const badSector = sectorNotFrom(back, candidates);
        if (badSector !== null) {
          const holds = [...Array(251).keys()].find((v) => equal(back, pattern(v)));
          assert.unreachable(`${what}: chunk ${chunk} sector ${badSector} holds neither B's acknowledged write nor the one in flight at the kill (${holds === undefined ? 'no whole pattern' : `pattern ${holds}`})\n  ` +
            `its history: ${(history.get(chunk) ?? []).join('; ')}\n  A's log:\n${pair.services[0]!.stderr().slice(-4000)}\n  B's log:\n${pair.services[1]!.stderr().slice(-3000)}`);
        }
        acked.set(chunk, back);
      }
    } finally {
      await a.close();
    }
    pair.services[1] = null;
    await start(1); // assembles md0 again from its state file, as a new member
    await settledWith(0, [0, 1]);
  }
  recoveryMs.sort((x, y) => x - y);
  console.log(`  node death to recovery start (TTL ${pair.ttlSeconds} s): median ${Math.round(recoveryMs[recoveryMs.length >> 1]!)} ms, max ${Math.round(recoveryMs.at(-1)!)} ms over ${trials} kills`);
});

test('etcd restarted under two writing services: each node keeps its lease or fences and joins again; the legs end identical and every acknowledged write is there', async () => {
  await settledWith(0, [0, 1]);
  const seed = seedFromEnv();
  const prng = new Prng(seed ^ 0x5eed);
  // Per chunk: the last acknowledged pattern, and the writes tried after it that failed (a fenced
  // node answers EIO; such a write may or may not have reached the legs, sector by sector).
  const acked = new Map<number, number>();
  const tried = new Map<number, number[]>();
  let stop = false;
  let failures = 0;
  const writer = async (node: number, firstChunk: number) => {
    const nbd = await attachNbd(nbdAddress(node), 'md0');
    try {
      while (!stop) {
        const chunk = firstChunk + prng.below(48);
        const value = 1 + prng.below(250);
        try {
          await nbd.write(chunk * CHUNK, pattern(value), true);
          acked.set(chunk, value);
          tried.delete(chunk);
        } catch {
          failures += 1;
          tried.set(chunk, [...(tried.get(chunk) ?? []), value]);
          await sleep(50);
        }
      }
    } finally {
      await nbd.close().catch(() => {});
    }
  };
  // A writes chunks 100..147, B chunks 200..247: two writers, never one chunk.
  const writers = [writer(0, 100), writer(1, 200)];
  try {
    await sleep(300);
    await pair.etcd.restart();
    await sleep(2500);
  } finally {
    stop = true; // also on a failure: running writers would keep the test process alive
    await Promise.all(writers);
  }
  // Both end as members again, unfenced, each seeing the other, nothing left to recover.
  for (const node of [0, 1]) {
    await until(async () => {
      const info = await ok(node, 'GET', '/v1/arrays/md0');
      return !info.fenced && info.error === null && JSON.stringify(info.nodesSeen) === '[0,1]' && !info.recoveringNodes && info.resync.state === 'idle';
    }, `node ${node} to be a member again with nothing to recover`, 30_000);
  }
  await legsIdentical('after the etcd restart');
  const a = await attachNbd(nbdAddress(0), 'md0');
  try {
    for (const chunk of new Set([...acked.keys(), ...tried.keys()])) {
      const back = await a.read(chunk * CHUNK, CHUNK);
      const candidates = [acked.has(chunk) ? pattern(acked.get(chunk)!) : new Uint8Array(CHUNK), ...(tried.get(chunk) ?? []).map(pattern)];
      const bad = sectorNotFrom(back, candidates);
      assert.is(bad, null, `chunk ${chunk} sector ${bad}: neither its last acknowledged write nor one tried after it (seed ${seed}); ${failures} writes failed\nA's log:\n${pair.service(0).stderr().slice(-3000)}\nB's log:\n${pair.service(1).stderr().slice(-3000)}`);
    }
  } finally {
    await a.close();
  }
  const how = [0, 1].map((node) => `${'AB'[node]} ${/assembled again after the fence/.test(pair.service(node).stderr()) ? 'fenced and joined again' : 'kept its lease'}`);
  console.log(`  etcd restart: ${how.join(', ')}; ${acked.size} chunks acknowledged, ${failures} writes refused meanwhile`);
});

test('node B cut off from etcd by a proxy while it writes: it fences, A recovers it and nothing writes the legs after that; the cut heals and B joins again', async () => {
  const port = Number(new URL(pair.etcd.url).port);
  const proxy = new TcpProxy({ host: '127.0.0.1', port });
  pair.etcdUrlOf[1] = `http://${await proxy.listen('127.0.0.1')}`;
  try {
    pair.service(1).signal('SIGTERM');
    await pair.service(1).exited;
    await start(1); // B now reaches etcd through the proxy
    await settledWith(0, [0, 1]);
    const acked = new Map<number, number>();
    const tried = new Map<number, number[]>();
    let refused = 0;
    let stop = false;
    const prng = new Prng(seedFromEnv() ^ 0xc0ffee);
    const b = await attachNbd(nbdAddress(1), 'md0');
    const writer = (async () => {
      while (!stop) {
        const chunk = 300 + prng.below(48);
        const value = 1 + prng.below(250);
        try {
          await b.write(chunk * CHUNK, pattern(value), true);
          acked.set(chunk, value);
          tried.delete(chunk);
        } catch {
          refused += 1;
          tried.set(chunk, [...(tried.get(chunk) ?? []), value]);
          await sleep(20);
        }
      }
    })();
    try {
      await sleep(300);
      proxy.stall();
      // Fenced: the array says so, or the service has stopped it to assemble it again (error says why).
      await until(async () => {
        const info = await ok(1, 'GET', '/v1/arrays/md0');
        return info.fenced === true || /fenced|lease/.test(info.error ?? '');
      }, 'B to report itself fenced', 10_000);
      // Slots may have changed places when both joined again after the etcd restart: A's own is its slot.
      const slotA = (await ok(0, 'GET', '/v1/arrays/md0')).slot as number;
      await settledWith(0, [slotA]).catch(async (error) => {
        throw new Error(`${error.message}\nA's cluster: ${JSON.stringify(await ok(0, 'GET', '/v1/cluster'))}\nA's log:\n${pair.service(0).stderr().slice(-2000)}\nB's log:\n${pair.service(1).stderr().slice(-3000)}`);
      }); // A recovered B's slot and resynced
      // From here no node may write the legs: B is fenced (its writer keeps trying) and A is idle.
      const [before] = await pair.shared.dataAreas([0]);
      await sleep(1000);
      const [after] = await pair.shared.dataAreas([0]);
      assert.ok(before!.equals(after!), 'a leg changed after A recovered B: the fenced node wrote');
      assert.ok(refused > 0, 'B refused writes while fenced');
      await legsIdentical('after A recovered B');
      proxy.heal();
      await settledWith(0, [0, 1]);
      await until(async () => {
        const info = await ok(1, 'GET', '/v1/arrays/md0');
        return !info.fenced && info.error === null && JSON.stringify(info.nodesSeen) === '[0,1]';
      }, 'B to join again once the cut healed', 30_000);
    } finally {
      // Also when a check above failed: a writer left running would keep the test process alive.
      stop = true;
      await writer;
      await b.close().catch(() => {});
    }
    await settledWith(0, [0, 1]);
    await legsIdentical('after B joined again');
    const a = await attachNbd(nbdAddress(0), 'md0');
    try {
      for (const chunk of new Set([...acked.keys(), ...tried.keys()])) {
        const back = await a.read(chunk * CHUNK, CHUNK);
        const candidates = [acked.has(chunk) ? pattern(acked.get(chunk)!) : new Uint8Array(CHUNK), ...(tried.get(chunk) ?? []).map(pattern)];
        assert.is(sectorNotFrom(back, candidates), null, `chunk ${chunk}: neither its last acknowledged write nor one tried after it`);
      }
    } finally {
      await a.close();
    }
  } finally {
    await proxy.close();
  }
});

test.run();
