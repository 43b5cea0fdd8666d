/** Reads a Server-Sent Events stream for tests: `next(match)` waits for the first matching event. */
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
  let pending = '';
  const ended = (async () => {
    if (!response.body) return;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        pending += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const fields = new Map<string, string>();
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            fields.set(line.slice(0, colon), line.slice(colon + 1).replace(/^ /, ''));
          }
          if (!fields.has('data')) continue;
          received.push({ id: fields.get('id') ?? '', event: fields.get('event') ?? 'message', data: JSON.parse(fields.get('data')!) });
          for (const wake of [...waiters]) wake();
        }
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
