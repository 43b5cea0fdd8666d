/**
 * One connection is the fault domain. Code that runs straight from the event loop on behalf of a
 * connection (a socket event, a timer, a device promise settling, a setImmediate flush) runs
 * through `guarded`: an exception there, whether a bug of ours or of a device that broke its
 * contract, ends that connection (the owner's `onFault` closes it and says why), and never
 * reaches the process, where it would end every connection at once. Assertions still stop loudly:
 * for that connection.
 *
 * `describeError` turns anything thrown into one line, even a value with no string form (an
 * object without a prototype), so that reporting a fault cannot itself throw.
 */

/** Runs `work`; if it throws, `onFault` gets the error (and must not throw itself). */
export function guarded(work: () => void, onFault: (error: unknown) => void): void {
  try {
    work();
  } catch (error) {
    onFault(error);
  }
}

/** A one-line description of a thrown value; never throws. */
export function describeError(value: unknown): string {
  try {
    if (value instanceof Error) return value.message;
    return String(value);
  } catch {
    return `a thrown ${typeof value} with no string form`;
  }
}
