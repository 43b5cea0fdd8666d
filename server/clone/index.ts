/**
 * The clone engine in the service (runtime/clone/ is the engine itself): clones opened from
 * dm-clone table lines over files in the data directory, served under /v1/clones, exported as
 * `clone:<name>`, kept in the state file as `engines.clone` records (records.ts).
 */
import type { EngineDefinition } from '../engine.ts';
import { CLONE_COMMANDS } from './commands.ts';
import { cloneRecordProblem, type CloneRecord } from './records.ts';

export const cloneEngine: EngineDefinition = {
  kind: 'clone',
  commands: CLONE_COMMANDS,
  eventTypes: ['created', 'removed', 'finalized', 'message', 'suspended', 'resumed', 'commit', 'mode', 'hydration-complete', 'hydration-stopped', 'hydration'],
  recordProblem: cloneRecordProblem,
  recordName: (record) => (record as CloneRecord).name,
  // Loaded on open only: the CLI takes the commands and none of the engine.
  open: async (context) => new (await import('./registry.ts')).CloneRegistry(context),
};
