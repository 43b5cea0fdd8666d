/**
 * The seeded model test of the lock-manager conformance suite: nodes join, request, convert,
 * unlock, cancel, leave and die at random on a few resources; after every step (and `settle`) the
 * observed state is checked against the rules:
 * - never two incompatible grants on a resource;
 * - no lost wakeups: every waiting request is blocked by the rules (a granted lock it conflicts
 *   with, a conversion ahead of a new request, an earlier waiter), and every granted lock that
 *   blocks a waiter has been told a mode at least as strong while in its current mode;
 * - queue order: a new request is never granted while an earlier one on the resource waits, nor
 *   while a conversion waits;
 * - NOQUEUE and EDEADLK outcomes exactly when the rules say;
 * - value blocks: a reading grant sees the bytes the model says the resource holds (written by
 *   PW/EX holders moving down or unlocking), invalid after a PW/EX holder died or left.
 * A failure names the seed and the step; BLOCKCORE_SEED replays it.
 */
import type { Test } from 'uvu';
import type { Lock, Lockspace } from '../../runtime/locks/lock-manager.ts';
import { LockError } from '../../runtime/locks/lock-error.ts';
import { compatible, LockMode, modeName, VALUE_BLOCK_BYTES, valueBlockOp } from '../../runtime/locks/modes.ts';
import { Prng, seedFromEnv } from '../../runtime/prng.ts';
import { track, type LockManagerFactory, type Pending } from './lock-harness.ts';

const RESOURCES = ['token', 'message', 'ack'];
const STEPS = 400;

interface ModelNode {
  readonly name: string;
  readonly space: Lockspace;
  live: boolean;
}

/** One lock's life as the test sees it. */
interface Req {
  readonly id: number;
  readonly node: ModelNode;
  readonly resource: string;
  /** Order of the new request among all requests. */
  readonly seq: number;
  readonly newMode: LockMode;
  lock: Lock | null;
  pendingNew: { pending: Pending<Lock>; abort: AbortController; noQueue: boolean; expectGrant: boolean } | null;
  pendingConvert: {
    pending: Pending<void>; abort: AbortController; mode: LockMode; from: LockMode;
    expect: 'grant-or-wait' | 'EAGAIN' | 'EDEADLK' | 'grant';
  } | null;
  cancelled: boolean;
  /** Blocking callbacks heard: the mode asked for and the mode this lock held when told. */
  blocking: { mode: LockMode; heldMode: LockMode }[];
  done: boolean;
}

interface ModelResource {
  block: Uint8Array;
  valid: boolean;
}

export function lockModelCases(test: Test, factory: LockManagerFactory): void {
  for (const nodesMax of [3, 5]) {
    test(`seeded model: up to ${nodesMax} nodes on ${RESOURCES.length} resources, ${STEPS} steps, checked at every step`, async () => {
      const seed = seedFromEnv();
      const harness = await factory();
      let step = 0;
      try {
        await runModel(new Prng(seed), nodesMax, harness, (n) => { step = n; });
      } catch (error) {
        if (error instanceof Error) error.message += ` [lock model: seed ${seed}, step ${step}; replay with BLOCKCORE_SEED=${seed}]`;
        throw error;
      } finally {
        await harness.close();
      }
    });
  }
}

