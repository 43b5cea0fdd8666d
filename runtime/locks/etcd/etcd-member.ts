/**
 * One member of a lockspace kept in etcd: its calls (lock, convert, unlock, cancel), its mirror of
 * the lockspace, and recovery when members come and go. See etcd-lock-manager.ts for the design.
 *
 * Every call is one optimistic transaction on one resource: rebuild the resource from the mirror,
 * apply the call and the grant pass (../resource.ts), write the difference guarded by the head's
 * mod revision and by our member key (a member whose lease is gone writes nothing). When the guard
 * fails the mirror is behind: wait for it to reach the head's current revision and decide again.
 * A decision that writes nothing (EAGAIN, EDEADLK) is still checked by the same guard, so it was
 * true at a revision. Calls on one resource made through one manager go in call order.
 */
import { LockError } from '../lock-error.ts';
import type { ConvertOptions, DepartedMember, Lock, LockOptions, Lockspace, LockspaceCallbacks } from '../lock-manager.ts';
import { cancelled, checkMode, checkName } from '../lock-checks.ts';
import { modeName, type LockMode } from '../modes.ts';
import { Outbox } from '../outbox.ts';
import type { LockEntry } from '../resource.ts';
import type { EtcdCompare, EtcdKeyValue, EtcdOp, EtcdStore } from './etcd-store.ts';
import type { LeaseKeeper } from './lease-keeper.ts';
import { EtcdLock, type LockOwner } from './etcd-lock.ts';
import { decodeEntry, decodeHead, decodeMember, KeyValueError, type LockspaceKeys, type MemberRecord } from './lock-keys.ts';
import type { KeyChange, LockspaceMirror } from './lockspace-mirror.ts';
import { addEntry, grantNow, loadResource, resourceUnchanged, resourceWrites, runGrantPass, type LoadedResource } from './resource-keys.ts';

/** What a call decided on the resource as read: write it (the call's effect is in `loaded`), or write nothing. */
type Decision =
  | { write: true; conversionsNow?: Set<LockEntry>; extraCompares?: EtcdCompare[] }
  | { write: false; error?: LockError; extraCompares?: EtcdCompare[] };

export interface MemberContext {
  readonly store: EtcdStore;
  readonly keys: LockspaceKeys;
  /** Reports a key whose value does not decode (once per key and revision). */
  warn(line: string): void;
  /** Counts a call or recovery starting (the manager's settle watches it). */
  started(): void;
  /**
   * Runs `body` after every earlier call on `resource` made through the same manager, whichever
   * of its members made it: calls from one process reach etcd in call order.
   */
  onResource<T>(resource: string, body: () => Promise<T>): Promise<T>;
}

const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;

export class EtcdMember implements Lockspace, LockOwner {
  live = true;
  mirror!: LockspaceMirror;
  private readonly outbox = new Outbox();
  private readonly locks = new Map<string, EtcdLock>();
  private recovery: Promise<void> = Promise.resolve();
  private nextLockId = 1;
  private readonly members = new Map<string, MemberRecord | null>();
  private readonly reported = new Set<string>();

  constructor(
    private readonly context: MemberContext,
    readonly memberName: string,
    readonly slot: number,
    readonly lease: LeaseKeeper,
    private readonly callbacks: LockspaceCallbacks,
    private readonly onDeparted: (member: EtcdMember) => void,
  ) {}

  get name(): string {
    return this.context.keys.lockspace;
  }

  /** Takes the mirror made at join (its keys as of our join revision) and announces our join. */
  attach(mirror: LockspaceMirror): void {
    this.mirror = mirror;
    for (const kv of mirror.under(this.context.keys.members)) this.noteMember(kv);
    this.scheduleRecovery([]);
  }

  post(thunk: () => void): void {
    this.outbox.post(thunk);
  }

  // ---- calls --------------------------------------------------------------------------------

