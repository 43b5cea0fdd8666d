/**
 * Ordering (ordering.ts) across machines, on etcd: the clustered log's group as a revision-ordered
 * log in etcd, so every member applies every request and membership change in etcd's one order.
 *
 * Design note
 * - Keys under `<root><group>/` (group percent-encoded): `m/<lease>` a member, on its own lease
 *   (LeaseKeeper: a member that cannot renew stops, as a crashed one); `q/<lease>/<n>` the
 *   member's n-th message, on the same lease, put by a transaction that also deletes its
 *   (n-1)-th and holds only while the member key exists (a member that is out sends nothing).
 * - A member's id is its member key's create revision: unique, and lower for earlier joiners, so
 *   "the lowest member serves" means the longest present.
 * - Order: each member watches the group prefix from its join revision on and delivers, revision
 *   by revision: a member key created (a join), a member key deleted (a leave: asked, or its
 *   lease expired), a message key put (the message). Every member sees the same revisions, so
 *   the same order; a joiner sees exactly what follows its join (virtual synchrony's rule), its
 *   first delivery being the change that adds it, with the members its join read at its revision.
 * - Compaction: messages live in etcd's revision history, not as keys (each member keeps at most
 *   its last message key, deleted by its next send or with its lease), so nothing accumulates in
 *   the keyspace; etcd's own compaction drops applied history. A member whose watch falls behind
 *   a compaction (etcd ends the watch) leaves the group and is told so (OrderingMember.lost: it
 *   joins again and takes a checkpoint from the serving member, as clustered-log.ts does); so is
 *   a member whose send went unanswered (it may or may not have landed) or whose lease lapsed.
 * - join, send and leave answer at once (the interface is synchronous); what they do in etcd
 *   happens behind them in call order, one chain per group for every member of this process, so
 *   a leave and a later send of another member here land in etcd in that order too.
 */
import { compareRevisions, type EtcdStore, type EtcdWatchEvent } from '../locks/etcd/etcd-store.ts';
import { LeaseKeeper } from '../locks/etcd/lease-keeper.ts';
import type { MembershipChange, Ordering, OrderingHandle, OrderingMember } from './ordering.ts';

export const DEFAULT_ORDERING_ROOT = '/blockcore/ordering/';

export interface EtcdOrderingOptions {
  root?: string;
  /** Seconds a member lives without a renewal (default 5). */
  leaseTtlSeconds?: number;
  /** Where a failure of the member's own (etcd gone past its lease, watch compacted) is said. */
  log?: (line: string) => void;
}

export class EtcdOrdering implements Ordering {
  private readonly root: string;
  private readonly ttlSeconds: number;
  private readonly log: (line: string) => void;
  private readonly members = new Set<EtcdGroupMember>();
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly store: EtcdStore, options: EtcdOrderingOptions = {}) {
    this.root = options.root ?? DEFAULT_ORDERING_ROOT;
    this.ttlSeconds = options.leaseTtlSeconds ?? 5;
    this.log = options.log ?? ((line) => console.warn(line));
  }

  join(group: string, member: OrderingMember): OrderingHandle {
    const prefix = `${this.root}${encodeURIComponent(group)}/`;
    const run = (work: () => Promise<void>): Promise<void> => {
      const next = (this.chains.get(prefix) ?? Promise.resolve()).then(work);
      const tail = next.catch(() => {});
      this.chains.set(prefix, tail);
      void tail.then(() => {
        if (this.chains.get(prefix) === tail) this.chains.delete(prefix);
      });
      return next;
    };
    const joined = new EtcdGroupMember(this.store, prefix, member, this.ttlSeconds, this.log, run, () => this.members.delete(joined));
    this.members.add(joined);
    joined.start();
    return joined;
  }

  /** Every member of this process leaves (their keys go now). */
  async close(): Promise<void> {
    await Promise.all([...this.members].map((member) => member.leaveNow()));
  }

  /**
   * Test hook: every member of this process loses its lease in etcd, as when this machine was cut
   * off past its TTL; the members are not told: they find out as they would (their key's delete).
   */
  async expireAll(): Promise<void> {
    for (const member of [...this.members]) await member.expire();
  }

  /** Test hook: resolves once every member of this process has delivered everything up to etcd's revision now. */
  async settle(): Promise<void> {
    for (const member of [...this.members]) await member.caughtUp();
  }
}

