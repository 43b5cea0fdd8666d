/**
 * The mirror's dirty log, always reached as dm-log-userspace's client (runtime/ulog/ulog-client.ts)
 * so there is one way of talking to a log: a `core` or `disk` log of the table lives in a log
 * server of the mirror's own in this process (no socket, the same requests), a `userspace` log in
 * whichever server the mirror's host links it to (the service's, over its Unix socket).
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { LogServer } from '../dirty-log/log-server.ts';
import { UlogClient } from '../ulog/ulog-client.ts';
import { localLink, type UlogLinkFactory } from '../ulog/ulog-link.ts';
import type { MirrorTable } from './mirror-table.ts';

/** A userspace log whose server has not come back in this long has failed (the mirror goes on with a core log). */
export const LOG_GIVE_UP_MS = 60_000;

export interface MirrorLogHost {
  /** Opens a disk log's device (core and disk logs of the mirror's own server). */
  openDevice?: (name: string) => Promise<BlockDevice>;
  /** The link to the log server a `userspace` log names (absent: userspace logs are refused). */
  userspaceLink?: UlogLinkFactory;
  /** Resend timeout of the log client (15 s; tests use less). */
  timeoutMs?: number;
  retryMs?: number;
  /** How long the log client tries to construct a lost log again before the mirror calls the log failed (60 s). */
  logGiveUpMs?: number;
  log?: (line: string) => void;
}

export interface MirrorLog {
  client: UlogClient;
  /** The log's table words as dm prints them (`core 1 1024 `, `userspace 3 <uuid> core 1024 `). */
  table(): Promise<string>;
  /** DTR and lets go of its private server. */
  close(): Promise<void>;
  /** Lets go without DTR (the log failed; the mirror moves on without it). */
  abandon(): void;
}

export async function openMirrorLog(name: string, table: Pick<MirrorTable, 'logType' | 'logArgs'>, targetSectors: number, host: MirrorLogHost): Promise<MirrorLog> {
  if (table.logType === 'userspace') {
    if (host.userspaceLink === undefined) throw new Error('this mirror has no log server to reach: userspace logs need the service');
    const [uuid, ...rest] = table.logArgs as [string, ...string[]];
    const integratedFlush = rest[0]?.toLowerCase() === 'integrated_flush';
    const client = await UlogClient.open({
      link: host.userspaceLink, uuid, logArgs: (integratedFlush ? rest.slice(1) : rest).join(' '), targetSectors, integratedFlush, giveUpMs: host.logGiveUpMs ?? LOG_GIVE_UP_MS,
      ...(host.timeoutMs !== undefined ? { timeoutMs: host.timeoutMs } : {}), ...(host.retryMs !== undefined ? { retryMs: host.retryMs } : {}), ...(host.log ? { log: host.log } : {}),
    });
    return {
      client,
      table: async () => client.statusTable(),
      close: () => client.destroy(),
      abandon: () => client.shut(),
    };
  }
  const server = new LogServer({ ...(host.openDevice ? { openDevice: host.openDevice } : {}), ...(host.log ? { log: host.log } : {}) });
  const uuid = `blockcore-mirror-${name}`;
  let client: UlogClient;
  try {
    client = await UlogClient.open({ link: localLink(server), uuid, logArgs: [table.logType, ...table.logArgs].join(' '), targetSectors });
  } catch (error) {
    await server.close();
    throw error;
  }
  return {
    client,
    table: () => client.statusTableFromServer(),
    close: async () => {
      await client.destroy().catch(() => {});
      await server.close();
    },
    abandon: () => {
      client.shut();
      void server.close();
    },
  };
}
