/**
 * The lock manager on etcd: the DLM's semantics (../lock-manager.ts) for members on separate
 * machines, kept in etcd, which users already run and trust (etcd's own `/v3/lock` has one mode
 * and no try-lock, so it is not enough). One EtcdLockManager per process, one etcd connection.
 *
 * Design note
 * - State (lock-keys.ts): per lockspace a prefix; per member a member key, its name and its slot,
 *   all three on the member's lease and created together (slot and name create-if-absent, so a
 *   slot has one holder and a name one member); per resource a head key (a sequence number and
 *   the value block) and one key per request (the member's lease and a lock id) holding its
 *   granted and requested modes and its place in the queues.
 * - Decisions: one deterministic grant function, the in-process manager's own (../resource.ts),
 *   evaluated on the resource as a member's mirror holds it at a revision. A call (request,
 *   conversion, unlock, cancel) rebuilds the resource, applies itself and the grant pass, and
 *   writes every changed request key and the head in one transaction that compares the head's mod
 *   revision (and that the caller is still a member): the grants a call makes possible are made by
 *   that same transaction, so no revision ever has a grantable request waiting (no lost wakeups),
 *   and the value block moves with the down-conversion or unlock that writes it. NOQUEUE is the
 *   same transaction writing nothing: the refusal was true at a revision. Queue order is the
 *   head's sequence number at the transaction that queued a request or conversion (known before
 *   the write, where a create revision is not, and the same rule for both queues).
 * - Notifications: each member mirrors the lockspace (one range, then a watch from the next
 *   revision, lockspace-mirror.ts) and learns everything from it, one revision at a time: its
 *   requests granted (by its own call or another's), its conversions done, blocking notices the
 *   grant pass recorded on its granted keys (`told`, once per higher mode since the grant, as the
 *   DLM sends them). A call resolves once the mirror has applied the call's revision.
 * - Requests are not on the lease (a departure from the obvious design): a dead member's locks
 *   stay held until the survivors purge them, in one transaction per resource that also marks the
 *   value block invalid where the dead member held PW or EX. Had they gone with the lease, a
 *   waiter could be granted between the lease's end and the invalidation and read a block the dead
 *   holder may have half-updated. Members learn of a departure from the member key's delete;
 *   every survivor runs recovery (recoverPrep, purge, recoverSlot, recoverDone; grants it makes
 *   possible are delivered after recoverDone); purges are idempotent, whoever lands first wins.
 * - A member whose lease ended can write nothing (every transaction compares its member key), and
 *   learns it from its mirror or a failed compare: its calls fail ENOTCONN from then on.
 * - The first member of an empty lockspace clears what departed members left (the lockspace
 *   ends with its last member, value blocks too, as the DLM's does).
 */
import { LockError } from '../lock-error.ts';
import type { JoinOptions, LockManager, Lockspace } from '../lock-manager.ts';
import { checkName } from '../lock-checks.ts';
import type { EtcdStore } from './etcd-store.ts';
import { LeaseKeeper } from './lease-keeper.ts';
import { EtcdMember } from './etcd-member.ts';
import { decodeMember, DEFAULT_ROOT, encodeMember, KeyValueError, LockspaceKeys } from './lock-keys.ts';
import { LockspaceMirror } from './lockspace-mirror.ts';

export interface EtcdLockManagerOptions {
  /** Key prefix of every lockspace (default /blockcore/locks/). */
  root?: string;
  /** Seconds a member's lease lives without a renewal (default 5, at least 1). */
  leaseTtlSeconds?: number;
  /** Where a key that does not decode is reported (default console.warn). */
  warn?: (line: string) => void;
}

export interface LockspaceStatus {
  lockspace: string;
  memberName: string;
  slot: number;
  leaseId: string;
  /** How long this member may still write without another lease renewal. */
  writesAllowedForMs: number;
  members: { name: string; slot: number; node: string | null }[];
}

export class EtcdLockManager implements LockManager {
  private readonly members = new Set<EtcdMember>();
  private readonly root: string;
  private readonly leaseTtlSeconds: number;
  private readonly warn: (line: string) => void;
  private activity = 0;
  private readonly chains = new Map<string, Promise<void>>();

  constructor(readonly store: EtcdStore, options: EtcdLockManagerOptions = {}) {
    this.root = options.root ?? DEFAULT_ROOT;
    this.leaseTtlSeconds = options.leaseTtlSeconds ?? 5;
    if (!Number.isInteger(this.leaseTtlSeconds) || this.leaseTtlSeconds < 1) throw new RangeError('leaseTtlSeconds must be an integer of at least 1');
    this.warn = options.warn ?? ((line) => console.warn(line));
  }

  async join(lockspace: string, options: JoinOptions): Promise<Lockspace> {
    checkName('lockspace', lockspace);
    checkName('memberName', options?.memberName);
    const keys = new LockspaceKeys(this.root, lockspace);
    let member: EtcdMember | null = null;
    const lease = await LeaseKeeper.grant(this.store, this.leaseTtlSeconds, (why) => member?.depart(`fenced: ${why}`, true));
    try {
      const joined = await this.claim(keys, options.memberName, options.nodeId, lease);
      member = new EtcdMember(
        {
          store: this.store, keys, warn: this.warn,
          started: () => void (this.activity += 1),
          onResource: (resource, body) => this.onResource(`${keys.prefix}${resource}`, body),
        },
        options.memberName, joined.slot, lease, options.callbacks ?? {},
        (gone) => {
          this.members.delete(gone);
          gone.lease.stop();
        },
      );
      const self = member;
      const mirror = await LockspaceMirror.start(
        this.store, keys.prefix, joined.revision, joined.kvs,
        (changes) => self.onRevision(changes),
        (error) => self.depart(error.message, true),
      );
      if (!member.live) {
        // Fenced (its lease lapsed) while the watch was being set up.
        await mirror.close();
        throw new LockError('ENOTCONN', `member ${options.memberName} lost its lease while joining lockspace ${lockspace}`);
      }
      this.members.add(member);
      member.attach(mirror);
      return member;
    } catch (error) {
      await lease.revoke();
      throw error;
    }
  }

