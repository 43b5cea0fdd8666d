/**
 * The transport engine in the service (runtime/transport/ is RTRS and RNBD themselves): client
 * sessions to RTRS servers and remote devices mapped over them (`remote:<name>`), under
 * /v1/transport, kept in the state file as `engines.remote` records (records.ts); and the service's
 * own RTRS server, listening where `--rtrs` says, serving this machine's devices over RNBD.
 */
import { parseHostPort } from '../../runtime/transport/rtrs-address.ts';
import { MAX_IO_THREADS } from '../../runtime/transport/rtrs-server.ts';
import type { EngineDefinition } from '../engine.ts';
import { TRANSPORT_COMMANDS } from './commands.ts';
import { transportRecordProblem, type TransportRecord } from './records.ts';

export const DEFAULT_RTRS = '127.0.0.1:10900,127.0.0.2:10900';

export const transportEngine: EngineDefinition = {
  kind: 'remote',
  commands: TRANSPORT_COMMANDS,
  serveFlags: [
    {
      flag: '--rtrs', env: 'BLOCKCORE_RTRS', valueName: 'HOST:PORT[,HOST:PORT...]', defaultValue: DEFAULT_RTRS,
      summary: 'RTRS/RNBD listen addresses ("off": none)',
      problem: (value) => {
        if (value === 'off') return null;
        try {
          for (const part of value.split(',')) parseHostPort(part.trim(), 'address', true);
          return null;
        } catch (error) {
          return (error as Error).message.replace(/^EINVAL: address: /, '');
        }
      },
    },
    { flag: '--rtrs-key-file', env: 'BLOCKCORE_RTRS_KEY_FILE', valueName: 'FILE', defaultValue: null, summary: 'pre-shared key every RTRS client must prove (first line, >= 16 characters)' },
    {
      flag: '--rtrs-threads', env: 'BLOCKCORE_RTRS_THREADS', valueName: 'N', defaultValue: null,
      summary: 'worker threads serving RTRS IO connections, of the listener and of sessions (0: all on the main thread; Node only, elsewhere ignored)',
      problem: (value) => (/^\d{1,2}$/.test(value) && Number(value) <= MAX_IO_THREADS ? null : `expected a whole number from 0 to ${MAX_IO_THREADS}`),
    },
  ],
  eventTypes: ['session-created', 'session-removed', 'path-added', 'path-removed', 'path-state', 'failover', 'disconnected', 'reconnected', 'closed', 'mapped', 'unmapped'],
  recordProblem: transportRecordProblem,
  recordName: (record) => `${(record as TransportRecord).type}:${(record as TransportRecord).name}`,
  open: async (context) => {
    const registry = new (await import('./registry.ts')).TransportRegistry(context);
    await registry.startListener();
    return registry;
  },
};
