/**
 * A lock of the etcd lock manager as its holder sees it: the request key's record as the member's
 * mirror last applied it, the holder's copy of the value block, and what the holder waits for (a
 * grant, a conversion, an unlock). Every change of state comes from `update`, called as the
 * mirror applies a revision that touched the key: the call that made the change only wrote it, so
 * a grant made by this member and one made by another member's grant pass arrive the same way.
 * What the holder is told goes through the member's outbox.
 */
import { LockError } from '../lock-error.ts';
import type { ConvertOptions, Lock } from '../lock-manager.ts';
import { cancelled } from '../lock-checks.ts';
import { compatible, LockMode, valueBlockOp, VALUE_BLOCK_BYTES } from '../modes.ts';
import type { EntryRecord, HeadRecord } from './lock-keys.ts';

/** What a lock needs from its member. */
export interface LockOwner {
  readonly live: boolean;
  post(thunk: () => void): void;
  convert(lock: EtcdLock, mode: LockMode, options: ConvertOptions): Promise<void>;
  unlock(lock: EtcdLock): Promise<void>;
}

export type Waiting =
  | { kind: 'new'; resolve: (lock: Lock) => void; reject: (error: unknown) => void }
  | {
    kind: 'convert'; from: LockMode; to: LockMode; startGrants: number;
    /** Seen queued (the key asked for `to`): only then does a key asking for nothing mean a cancel. */
    queued: boolean;
    resolve: () => void; reject: (error: unknown) => void;
  };

export class EtcdLock implements Lock {
  readonly valueBlock = new Uint8Array(VALUE_BLOCK_BYTES);
  valueBlockValid = true;
  /** The record as of the last applied revision; null before the key first shows up. */
  record: EntryRecord | null = null;
  gone = false;
  waiting: Waiting | null = null;
  cancelling = false;
  unlocking: (() => void) | null = null;
  private toldGrants = -1;
  private toldDelivered = 0;

  constructor(
    private readonly owner: LockOwner,
    readonly resource: string,
    readonly key: string,
    private readonly onBlocking: ((mode: LockMode) => void) | undefined,
  ) {}

  get mode(): LockMode {
    return this.record?.g ?? LockMode.NL;
  }

  get held(): boolean {
    return !this.gone && this.owner.live && this.record !== null && this.record.g !== null;
  }

  /** True while a new request or a conversion waits for its outcome. */
  get busy(): boolean {
    return this.waiting !== null;
  }

  convert(mode: LockMode, options: ConvertOptions = {}): Promise<void> {
    return this.owner.convert(this, mode, options);
  }

  unlock(): Promise<void> {
    return this.owner.unlock(this);
  }

  /** The grant of a new request, as a promise (settled by `update` or `fail`). */
  awaitGrant(): Promise<Lock> {
    return new Promise<Lock>((resolve, reject) => {
      this.waiting = { kind: 'new', resolve, reject };
    });
  }

  /** The outcome of a conversion from the current mode to `to`. */
  awaitConversion(to: LockMode): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting = { kind: 'convert', from: this.mode, to, startGrants: this.record?.gs ?? 0, queued: false, resolve, reject };
    });
  }

  /** Ends a wait with `error` (a refusal decided by the member: EAGAIN, EDEADLK, ENOTCONN...). */
  fail(error: unknown): void {
    const waiting = this.waiting;
    if (waiting === null) return;
    this.waiting = null;
    this.cancelling = false;
    this.settled(waiting);
    this.owner.post(() => waiting.reject(error));
  }

  private readonly onSettle = new Map<Waiting, () => void>();

  /** Runs `then` once wait `wait` is over (granted, refused, cancelled or purged). */
  onSettled(wait: Waiting, then: () => void): void {
    if (this.waiting !== wait) then();
    else this.onSettle.set(wait, then);
  }

  private settled(wait: Waiting): void {
    const then = this.onSettle.get(wait);
    this.onSettle.delete(wait);
    then?.();
  }

  /** The key changed at a revision: `record` its new value (undefined: deleted), `head` the resource's head then. */
  update(record: EntryRecord | undefined, head: HeadRecord | undefined): void {
    if (record === undefined) {
      this.record = null;
      this.gone = true;
      if (this.waiting !== null) {
        const why = this.waiting.kind === 'new' && this.cancelling
          ? cancelled(this.resource)
          : new LockError('ENOTCONN', 'the lock was purged with its member', this.resource);
        this.fail(why);
      }
      const unlocked = this.unlocking;
      this.unlocking = null;
      if (unlocked !== null) this.owner.post(unlocked);
      return;
    }
    this.record = record;
    const waiting = this.waiting;
    if (waiting?.kind === 'new' && record.g !== null) {
      this.readBlock(head);
      this.settle(() => waiting.resolve(this));
    } else if (waiting?.kind === 'convert') {
      if (record.gs > waiting.startGrants) {
        const op = valueBlockOp(waiting.from, waiting.to);
        if (op === 'read') this.readBlock(head);
        else if (op === 'write') this.valueBlockValid = true;
        this.settle(() => waiting.resolve());
      } else if (record.r === waiting.to) {
        waiting.queued = true;
      } else if (record.r === null && waiting.queued) {
        // Withdrawn while queued: only a cancel does that. (Before the conversion is written, the
        // key may change for other reasons, a blocking notice, with nothing asked yet.)
        this.fail(cancelled(this.resource));
      }
    }
    this.deliverNotices(record);
  }

  /** The member is gone: nothing of this lock is held any more. */
  purge(): void {
    this.gone = true;
    this.fail(new LockError('ENOTCONN', 'the member left the lockspace', this.resource));
    const unlocked = this.unlocking;
    this.unlocking = null;
    if (unlocked !== null) this.owner.post(unlocked);
  }

  private settle(thunk: () => void): void {
    const waiting = this.waiting;
    this.waiting = null;
    this.cancelling = false;
    if (waiting !== null) this.settled(waiting);
    this.owner.post(thunk);
  }

  private readBlock(head: HeadRecord | undefined): void {
    this.valueBlock.set(head?.lvb ?? new Uint8Array(VALUE_BLOCK_BYTES));
    this.valueBlockValid = head?.valid ?? true;
  }

  /** Blocking notices this holder has not delivered yet; dropped at delivery when their cause went away. */
  private deliverNotices(record: EntryRecord): void {
    if (record.gs !== this.toldGrants) {
      this.toldGrants = record.gs;
      this.toldDelivered = 0;
    }
    const fresh = record.told.slice(this.toldDelivered);
    this.toldDelivered = record.told.length;
    const callback = this.onBlocking;
    if (callback === undefined) return;
    for (const mode of fresh) {
      this.owner.post(() => {
        if (!this.held || compatible(this.mode, mode)) return;
        callback(mode);
      });
    }
  }
}
