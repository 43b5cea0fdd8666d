/**
 * `core <region_size> [sync|nosync]`: the bits in memory only (dm-log.c's core log). Every region
 * starts clean; in sync only with nosync, so a mirror on a core log resyncs everything each time
 * it comes up. Flush has nothing to write.
 */
import type { LogArgs } from './log-args.ts';
import { LogBits } from './log-bits.ts';
import { syncWords, type LogDeviceState, type RegionLog } from './region-log.ts';

export class CoreLog implements RegionLog {
  readonly deviceName = null;
  readonly deviceState: LogDeviceState = 'A';

  private constructor(readonly args: LogArgs, readonly bits: LogBits) {}

  static async create(args: LogArgs): Promise<CoreLog> {
    return new CoreLog(args, await LogBits.create(args.regionCount, args.sync === 'nosync'));
  }

  async resume(): Promise<void> {
    this.bits.restartSearch();
  }

  async presuspend(): Promise<void> {}

  async postsuspend(): Promise<void> {}

  async flush(): Promise<void> {
    this.bits.touchedCleaned = false;
    this.bits.touchedDirtied = false;
  }

  statusInfo(): string {
    return `1 ${this.args.type}`;
  }

  statusTable(): string {
    return `${this.args.type} ${this.args.sync === 'default' ? 1 : 2} ${this.args.regionSectors} ${syncWords(this.args)}`;
  }

  async close(): Promise<void> {
    this.bits.release();
  }
}