  lock(resource: string, mode: LockMode, options: LockOptions = {}): Promise<Lock> {
    try {
      this.checkLive();
      checkName('resource', resource);
      checkMode(mode);
    } catch (error) {
      return Promise.reject(error);
    }
    const key = this.context.keys.lock(resource, this.lease.id, this.nextLockId++);
    const handle = new EtcdLock(this, resource, key, options.onBlocking);
    this.locks.set(key, handle);
    const granted = handle.awaitGrant();
    const wait = handle.waiting;
    const { signal, noQueue } = options;
    void this.onResource(resource, () => this.transact(resource, (loaded) => {
      if (loaded.byKey.has(key)) return { write: false }; // it landed before a lost answer
      const entry = addEntry(loaded, key, this.lease.id, this.slot);
      if (loaded.resource.canGrantNew(mode)) {
        grantNow(loaded, entry, mode);
        return { write: true };
      }
      if (noQueue) return { write: false, error: new LockError('EAGAIN', `${modeName(mode)} not grantable at once`, resource) };
      if (signal?.aborted) return { write: false, error: cancelled(resource) };
      loaded.resource.enqueueNew(entry, mode);
      return { write: true };
    })).then(() => {
      if (handle.record === null && !handle.gone) this.forget(handle, null); // refused: it never reached etcd
      if (signal !== undefined) this.watchAbort(handle, wait, signal);
    }, (error) => this.forget(handle, error));
    return granted;
  }

  convert(handle: EtcdLock, mode: LockMode, options: ConvertOptions): Promise<void> {
    try {
      this.checkLive();
      checkMode(mode);
      if (handle.busy) throw new LockError('EBUSY', 'a conversion is already in flight', handle.resource);
      if (!handle.held || handle.unlocking !== null) throw new LockError('EINVAL', 'the lock is not held', handle.resource);
    } catch (error) {
      return Promise.reject(error);
    }
    const block = handle.valueBlock.slice();
    const startGrants = handle.record!.gs;
    const outcome = handle.awaitConversion(mode);
    const wait = handle.waiting;
    const { signal, noQueue } = options;
    void this.onResource(handle.resource, () => this.transact(handle.resource, (loaded) => {
      const entry = loaded.byKey.get(handle.key);
      if (entry === undefined) return { write: false, error: new LockError('ENOTCONN', 'the lock was purged with its member', handle.resource) };
      const record = loaded.records.get(entry)!.record!;
      if (record.gs > startGrants || record.r === mode) return { write: false }; // it landed before a lost answer
      entry.valueBlock.set(block);
      const { resource } = loaded;
      if (resource.canGrantConversion(entry, mode)) {
        grantNow(loaded, entry, mode);
        return { write: true };
      }
      if (noQueue) return { write: false, error: new LockError('EAGAIN', `${modeName(mode)} not grantable at once`, handle.resource) };
      if (resource.deadlockWith(entry, mode) !== null) {
        return { write: false, error: new LockError('EDEADLK', `conversion to ${modeName(mode)} waits on a conversion waiting on it`, handle.resource) };
      }
      if (signal?.aborted) return { write: false, error: cancelled(handle.resource) };
      resource.enqueueConversion(entry, mode);
      return { write: true, conversionsNow: new Set([entry]) };
    })).then(() => {
      if (signal !== undefined) this.watchAbort(handle, wait, signal);
    }, (error) => handle.fail(error));
    return outcome;
  }

  unlock(handle: EtcdLock): Promise<void> {
    try {
      this.checkLive();
      if (handle.busy) throw new LockError('EBUSY', 'a conversion is in flight', handle.resource);
      if (!handle.held || handle.unlocking !== null) throw new LockError('EINVAL', 'the lock is not held', handle.resource);
    } catch (error) {
      return Promise.reject(error);
    }
    const block = handle.valueBlock.slice();
    return new Promise<void>((resolve, reject) => {
      handle.unlocking = resolve;
      void this.onResource(handle.resource, () => this.transact(handle.resource, (loaded) => {
        const entry = loaded.byKey.get(handle.key);
        if (entry === undefined) return { write: false };
        entry.valueBlock.set(block);
        loaded.resource.release(entry, false);
        return { write: true };
      })).catch((error) => {
        handle.unlocking = null;
        reject(error);
      });
    });
  }

