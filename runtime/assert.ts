/**
 * Assertions are for bugs in blockcore itself: a failed one means our own invariant broke, so it
 * stops loudly. Errors caused by the world (bad input, I/O faults) are `BlockError`s instead.
 */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
