/**
 * A seeded trial that never settles is a hang in the code under test; it must fail with its seed
 * (so it can be replayed), not stall the whole suite. `withDeadline` races the work against a
 * timer and rejects naming what hung. The work itself is left to settle or not: the test fails.
 */
export async function withDeadline<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${timeoutMs} ms (a hang)`)), timeoutMs);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}
