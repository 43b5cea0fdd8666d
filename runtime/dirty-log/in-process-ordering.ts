/**
 * Ordering (ordering.ts) among members in one process: each group is one queue of events
 * (messages and membership changes) delivered to every current member in queue order, one event
 * at a time, a macrotask after it was queued (so a sender never sees its own message inside
 * `send`, and a long queue never holds the event loop). A member that leaves is dropped from
 * delivery at the point of its leave; a crash is a leave the member did not ask for.
 */
import { setImmediate as nextTurn } from 'node:timers';
import type { MembershipChange, Ordering, OrderingHandle, OrderingMember } from './ordering.ts';

type GroupEvent = { kind: 'message'; from: number; body: Uint8Array } | { kind: 'membership'; change: MembershipChange };

interface Group {
  members: Map<number, OrderingMember>;
  queue: GroupEvent[];
  draining: boolean;
}

export class InProcessOrdering implements Ordering {
  private readonly groups = new Map<string, Group>();
  private nextId = 1;
  delivered = 0;

  join(name: string, member: OrderingMember): OrderingHandle {
    let group = this.groups.get(name);
    if (group === undefined) this.groups.set(name, (group = { members: new Map(), queue: [], draining: false }));
    const id = this.nextId++;
    const joinedGroup = group;
    // Membership is applied at the event's place in the queue, not now: events queued before the
    // join are not delivered to the joiner.
    this.enqueue(joinedGroup, { kind: 'membership', change: { members: [], joined: [id], left: [] } }, member);
    let left = false;
    return {
      memberId: id,
      send: (body) => {
        if (!left) this.enqueue(joinedGroup, { kind: 'message', from: id, body: body.slice() });
      },
      leave: () => {
        if (left) return;
        left = true;
        this.enqueue(joinedGroup, { kind: 'membership', change: { members: [], joined: [], left: [id] } });
      },
    };
  }

  /** Members of `group` now (lowest first), as delivered so far. */
  members(group: string): number[] {
    return [...(this.groups.get(group)?.members.keys() ?? [])].sort((a, b) => a - b);
  }

  private readonly joining = new WeakMap<GroupEvent, OrderingMember>();

  private enqueue(group: Group, event: GroupEvent, joiner?: OrderingMember): void {
    if (joiner !== undefined) this.joining.set(event, joiner);
    group.queue.push(event);
    if (group.draining) return;
    group.draining = true;
    nextTurn(() => this.drain(group));
  }

  private drain(group: Group): void {
    const event = group.queue.shift();
    if (event === undefined) {
      group.draining = false;
      return;
    }
    if (event.kind === 'membership') {
      for (const id of event.change.joined) group.members.set(id, this.joining.get(event)!);
      for (const id of event.change.left) group.members.delete(id);
      const change: MembershipChange = { ...event.change, members: [...group.members.keys()].sort((a, b) => a - b) };
      for (const member of [...group.members.values()]) safely(() => member.membership(change));
    } else {
      for (const member of [...group.members.values()]) safely(() => member.deliver({ from: event.from, body: event.body }));
    }
    this.delivered += 1;
    nextTurn(() => this.drain(group));
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
