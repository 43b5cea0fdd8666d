/**
 * The lock manager for members in one process (tests, simulation, a service that is a cluster of
 * one): lockspaces, slots and recovery here; each resource's queues and grant rules in
 * ../resource.ts. Every state change happens synchronously inside the call; what members are told
 * (grants, blocking callbacks, recovery callbacks) goes through one outbox per manager, delivered
 * in order (../outbox.ts), never from inside a call.
 */
import { assert } from '../../assert.ts';
import { LockError } from '../lock-error.ts';
import type {
  ConvertOptions, DepartedMember, JoinOptions, Lock, LockManager, LockOptions, Lockspace, LockspaceCallbacks,
} from '../lock-manager.ts';
import { cancelled, checkMode, checkName } from '../lock-checks.ts';
import { compatible, modeName, type LockMode } from '../modes.ts';
import { Outbox } from '../outbox.ts';
import { Resource, type LockEntry, type Outcome } from '../resource.ts';

export class InProcessLockManager implements LockManager {
  private readonly spaces = new Map<string, SpaceState>();
  private readonly outbox = new Outbox();

  async join(lockspace: string, options: JoinOptions): Promise<Lockspace> {
    checkName('lockspace', lockspace);
    checkName('memberName', options?.memberName);
    let space = this.spaces.get(lockspace);
    if (space === undefined) {
      space = new SpaceState(lockspace, this);
      this.spaces.set(lockspace, space);
    }
    if ([...space.members.values()].some((m) => m.memberName === options.memberName)) {
      throw new LockError('EINVAL', `member ${options.memberName} is already in lockspace ${lockspace}`);
    }
    let slot = 1;
    while (space.members.has(slot)) slot += 1;
    const member = new Member(space, options.memberName, slot, options.callbacks ?? {});
    space.members.set(slot, member);
    space.membershipChanged([]);
    return member;
  }

  async close(): Promise<void> {
    for (const space of [...this.spaces.values()]) for (const member of [...space.members.values()]) member.depart();
  }

  /** Test hook: `space` dies now, as a node whose machine stopped (no goodbye, its locks purged). */
  kill(space: Lockspace): void {
    assert(space instanceof Member, 'kill takes a lockspace this manager made');
    space.depart();
  }

  /** Queues `thunk` behind every earlier notification. */
  post(thunk: () => void): void {
    this.outbox.post(thunk);
  }

  forget(space: SpaceState): void {
    if (this.spaces.get(space.name) === space) this.spaces.delete(space.name);
  }
}

class SpaceState {
  readonly members = new Map<number, Member>();
  readonly resources = new Map<string, Resource>();

  constructor(readonly name: string, readonly manager: InProcessLockManager) {}

  resource(name: string): Resource {
    let resource = this.resources.get(name);
    if (resource === undefined) {
      resource = new Resource(name);
      this.resources.set(name, resource);
    }
    return resource;
  }

  /** Runs the grant pass on `resource` and posts what it decided; drops the resource when idle. */
  settle(resource: Resource): void {
    const outbox: Outcome[] = [];
    resource.grantPass(outbox);
    for (const outcome of outbox) this.deliver(outcome);
    // An idle resource keeps its value block, as the DLM keeps a resource's block while it is cached.
  }

  private deliver(outcome: Outcome): void {
    const handle = handles.get(outcome.entry);
    assert(handle !== undefined, 'every entry has a handle');
    if (outcome.kind === 'granted') handle.granted();
    else handle.blocking(outcome.mode);
  }

  /** Recovery on every live member: prep, purge, recoverSlot per departed member, done, then grants. */
  membershipChanged(departed: Member[]): void {
    const live = [...this.members.values()];
    for (const member of live) member.notify((cb) => cb.recoverPrep?.());
    const touched = new Set<Resource>();
    for (const gone of departed) {
      for (const entry of [...gone.entries]) {
        touched.add(entry.resource);
        handles.get(entry)!.purge();
      }
    }
    for (const gone of departed) {
      const info: DepartedMember = { memberName: gone.memberName, slot: gone.slot };
      for (const member of live) member.notify((cb) => cb.recoverSlot?.(info));
    }
    const slots = live.map((m) => m.slot).sort((a, b) => a - b);
    for (const member of live) member.notify((cb) => cb.recoverDone?.(slots, member.slot));
    for (const resource of touched) this.settle(resource);
    if (this.members.size === 0) this.manager.forget(this);
  }
}

/** Entry -> the handle its member holds. */
const handles = new WeakMap<LockEntry, LockHandle>();

class Member implements Lockspace {
  readonly entries = new Set<LockEntry>();
  live = true;

  constructor(
    readonly space: SpaceState,
    readonly memberName: string,
    readonly slot: number,
    private readonly callbacks: LockspaceCallbacks,
  ) {}

  get name(): string {
    return this.space.name;
  }

  notify(call: (callbacks: LockspaceCallbacks) => void): void {
    this.space.manager.post(() => {
      if (this.live) call(this.callbacks);
    });
  }