  private onResource<T>(chainKey: string, body: () => Promise<T>): Promise<T> {
    this.activity += 1;
    const previous = this.chains.get(chainKey) ?? Promise.resolve();
    const next = previous.then(body);
    const tail: Promise<void> = next.then(() => {}, () => {}).then(() => {
      if (this.chains.get(chainKey) === tail) this.chains.delete(chainKey);
    });
    this.chains.set(chainKey, tail);
    return next;
  }

  /** Resolves once no call and no recovery of any member is running. */
  private async quiet(): Promise<void> {
    for (;;) {
      await Promise.all([...this.chains.values(), ...[...this.members].map((m) => m.recovered())]);
      if (this.chains.size === 0) return;
    }
  }

  /** Takes the lowest free slot and the name in one transaction; reads the lockspace as of it. */
  private async claim(keys: LockspaceKeys, memberName: string, nodeId: string | undefined, lease: LeaseKeeper) {
    for (;;) {
      const read = await this.store.txn([], [{ range: { key: keys.members, prefix: true } }, { range: { key: keys.slots, prefix: true } }]);
      const members = read.ranges[0]!;
      const taken = new Set(read.ranges[1]!.map((kv) => kv.key.slice(keys.slots.length)));
      let takenOver = false;
      for (const kv of members) {
        let record;
        try {
          record = decodeMember(kv.key, kv.value);
        } catch (error) {
          if (!(error instanceof KeyValueError)) throw error;
          this.warn(`${error.message} (ignored: not a member)`);
          continue;
        }
        if (record.name !== memberName) continue;
        if (nodeId === undefined || record.node !== nodeId) throw new LockError('EINVAL', `member ${memberName} is already in lockspace ${keys.lockspace}`);
        // An earlier run of this very node (it crashed, its lease lives on): end it now; the
        // others recover that member as they would after its lease expired.
        await this.store.revokeLease(kv.key.slice(keys.members.length));
        takenOver = true;
      }
      if (takenOver) continue;
      let slot = 1;
      while (taken.has(String(slot))) slot += 1;
      const empty = members.length === 0;
      const value = new TextEncoder().encode(lease.id);
      const result = await this.store.txn(
        [
          { key: keys.name(memberName), target: 'version', op: '==', value: '0' },
          { key: keys.slot(slot), target: 'version', op: '==', value: '0' },
          ...(empty ? [{ key: keys.members, prefix: true, target: 'version' as const, op: '==' as const, value: '0' }] : []),
        ],
        [
          ...(empty ? [{ delete: { key: keys.resources, prefix: true } }] : []),
          { put: { key: keys.member(lease.id), value: encodeMember({ name: memberName, slot, ...(nodeId === undefined ? {} : { node: nodeId }) }), lease: lease.id } },
          { put: { key: keys.name(memberName), value, lease: lease.id } },
          { put: { key: keys.slot(slot), value, lease: lease.id } },
          { range: { key: keys.prefix, prefix: true } },
        ],
        [{ range: { key: keys.name(memberName) } }],
      );
      if (result.succeeded) return { slot, revision: result.revision, kvs: result.ranges[result.ranges.length - 1]! };
      if (result.ranges[0]!.length > 0) throw new LockError('EINVAL', `member ${memberName} is already in lockspace ${keys.lockspace}`);
      // Another member took the slot (or the lockspace stopped being empty) meanwhile: read again.
    }
  }

  /** What each of our members knows: for status pages. */
  lockspaces(): LockspaceStatus[] {
    return [...this.members].map((member) => ({
      lockspace: member.name,
      memberName: member.memberName,
      slot: member.slot,
      leaseId: member.lease.id,
      writesAllowedForMs: Math.round(member.lease.remainingMs()),
      members: member.memberList(),
    }));
  }

  async close(): Promise<void> {
    await Promise.all([...this.members].map((member) => member.leave()));
  }

  /** Test hook: `space` dies now, as a node whose machine stopped; its lease ends as if it expired. */
  async kill(space: Lockspace): Promise<void> {
    if (!(space instanceof EtcdMember)) throw new TypeError('kill takes a lockspace this manager made');
    const lease = space.lease;
    space.depart('killed');
    await this.store.revokeLease(lease.id);
  }

  /**
   * Test hook: resolves once every consequence of the calls made so far has been delivered: no
   * call or recovery running, every member's mirror past a barrier written after them, every
   * outbox drained; repeated until a round starts nothing new.
   */
  async settle(): Promise<void> {
    for (;;) {
      const before = this.activity;
      await this.quiet();
      const spaces = new Map<string, EtcdMember[]>();
      for (const member of this.members) spaces.set(member.name, [...(spaces.get(member.name) ?? []), member]);
      for (const [, members] of spaces) {
        const keys = new LockspaceKeys(this.root, members[0]!.name);
        const barrier = await this.store.txn([], [{ put: { key: keys.sync, value: new Uint8Array(0) } }]);
        await Promise.all(members.map((m) => m.mirror.waitFor(barrier.revision).catch(() => {})));
      }
      await this.quiet();
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (this.activity === before && [...this.members].every((m) => m.outboxIdle)) return;
    }
  }
}
