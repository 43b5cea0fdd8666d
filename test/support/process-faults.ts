/**
 * Records uncaught exceptions and unhandled rejections while installed, instead of letting them
 * end the test process, so a test can assert that there were none (Node, Bun and Deno all honour
 * these process events). Dispose in teardown.
 */
export interface ProcessFaults {
  /** One line per fault: its kind and message. */
  readonly faults: string[];
  dispose(): void;
}

export function watchProcessFaults(): ProcessFaults {
  const faults: string[] = [];
  const describe = (value: unknown): string => {
    try {
      return value instanceof Error ? `${value.name}: ${value.message}` : String(value);
    } catch {
      return '(a value with no string form)';
    }
  };
  const onException = (error: unknown) => faults.push(`uncaught exception: ${describe(error)}`);
  const onRejection = (reason: unknown) => faults.push(`unhandled rejection: ${describe(reason)}`);
  process.on('uncaughtException', onException);
  process.on('unhandledRejection', onRejection);
  return {
    faults,
    dispose() {
      process.off('uncaughtException', onException);
      process.off('unhandledRejection', onRejection);
    },
  };
}
