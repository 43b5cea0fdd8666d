/**
 * What the etcd lock manager does beyond the shared conformance suite, against a real etcd: two
 * managers stand for two machines (a connection each). A member cut off from etcd fences itself
 * before its lease can expire and before the other member starts recovering it; garbage under
 * a lockspace's keys is reported by key and grants nothing; a name is one member's; etcd restarted
 * under running members.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { EtcdLockManager } from '../runtime/locks/etcd/etcd-lock-manager.ts';
import { EtcdStore } from '../runtime/locks/etcd/etcd-store.ts';
import { LockspaceKeys } from '../runtime/locks/etcd/lock-keys.ts';
import { LockError } from '../runtime/locks/lock-error.ts';
import type { Lockspace } from '../runtime/locks/lock-manager.ts';
import { LockMode } from '../runtime/locks/modes.ts';
import { killEtcds, startEtcd, type TestEtcd } from './support/etcd.ts';
import { TcpProxy } from './support/tcp-proxy.ts';

const test = suite('etcd lock manager');
const { NL, CR, PW, EX } = LockMode;
let etcd: TestEtcd;
const cleanups: (() => Promise<void> | void)[] = [];
let roots = 0;

test.before(async () => {
  etcd = await startEtcd();
});
test.after.each(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
test.after(async () => {
  await etcd?.stop();
  killEtcds();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const until = async (check: () => boolean, what: string, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
};

/** A manager over a connection of its own (optionally through `proxy`), on a key root shared by the test's managers. */
async function machine(root: string, options: { proxy?: TcpProxy; ttlSeconds?: number; warn?: (line: string) => void } = {}) {
  const url = options.proxy ? `http://${options.proxy.address}` : etcd.url;
  const store = await EtcdStore.connect({ urls: [url], requestTimeoutMs: 1000 });
  const manager = new EtcdLockManager(store, { root, leaseTtlSeconds: options.ttlSeconds ?? 5, ...(options.warn ? { warn: options.warn } : {}) });
  cleanups.push(async () => {
    await manager.close().catch(() => {});
    store.close();
  });
  return { store, manager };
}

test('a member cut off from etcd fences itself before its lease can expire; the other recovers it after', async () => {
  const root = `/fence/${++roots}/`;
  const port = Number(new URL(etcd.url).port);
  const proxy = new TcpProxy({ host: '127.0.0.1', port });
  await proxy.listen('127.0.0.1');
  cleanups.push(() => proxy.close());
  const a = await machine(root, { ttlSeconds: 2 });
  const b = await machine(root, { proxy, ttlSeconds: 2 });
  const events: string[] = [];
  let recoveredAtMs = 0;
  const spaceA = await a.manager.join('fence', {
    memberName: 'a',
    callbacks: { recoverSlot: (member) => { recoveredAtMs = performance.now(); events.push(`a recovers ${member.memberName}`); } },
  });
  const spaceB = await b.manager.join('fence', { memberName: 'b' });
  const bitmapB = await spaceB.lock('bitmap0002', PW);
  bitmapB.valueBlock.fill(0x42);
  // B "writes" as long as it may, recording when it last did.
  let lastWriteMs = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      if (spaceB.writesAllowed()) lastWriteMs = performance.now();
      await sleep(2);
    }
  })();
  await sleep(300);
  const cutAtMs = performance.now();
  proxy.stall();
  await until(() => !spaceB.writesAllowed(), 'b to fence itself', 10_000);
  const fencedAtMs = performance.now();
  await until(() => recoveredAtMs > 0, 'a to recover b', 15_000);
  writing = false;
  await writer;
  assert.equal(events, ['a recovers b']);
  assert.ok(lastWriteMs < recoveredAtMs, `b wrote at ${lastWriteMs - cutAtMs} ms after the cut, a recovered at ${recoveredAtMs - cutAtMs} ms`);
  assert.ok(fencedAtMs - cutAtMs <= 2000, `fenced ${fencedAtMs - cutAtMs} ms after the cut (TTL 2000 ms)`);
  assert.ok(recoveredAtMs - cutAtMs <= 2 * 2000 + 1000, `recovery started ${recoveredAtMs - cutAtMs} ms after the cut (TTL 2000 ms)`);
  assert.is(spaceB.live, false);
  try {
    await spaceB.lock('x', NL);
    assert.unreachable('a fenced member locked');
  } catch (error) {
    assert.is((error as LockError).code, 'ENOTCONN');
  }
  const taken = await spaceA.lock('bitmap0002', PW);
  assert.is(taken.valueBlockValid, false, 'the fenced PW holder left the block invalid');
  await taken.unlock();
  // The cut heals: b's machine joins again as a new member, on a fresh connection.
  proxy.heal();
  const again = await machine(root, { proxy, ttlSeconds: 2 });
  const rejoined = await again.manager.join('fence', { memberName: 'b' });
  assert.is(rejoined.slot, 2);
  const lock = await rejoined.lock('bitmap0002', PW);
  assert.is(lock.held, true);
});

