/**
 * The etcd store (runtime/locks/etcd/etcd-store.ts) against a real etcd started by the test, on
 * every runtime: prefix ranges at one revision, transactions that compare versions and create
 * revisions (the lock manager's put-and-check), a lease's keys gone when it is revoked or expires,
 * a watch from a revision seeing every later event in order, an unreachable etcd a clear error,
 * and etcd killed and restarted under a connected store.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { compareRevisions, EtcdStore } from '../runtime/locks/etcd/etcd-store.ts';
import { LeaseKeeper } from '../runtime/locks/etcd/lease-keeper.ts';
import { freePort } from './support/serve-process.ts';
import { killEtcds, startEtcd, type TestEtcd } from './support/etcd.ts';

const test = suite('etcd store');
let etcd: TestEtcd;
let store: EtcdStore;
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (value: Uint8Array) => new TextDecoder().decode(value);
const until = async (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

test.before(async () => {
  etcd = await startEtcd();
  store = await EtcdStore.connect({ urls: [etcd.url] });
});
test.after(async () => {
  store?.close();
  await etcd?.stop();
  killEtcds();
});

test('ranges read a prefix at one revision; keys come back in key order with their revisions', async () => {
  const put = (key: string, value: string) => store.txn([], [{ put: { key, value: bytes(value) } }]);
  await put('r/b', '2');
  await put('r/a', '1');
  await put('rx', 'not under r/');
  const read = await store.range('r/', true);
  assert.equal(read.kvs.map((kv) => [kv.key, text(kv.value), kv.version]), [['r/a', '1', '1'], ['r/b', '2', '1']]);
  assert.ok(compareRevisions(read.kvs[0]!.createRevision, read.kvs[1]!.createRevision) > 0, 'r/a was created after r/b');
  assert.ok(compareRevisions(read.revision, read.kvs[0]!.modRevision) >= 0);
  assert.equal((await store.range('r/a')).kvs.map((kv) => kv.key), ['r/a']);
});

test('a transaction applies its success ops only when every compare holds (create-if-absent, compare-and-swap)', async () => {
  const create = (key: string, value: string) => store.txn([{ key, target: 'version', op: '==', value: '0' }], [{ put: { key, value: bytes(value) } }], [{ range: { key } }]);
  const first = await create('t/slot1', 'node-a');
  assert.ok(first.succeeded);
  const second = await create('t/slot1', 'node-b');
  assert.not.ok(second.succeeded);
  assert.is(text(second.ranges[0]![0]!.value), 'node-a', 'the failure branch read the holder');
  const swap = await store.txn([{ key: 't/slot1', target: 'value', op: '==', value: bytes('node-a') }], [{ put: { key: 't/slot1', value: bytes('node-c') } }]);
  assert.ok(swap.succeeded);
  const stale = await store.txn([{ key: 't/slot1', target: 'modRevision', op: '<', value: first.revision }], [{ delete: { key: 't/slot1' } }]);
  assert.not.ok(stale.succeeded);
  assert.ok((await store.txn([], [{ delete: { key: 't/', prefix: true } }])).succeeded);
  assert.equal((await store.range('t/', true)).kvs, []);
});

test('a lease\'s keys go when it is revoked, and when it expires once no longer renewed; renewed, the holder may write', async () => {
  const fenced: string[] = [];
  const lease = await LeaseKeeper.grant(store, 2, (why) => fenced.push(why));
  await store.txn([], [{ put: { key: 'l/member', value: bytes('a'), lease: lease.id } }]);
  assert.is((await store.range('l/member')).kvs[0]!.lease, lease.id);
  await lease.revoke();
  assert.equal((await store.range('l/member')).kvs, []);
  const short = await LeaseKeeper.grant(store, 1, (why) => fenced.push(why));
  await store.txn([], [{ put: { key: 'l/gone', value: bytes('b'), lease: short.id } }]);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.is((await store.range('l/gone')).kvs.length, 1, 'kept alive past its TTL');
  assert.ok(short.writesAllowed(), 'renewed: writes allowed');
  assert.ok(short.remainingMs() > 0 && short.remainingMs() <= short.ttlMs - short.marginMs);
  short.stop();
  await until(async () => (await store.range('l/gone')).kvs.length === 0, 'the unrenewed lease to expire', 8000);
  assert.equal(fenced, []);
  const revokedElsewhere = await LeaseKeeper.grant(store, 1, (why) => fenced.push(why));
  await store.revokeLease(revokedElsewhere.id);
  await until(() => fenced.length === 1, 'the keeper to learn its lease is gone', 4000);
  assert.match(fenced[0]!, /lease is gone/);
  assert.not.ok(revokedElsewhere.writesAllowed());
});

test('a watch from a revision sees every later event under its prefix, in order', async () => {
  const start = (await store.range('w/', true)).revision;
  await store.txn([], [{ put: { key: 'w/1', value: bytes('x') } }]);
  const seen: string[] = [];
  const watch = await store.watchPrefix('w/', String(BigInt(start) + 1n), (events) => {
    for (const event of events) seen.push(`${event.type} ${event.kv.key}`);
  });
  await store.txn([], [{ put: { key: 'w/2', value: bytes('y') } }, { delete: { key: 'w/1' } }]);
  await store.txn([], [{ put: { key: 'other', value: bytes('z') } }]);
  await until(() => seen.length >= 3, 'three events');
  assert.equal(seen, ['put w/1', 'put w/2', 'delete w/1']);
  await watch.cancel();
});

test('an unreachable etcd is a clear error at connect', async () => {
  const port = await freePort();
  try {
    await EtcdStore.connect({ urls: [`http://127.0.0.1:${port}`], requestTimeoutMs: 800 });
    assert.unreachable('connected to nothing');
  } catch (error) {
    assert.match((error as Error).message, new RegExp(`etcd at http://127\\.0\\.0\\.1:${port} is not reachable`));
  }
});

test('etcd killed and restarted under a connected store: requests fail meanwhile, then work again on the same data', async () => {
  await store.txn([], [{ put: { key: 'k/survives', value: bytes('yes') } }]);
  await etcd.kill();
  let failed = false;
  try {
    await store.range('k/survives');
  } catch {
    failed = true;
  }
  assert.ok(failed, 'a request to a dead etcd fails');
  await etcd.restart();
  await until(async () => {
    try {
      return text((await store.range('k/survives')).kvs[0]?.value ?? new Uint8Array(0)) === 'yes';
    } catch {
      return false;
    }
  }, 'the store to reach the restarted etcd', 15_000);
});

test.run();
