/**
 * A dirty log instance as the log server holds it (dm-dirty-log.h's operations beyond the bits,
 * which LogBits keeps): how it comes up, flushes and describes itself. Core and disk logs here;
 * clustered ones replicate the same bits through an ordering group.
 */
import type { LogArgs } from './log-args.ts';
import type { LogBits } from './log-bits.ts';

/** dm's state letter of a log device: A alive, D failed (I/O error), F a flush failed. */
export type LogDeviceState = 'A' | 'D' | 'F';

export interface RegionLog {
  readonly args: LogArgs;
  readonly bits: LogBits;
  /** The device the table named, for CTR's reply and the status lines; null for core logs. */
  readonly deviceName: string | null;
  readonly deviceState: LogDeviceState;
  /** Clustered logs: the members of its group as this one last saw them (this one included); else absent. */
  readonly groupMembers?: number;
  /** Loads the log (a disk log reads its bits; a core log restarts its resync search). */
  resume(): Promise<void>;
  presuspend(): Promise<void>;
  postsuspend(): Promise<void>;
  /** Makes marks and clears durable where the log keeps them; resolves once they are. */
  flush(): Promise<void>;
  /** dm's STATUSTYPE_INFO and STATUSTYPE_TABLE of the log. */
  statusInfo(): string;
  statusTable(): string;
  /** DTR: lets go of its memory and device. */
  close(): Promise<void>;
}

/** dm-log.c's DMEMIT_SYNC: "sync " or "nosync " when given, nothing otherwise. */
export function syncWords(args: LogArgs): string {
  return args.sync === 'default' ? '' : `${args.sync} `;
}