  lock(resourceName: string, mode: LockMode, options: LockOptions = {}): Promise<Lock> {
    try {
      this.checkLive();
      checkName('resource', resourceName);
      checkMode(mode);
    } catch (error) {
      return Promise.reject(error);
    }
    const resource = this.space.resource(resourceName);
    const entry = resource.newEntry(this.slot);
    const handle = new LockHandle(this, entry, options.onBlocking);
    handles.set(entry, handle);
    if (resource.canGrantNew(mode)) {
      // Granted now; the completion still goes through the outbox, ahead of any blocking callback.
      this.entries.add(entry);
      resource.grant(entry, mode);
      const granted = handle.awaitGrant(undefined, handle);
      handle.granted();
      this.space.settle(resource);
      return granted;
    }
    if (options.noQueue) return Promise.reject(new LockError('EAGAIN', `${modeName(mode)} not grantable at once`, resourceName));
    if (options.signal?.aborted) return Promise.reject(cancelled(resourceName));
    this.entries.add(entry);
    resource.enqueueNew(entry, mode);
    const granted = handle.awaitGrant(options.signal, handle);
    this.space.settle(resource);
    return granted;
  }

  async leave(): Promise<void> {
    this.depart();
  }

  writesAllowed(): boolean {
    return this.live;
  }

  depart(): void {
    if (!this.live) return;
    this.live = false;
    this.space.members.delete(this.slot);
    this.space.membershipChanged([this]);
  }

  checkLive(): void {
    if (!this.live) throw new LockError('ENOTCONN', `member ${this.memberName} is not in lockspace ${this.space.name}`);
  }
}

class LockHandle implements Lock {
  private settleWait: ((error: LockError | null) => void) | null = null;

  constructor(
    private readonly member: Member,
    private readonly entry: LockEntry,
    private readonly onBlocking: ((mode: LockMode) => void) | undefined,
  ) {}

  get resource(): string {
    return this.entry.resource.name;
  }
  get mode(): LockMode {
    return this.entry.grantedMode ?? 0;
  }
  get valueBlock(): Uint8Array {
    return this.entry.valueBlock;
  }
  get valueBlockValid(): boolean {
    return this.entry.valueBlockValid;
  }
  get held(): boolean {
    return this.entry.state === 'granted' || this.entry.state === 'converting';
  }

  convert(mode: LockMode, options: ConvertOptions = {}): Promise<void> {
    const { entry } = this;
    const resource = entry.resource;
    try {
      this.member.checkLive();
      checkMode(mode);
      if (entry.state === 'converting') throw new LockError('EBUSY', 'a conversion is already in flight', resource.name);
      if (entry.state !== 'granted') throw new LockError('EINVAL', 'the lock is not held', resource.name);
    } catch (error) {
      return Promise.reject(error);
    }
    if (resource.canGrantConversion(entry, mode)) {
      resource.grant(entry, mode);
      const granted = this.awaitGrant(undefined, undefined);
      this.granted();
      this.member.space.settle(resource);
      return granted;
    }
    if (options.noQueue) return Promise.reject(new LockError('EAGAIN', `${modeName(mode)} not grantable at once`, resource.name));
    if (resource.deadlockWith(entry, mode) !== null) {
      return Promise.reject(new LockError('EDEADLK', `conversion to ${modeName(mode)} waits on a conversion waiting on it`, resource.name));
    }
    if (options.signal?.aborted) return Promise.reject(cancelled(resource.name));
    resource.enqueueConversion(entry, mode);
    const granted = this.awaitGrant(options.signal, undefined);
    this.member.space.settle(resource);
    return granted;
  }

  unlock(): Promise<void> {
    const { entry } = this;
    try {
      this.member.checkLive();
      if (entry.state === 'converting') throw new LockError('EBUSY', 'a conversion is in flight', entry.resource.name);
      if (entry.state !== 'granted') throw new LockError('EINVAL', 'the lock is not held', entry.resource.name);
    } catch (error) {
      return Promise.reject(error);
    }
    entry.resource.release(entry, false);
    this.member.entries.delete(entry);
    this.member.space.settle(entry.resource);
    return Promise.resolve();
  }

  /**
   * A promise settled by the grant (resolving to `value`: the handle for a new lock, nothing for a
   * conversion), a cancel, or the member's departure. It resolves directly, with no promise hop
   * in between, so the code awaiting a grant runs before the next notification is delivered.
   */
  awaitGrant<T>(signal: AbortSignal | undefined, value: T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => this.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.settleWait = (error) => {
        signal?.removeEventListener('abort', onAbort);
        this.settleWait = null;
        if (error === null) resolve(value);
        else reject(error);
      };
    });
  }

  private cancel(): void {
    const { entry } = this;
    if (entry.state !== 'waiting' && entry.state !== 'converting') return;
    const wasNew = entry.state === 'waiting';
    entry.resource.withdraw(entry);
    if (wasNew) this.member.entries.delete(entry);
    const settle = this.settleWait!;
    this.settleWait = null;
    // The cancel is decided now; its rejection goes through the outbox behind earlier notices.
    this.member.space.manager.post(() => settle(cancelled(entry.resource.name)));
    this.member.space.settle(entry.resource);
  }

  granted(): void {
    const settle = this.settleWait;
    if (settle === null) return;
    this.settleWait = null;
    this.member.space.manager.post(() => settle(null));
  }

  blocking(mode: LockMode): void {
    const { entry } = this;
    const callback = this.onBlocking;
    if (callback === undefined) return;
    this.member.notify(() => {
      // Dropped when its cause went away: the lock is gone or now compatible with the waiter.
      if (entry.grantedMode === null || compatible(entry.grantedMode, mode)) return;
      callback(mode);
    });
  }

  purge(): void {
    const { entry } = this;
    entry.resource.release(entry, true);
    this.member.entries.delete(entry);
    const settle = this.settleWait;
    if (settle !== null) {
      this.settleWait = null;
      this.member.space.manager.post(() => settle(new LockError('ENOTCONN', 'the member left the lockspace', entry.resource.name)));
    }
  }
}
