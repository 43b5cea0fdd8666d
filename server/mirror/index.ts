/**
 * The mirror engine in the service (runtime/mirror/ is dm-raid1 itself, runtime/dirty-log/ the log
 * server): mirrors under /v1/mirrors, exported as `mirror:<name>`, kept in the state file as
 * `engines.mirror` records (records.ts); and the dirty-log server under /v1/logs, listening on
 * the Unix socket `--ulog` names.
 */
import type { EngineDefinition } from '../engine.ts';
import { MIRROR_COMMANDS } from './commands.ts';
import { mirrorRecordProblem, type MirrorRecord } from './records.ts';

export const mirrorEngine: EngineDefinition = {
  kind: 'mirror',
  commands: MIRROR_COMMANDS,
  serveFlags: [
    {
      flag: '--ulog', env: 'BLOCKCORE_ULOG', valueName: 'PATH', defaultValue: 'default',
      summary: 'the dirty-log server\'s Unix socket (default: <data>/.blockcore/ulog.sock; "off": none)',
      problem: (value) => (value === 'default' || value === 'off' || (value.length > 0 && value.length < 100) ? null : 'expected a socket path shorter than 100 bytes, "default" or "off"'),
    },
  ],
  eventTypes: ['created', 'removed', 'leg-failed', 'leg-removed', 'leg-added', 'log-failed', 'resync-done', 'suspended', 'resumed', 'table-loaded', 'table-swapped', 'note'],
  recordProblem: mirrorRecordProblem,
  recordName: (record) => (record as MirrorRecord).name,
  open: async (context) => {
    const registry = new (await import('./registry.ts')).MirrorRegistry(context);
    await registry.startListener();
    return registry;
  },
};