  /** Cancels `handle`'s wait `wait` when `signal` fires while that wait is still on (queued, not granted). */
  private watchAbort(handle: EtcdLock, wait: EtcdLock['waiting'], signal: AbortSignal): void {
    if (wait === null || handle.waiting !== wait) return;
    const onAbort = () => {
      if (handle.waiting !== wait || handle.cancelling) return;
      handle.cancelling = true;
      void this.onResource(handle.resource, () => this.transact(handle.resource, (loaded) => {
        const entry = loaded.byKey.get(handle.key);
        if (entry === undefined || (entry.state !== 'waiting' && entry.state !== 'converting')) return { write: false };
        loaded.resource.withdraw(entry);
        return { write: true };
      })).then(() => {
        handle.cancelling &&= handle.busy;
      }, () => {});
    };
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener('abort', onAbort, { once: true });
      handle.onSettled(wait, () => signal.removeEventListener('abort', onAbort));
    }
  }

  async leave(): Promise<void> {
    if (!this.live) return;
    this.depart('the member left the lockspace');
    // Our keys go with the lease; the remaining members purge our requests (recovery).
    await this.lease.revoke();
  }

  /**
   * Stops this member at once: every wait fails ENOTCONN, nothing more is written or delivered.
   * `fenced`: it did not leave on purpose (lease lost, key gone, watch ended): its owner is told.
   */
  depart(why: string, fenced = false): void {
    if (!this.live) return;
    this.live = false;
    for (const handle of this.locks.values()) handle.purge();
    this.locks.clear();
    void this.mirror?.close();
    this.onDeparted(this);
    const callback = this.callbacks.fenced;
    if (fenced && callback !== undefined) this.outbox.post(() => callback(why));
  }

  // ---- the transaction loop ----------------------------------------------------------------

  /** Runs `body` after every earlier call on `resource` made through this manager. */
  private onResource<T>(resource: string, body: () => Promise<T>): Promise<T> {
    return this.context.onResource(resource, body);
  }

  /** Decides on the mirror's state of `resource` and writes the decision, until it lands on the state it was made on. */
  private async transact(resourceName: string, decide: (loaded: LoadedResource) => Decision): Promise<void> {
    const { keys, store } = this.context;
    let backoffMs = RETRY_MIN_MS;
    for (;;) {
      this.checkLive();
      const loaded = this.load(resourceName);
      const decision = decide(loaded);
      let compare: EtcdCompare[];
      let ops: EtcdOp[] = [];
      if (decision.write) {
        const writes = resourceWrites(keys, loaded, runGrantPass(loaded), decision.conversionsNow);
        compare = [writes.compare];
        ops = writes.ops;
      } else {
        compare = [resourceUnchanged(keys, loaded)];
      }
      compare.push({ key: keys.member(this.lease.id), target: 'version', op: '>', value: '0' }, ...(decision.extraCompares ?? []));
      let result;
      try {
        result = await store.txn(compare, ops, [{ range: { key: keys.member(this.lease.id) } }, { range: { key: keys.head(resourceName) } }]);
      } catch (error) {
        // etcd unreachable or slow: the write may or may not have landed; decide again once the
        // mirror shows which (the lease's keepalive decides whether we are still a member).
        this.checkLive();
        await sleep(backoffMs);
        backoffMs = Math.min(RETRY_MAX_MS, backoffMs * 2);
        void error;
        continue;
      }
      if (result.succeeded) {
        if (ops.length > 0) await this.waitFor(result.revision);
        if (!decision.write && decision.error !== undefined) throw decision.error;
        return;
      }
      if (result.ranges[0]!.length === 0) {
        this.depart('our member key is gone (lease expired or revoked)', true);
        this.checkLive();
      }
      const head = result.ranges[1]![0];
      if (head !== undefined) await this.waitFor(head.modRevision);
      else await sleep(RETRY_MIN_MS);
    }
  }

  private async waitFor(revision: string): Promise<void> {
    try {
      await this.mirror.waitFor(revision);
    } catch (error) {
      this.checkLive();
      throw error;
    }
  }

  private load(resourceName: string): LoadedResource {
    const { keys } = this.context;
    try {
      return loadResource(keys, resourceName, this.mirror.under(keys.resource(resourceName)), (error) => this.report(error));
    } catch (error) {
      if (error instanceof KeyValueError) {
        this.report(error);
        throw new LockError('EPROTO', error.message, resourceName);
      }
      throw error;
    }
  }

  private report(error: KeyValueError): void {
    const kv = this.mirror.get(error.key);
    const id = `${error.key}@${kv?.modRevision ?? ''}`;
    if (this.reported.has(id)) return;
    this.reported.add(id);
    this.context.warn(`${error.message} (ignored: not a request of any member)`);
  }

  /** False once this member left, died or fenced itself (lease-keeper.ts): no more writes to shared legs. */
  writesAllowed(): boolean {
    return this.live && this.lease.writesAllowed();
  }

  checkLive(): void {
    if (!this.live) throw new LockError('ENOTCONN', `member ${this.memberName} is not in lockspace ${this.name}`);
  }

  /** Resolves once no recovery of this member is running. */
  async recovered(): Promise<void> {
    for (;;) {
      const recovery = this.recovery;
      await recovery;
      if (recovery === this.recovery) return;
    }
  }

  /** The lockspace's members as our mirror holds them (ours included), by slot. */
  memberList(): { name: string; slot: number; node: string | null }[] {
    return [...this.members.values()]
      .flatMap((m) => (m === null ? [] : [{ name: m.name, slot: m.slot, node: m.node ?? null }]))
      .sort((a, b) => a.slot - b.slot);
  }

  get outboxIdle(): boolean {
    return this.outbox.idle;
  }

  // ---- the mirror's revisions ----------------------------------------------------------------

  /** The mirror applied a revision: update our locks, and recover when members came or went. */
  onRevision(changes: KeyChange[]): void {
    if (!this.live) return;
    const { keys } = this.context;
    const departed: DepartedMember[] = [];
    let joined = false;
    for (const change of changes) {
      const parsed = keys.parse(change.key);
      if (parsed.kind === 'member') {
        if (change.after === undefined) {
          if (parsed.lease === this.lease.id) {
            this.depart('our member key is gone (lease expired or revoked)', true);
            return;
          }
          const record = this.members.get(parsed.lease);
          this.members.delete(parsed.lease);
          if (record) departed.push({ memberName: record.name, slot: record.slot });
        } else if (change.before === undefined) {
          this.noteMember(change.after);
          joined = true;
        }
      } else if (parsed.kind === 'lock') {
        const handle = this.locks.get(change.key);
        if (handle === undefined) continue;
        const head = this.headOf(parsed.resource);
        if (change.after === undefined) {
          handle.update(undefined, head);
          this.locks.delete(change.key);
          continue;
        }
        try {
          handle.update(decodeEntry(change.key, change.after.value), head);
        } catch (error) {
          if (!(error instanceof KeyValueError)) throw error;
          this.report(error);
        }
      }
    }
    if (departed.length > 0 || joined) this.scheduleRecovery(departed);
  }

  private headOf(resource: string) {
    const key = this.context.keys.head(resource);
    const kv = this.mirror.get(key);
    if (kv === undefined) return undefined;
    try {
      return decodeHead(key, kv.value);
    } catch (error) {
      if (error instanceof KeyValueError) this.report(error);
      return undefined;
    }
  }

  private noteMember(kv: EtcdKeyValue): void {
    const parsed = this.context.keys.parse(kv.key);
    if (parsed.kind !== 'member') return;
    try {
      this.members.set(parsed.lease, decodeMember(kv.key, kv.value));
    } catch (error) {
      if (!(error instanceof KeyValueError)) throw error;
      this.report(error);
      this.members.set(parsed.lease, null);
    }
  }

  private forget(handle: EtcdLock, error: unknown): void {
    this.locks.delete(handle.key);
    if (error !== null) handle.fail(!this.live ? new LockError('ENOTCONN', 'the member left the lockspace', handle.resource) : error);
  }

  // ---- recovery ------------------------------------------------------------------------------

  /**
   * Members came or went: recoverPrep, then the requests of every lease that is no member any
   * more are purged (a PW/EX holder's value block marked invalid), then recoverSlot per departed
   * member and recoverDone. Grants the purge makes (by us or another member) are held back until
   * recoverDone is out, as the DLM grants nothing during recovery.
   */
  private scheduleRecovery(departed: DepartedMember[]): void {
    this.context.started();
    // recoverPrep and the hold go out now, in the revision that showed the change: a purge's
    // grants applied from the same watch response must already be held back.
    this.outbox.post(() => this.live && this.callbacks.recoverPrep?.());
    this.outbox.hold();
    this.recoveriesPending += 1;
    this.recovery = this.recovery.then(() => this.recover(departed)).catch(() => {});
  }

  private recoveriesPending = 0;

  private async recover(departed: DepartedMember[]): Promise<void> {
    const after: (() => void)[] = [];
    try {
      if (this.live) await this.purgeOrphans();
    } finally {
      for (const member of departed) after.push(() => this.live && this.callbacks.recoverSlot?.(member));
      const slots = [...this.members.values()].flatMap((m) => (m === null ? [] : [m.slot])).sort((a, b) => a - b);
      after.push(() => this.live && this.callbacks.recoverDone?.(slots, this.slot));
      this.recoveriesPending -= 1;
      this.outbox.release(after);
      // A later membership change is still to be recovered: what its purge grants waits for it.
      if (this.recoveriesPending > 0) this.outbox.hold();
    }
  }

  /** Purges, resource by resource, the requests whose lease has no member key. */
  private async purgeOrphans(): Promise<void> {
    const { keys } = this.context;
    const unusable = new Set<string>(); // resources whose head does not decode (reported): left as they are
    for (;;) {
      const orphans = new Set<string>();
      for (const kv of this.mirror.under(keys.resources)) {
        const parsed = keys.parse(kv.key);
        if (parsed.kind !== 'lock' || this.members.has(parsed.lease) || unusable.has(parsed.resource)) continue;
        try {
          decodeEntry(kv.key, kv.value);
        } catch {
          continue; // garbage (reported when read): not a request, nothing to purge
        }
        orphans.add(parsed.resource);
      }
      if (orphans.size === 0 || !this.live) return;
      for (const resource of orphans) {
        await this.onResource(resource, () => this.transact(resource, (loaded) => {
          const purged = new Set<string>();
          for (const [entry, info] of loaded.records) {
            if (this.members.has(info.lease) || info.record === null) continue;
            loaded.resource.release(entry, true);
            purged.add(info.lease);
          }
          // The leases are gone for good (a member key never comes back); the compare says so in etcd's words.
          const extraCompares = [...purged].map((lease): EtcdCompare => ({ key: keys.member(lease), target: 'version', op: '==', value: '0' }));
          return purged.size > 0 ? { write: true, extraCompares } : { write: false };
        })).catch((error: unknown) => {
          if (!(error instanceof LockError && error.code === 'EPROTO')) throw error;
          unusable.add(resource);
        });
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
