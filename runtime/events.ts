/**
 * A minimal typed event emitter, the same on every runtime. Engines raise events (mode changes,
 * hydration complete...) and the server relays them (Server-Sent Events). A listener that throws
 * is a bug in the listener: it is reported on the console and does not stop the others.
 */
export type Listener<E> = (event: E) => void;

export class Emitter<E extends { type: string }> {
  private readonly listeners = new Set<Listener<E>>();

  /** Subscribes; returns the unsubscribe function. */
  on(listener: Listener<E>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: E): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (error) {
        console.error(`event listener failed on ${event.type}:`, error);
      }
    }
  }

  /** Resolves with the first event that matches. */
  next(match: (event: E) => boolean): Promise<E> {
    return new Promise((resolve) => {
      const off = this.on((event) => {
        if (!match(event)) return;
        off();
        resolve(event);
      });
    });
  }
}
