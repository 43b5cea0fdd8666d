/** Reads a Server-Sent Events stream for tests: `next(match)` waits for the first matching event. */
import { readSseMessages } from '../../server/sse-parse.ts';

export interface SseEvent {
  id: string;
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

export interface SseReader {
  status: number;
  received: SseEvent[];
  next(match: (event: SseEvent) => boolean, what: string, timeoutMs?: number): Promise<SseEvent>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

export async function openEvents(url: string, headers: Record<string, string> = {}): Promise<SseReader> {
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const received: SseEvent[] = [];
  const waiters = new Set<() => void>();
  const ended = (async () => {
    if (!response.body) return;
    try {
      for await (const message of readSseMessages(response.body)) {
        received.push({ ...message, data: JSON.parse(message.data) });
        for (const wake of [...waiters]) wake();
      }
    } catch {
      // aborted
    } finally {
      for (const wake of [...waiters]) wake();
    }
  })();
  let isEnded = false;
  void ended.then(() => (isEnded = true));
  return {
    status: response.status,
    received,
    ended,
    close: () => abort.abort(),
    next(match, what, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        let seen = 0;
        const check = () => {
          for (; seen < received.length; seen++) {
            if (match(received[seen]!)) {
              done();
              resolve(received[seen]!);
              return;
            }
          }
          if (isEnded) {
            done();
            reject(new Error(`stream ended before ${what}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${what}; got ${received.map((e) => e.event).join(', ')}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
