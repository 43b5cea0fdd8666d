/**
 * The service's event stream: what changed (clones created, hydration progress, mode changes,
 * completion, exports connected...), numbered in order. Subscribers (the SSE route) get every event
 * from the moment they subscribe; the last RING_EVENTS are kept so a client that reconnects with
 * Last-Event-ID misses nothing recent. close() ends every subscription (on shutdown).
 *
 * Ids go up across restarts too: a run numbers its events from ID_STEPS_PER_MS × the time it
 * started, so an id a client kept from an earlier run is below every id of this one, and resuming
 * with it replays everything kept. An id above the last one given (a clock set back between runs,
 * or a made-up id) cannot be placed either, so it too replays everything kept, rather than
 * silently skipping events until the count catches up.
 */
/** Ids a run may use per millisecond of its start time before a later run's ids could be below them. */
export const ID_STEPS_PER_MS = 1024;
export const RING_EVENTS = 1024;

export interface ServiceEvent {
  id: number;
  /** e.g. clone.commit, clone.hydration-complete, export.connect (see the OpenAPI document). */
  type: string;
  timeMs: number;
  [key: string]: unknown;
}

export interface Subscriber {
  event(event: ServiceEvent): void;
  closed(): void;
}

export class EventHub {
  private nextId: number;
  private readonly ring: ServiceEvent[] = [];
  private readonly subscribers = new Set<Subscriber>();
  private isClosed = false;
  /** Events published since start, by type (for /metrics). */
  readonly countsByType = new Map<string, number>();

  constructor(startedAtMs = Date.now()) {
    this.nextId = Math.floor(startedAtMs) * ID_STEPS_PER_MS + 1;
  }

  publish(type: string, fields: Record<string, unknown> = {}): ServiceEvent {
    const event: ServiceEvent = { ...fields, id: this.nextId++, type, timeMs: Date.now() };
    this.ring.push(event);
    if (this.ring.length > RING_EVENTS) this.ring.shift();
    this.countsByType.set(type, (this.countsByType.get(type) ?? 0) + 1);
    for (const subscriber of [...this.subscribers]) {
      try {
        subscriber.event(event);
      } catch (error) {
        console.error(`event subscriber failed on ${type}:`, error);
      }
    }
    return event;
  }

  /** Kept events with an id above `afterId`, oldest first (all kept ones for an id not yet given). */
  since(afterId: number): ServiceEvent[] {
    if (afterId > this.lastId) return [...this.ring];
    return this.ring.filter((event) => event.id > afterId);
  }

  get lastId(): number {
    return this.nextId - 1;
  }

  subscribe(subscriber: Subscriber): () => void {
    if (this.isClosed) {
      subscriber.closed();
      return () => {};
    }
    this.subscribers.add(subscriber);
    return () => this.subscribers.delete(subscriber);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  close(): void {
    this.isClosed = true;
    for (const subscriber of [...this.subscribers]) subscriber.closed();
    this.subscribers.clear();
  }
}
