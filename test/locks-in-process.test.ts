/**
 * The in-process lock manager against the lock-manager conformance suite (cases and the seeded
 * model test), on every runtime.
 */
import { InProcessLockManager } from '../runtime/locks/in-process/in-process-lock-manager.ts';
import { lockManagerConformance } from './conformance/lock-manager-suite.ts';

lockManagerConformance('in-process', async () => {
  const manager = new InProcessLockManager();
  return {
    manager,
    async kill(space) {
      manager.kill(space);
    },
    // Every notification is delivered in microtask turns: one macrotask turn drains them all.
    settle: () => new Promise<void>((resolve) => setTimeout(resolve, 0)),
    close: () => manager.close(),
  };
});