async function runModel(
  prng: Prng,
  nodesMax: number,
  harness: Awaited<ReturnType<LockManagerFactory>>,
  atStep: (step: number) => void,
): Promise<void> {
  const lockspace = `model-${prng.seed}-${nodesMax}`;
  const nodes: ModelNode[] = [];
  const reqs: Req[] = [];
  const model = new Map<string, ModelResource>();
  let nodeCount = 0;
  let seq = 0;
  /** The steps so far, the last of them printed with a failure. */
  const trace: string[] = [];
  const note = (line: string) => trace.push(`${trace.length + 1}: ${line}`);
  const resourceState = (name: string): ModelResource => {
    let state = model.get(name);
    if (state === undefined) model.set(name, (state = { block: new Uint8Array(VALUE_BLOCK_BYTES), valid: true }));
    return state;
  };
  const live = () => nodes.filter((n) => n.live);
  const active = (resource: string) => reqs.filter((r) => !r.done && r.resource === resource);
  const grantedOn = (resource: string) => active(resource).filter((r) => r.lock !== null && r.lock.held);
  const convertingOn = (resource: string) => active(resource).filter((r) => r.pendingConvert !== null && r.pendingConvert.pending.outcome === undefined);
  const waitingOn = (resource: string) => active(resource).filter((r) => r.pendingNew !== null && r.pendingNew.pending.outcome === undefined).sort((a, b) => a.seq - b.seq);
  const fits = (resource: string, mode: LockMode, self: Req | null) => grantedOn(resource).every((g) => g === self || compatible(g.lock!.mode, mode));

  async function join(): Promise<void> {
    const name = `n${++nodeCount}`;
    const space = await harness.manager.join(lockspace, { memberName: name });
    note(`${name} joins (slot ${space.slot})`);
    nodes.push({ name, space, live: true });
  }

  /** A member leaves or dies: the model applies the purge (PW/EX holders invalidate). */
  async function depart(node: ModelNode, how: 'leave' | 'kill'): Promise<void> {
    for (const r of reqs) {
      if (r.node !== node || r.done) continue;
      if (r.lock !== null && r.lock.held && r.lock.mode >= LockMode.PW) resourceState(r.resource).valid = false;
      r.done = true;
    }
    node.live = false;
    note(`${node.name} ${how}s`);
    if (how === 'leave') await node.space.leave();
    else await harness.kill(node.space);
    if (live().length === 0) model.clear(); // the lockspace is gone with its last member, blocks too
  }

  function request(node: ModelNode): void {
    const resource = RESOURCES[prng.below(RESOURCES.length)]!;
    const mode = prng.below(6) as LockMode;
    const noQueue = prng.chance(0.25);
    const abort = new AbortController();
    const expectGrant = convertingOn(resource).length === 0 && waitingOn(resource).length === 0 && fits(resource, mode, null);
    const req: Req = {
      id: reqs.length, node, resource, seq: ++seq, newMode: mode, lock: null, pendingNew: null, pendingConvert: null,
      cancelled: false, blocking: [], done: false,
    };
    const pending = track(node.space.lock(resource, mode, {
      noQueue, signal: abort.signal,
      onBlocking: (asked) => req.blocking.push({ mode: asked, heldMode: req.lock?.mode ?? mode }),
    }));
    req.pendingNew = { pending, abort, noQueue, expectGrant };
    note(`${node.name} asks ${resource} ${modeName(mode)}${noQueue ? ' NOQUEUE' : ''} as ${req.id}`);
    reqs.push(req);
  }

  function writeBlockMaybe(req: Req): void {
    if (req.lock!.mode >= LockMode.PW && prng.chance(0.7)) prng.fill(req.lock!.valueBlock);
  }

  function convert(req: Req): void {
    const lock = req.lock!;
    const mode = prng.below(6) as LockMode;
    const noQueue = prng.chance(0.2);
    writeBlockMaybe(req);
    const grantable = fits(req.resource, mode, req);
    const deadlock = !grantable && convertingOn(req.resource).some((c) =>
      !compatible(c.lock!.mode, mode) && !compatible(lock.mode, c.pendingConvert!.mode));
    const expect = grantable ? 'grant' : noQueue ? 'EAGAIN' : deadlock ? 'EDEADLK' : 'grant-or-wait';
    if (grantable && valueBlockOp(lock.mode, mode) === 'write') {
      const state = resourceState(req.resource);
      state.block = lock.valueBlock.slice();
      state.valid = true;
    }
    const abort = new AbortController();
    note(`${req.node.name} converts ${req.id} ${modeName(lock.mode)}->${modeName(mode)}${noQueue ? ' NOQUEUE' : ''} (expect ${expect})`);
    const from = lock.mode; // before the call: an immediate grant changes it
    req.pendingConvert = { pending: track(lock.convert(mode, { noQueue, signal: abort.signal })), abort, mode, from, expect };
  }

  async function unlock(req: Req): Promise<void> {
    writeBlockMaybe(req);
    if (valueBlockOp(req.lock!.mode, null) === 'write') {
      const state = resourceState(req.resource);
      state.block = req.lock!.valueBlock.slice();
      state.valid = true;
    }
    req.done = true;
    note(`${req.node.name} unlocks ${req.id} (${modeName(req.lock!.mode)})`);
    await req.lock!.unlock();
  }

  /** After settle: fold outcomes into the observed state, checking each against the rules. */
  function observe(): void {
    for (const r of reqs) {
      const pn = r.pendingNew;
      if (pn !== null && pn.pending.outcome !== undefined) {
        r.pendingNew = null;
        const outcome = pn.pending.outcome;
        if ('error' in outcome) {
          const code = outcome.error instanceof LockError ? outcome.error.code : String(outcome.error);
          if (r.done) continue; // its node departed
          if (code === 'EAGAIN') check(pn.noQueue && !pn.expectGrant, `request ${r.id}: EAGAIN but grantable or queued`);
          else check(code === 'ECANCELED' && r.cancelled, `request ${r.id}: unexpected ${code}`);
          r.done = true;
          continue;
        }
        check(!(pn.noQueue && !pn.expectGrant), `request ${r.id}: NOQUEUE ${modeName(r.newMode)} granted though not grantable`);
        check(!r.done, `request ${r.id}: granted after its node departed`);
        r.lock = outcome.value;
        check(r.lock.mode === r.newMode, `request ${r.id}: granted ${modeName(r.lock.mode)}, asked ${modeName(r.newMode)}`);
        const earlier = waitingOn(r.resource).filter((w) => w.seq < r.seq);
        check(earlier.length === 0, `request ${r.id} granted while earlier request ${earlier[0]?.id} waits (queue order)`);
        check(convertingOn(r.resource).length === 0, `request ${r.id} granted while a conversion waits on ${r.resource}`);
        checkBlock(r, 'new grant');
      }
      const pc = r.pendingConvert;
      if (pc !== null && pc.pending.outcome !== undefined) {
        r.pendingConvert = null;
        const outcome = pc.pending.outcome;
        if (r.done) continue;
        if ('error' in outcome) {
          const code = outcome.error instanceof LockError ? outcome.error.code : String(outcome.error);
          const expected = pc.expect === 'grant-or-wait' ? (r.cancelled ? 'ECANCELED' : 'none') : pc.expect;
          check(code === expected, `conversion of ${r.id} ${modeName(pc.from)}->${modeName(pc.mode)}: ${code}, expected ${expected}`);
          check(r.lock!.mode === pc.from, `conversion of ${r.id} failed but the mode moved`);
          r.cancelled = false;
          continue;
        }
        check(pc.expect === 'grant' || pc.expect === 'grant-or-wait', `conversion of ${r.id}: granted, expected ${pc.expect}`);
        check(r.lock!.mode === pc.mode, `conversion of ${r.id}: mode ${modeName(r.lock!.mode)} after a grant of ${modeName(pc.mode)}`);
        r.blocking = r.blocking.filter((b) => b.heldMode === pc.mode);
        if (valueBlockOp(pc.from, pc.mode) === 'read') checkBlock(r, 'conversion grant');
      } else if (pc !== null && pc.expect !== 'grant-or-wait') {
        check(false, `conversion of ${r.id} ${modeName(pc.from)}->${modeName(pc.mode)} waits, expected ${pc.expect} at once`);
      }
    }
  }

  function checkBlock(r: Req, what: string): void {
    const state = resourceState(r.resource);
    check(r.lock!.valueBlockValid === state.valid, `${what} of ${r.id}: valueBlockValid ${r.lock!.valueBlockValid}, model ${state.valid}`);
    check(equalBytes(r.lock!.valueBlock, state.block), `${what} of ${r.id}: value block differs from the model's`);
  }

  function invariants(): void {
    for (const resource of RESOURCES) {
      const granted = grantedOn(resource);
      for (const a of granted) for (const b of granted) {
        if (a !== b) check(compatible(a.lock!.mode, b.lock!.mode), `${resource}: ${modeName(a.lock!.mode)} (${a.id}) and ${modeName(b.lock!.mode)} (${b.id}) granted together`);
      }
      const converting = convertingOn(resource);
      const waiting = waitingOn(resource);
      for (const c of converting) {
        const mode = c.pendingConvert!.mode;
        check(!fits(resource, mode, c), `${resource}: conversion of ${c.id} to ${modeName(mode)} waits though grantable (lost wakeup)`);
        checkTold(resource, c, mode);
      }
      waiting.forEach((w, index) => {
        const blocked = converting.length > 0 || index > 0 || !fits(resource, w.newMode, null);
        check(blocked, `${resource}: request ${w.id} ${modeName(w.newMode)} waits though grantable (lost wakeup)`);
        checkTold(resource, w, w.newMode);
      });
    }
  }

  function checkTold(resource: string, waiter: Req, mode: LockMode): void {
    for (const g of grantedOn(resource)) {
      if (g === waiter || compatible(g.lock!.mode, mode)) continue;
      const told = g.blocking.some((b) => b.heldMode === g.lock!.mode && b.mode >= mode);
      check(told, `${resource}: lock ${g.id} (${modeName(g.lock!.mode)}) blocks ${waiter.id} (${modeName(mode)}) and was never told`);
    }
  }

  await join();
  await join();
  try {
    await steps();
  } catch (error) {
    if (error instanceof Error) error.message += `\n  last steps:\n    ${trace.slice(-12).join('\n    ')}\n`;
    throw error;
  }

  async function steps(): Promise<void> {
  for (let step = 1; step <= STEPS; step++) {
    atStep(step);
    const people = live();
    const held = reqs.filter((r) => !r.done && r.lock !== null && r.lock.held && r.pendingConvert === null);
    const waitingReqs = reqs.filter((r) => !r.done && !r.cancelled && (r.pendingNew !== null || r.pendingConvert !== null));
    const roll = prng.below(100);
    if (people.length === 0 || (roll < 4 && people.length < nodesMax)) await join();
    else if (roll < 7) await depart(people[prng.below(people.length)]!, prng.chance(0.5) ? 'kill' : 'leave');
    else if (roll < 45 || held.length === 0) request(people[prng.below(people.length)]!);
    else if (roll < 70) convert(held[prng.below(held.length)]!);
    else if (roll < 90) await unlock(held[prng.below(held.length)]!);
    else if (waitingReqs.length > 0) {
      const r = waitingReqs[prng.below(waitingReqs.length)]!;
      r.cancelled = true;
      note(`${r.node.name} cancels ${r.id}`);
      (r.pendingNew ?? r.pendingConvert)!.abort.abort();
    }
    await harness.settle();
    observe();
    invariants();
  }
  }
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}