test('garbage values under the lockspace are reported by key and grant nothing; a garbage head refuses its resource', async () => {
  const root = `/garbage/${++roots}/`;
  const warnings: string[] = [];
  const { store, manager } = await machine(root, { warn: (line) => warnings.push(line) });
  const space = await manager.join('g', { memberName: 'a' });
  const keys = new LockspaceKeys(root, 'g');
  const bytes = (text: string) => new TextEncoder().encode(text);
  const bad = keys.lock('r', '12345', 1);
  await store.txn([], [{ put: { key: bad, value: bytes('{"g":5}') } }]);
  await manager.settle(); // the member's mirror has the garbage before it decides
  const lock = await space.lock('r', EX);
  assert.is(lock.held, true, 'an undecodable "EX holder" does not block');
  assert.ok(warnings.some((line) => line.includes(bad) && / is not /.test(line)), warnings.join('\n'));
  await lock.unlock();
  await store.txn([], [{ put: { key: keys.head('h'), value: bytes('garbage') } }]);
  try {
    await space.lock('h', CR);
    assert.unreachable('locked a resource whose head is garbage');
  } catch (error) {
    assert.is((error as LockError).code, 'EPROTO');
    assert.match((error as Error).message, new RegExp(keys.head('h').replace(/[/]/g, '\\/')));
  }
  await store.txn([], [{ put: { key: keys.member('999'), value: bytes('[]') } }]);
  const other = await manager.join('g', { memberName: 'b' });
  assert.is(other.slot, 2);
  assert.ok(warnings.some((line) => line.includes(keys.member('999'))), `${keys.member('999')} not in: ${warnings.join('\n')}`);
});

test('a name is one member\'s: a second machine claiming it is refused until the first leaves', async () => {
  const root = `/names/${++roots}/`;
  const one = await machine(root);
  const two = await machine(root);
  const first = await one.manager.join('n', { memberName: 'node-a' });
  try {
    await two.manager.join('n', { memberName: 'node-a' });
    assert.unreachable('two members of one name');
  } catch (error) {
    assert.is((error as LockError).code, 'EINVAL');
    assert.match((error as Error).message, /node-a is already in lockspace n/);
  }
  await first.leave();
  const second = await two.manager.join('n', { memberName: 'node-a' });
  assert.is(second.slot, 1);
});

test('etcd restarted under running members: calls made meanwhile complete once it is back, members stay', async () => {
  const root = `/restart/${++roots}/`;
  // A TTL of 10 s: the restart and the reconnect fit in its 7.5 s of writing (lease-keeper.ts).
  const a = await machine(root, { ttlSeconds: 10 });
  const b = await machine(root, { ttlSeconds: 10 });
  const spaceA: Lockspace = await a.manager.join('r', { memberName: 'a' });
  const spaceB: Lockspace = await b.manager.join('r', { memberName: 'b' });
  const held = await spaceA.lock('token', EX);
  await etcd.kill();
  const waiting = spaceB.lock('token', EX);
  await sleep(300);
  await etcd.restart();
  await held.unlock();
  const got = await waiting;
  assert.is(got.mode, EX);
  assert.ok(spaceA.live && spaceB.live, 'both members survived a restart shorter than their lease');
  assert.ok(spaceA.writesAllowed() && spaceB.writesAllowed());
});

test.run();
