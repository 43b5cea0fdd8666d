/**
 * The lock-manager conformance suite: every LockManager (in-process now, etcd later) passes the
 * same cases, on every runtime. The cases pin the DLM semantics md-cluster relies on (modes,
 * queues, conversions, NOQUEUE, cancel, blocking callbacks, value blocks, slots, recovery); the
 * seeded model test (lock-model.ts) drives random requests from several nodes and checks every
 * step.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LOCK_MODES, LockMode, compatible, modeName, VALUE_BLOCK_BYTES } from '../../runtime/locks/modes.ts';
import { failedWith, grantedLock, Node, rejectsWith, stillWaiting, track, type LockManagerFactory, type LockManagerHarness } from './lock-harness.ts';
import { lockModelCases } from './lock-model.ts';

const { NL, CR, CW, PR, PW, EX } = LockMode;

/** `after` runs once the cases are done (stopping what the factory shares between harnesses). */
export function lockManagerConformance(label: string, factory: LockManagerFactory, after?: () => Promise<void>): void {
  const test = suite(`lock manager conformance: ${label}`);
  if (after !== undefined) test.after(after);
  let lockspaceCount = 0;

  /** Runs `body` with a fresh harness and `count` nodes joined to a fresh lockspace. */
  async function withNodes(count: number, body: (nodes: Node[], harness: LockManagerHarness, lockspace: string) => Promise<void>): Promise<void> {
    const harness = await factory();
    const lockspace = `ls${++lockspaceCount}`;
    try {
      const nodes: Node[] = [];
      for (let i = 0; i < count; i++) nodes.push(await Node.join(harness.manager, lockspace, `node${i + 1}`));
      await harness.settle();
      await body(nodes, harness, lockspace);
    } finally {
      await harness.close();
    }
  }

  test('slots are 1-based, the lowest free one, and given again after a member leaves', () =>
    withNodes(3, async ([a, b, c], harness, lockspace) => {
      assert.equal([a!.space.slot, b!.space.slot, c!.space.slot], [1, 2, 3]);
      await b!.space.leave();
      assert.is(b!.space.live, false);
      const d = await Node.join(harness.manager, lockspace, 'node4');
      assert.is(d.space.slot, 2);
      await rejectsWith(Node.join(harness.manager, lockspace, 'node1'), 'EINVAL');
    }));

  test('the compatibility matrix: a NOQUEUE request beside a held lock is granted exactly when the modes are compatible', () =>
    withNodes(2, async ([a, b], harness) => {
      for (const held of LOCK_MODES) {
        for (const requested of LOCK_MODES) {
          const resource = `m-${held}-${requested}`;
          const first = grantedLock(await settled(harness, a!.request(resource, held)), 'holder');
          const second = await settled(harness, b!.request(resource, requested, { noQueue: true }));
          const what = `${modeName(held)} held, ${modeName(requested)} asked`;
          if (compatible(held, requested)) await grantedLock(second, what).unlock();
          else failedWith(second, 'EAGAIN', what);
          assert.equal(a!.blockingFor(first), [], `${what}: a NOQUEUE refusal sends no blocking callback`);
          await first.unlock();
        }
      }
    }));

  test('waiting requests are granted in order when the holder unlocks, and the holder hears the mode they wait for', () =>
    withNodes(3, async ([a, b, c], harness) => {
      const held = grantedLock(await settled(harness, a!.request('r', EX)), 'a EX');
      const bWaits = b!.request('r', PR);
      const cWaits = c!.request('r', PW);
      await harness.settle();
      stillWaiting(bWaits, 'b PR');
      stillWaiting(cWaits, 'c PW');
      assert.equal(a!.blockingFor(held), [PR, PW], 'one blocking callback per higher mode');
      await held.unlock();
      await harness.settle();
      const bLock = grantedLock(bWaits, 'b PR after unlock');
      stillWaiting(cWaits, 'c PW waits on b PR');
      assert.equal(b!.blockingFor(bLock), [PW], 'a newly granted lock that blocks a waiter is told');
      await bLock.unlock();
      await harness.settle();
      await grantedLock(cWaits, 'c PW').unlock();
    }));

  test('a new request queues behind an earlier waiter even when its own mode would fit (order kept)', () =>
    withNodes(3, async ([a, b, c], harness) => {
      const held = grantedLock(await settled(harness, a!.request('r', PR)), 'a PR');
      const bWaits = b!.request('r', EX);
      await harness.settle();
      const cAsks = c!.request('r', CR);
      await harness.settle();
      stillWaiting(cAsks, 'c CR behind b EX');
      await held.unlock();
      await harness.settle();
      const bLock = grantedLock(bWaits, 'b EX');
      stillWaiting(cAsks, 'c CR behind b EX');
      await bLock.unlock();
      await harness.settle();
      grantedLock(cAsks, 'c CR');
    }));

  test('conversions go ahead of new requests; down-conversion is immediate; NOQUEUE conversion fails and keeps the mode', () =>
    withNodes(3, async ([a, b, c], harness) => {
      const aLock = grantedLock(await settled(harness, a!.request('r', PR)), 'a PR');
      const bLock = grantedLock(await settled(harness, b!.request('r', CR)), 'b CR');
      const aUp = track(aLock.convert(EX));
      const cNew = c!.request('r', CR);
      await harness.settle();
      stillWaiting(aUp, 'a PR->EX waits on b CR');
      stillWaiting(cNew, 'c CR waits behind a conversion');
      assert.is(aLock.mode, PR, 'a waiting conversion keeps the granted mode');
      assert.equal(b!.blockingFor(bLock), [EX]);
      const bUp = track(bLock.convert(PW, { noQueue: true }));
      await harness.settle();
      failedWith(bUp, 'EAGAIN', 'b CR->PW NOQUEUE');
      assert.is(bLock.mode, CR);
      await bLock.convert(NL); // down-conversion: immediate, and NL no longer blocks EX
      await harness.settle();
      assert.is(aUp.outcome !== undefined && !('error' in aUp.outcome), true, 'a EX granted once b is NL');
      assert.is(aLock.mode, EX);
      stillWaiting(cNew, 'c CR waits on a EX');
      await aLock.convert(CR);
      await harness.settle();
      grantedLock(cNew, 'c CR beside a CR');
    }));

  test('two conversions that would wait on each other: the second fails EDEADLK and keeps its mode', () =>
    withNodes(2, async ([a, b], harness) => {
      const aLock = grantedLock(await settled(harness, a!.request('r', PR)), 'a PR');
      const bLock = grantedLock(await settled(harness, b!.request('r', PR)), 'b PR');
      const aUp = track(aLock.convert(EX));
      await harness.settle();
      stillWaiting(aUp, 'a PR->EX');
      const bUp = track(bLock.convert(EX));
      await harness.settle();
      failedWith(bUp, 'EDEADLK', 'b PR->EX');
      assert.is(bLock.mode, PR);
      await bLock.unlock();
      await harness.settle();
      assert.is(aLock.mode, EX);
    }));

  test('cancel: a waiting request fails ECANCELED and is never granted; a waiting conversion fails and keeps its mode', () =>
    withNodes(2, async ([a, b], harness) => {
      const held = grantedLock(await settled(harness, a!.request('r', EX)), 'a EX');
      const abort = new AbortController();
      const bWaits = b!.request('r', CR, { signal: abort.signal });
      await harness.settle();
      abort.abort();
      await harness.settle();
      failedWith(bWaits, 'ECANCELED', 'cancelled request');
      await held.convert(PR);
      const bLock = grantedLock(await settled(harness, b!.request('r', PR)), 'b PR');
      const convertAbort = new AbortController();
      const aUp = track(held.convert(EX, { signal: convertAbort.signal }));
      await harness.settle();
      stillWaiting(aUp, 'a PR->EX');
      convertAbort.abort();
      await harness.settle();
      failedWith(aUp, 'ECANCELED', 'cancelled conversion');
      assert.is(held.mode, PR);
      assert.is(held.held, true);
      await bLock.unlock();
      await held.unlock();
      assert.is(held.held, false);
      await rejectsWith(held.unlock(), 'EINVAL');
    }));

  test('value block: written by PW/EX on down-convert and unlock, read on grant, untouched by lower modes', () =>
    withNodes(2, async ([a, b], harness) => {
      const aLock = grantedLock(await settled(harness, a!.request('v', EX)), 'a EX');
      assert.equal(aLock.valueBlock, new Uint8Array(VALUE_BLOCK_BYTES), 'a new resource has a zero block');
      assert.is(aLock.valueBlockValid, true);
      aLock.valueBlock.fill(0x11);
      await aLock.convert(CW); // EX -> CW writes
      const bLock = grantedLock(await settled(harness, b!.request('v', CR)), 'b CR');
      assert.equal(bLock.valueBlock, new Uint8Array(VALUE_BLOCK_BYTES).fill(0x11));
      bLock.valueBlock.fill(0x22); // a CR holder's block goes nowhere
      await bLock.unlock();
      await aLock.unlock();
      const again = grantedLock(await settled(harness, b!.request('v', PW)), 'b PW');
      assert.equal(again.valueBlock[0], 0x11);
      again.valueBlock.fill(0x33);
      await again.convert(EX); // PW -> EX reads: the holder's unsent bytes are replaced
      assert.equal(again.valueBlock[0], 0x11);
      again.valueBlock.fill(0x44);
      await again.unlock(); // EX unlock writes
      const last = grantedLock(await settled(harness, a!.request('v', NL)), 'a NL');
      assert.equal(last.valueBlock[63], 0x44);
    }));

  test('a member that dies holding PW leaves the block invalid until written again; recovery callbacks in order', () =>
    withNodes(3, async ([a, b, c], harness) => {
      const cLock = grantedLock(await settled(harness, c!.request('bitmap0002', PW)), 'c PW');
      cLock.valueBlock.fill(0x55);
      const aProbe = a!.request('bitmap0002', PW, { noQueue: true });
      const bWaits = b!.request('bitmap0002', PW);
      await harness.settle();
      failedWith(aProbe, 'EAGAIN', 'probe of a live node');
      stillWaiting(bWaits, 'b PW while c lives');
      for (const node of [a!, b!]) node.recovery.length = 0;
      await harness.kill(c!.space);
      await harness.settle();
      for (const node of [a!, b!]) {
        assert.equal(node.recovery, [
          { kind: 'prep' },
          { kind: 'slot', member: { memberName: 'node3', slot: 3 } },
          { kind: 'done', slots: [1, 2], ourSlot: node.space.slot },
        ]);
      }
      const bLock = grantedLock(bWaits, 'b PW once c is purged');
      assert.is(bLock.valueBlockValid, false, 'the dead PW holder invalidated the block');
      assert.equal(bLock.valueBlock, new Uint8Array(VALUE_BLOCK_BYTES), 'its unsent bytes never reached the resource');
      bLock.valueBlock.fill(0x66);
      await bLock.convert(NL);
      assert.is(bLock.valueBlockValid, true);
      const aLock = grantedLock(await settled(harness, a!.request('bitmap0002', CR)), 'a CR');
      assert.is(aLock.valueBlockValid, true);
      assert.is(aLock.valueBlock[0], 0x66);
      await rejectsWith(c!.space.lock('x', NL), 'ENOTCONN');
    }));

  test('bad arguments are refused with EINVAL and change nothing', () =>
    withNodes(1, async ([a], harness) => {
      for (const mode of [-1, 6, 2.5, NaN, '3' as unknown as number]) {
        await rejectsWith(a!.space.lock('r', mode as LockMode), 'EINVAL');
      }
      for (const name of ['', 'x'.repeat(65)]) {
        await rejectsWith(a!.space.lock(name, EX), 'EINVAL');
      }
      await rejectsWith(harness.manager.join('ls-bad', { memberName: '' }), 'EINVAL');
      const lock = grantedLock(await settled(harness, a!.request('r', EX)), 'EX after refusals');
      await rejectsWith(lock.convert(9 as LockMode), 'EINVAL');
      assert.is(lock.mode, EX);
    }));

  lockModelCases(test, factory);
  test.run();
}

async function settled<T>(harness: LockManagerHarness, pending: T): Promise<T> {
  await harness.settle();
  return pending;
}
