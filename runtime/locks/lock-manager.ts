/**
 * The lock manager contract: the DLM's semantics as md-cluster relies on them, one interface for
 * every implementation (in-process now, on etcd later), all held to one conformance suite
 * (test/conformance/lock-manager-suite.ts).
 *
 * Design note
 * - A lockspace is joined by members (nodes). Each member gets a slot, 1-based and the lowest
 *   free one, as the DLM hands them out; md-cluster subtracts one for its bitmap slot.
 * - A resource (a name inside the lockspace) has granted locks, a convert queue and a wait queue.
 *   A conversion is granted as soon as its mode is compatible with every other granted lock; a
 *   new request only when no conversion is pending, nothing waits ahead of it, and its mode is
 *   compatible with every granted lock. Conversions therefore always go ahead of new requests, and
 *   new requests are granted in the order they came.
 * - NOQUEUE: a request or conversion that cannot be granted at once fails with EAGAIN (and sends
 *   no blocking callback). A conversion that would wait on another waiting conversion which in turn
 *   waits on it fails with EDEADLK, the lock keeping its mode. Cancel is an AbortSignal: a waiting
 *   request fails with ECANCELED and is gone, a waiting conversion fails with ECANCELED and the
 *   lock keeps its granted mode; once granted, an abort does nothing.
 * - Blocking callbacks: while a request waits, every granted lock that blocks it is told the mode
 *   it waits for, once per higher mode since that lock's last grant (the DLM's rule). A callback
 *   whose cause went away before delivery (the holder moved to a compatible mode) is dropped.
 * - Lock value block: 64 bytes per resource. A grant copies the resource's block into the lock
 *   (`valueBlock`); a PW or EX holder that converts down or unlocks writes its block back (see
 *   modes.ts valueBlockOp). When a member dies or leaves holding PW or EX, the resource's block
 *   is marked invalid (`valueBlockValid` false on later grants) until a holder writes it again.
 * - Members leaving or dying: every other member gets recoverPrep, then the departed member's
 *   locks are purged (its waiting requests dropped, granted ones released), then recoverSlot for
 *   each departed member, then recoverDone; grants the purge makes possible follow. Callbacks are
 *   never made from inside a call into the lock manager: they arrive later, in order per member.
 */
import type { LockMode } from './modes.ts';

export interface LockManager {
  /** Joins `lockspace` (creating it for its first member) as `options.memberName`. */
  join(lockspace: string, options: JoinOptions): Promise<Lockspace>;
  /** Ends every lockspace of this manager as if every member left. */
  close(): Promise<void>;
}

export interface JoinOptions {
  /** Unique in the lockspace: a second live member of the same name is refused (EINVAL). */
  memberName: string;
  /**
   * The node (process) joining, stable across its restarts: a member of the same name left behind
   * by an earlier run of the same node (it crashed; its lease has not expired yet) is taken over at
   * once instead of refusing the name. Managers whose members cannot outlive their process ignore it.
   */
  nodeId?: string;
  callbacks?: LockspaceCallbacks;
}

export interface DepartedMember {
  memberName: string;
  /** 1-based DLM slot the member held. */
  slot: number;
}

export interface LockspaceCallbacks {
  /** Some member left or died; recovery is about to run. */
  recoverPrep?(): void;
  /** `member` is gone: its locks are released (PW/EX value blocks marked invalid). */
  recoverSlot?(member: DepartedMember): void;
  /** Recovery finished; `slots` are the live members' slots, `ourSlot` ours. */
  recoverDone?(slots: readonly number[], ourSlot: number): void;
  /**
   * This member is out without having left: its lease could not be renewed in time (it fenced
   * itself) or ended in etcd. Its locks are gone and writesAllowed() is false from now on; the
   * others recover it. Joining again makes a new member.
   */
  fenced?(why: string): void;
}

export interface LockOptions {
  /** Fail with EAGAIN instead of waiting. */
  noQueue?: boolean;
  /** Cancel: while the request waits, aborting it fails the request with ECANCELED. */
  signal?: AbortSignal;
  /** The blocking callback, for this lock's whole life: someone waits for `requestedMode`. */
  onBlocking?: (requestedMode: LockMode) => void;
}

export interface ConvertOptions {
  noQueue?: boolean;
  signal?: AbortSignal;
}

export interface Lockspace {
  readonly name: string;
  readonly memberName: string;
  /** 1-based, as the DLM gives it. */
  readonly slot: number;
  /** False once this member left or died. */
  readonly live: boolean;
  /**
   * False once this member may no longer write to storage it shares with the others: it left,
   * died, or (etcd) could not renew its lease in time and fenced itself. Read before every write
   * to a shared leg; it turns false before the others can start recovering this member.
   */
  writesAllowed(): boolean;
  /** Requests `mode` on `resource`; resolves with the lock once granted. */
  lock(resource: string, mode: LockMode, options?: LockOptions): Promise<Lock>;
  /** Leaves the lockspace: locks still held are purged as the DLM purges a departed node's. */
  leave(): Promise<void>;
}

export interface Lock {
  readonly resource: string;
  /** The granted mode (during a conversion: still the old one). */
  readonly mode: LockMode;
  /**
   * This lock's copy of the value block: filled from the resource at each reading grant; a PW or
   * EX holder writes here and the block goes to the resource when it converts down or unlocks.
   */
  readonly valueBlock: Uint8Array;
  /** False when the resource's block was invalidated by a dead PW/EX holder and not rewritten. */
  readonly valueBlockValid: boolean;
  /** False once unlocked (or purged with its member). */
  readonly held: boolean;
  convert(mode: LockMode, options?: ConvertOptions): Promise<void>;
  unlock(): Promise<void>;
}
