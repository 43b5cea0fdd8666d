/**
 * The array engine in the service (runtime/cluster/ is md-cluster itself): clustered raid1/raid10
 * arrays over device files of the data directory, served under /v1/arrays, exported as
 * `array:<name>`, kept in the state file as `engines.array` records (records.ts).
 */
import type { EngineDefinition } from '../engine.ts';
import { ARRAY_COMMANDS } from './commands.ts';
import { arrayRecordProblem, type ArrayRecord } from './records.ts';

export const arrayEngine: EngineDefinition = {
  kind: 'array',
  commands: ARRAY_COMMANDS,
  eventTypes: ['created', 'assembled', 'stopped', 'resized', 'bitmap-switched', 'leg-failed', 'leg-added', 'leg-removed', 'leg-readded', 'resync-started', 'resync-done', 'resync-stopped', 'fenced', 'note'],
  recordProblem: arrayRecordProblem,
  recordName: (record) => (record as ArrayRecord).name,
  open: async (context) => new (await import('./registry.ts')).ArrayRegistry(context),
};