class EtcdGroupMember implements OrderingHandle {
  memberId = 0;
  private lease: LeaseKeeper | null = null;
  private state: 'joining' | 'in' | 'out' = 'joining';
  private leaving = false;
  private messageNumber = 0;
  private readonly ids = new Map<string, number>();
  private watch: { cancel(): Promise<void> } | null = null;
  private deliveredRevision = '0';
  private revisionWaiters: { revision: string; resolve: () => void }[] = [];
  private started: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: EtcdStore,
    private readonly prefix: string,
    private readonly member: OrderingMember,
    private readonly ttlSeconds: number,
    private readonly log: (line: string) => void,
    private readonly run: (work: () => Promise<void>) => Promise<void>,
    private readonly gone: () => void,
  ) {}

  start(): void {
    this.started = this.run(() => this.joinInEtcd()).catch((error: unknown) => this.lose(`joining failed: ${String(error)}`));
  }

  send(body: Uint8Array): void {
    if (this.state === 'out' || this.leaving) return;
    const copy = body.slice();
    void this.run(() => this.sendOne(copy));
  }

  leave(): void {
    if (this.leaving) return;
    this.leaving = true;
    void this.run(() => this.leaveInEtcd());
  }

  /** Ends the lease in etcd without telling this member (expireAll). */
  async expire(): Promise<void> {
    await this.started;
    if (this.lease !== null) await this.store.revokeLease(this.lease.id);
  }

  /** Leaves at once, behind what this process already asked of the group. */
  async leaveNow(): Promise<void> {
    this.leaving = true;
    await this.run(() => this.leaveInEtcd());
  }

  private async leaveInEtcd(): Promise<void> {
    const lease = this.lease;
    this.out();
    await lease?.revoke();
  }

  /** Out without having left: revoke what etcd still holds of us (the others see us go now) and tell the member. */
  private lose(why: string): void {
    if (this.state === 'out') return;
    this.log(`ordering ${this.prefix}: member ${this.memberId} out: ${why}`);
    const lease = this.lease;
    this.out();
    void lease?.revoke();
    if (!this.leaving) safely(() => this.member.lost?.(why));
  }

  /** Resolves once this member has delivered up to the revision etcd is at now (tests). */
  async caughtUp(): Promise<void> {
    await this.run(async () => {});
    if (this.state !== 'in') return;
    const now = (await this.store.txn([], [{ put: { key: `${this.prefix}sync`, value: new Uint8Array(0) } }])).revision;
    if (compareRevisions(this.deliveredRevision, now) >= 0) return;
    await new Promise<void>((resolve) => this.revisionWaiters.push({ revision: now, resolve }));
  }

  private async joinInEtcd(): Promise<void> {
    const lease = await LeaseKeeper.grant(this.store, this.ttlSeconds, (why) => this.lose(why));
    this.lease = lease;
    const memberKey = `${this.prefix}m/${lease.id}`;
    const result = await this.store.txn([], [
      { put: { key: memberKey, value: new Uint8Array(0), lease: lease.id } },
      { range: { key: `${this.prefix}m/`, prefix: true } },
    ]);
    const members = result.ranges[1]!;
    for (const kv of members) this.ids.set(kv.key.slice(`${this.prefix}m/`.length), Number(kv.createRevision));
    this.memberId = Number(result.revision);
    this.deliveredRevision = result.revision;
    this.watch = await this.store.watchPrefix(this.prefix, String(BigInt(result.revision) + 1n), (events) => this.apply(events), (why) => this.lose(`its watch ended (${why})`));
    if (this.leaving) return;
    this.state = 'in';
    const change: MembershipChange = { members: [...this.ids.values()].sort((a, b) => a - b), joined: [this.memberId], left: [] };
    safely(() => this.member.membership(change));
  }

  private async sendOne(body: Uint8Array): Promise<void> {
    if (this.state !== 'in') return;
    const lease = this.lease!;
    const n = ++this.messageNumber;
    const key = `${this.prefix}q/${lease.id}/${n}`;
    try {
      const sent = await this.store.txn(
        [{ key: `${this.prefix}m/${lease.id}`, target: 'version', op: '>', value: '0' }],
        [{ put: { key, value: body, lease: lease.id } }, ...(n > 1 ? [{ delete: { key: `${this.prefix}q/${lease.id}/${n - 1}` } }] : [])],
      );
      if (!sent.succeeded) this.lose('its member key is gone (lease expired)');
    } catch (error) {
      // Unanswered: it may have landed; a message lost or doubled would split the replicas, so the
      // member leaves (its log server joins again through a checkpoint).
      this.lose(`a send failed: ${String(error)}`);
    }
  }

  /** One watch response: delivered revision by revision, each event in its place. */
  private apply(events: EtcdWatchEvent[]): void {
    const before = this.deliveredRevision;
    for (const event of events) {
      if (this.state !== 'in') return;
      const { kv } = event;
      if (compareRevisions(kv.modRevision, before) <= 0) continue; // repeated by a resumed watch
      const rest = kv.key.slice(this.prefix.length);
      if (rest.startsWith('m/')) {
        const lease = rest.slice(2);
        if (event.type === 'put' && kv.createRevision === kv.modRevision) {
          const id = Number(kv.createRevision);
          this.ids.set(lease, id);
          this.deliverChange({ joined: [id], left: [] });
        } else if (event.type === 'delete') {
          const id = this.ids.get(lease);
          this.ids.delete(lease);
          if (id === this.memberId) {
            this.lose('its member key is gone (lease expired)');
            return;
          }
          if (id !== undefined) this.deliverChange({ joined: [], left: [id] });
        }
      } else if (rest.startsWith('q/') && event.type === 'put') {
        const from = this.ids.get(rest.split('/')[1]!);
        if (from !== undefined) safely(() => this.member.deliver({ from, body: kv.value }));
      }
      this.deliveredRevision = kv.modRevision;
    }
    const ready = this.revisionWaiters.filter((w) => compareRevisions(this.deliveredRevision, w.revision) >= 0);
    this.revisionWaiters = this.revisionWaiters.filter((w) => !ready.includes(w));
    for (const waiter of ready) waiter.resolve();
  }

  private deliverChange(change: Omit<MembershipChange, 'members'>): void {
    safely(() => this.member.membership({ ...change, members: [...this.ids.values()].sort((a, b) => a - b) }));
  }

  /** Out of the group: nothing more is sent or delivered. */
  private out(): void {
    if (this.state === 'out') return;
    this.state = 'out';
    this.lease?.stop();
    void this.watch?.cancel().catch(() => {});
    for (const waiter of this.revisionWaiters.splice(0)) waiter.resolve();
    this.gone();
  }
}

/** A member that throws (a bug of its own) loses that event, not the group its delivery. */
function safely(work: () => void): void {
  try {
    work();
  } catch (error) {
    console.error('ordering: a member failed on an event:', error);
  }
}
