/**
 * The ordering a clustered log needs (corosync's CPG as cmirrord uses it): members of a group
 * (one group per log uuid) multicast messages, and every member is delivered every message and
 * every membership change in one agreed order (virtual synchrony: a member that joins sees
 * exactly the messages sent after its join, a member that leaves none after its leave).
 * Implementations: in process (in-process-ordering.ts: members are log servers of one process);
 * the etcd issue gives a distributed one behind the same interface.
 */
export interface OrderedMessage {
  /** The sender's member id. */
  from: number;
  body: Uint8Array;
}

export interface MembershipChange {
  /** Members after the change, lowest id first. */
  members: number[];
  joined: number[];
  left: number[];
}

export interface OrderingMember {
  /** A message, in the agreed order (its own messages too). */
  deliver(message: OrderedMessage): void;
  /** A membership change, in the same order as messages. */
  membership(change: MembershipChange): void;
  /**
   * This member is out of the group without having left (a distributed ordering lost etcd past
   * its lease, or its watch fell behind): nothing more is sent or delivered to it; it may join
   * again as a new member. The in-process ordering never loses a member.
   */
  lost?(why: string): void;
}

export interface OrderingHandle {
  readonly memberId: number;
  /** Multicasts `body` to every member (itself included) in the agreed order. */
  send(body: Uint8Array): void;
  /** Leaves the group; the others see it in order. Nothing is delivered to it afterwards. */
  leave(): void;
}

export interface Ordering {
  /** Joins `group` as `member`; its first delivery is the membership change that adds it. */
  join(group: string, member: OrderingMember): OrderingHandle;
}
