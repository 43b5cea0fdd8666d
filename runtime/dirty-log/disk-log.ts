/**
 * `disk <dev> <region_size> [sync|nosync]`: the clean bits kept on a BlockDevice in the kernel's
 * format (disk-log-format.ts), so that after a crash a mirror resyncs only the regions that were
 * marked dirty.
 *
 * CTR checks the device and writes nothing: large enough for the log, writable, and either zeros
 * (a new log) or a disk log of version 1 or 2; anything else is refused (EINVAL) rather than
 * overwritten (a table naming a leg as its log must not destroy the leg).
 *
 * RESUME (dm-log.c's disk_resume): reads the log; with sync or nosync given, or a new device, the
 * bits on disk are ignored; regions past the ones the log held (the mirror grew) are out of sync
 * (in sync with nosync); the clean bits become the sync bits (a region that was dirty at the
 * crash is resynced); the header takes the region count and the whole log is written and flushed.
 * A read that fails marks the device failed (D) and every region out of sync.
 *
 * CLEAR_REGION of a region out of sync does nothing, and SET_REGION_SYNC(r, 0) marks r (LogBits'
 * cleanOnlyInSync): a clean bit on disk becomes the sync bit at the next RESUME, so a clear that
 * reached disk before the resync copied the region would leave legs that differ "in sync".
 *
 * FLUSH: when a mark or clear happened since the last one, the pages of the log that changed are
 * written and the device flushed; FLUSH is answered after that flush resolves. Durable when: a
 * mark, once the FLUSH after it is answered (the mirror writes the region only then); a clear,
 * likewise (losing one costs a resync of that region, never data). A failed write marks the
 * device D, a failed flush F; the FLUSH fails with EIO and the mirror falls back to a core log.
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';
import type { LogArgs } from './log-args.ts';
import { LogBits } from './log-bits.ts';
import { bitsetBytes, bufferBytes, decodeDiskLogHeader, DISK_LOG_BITS_OFFSET, encodeDiskLogHeader } from './disk-log-format.ts';
import { syncWords, type LogDeviceState, type RegionLog } from './region-log.ts';

/** Flushes write the log in runs of these (a multiple of the device's block). */
const WRITE_PAGE_BYTES = 4096;

export class DiskLog implements RegionLog {
  deviceState: LogDeviceState = 'A';
  /** The log as last read from or written to the device. */
  private image: Uint8Array;
  private readonly pageBytes: number;
  writes = 0;

  private constructor(
    readonly args: LogArgs,
    readonly bits: LogBits,
    private readonly device: BlockDevice,
    readonly deviceName: string,
  ) {
    // RESUME makes the clean bits the sync bits: a region out of sync must never be clean here.
    bits.cleanOnlyInSync = true;
    this.image = new Uint8Array(bufferBytes(args.regionCount, device.logicalBlockBytes));
    this.pageBytes = Math.max(WRITE_PAGE_BYTES, device.logicalBlockBytes);
  }

  /** Checks `device` for the log (EINVAL naming why it cannot be one); writes nothing. */
  static async create(args: LogArgs, device: BlockDevice, deviceName: string): Promise<DiskLog> {
    const need = bufferBytes(args.regionCount, device.logicalBlockBytes);
    if (device.sizeBytes < need) {
      throw new BlockError('EINVAL', `log device ${deviceName} too small: ${args.regionCount} regions need ${need} bytes, it has ${device.sizeBytes}`);
    }
    if (!device.canWrite) throw new BlockError('EINVAL', `log device ${deviceName} is read-only`);
    const first = new Uint8Array(Math.max(device.logicalBlockBytes, 512));
    await device.read(0, first);
    const header = decodeDiskLogHeader(first);
    if (header.kind === 'foreign') throw new BlockError('EINVAL', `log device ${deviceName}: ${header.why}`);
    return new DiskLog(args, await LogBits.create(args.regionCount, args.sync === 'nosync'), device, deviceName);
  }

