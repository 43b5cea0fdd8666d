/**
 * What the lock-manager conformance cases share: the harness every implementation provides, and
 * a member wrapper that records what the member was told (blocking callbacks per lock, recovery
 * callbacks) so cases can check it after `settle`.
 */
import type { DepartedMember, Lock, LockManager, LockOptions, Lockspace } from '../../runtime/locks/lock-manager.ts';
import type { LockMode } from '../../runtime/locks/modes.ts';
import { LockError, type LockErrorCode } from '../../runtime/locks/lock-error.ts';

export interface LockManagerHarness {
  readonly manager: LockManager;
  /** `space`'s node dies: no goodbye; the others must run recovery. */
  kill(space: Lockspace): Promise<void>;
  /** Resolves once every consequence of the calls made so far has been delivered. */
  settle(): Promise<void>;
  close(): Promise<void>;
}
export type LockManagerFactory = () => Promise<LockManagerHarness>;

export type RecoveryEvent =
  | { kind: 'prep' }
  | { kind: 'slot'; member: DepartedMember }
  | { kind: 'done'; slots: readonly number[]; ourSlot: number };

/** A member and everything it was told. */
export class Node {
  readonly recovery: RecoveryEvent[] = [];
  /** Blocking callbacks in arrival order, with the lock they were for. */
  readonly blocking: { lock: Lock | null; resource: string; mode: LockMode }[] = [];
  space!: Lockspace;

  static async join(manager: LockManager, lockspace: string, memberName: string): Promise<Node> {
    const node = new Node();
    node.space = await manager.join(lockspace, {
      memberName,
      callbacks: {
        recoverPrep: () => node.recovery.push({ kind: 'prep' }),
        recoverSlot: (member) => node.recovery.push({ kind: 'slot', member }),
        recoverDone: (slots, ourSlot) => node.recovery.push({ kind: 'done', slots, ourSlot }),
      },
    });
    return node;
  }

  /** A request whose outcome is recorded instead of awaited (`outcome` stays undefined while it waits). */
  request(resource: string, mode: LockMode, options: Omit<LockOptions, 'onBlocking'> = {}): Pending<Lock> {
    const holder: { lock: Lock | null } = { lock: null };
    const pending = track(this.space.lock(resource, mode, {
      ...options,
      onBlocking: (requested) => this.blocking.push({ lock: holder.lock, resource, mode: requested }),
    }));
    pending.promise.then((lock) => { holder.lock = lock; }, () => {});
    return pending;
  }

  blockingFor(lock: Lock): LockMode[] {
    return this.blocking.filter((b) => b.lock === lock).map((b) => b.mode);
  }
}

export interface Pending<T> {
  readonly promise: Promise<T>;
  outcome: { value: T } | { error: unknown } | undefined;
}

export function track<T>(promise: Promise<T>): Pending<T> {
  const pending: Pending<T> = { promise, outcome: undefined };
  promise.then((value) => { pending.outcome = { value }; }, (error) => { pending.outcome = { error }; });
  return pending;
}

export function grantedLock(pending: Pending<Lock>, what: string): Lock {
  if (pending.outcome === undefined) throw new Error(`${what}: still waiting, expected a grant`);
  if ('error' in pending.outcome) throw new Error(`${what}: failed (${String(pending.outcome.error)}), expected a grant`);
  return pending.outcome.value;
}

export function failedWith(pending: Pending<unknown>, code: LockErrorCode, what: string): void {
  const outcome = pending.outcome;
  if (outcome === undefined) throw new Error(`${what}: still waiting, expected ${code}`);
  if (!('error' in outcome)) throw new Error(`${what}: succeeded, expected ${code}`);
  if (!(outcome.error instanceof LockError) || outcome.error.code !== code) {
    throw new Error(`${what}: failed with ${String(outcome.error)}, expected ${code}`);
  }
}

export function stillWaiting(pending: Pending<unknown>, what: string): void {
  if (pending.outcome !== undefined) throw new Error(`${what}: settled (${JSON.stringify(Object.keys(pending.outcome))}), expected it to wait`);
}

/** Awaits `promise`, which must reject with a LockError of `code`. */
export async function rejectsWith(promise: Promise<unknown>, code: LockErrorCode): Promise<void> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof LockError && error.code === code) return;
    throw new Error(`failed with ${String(error)}, expected ${code}`);
  }
  throw new Error(`succeeded, expected ${code}`);
}
