/**
 * One resource of a lockspace: its granted locks, convert queue and wait queue, its value block,
 * and the grant pass that applies the DLM's rules (lock-manager.ts's design note). Pure and
 * synchronous: it records what happened (grants, blocking notices) in an outbox the caller
 * delivers later, so no callback ever runs inside a call. Both lock managers decide through it:
 * the in-process one keeps one Resource per name for good; the etcd one rebuilds it from the keys
 * read at a revision, applies one call and the pass, and writes the difference back in one
 * transaction (etcd/resource-keys.ts), so the grant rules cannot drift apart.
 */
import { assert } from '../assert.ts';
import { compatible, valueBlockOp, VALUE_BLOCK_BYTES, type LockMode } from './modes.ts';

export type EntryState = 'waiting' | 'granted' | 'converting' | 'gone';

/** A lock as the resource sees it; the lockspace wraps it in the Lock handle callers hold. */
export interface LockEntry {
  readonly resource: Resource;
  readonly memberSlot: number;
  state: EntryState;
  /** Null while a new request waits. */
  grantedMode: LockMode | null;
  /** The mode a waiting request or conversion asks for; null when none is pending. */
  requestedMode: LockMode | null;
  /** Highest mode this lock was told it blocks since its last grant (-1: none). */
  highestBlockingMode: number;
  readonly valueBlock: Uint8Array;
  valueBlockValid: boolean;
}

export type Outcome =
  | { kind: 'granted'; entry: LockEntry }
  | { kind: 'blocking'; entry: LockEntry; mode: LockMode };

export class Resource {
  /** Every lock with a granted mode, converting ones included. */
  readonly granted: LockEntry[] = [];
  readonly converting: LockEntry[] = [];
  readonly waiting: LockEntry[] = [];
  readonly valueBlock = new Uint8Array(VALUE_BLOCK_BYTES);
  valueBlockValid = true;

  constructor(readonly name: string) {}

  get idle(): boolean {
    return this.granted.length === 0 && this.waiting.length === 0;
  }

  newEntry(memberSlot: number): LockEntry {
    return {
      resource: this, memberSlot, state: 'waiting', grantedMode: null, requestedMode: null,
      highestBlockingMode: -1, valueBlock: new Uint8Array(VALUE_BLOCK_BYTES), valueBlockValid: true,
    };
  }

  /** True when `mode` is compatible with every granted lock but `self`. */
  private fitsGranted(mode: LockMode, self: LockEntry | null): boolean {
    for (const other of this.granted) if (other !== self && !compatible(other.grantedMode!, mode)) return false;
    return true;
  }

  /** Grantable now, by the rules for a new request (nothing pending ahead of it). */
  canGrantNew(mode: LockMode): boolean {
    return this.converting.length === 0 && this.waiting.length === 0 && this.fitsGranted(mode, null);
  }

  canGrantConversion(entry: LockEntry, mode: LockMode): boolean {
    return this.fitsGranted(mode, entry);
  }

  /** A waiting conversion that `entry` converting to `mode` would deadlock with, if any. */
  deadlockWith(entry: LockEntry, mode: LockMode): LockEntry | null {
    for (const other of this.converting) {
      if (other === entry) continue;
      if (!compatible(other.grantedMode!, mode) && !compatible(entry.grantedMode!, other.requestedMode!)) return other;
    }
    return null;
  }

  enqueueNew(entry: LockEntry, mode: LockMode): void {
    entry.requestedMode = mode;
    this.waiting.push(entry);
  }

  enqueueConversion(entry: LockEntry, mode: LockMode): void {
    assert(entry.state === 'granted', 'only a granted lock converts');
    entry.state = 'converting';
    entry.requestedMode = mode;
    this.converting.push(entry);
  }

  /** Makes `entry` granted in `mode` (a new lock or a conversion), copying the value block. */
  grant(entry: LockEntry, mode: LockMode): void {
    const op = valueBlockOp(entry.grantedMode, mode);
    if (op === 'write') this.writeValueBlock(entry);
    else if (op === 'read') {
      entry.valueBlock.set(this.valueBlock);
      entry.valueBlockValid = this.valueBlockValid;
    }
    if (entry.grantedMode === null) this.granted.push(entry);
    removeFrom(this.converting, entry);
    removeFrom(this.waiting, entry);
    entry.grantedMode = mode;
    entry.requestedMode = null;
    entry.state = 'granted';
    entry.highestBlockingMode = -1;
  }

  /** Unlocks a granted lock (writing its value block from PW/EX); `purged` (its member gone) invalidates it instead. */
  release(entry: LockEntry, purged: boolean): void {
    if (entry.grantedMode !== null) {
      if (purged && entry.grantedMode >= 4) this.valueBlockValid = false;
      else if (!purged && valueBlockOp(entry.grantedMode, null) === 'write') this.writeValueBlock(entry);
    }
    removeFrom(this.granted, entry);
    removeFrom(this.converting, entry);
    removeFrom(this.waiting, entry);
    entry.grantedMode = null;
    entry.requestedMode = null;
    entry.state = 'gone';
  }

  /** Takes back a waiting request (gone) or conversion (back to granted in its old mode). */
  withdraw(entry: LockEntry): void {
    if (entry.state === 'waiting') {
      removeFrom(this.waiting, entry);
      entry.requestedMode = null;
      entry.state = 'gone';
    } else if (entry.state === 'converting') {
      removeFrom(this.converting, entry);
      entry.requestedMode = null;
      entry.state = 'granted';
    }
  }

  /**
   * Grants whatever the rules now allow (conversions first, until none moves; then new requests
   * in order while none is converting) and notes a blocking notice for every granted lock that
   * blocks a waiter, once per higher mode since its grant.
   */
  grantPass(outbox: Outcome[]): void {
    for (let moved = true; moved; ) {
      moved = false;
      for (const entry of [...this.converting]) {
        if (this.canGrantConversion(entry, entry.requestedMode!)) {
          this.grant(entry, entry.requestedMode!);
          outbox.push({ kind: 'granted', entry });
          moved = true;
        }
      }
    }
    while (this.converting.length === 0 && this.waiting.length > 0) {
      const first = this.waiting[0]!;
      if (!this.fitsGranted(first.requestedMode!, null)) break;
      this.grant(first, first.requestedMode!);
      outbox.push({ kind: 'granted', entry: first });
    }
    for (const waiter of [...this.converting, ...this.waiting]) {
      const mode = waiter.requestedMode!;
      for (const holder of this.granted) {
        if (holder === waiter || compatible(holder.grantedMode!, mode) || mode <= holder.highestBlockingMode) continue;
        holder.highestBlockingMode = mode;
        outbox.push({ kind: 'blocking', entry: holder, mode });
      }
    }
  }

  private writeValueBlock(entry: LockEntry): void {
    this.valueBlock.set(entry.valueBlock);
    this.valueBlockValid = true;
    entry.valueBlockValid = true;
  }
}

function removeFrom(list: LockEntry[], entry: LockEntry): void {
  const index = list.indexOf(entry);
  if (index >= 0) list.splice(index, 1);
}