  async resume(): Promise<void> {
    const { regionCount } = this.args;
    const buffer = new Uint8Array(this.image.length);
    let held = 0;
    try {
      await this.device.read(0, buffer);
      const header = decodeDiskLogHeader(buffer);
      if (header.kind === 'foreign') {
        // Something else took the device since CTR checked it: never write over it.
        this.fail('D');
        throw new BlockError('EIO', `log device ${this.deviceName}: ${header.why}; not resumed`);
      }
      if (header.kind === 'log' && this.args.sync === 'default') held = Math.min(header.nrRegions, regionCount);
    } catch (error) {
      if (error instanceof BlockError && error.code === 'EIO' && this.deviceState === 'D') throw error;
      this.fail('D'); // unreadable: every region out of sync, the log written anew (dm-log.c's way)
    }
    const { clean, sync } = this.bits;
    // The bits the log held, then the rest: out of sync (or in sync with nosync).
    const words = new Uint8Array(clean.wordCount * 8);
    words.set(buffer.subarray(DISK_LOG_BITS_OFFSET, DISK_LOG_BITS_OFFSET + Math.ceil(held / 8)));
    if (held % 8 !== 0) words[held >> 3]! &= (1 << (held % 8)) - 1;
    clean.loadBytes(0, words);
    if (this.args.sync === 'nosync') clean.setRange(held, regionCount);
    else clean.clearRange(held, regionCount);
    sync.loadBytes(0, clean.toBytes());
    this.bits.restartSearch();
    // The header takes the region count; the whole log is written and flushed.
    const next = new Uint8Array(this.image.length);
    encodeDiskLogHeader(regionCount, next);
    next.set(clean.toBytes().subarray(0, bitsetBytes(regionCount)), DISK_LOG_BITS_OFFSET);
    await this.writeRuns(next, [[0, next.length]]);
    this.bits.touchedCleaned = false;
    this.bits.touchedDirtied = false;
  }

  /** Writes the whole log as the bits hold it now, and flushes (a clustered log's new server: its image may be stale). */
  async writeWhole(): Promise<void> {
    const next = new Uint8Array(this.image.length);
    encodeDiskLogHeader(this.args.regionCount, next);
    next.set(this.bits.clean.toBytes().subarray(0, bitsetBytes(this.args.regionCount)), DISK_LOG_BITS_OFFSET);
    this.bits.touchedCleaned = false;
    this.bits.touchedDirtied = false;
    await this.writeRuns(next, [[0, next.length]]);
  }

  async presuspend(): Promise<void> {}

  async postsuspend(): Promise<void> {
    await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.bits.touchedDirtied && !this.bits.touchedCleaned) return;
    if (this.deviceState !== 'A') throw new BlockError('EIO', `log device ${this.deviceName} has failed (${this.deviceState})`);
    const next = this.image.slice();
    next.set(this.bits.clean.toBytes().subarray(0, bitsetBytes(this.args.regionCount)), DISK_LOG_BITS_OFFSET);
    const dirtied = this.bits.touchedDirtied;
    const cleaned = this.bits.touchedCleaned;
    this.bits.touchedDirtied = false;
    this.bits.touchedCleaned = false;
    try {
      await this.writeRuns(next, this.changedRuns(next));
    } catch (error) {
      this.bits.touchedDirtied ||= dirtied;
      this.bits.touchedCleaned ||= cleaned;
      throw error;
    }
  }

  statusInfo(): string {
    return `3 ${this.args.type} ${this.deviceName} ${this.deviceState}`;
  }

  statusTable(): string {
    return `${this.args.type} ${this.args.sync === 'default' ? 2 : 3} ${this.deviceName} ${this.args.regionSectors} ${syncWords(this.args)}`;
  }

  async close(): Promise<void> {
    this.bits.release();
    await this.device.close();
  }

  /** Byte ranges [start, end) of whole pages where `next` differs from the image. */
  private changedRuns(next: Uint8Array): Array<[number, number]> {
    const runs: Array<[number, number]> = [];
    for (let start = 0; start < next.length; start += this.pageBytes) {
      const end = Math.min(start + this.pageBytes, next.length);
      let same = true;
      for (let i = start; i < end; i++) {
        if (next[i] !== this.image[i]) {
          same = false;
          break;
        }
      }
      if (same) continue;
      const last = runs[runs.length - 1];
      if (last !== undefined && last[1] === start) last[1] = end;
      else runs.push([start, end]);
    }
    return runs;
  }

  /** Writes the runs of `next`, then flushes the device; the image becomes `next` once durable. */
  private async writeRuns(next: Uint8Array, runs: Array<[number, number]>): Promise<void> {
    try {
      await Promise.all(runs.map(([start, end]) => this.device.write(start, next.subarray(start, end))));
      this.writes += runs.length;
    } catch (error) {
      this.fail('D');
      throw new BlockError('EIO', `log device ${this.deviceName}: write failed: ${String(error)}`);
    }
    try {
      await this.device.flush();
    } catch (error) {
      this.fail('F');
      throw new BlockError('EIO', `log device ${this.deviceName}: flush failed: ${String(error)}`);
    }
    this.image = next;
  }

  private fail(state: LogDeviceState): void {
    if (this.deviceState === 'A' || state === 'F') this.deviceState = state;
  }
}
