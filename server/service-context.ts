/**
 * What the clone and export registries (clone-registry.ts, export-registry.ts) get from the service
 * that holds them: the data directory, where events and log lines go, every file held right now, and
 * the state file. Every registry method that changes something runs inside the service's one change
 * at a time (Service.exclusive), so no registry guards against a concurrent change itself.
 */
import type { Hold } from './device-holders.ts';
import type { EventHub } from './event-hub.ts';

export interface ServiceContext {
  /** The data directory's real path. */
  readonly dataDir: string;
  readonly events: EventHub;
  log(line: string): void;
  /** Every file held by a clone or an export, clones first. */
  holds(): Hold[];
  /**
   * Writes the state file after a change already in effect that cannot be undone (a message, a
   * suspend, a finalize): the change is durable when it resolves; if the write fails, rejects with
   * EIO saying `what` is in effect but will not survive a restart (never a bare 500).
   */
  saveApplied(what: string): Promise<void>;
  /** Writes the state file; if that fails, runs `undo` and rejects with EIO. */
  saveOrUndo(undo: () => Promise<void>): Promise<void>;
}
