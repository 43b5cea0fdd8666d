/**
 * A mirror (dm-raid1's role): N legs holding the same bytes, a dirty log saying which regions may
 * differ after a crash, and a resync that makes them agree. A BlockDevice over BlockDevices, so a
 * mirror of `remote:` legs or an NBD export of a mirror needs nothing new.
 *
 * Table and log: mirror-table.ts (dm's table line), mirror-log.ts (the log is always reached as a
 * dm-log-userspace client: core and disk logs in a log server of the mirror's own, userspace ones
 * in the service's). Regions are the log's region_size.
 *
 * Writes: wait while their regions are being resynced or an overlapping write is in flight; mark the regions (region-marks.ts: the mark
 * durable in the log before the data goes out); write every leg that is not failed, in parallel
 * (FUA passed on); count down, the region cleared later, after a leg flush. A write that fails on
 * some legs: with handle_errors those legs fail (policy below, the new table recorded through
 * `tableChanged`) and then the write succeeds on the rest; without, the error is counted on the
 * leg (its health letter), its region put out of sync (resynced later) and the write fails with
 * EIO: dm would acknowledge it, and lose it when the resync copies from the leg that missed it.
 *
 * Reads: a region in sync is read from the legs in turn (the next good leg each read); a region
 * out of sync only from the default leg (the one resync copies from). A read error fails that leg
 * (handle_errors) and the read goes to the next good leg when the region is in sync.
 *
 * Leg failure (handle_errors), LVM's mirror_image_fault_policy: `remove` drops the leg (the table
 * loses it; one leg left is a linear device), `replace` takes a spare from the host and adds it
 * as a new leg, with the log constructed again forcing a resync of every region (dm's `sync`), so
 * the spare is copied whole. The default leg moves to the first good one. A write or flush that
 * saw a leg fail, or ran after, is acknowledged only once the table without that leg is recorded,
 * and only if a leg still in the mirror then took it (a leg failed meanwhile by another path holds
 * a copy no table names). A removal the table could not record (`tableChanged` failed) leaves the
 * saved table naming the leg as a copy, maybe the one a resync after a crash copies from: from
 * then on the mirror acknowledges no write or flush (EIO).
 * A leg being copied to (a spare added, or any leg but the first of a table loaded with `sync`:
 * `recovering` until a resync pass ends with every region in sync) holds only the regions copied
 * so far, so it is no copy to fall back on. A leg whose failure would leave only such legs is the
 * last copy and stays, as the last leg does: dm-raid1's fail_mirror keeps the default mirror when
 * it fails while the mirror is out of sync ("Reads may fail") rather than return corrupt data,
 * and LVM will not remove the only in-sync image. It stays the default leg and the resync source:
 * its copies that fail leave their regions out of sync (copied again at the next resume, the
 * spare still recovering); reads of regions not in sync go to it and fail with EIO when it does;
 * a write or flush it refuses fails with EIO (the write's regions go out of sync, to be copied
 * from it again), and failLeg refuses it (EBUSY). Nothing is acknowledged or read that only a
 * partial copy holds.
 * Log failure (a log request that fails: a disk log's device died, the server is gone for good):
 * the mirror goes on with a core log (`core <region> nosync` when every region was known in sync
 * and nothing was marked, else `core <region>`: everything resyncs), writes waiting on the failed
 * log marked again in the new one.
 *
 * Clustered logs: every CLUSTERED_SYNC_POLL_MS the mirror asks the log its in-sync count; when
 * it fell (a member left with regions marked), the regions this mirror knew in sync are forgotten
 * (reads ask the log again, region by region, and read the default leg where it says out of sync)
 * and the resync starts, copying what the log hands out.
 *
 * Durability: flush() flushes every good leg (a leg whose flush fails fails, F). Regions idle for
 * clearDelayMs are cleared in the log by a timer (legs flushed first), so a region written again
 * soon costs no new mark. A write acknowledged before flush() was called is on every
 * good leg durably when flush resolves. After a crash: the regions dirty in a disk log (marked,
 * not cleared) are out of sync at the next resume and resynced; a core log resyncs everything.
 * A region out of sync stays dirty in a disk log until its resync set it in sync, whatever is
 * written to it meanwhile: the log does not apply the clear of a region out of sync
 * (region-marks.ts), so a second crash resyncs it again.
 *
 * Status (dm's mirror_status): info `<#legs> <leg>... <in sync>/<regions> 1 <health> <log info>`,
 * table `<log table><#legs> <leg> <offset>... [<#features> <features>]`; health letters per leg:
 * A alive, D write error, R read error, S resync error, F flush error.
 */
import { BlockError } from '../errors.ts';
import { RegionBitmap } from '../bitmap.ts';
import type { BlockDevice, DiscardOutcome, WriteOptions } from '../devices/block-device.ts';
import { OpGate } from '../devices/op-gate.ts';
import { EMPTY_DISCARD_OUTCOME, validateOpen, validateRequest } from '../devices/validate.ts';
import { WindowDevice } from '../devices/window-device.ts';
import { RegionOps } from '../regions/region-ops.ts';
import { openMirrorLog, type MirrorLog, type MirrorLogHost } from './mirror-log.ts';
import { MirrorResync, type ResyncLeg } from './mirror-resync.ts';
import { RegionMarks } from './region-marks.ts';
import { formatMirrorTable, MIRROR_MAX_LEGS, parseMirrorTable, type MirrorLeg, type MirrorTable } from './mirror-table.ts';

export type LegHealth = 'A' | 'D' | 'R' | 'S' | 'F';
/** How long a region stays marked after its last write (md's daemon_sleep is 5 s): one written again within it costs no new mark. */
export const CLEAR_DELAY_MS = 2000;
/** Regions past a sequential write marked with it (a stream of 1 MiB writes over 512 KiB regions: a log FLUSH per 8 writes). */
export const MARK_AHEAD_REGIONS = 16;
/**
 * How often a mirror on a clustered log asks it how many regions are in sync (kmirrord's wake):
 * a member that left with regions marked puts them out of sync in every other member's log, and
 * this mirror has no other way to hear of it (the log protocol has no push).
 */
export const CLUSTERED_SYNC_POLL_MS = 500;
export type LegFaultPolicy = 'remove' | 'replace';
export type MirrorEventType = 'leg-failed' | 'leg-removed' | 'leg-added' | 'log-failed' | 'resync-done' | 'note';

export interface MirrorEvent {
  type: MirrorEventType;
  message: string;
}

export interface MirrorOptions extends MirrorLogHost {
  name: string;
  table: string;
  /** Opens a leg (and a spare) by the name the table gives. */
  openLeg(name: string): Promise<BlockDevice>;
  /** The mirror's size; default: the smallest leg past its offset. */
  sizeBytes?: number;
  legFaultPolicy?: LegFaultPolicy;
  /** For `replace`: the next spare device's name, or null when none is left. */
  spare?: () => string | null;
  /**
   * Records the table after a failure policy changed it (the service saves its state file); a
   * write that failed on a leg is acknowledged only after this resolves.
   */
  tableChanged?: (line: string) => Promise<void>;
  /** Idle regions are cleared in the log this long after their last write (CLEAR_DELAY_MS). */
  clearDelayMs?: number;
  onEvent?: (event: MirrorEvent) => void;
  /** Load the table without resuming it (dm's inactive table): the log is constructed, not resumed; `activate` resumes it. */
  inactive?: boolean;
}

interface Leg extends ResyncLeg {
  readonly table: MirrorLeg;
  readonly device: WindowDevice;
  health: LegHealth;
  errors: number;
  failed: boolean;
  /** Added by `replace`: copied whole by the resync under way. */
  recovering: boolean;
  /** Set when the leg failed (handle_errors): settles once the table without it is recorded. */
  removal: Promise<void> | null;
}

export interface MirrorLegStatus {
  device: string;
  offsetSectors: number;
  health: LegHealth;
  state: 'in-sync' | 'recovering' | 'failed';
  errors: number;
  isDefault: boolean;
}

export interface MirrorStatus {
  name: string;
  table: string;
  regionSectors: number;
  regionCount: number;
  /** Regions this mirror knows are in sync (its cache; the log's count is in statusInfo()). */
  knownInSyncRegions: number;
  resyncing: boolean;
  legs: MirrorLegStatus[];
  log: { type: string; failed: boolean };
  markedRegions: number;
  logCommits: number;
  bytesResynced: number;
}

export class MirrorDevice implements BlockDevice {
  readonly name: string;
  readonly logicalBlockBytes: number;
  readonly canWrite = true;
  readonly canDiscard: boolean;
  readonly discardZeroes: boolean;
  readonly regionBytes: number;
  readonly regionCount: number;
  private legs: Leg[];
  private defaultLeg: Leg;
  private readLeg = 0;
  private readonly gate = new OpGate();
  private readonly userIo = new OpGate();
  readonly regionOps = new RegionOps();
  readonly marks: RegionMarks;
  private readonly resync: MirrorResync;
  /** Regions known in sync (set when the log said so or our resync made them); the log is the authority. */
  private readonly synced: RegionBitmap;
  private syncPoll: ReturnType<typeof setInterval> | null = null;
  private polling = false;
  private logFailures = 0;
  private switchingLog: Promise<boolean> | null = null;
  private replacing: Promise<void> = Promise.resolve();
  /** Leg removals and additions by policy, one after another; settles when the last is recorded. */
  private legChanges: Promise<void> = Promise.resolve();
  /** Why a leg removal could not be recorded (tableChanged failed): no write or flush is acknowledged after. */
  private unrecordedRemoval: unknown = null;
  /** The clear the timer started, if it runs. */
  private timerClear: Promise<void> | null = null;
  private closing = false;
  private logGeneration = 0;
  private clearTimer: ReturnType<typeof setTimeout> | null = null;
  private suspended = false;
  private resumed: Promise<void> = Promise.resolve();
  private releaseSuspended: (() => void) | null = null;
  /** Where the last write ended: a write starting there continues a sequential stream. */
  private lastWriteEndBytes = -1;
  /** Byte ranges of the writes and discards in flight. */
  private readonly writing: Array<{ start: number; end: number; done: Promise<void> }> = [];

  private constructor(
    private readonly options: MirrorOptions,
    private table: MirrorTable,
    legs: Leg[],
    readonly sizeBytes: number,
    private mirrorLog: MirrorLog,
    synced: RegionBitmap,
  ) {
    this.name = `mirror:${options.name}`;
    this.legs = legs;
    this.defaultLeg = legs[0]!;
    this.logicalBlockBytes = Math.max(...legs.map((leg) => leg.device.logicalBlockBytes));
    this.canDiscard = legs.every((leg) => leg.device.canDiscard);
    this.discardZeroes = legs.every((leg) => leg.device.discardZeroes);
    this.regionBytes = mirrorLog.client.regionSectors * 512;
    this.regionCount = mirrorLog.client.regionCount;
    this.synced = synced;
    this.marks = new RegionMarks({
      log: () => this.mirrorLog.client,
      flushLegs: () => this.flushLegs(),
      logFailed: (error, log) => this.logFailed(error, log),
    });
    this.resync = new MirrorResync({
      clustered: () => clusteredLog(this.table),
      log: () => this.mirrorLog.client,
      regionBytes: this.regionBytes,
      sizeBytes,
      regionOps: this.regionOps,
      marks: this.marks,
      copyPlan: () => {
        const targets = this.legs.filter((leg) => !leg.failed && leg !== this.defaultLeg);
        return this.defaultLeg.failed ? null : { source: this.defaultLeg, targets };
      },
      canRun: () => this.gate.isOpen && !this.suspended,
      regionSynced: (region) => this.synced.set(region),
      legFailed: (leg, error, reading) => this.legFailed(leg as Leg, reading ? 'R' : 'S', error),
      complete: (allInSync) => {
        if (!allInSync) {
          // A copy failed (the source's read, say): the legs copied to lack those regions still.
          this.event('note', 'resync pass done with regions out of sync (copies failed): they are copied again at the next resume');
          return;
        }
        for (const leg of this.legs) leg.recovering = false;
        this.event('resync-done', `in sync: ${this.regionCount} regions`);
      },
      note: (message) => this.event('note', message),
    });
  }

  /** Opens the legs and the log the table names, resumes the log and starts the resync. */
  static async open(options: MirrorOptions): Promise<MirrorDevice> {
    const table = parseMirrorTable(options.table);
    if (typeof table === 'string') throw new BlockError('EINVAL', `table: ${table}`);
    const opened: BlockDevice[] = [];
    try {
      for (const leg of table.legs) opened.push(await options.openLeg(leg.device));
      const room = Math.min(...table.legs.map((leg, i) => opened[i]!.sizeBytes - leg.offsetSectors * 512));
      const sizeBytes = options.sizeBytes ?? room;
      if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % 512 !== 0) throw new BlockError('EINVAL', `sizeBytes must be a positive multiple of 512, got ${sizeBytes}`);
      if (sizeBytes > room) throw new BlockError('ERANGE', `the legs hold ${room} bytes past their offsets; ${sizeBytes} asked`);
      const legs = table.legs.map((leg, i) => newLeg(leg, opened[i]!, sizeBytes));
      // `sync`: every region is copied from the first leg (a spare added before a restart, or
      // lvchange --resync): the others hold no region for sure until that resync is done.
      if (table.logArgs.includes('sync')) for (const leg of legs.slice(1)) leg.recovering = true;
      const log = await openMirrorLog(options.name, table, sizeBytes / 512, options);
      try {
        const synced = await RegionBitmap.create(log.client.regionCount);
        const mirror = new MirrorDevice(options, table, legs, sizeBytes, log, synced);
        if (options.inactive) mirror.holdIo();
        else await mirror.resumeLog();
        mirror.startSyncPoll(); // once open: a mirror that failed to open leaves no timer behind
        return mirror;
      } catch (error) {
        await log.close().catch(() => {});
        throw error;
      }
    } catch (error) {
      await Promise.allSettled(opened.map((device) => device.close()));
      throw error;
    }
  }

  // ---- BlockDevice ----

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    const lengthBytes = validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
    if (lengthBytes === 0) return;
    await this.gate.track(async () => {
      while (this.suspended) await this.resumed;
      if (this.closing) throw new BlockError('EBADF', 'the mirror closed while this read waited for its resume', { device: this.name, offsetBytes });
      const inSync = await this.rangeInSync(offsetBytes, lengthBytes);
      // A leg that failed a read and stays (the last copy) is not asked again.
      const tried = new Set<Leg>();
      for (;;) {
        const leg = inSync ? this.nextReadLeg() : this.defaultLeg;
        if (leg === null || leg.failed) throw new BlockError('EIO', 'no leg to read from', { device: this.name, offsetBytes });
        if (tried.has(leg)) throw new BlockError('EIO', `read failed on ${leg.table.device}, the only leg in sync left`, { device: this.name, offsetBytes });
        tried.add(leg);
        try {
          await leg.device.read(offsetBytes, target);
          return;
        } catch (error) {
          await this.legFailed(leg, 'R', error);
          if (!inSync || !this.table.handleErrors) throw new BlockError('EIO', `read failed on ${leg.table.device}: ${String(error)}`, { device: this.name, offsetBytes });
        }
      }
    });
  }

  async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const lengthBytes = validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
    if (lengthBytes === 0) return;
    await this.gate.track(async () => {
      while (this.suspended) await this.resumed;
      if (this.closing) throw new BlockError('EBADF', 'the mirror closed while this write waited for its resume', { device: this.name, offsetBytes });
      await this.userIo.track(() => this.update(offsetBytes, lengthBytes, (leg) => leg.device.write(offsetBytes, data, options)));
    });
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    if (validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes) === 0) return EMPTY_DISCARD_OUTCOME;
    // The weakest outcome of the legs: a hint taken by one leg is a hint for the mirror.
    let outcome: DiscardOutcome = 'punched';
    await this.gate.track(async () => {
      while (this.suspended) await this.resumed;
      if (this.closing) throw new BlockError('EBADF', 'the mirror closed while this discard waited for its resume', { device: this.name, offsetBytes });
      await this.userIo.track(() => this.update(offsetBytes, lengthBytes, async (leg) => {
        const got = await leg.device.discard(offsetBytes, lengthBytes);
        if (got === 'ignored' || (got === 'zeroed' && outcome === 'punched')) outcome = got;
      }));
    });
    return outcome;
  }

  async flush(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'flush');
    await this.gate.track(async () => {
      // The data only: idle regions are cleared later, once idle for clearDelayMs.
      await this.flushLegs(); // every leg removal recorded too
      if (this.liveLegs().length === 0) throw new BlockError('EIO', 'every leg has failed', { device: this.name });
    });
  }

  async close(): Promise<void> {
    // I/O held by a suspend fails (EBADF) rather than reach legs this mirror no longer owns a
    // log for (after a table swap its writes would be marked nowhere).
    this.closing = true;
    if (this.syncPoll !== null) clearInterval(this.syncPoll);
    this.syncPoll = null;
    this.suspended = false;
    this.releaseSuspended?.();
    await this.gate.close(async () => {
      this.cancelClearTimer();
      // A log whose server is gone for good would hold every request in its recovery: let go.
      if (this.mirrorLog.client.isRecovering) this.mirrorLog.abandon();
      await this.timerClear;
      await this.resync.idle();
      await this.legChanges;
      await this.logSettled();
      await this.marks.clearIdle().catch(() => {});
      await this.mirrorLog.close().catch(() => {});
      await Promise.allSettled(this.legs.map((leg) => leg.device.close()));
      this.synced.release();
    });
  }

  // ---- control ----

  status(): MirrorStatus {
    return {
      name: this.options.name,
      table: formatMirrorTable(this.table),
      regionSectors: this.regionBytes / 512,
      regionCount: this.regionCount,
      knownInSyncRegions: this.synced.setCount,
      resyncing: this.resync.active,
      legs: this.legs.map((leg) => ({
        device: leg.table.device, offsetSectors: leg.table.offsetSectors, health: leg.health, errors: leg.errors,
        state: leg.failed ? 'failed' : leg.recovering ? 'recovering' : 'in-sync', isDefault: leg === this.defaultLeg,
      })),
      log: { type: this.table.logType, failed: this.logFailures > 0 },
      markedRegions: this.marks.markedCount,
      logCommits: this.marks.commits,
      bytesResynced: this.resync.bytesCopied,
    };
  }

  /** dm's STATUSTYPE_INFO: `2 a b 1024/1024 1 AA 1 core`. */
  async statusInfo(): Promise<string> {
    const inSync = await this.mirrorLog.client.syncCount().catch(() => this.synced.setCount);
    const logInfo = await this.mirrorLog.client.statusInfo().catch(() => `${this.table.logType} 1 COM_FAILURE`);
    return `${this.legs.length} ${this.legs.map((leg) => leg.table.device).join(' ')} ${inSync}/${this.regionCount} 1 ${this.legs.map((leg) => leg.health).join('')} ${logInfo}`;
  }

  /** dm's STATUSTYPE_TABLE: `core 1 1024 2 a 0 b 0 1 handle_errors`. */
  async statusTable(): Promise<string> {
    const features = [...(this.table.handleErrors ? ['handle_errors'] : []), ...(this.table.keepLog ? ['keep_log'] : [])];
    const legs = this.legs.map((leg) => ` ${leg.table.device} ${leg.table.offsetSectors}`).join('');
    return `${await this.mirrorLog.table()}${this.legs.length}${legs}${features.length > 0 ? ` ${features.length} ${features.join(' ')}` : ''}`;
  }

  /** Fails a leg by request (as a write error would), then applies the policy. */
  async failLeg(device: string): Promise<boolean> {
    const leg = this.legs.find((candidate) => candidate.table.device === device && !candidate.failed);
    if (leg === undefined) return false;
    if (this.liveLegs().length === 1) throw new BlockError('EBUSY', `${device} is the mirror's last leg`, { device: this.name });
    if (!this.liveLegs().some((other) => other !== leg && !other.recovering)) {
      throw new BlockError('EBUSY', `${device} is the only leg in sync: the others are still being copied from it`, { device: this.name });
    }
    await this.legFailed(leg, 'D', new Error('failed by request'), true);
    return true;
  }

  /** Resolves when the resync has nothing left to do (or stopped) and idle regions are cleared. */
  async quiet(): Promise<void> {
    await this.resync.idle();
    await this.marks.clearIdle();
  }

  /** Starts the resync again (after a suspend, or to pick up regions put out of sync). */
  startResync(): void {
    this.resync.kick();
  }

  get isSuspended(): boolean {
    return this.suspended;
  }

  /**
   * dm suspend: new I/O waits; I/O in flight, the resync and the clearing of idle regions finish;
   * then the log's PRESUSPEND and POSTSUSPEND (a disk log is flushed). Idempotent.
   */
  async suspend(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'suspend');
    if (this.suspended) return;
    this.holdIo();
    this.cancelClearTimer();
    await this.timerClear;
    await this.userIo.idle();
    await this.resync.idle();
    await this.marks.clearIdle();
    await this.mirrorLog.client.presuspend();
    await this.mirrorLog.client.postsuspend();
  }

  /** dm resume: the log's RESUME (an inactive table's log becomes the live instance of its uuid), I/O goes on, the resync starts. */
  async resume(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'resume');
    if (!this.suspended) return;
    await this.resumeLog();
    this.suspended = false;
    this.releaseSuspended?.();
    this.releaseSuspended = null;
    this.resync.kick();
  }

  /** From now on reads and writes wait for `resume`. */
  private holdIo(): void {
    this.suspended = true;
    this.resumed = new Promise((resolve) => (this.releaseSuspended = resolve));
  }

  /** lvchange --resync: the log constructed again with `sync`, so every region is copied from the default leg. */
  async resyncAll(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'resync');
    await this.replaceLog({ ...this.table, logArgs: withSyncWord(this.table, 'sync') });
  }

  /** The table as loaded now (legs removed or added since, the log's sync word), in dm's words. */
  get tableLine(): string {
    return formatMirrorTable(this.table);
  }

  // ---- internals ----

  private async resumeLog(): Promise<void> {
    await this.mirrorLog.client.resume();
    const count = await this.mirrorLog.client.syncCount();
    this.synced.clearRange(0, this.regionCount);
    if (count === this.regionCount) this.synced.setRange(0, this.regionCount);
    this.resync.kick();
  }

  /** A write or discard: marks, every live leg, failures by policy. */
  private async update(offsetBytes: number, lengthBytes: number, apply: (leg: Leg) => Promise<void>): Promise<void> {
    const first = Math.floor(offsetBytes / this.regionBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / this.regionBytes);
    const regions: number[] = [];
    for (let region = first; region <= last; region++) regions.push(region);
    // A region being resynced holds its writes (dm's RH_RECOVERING), and a write overlapping one
    // in flight waits for it: issued together, the legs could apply the two in different orders
    // and end up different. Both checked again after each wait, and passed in one turn.
    for (;;) {
      const busy = this.regionOps.firstBusy(first, last + 1);
      if (busy >= 0) {
        await this.regionOps.get(busy)!.done;
        continue;
      }
      const overlapping = this.writing.find((other) => other.start < offsetBytes + lengthBytes && offsetBytes < other.end);
      if (overlapping === undefined) break;
      await overlapping.done;
    }
    let finished!: () => void;
    const entry = { start: offsetBytes, end: offsetBytes + lengthBytes, done: new Promise<void>((resolve) => (finished = resolve)) };
    this.writing.push(entry);
    // A write that continues the last one (a sequential stream) marks the regions it will reach
    // next in the same commit: one log FLUSH per MARK_AHEAD_REGIONS regions instead of per write.
    const ahead: number[] = [];
    if (offsetBytes === this.lastWriteEndBytes) for (let region = last + 1; region <= Math.min(last + MARK_AHEAD_REGIONS, this.regionCount - 1); region++) ahead.push(region);
    this.lastWriteEndBytes = offsetBytes + lengthBytes;
    const marked = this.marks.begin(regions, ahead); // counted now, in the turn the checks passed
    try {
      await marked;
      const legs = this.liveLegs();
      const results = await Promise.allSettled(legs.map((leg) => apply(leg)));
      const took: Leg[] = [];
      let failure: unknown = null;
      for (let i = 0; i < legs.length; i++) {
        const result = results[i]!;
        if (result.status === 'fulfilled') took.push(legs[i]!);
        else {
          failure ??= result.reason;
          await this.legFailed(legs[i]!, 'D', result.reason, false, regions);
        }
      }
      if (took.length === 0) throw new BlockError('EIO', 'the write failed on every leg', { device: this.name, offsetBytes, lengthBytes });
      await this.removalsRecorded(); // a leg removed meanwhile: recorded before this write is acknowledged
      // A copy counts only on a leg still in the mirror now: one failed meanwhile by another path
      // (failLeg, a flush) is out of the table, and the leg kept as the last may be one that missed it.
      if (!took.some((leg) => !leg.failed)) {
        throw new BlockError('EIO', `no leg still in the mirror took the write${failure !== null ? `: ${describe(failure)}` : ''}`, { device: this.name, offsetBytes, lengthBytes });
      }
      // Acknowledged only when every leg that stays in the mirror holds it: without handle_errors
      // the failed leg stays (its region out of sync, resynced from the default leg, which may be
      // the one that missed it), so the write is not safely mirrored and the caller hears so; with
      // handle_errors the last copy stays too (legFailed), the resync source that missed it.
      if (failure !== null && (!this.table.handleErrors || legs.some((leg) => !leg.failed && !took.includes(leg)))) {
        throw new BlockError('EIO', `the write failed on a leg (its region resyncs): ${describe(failure)}`, { device: this.name, offsetBytes, lengthBytes });
      }
    } finally {
      this.writing.splice(this.writing.indexOf(entry), 1);
      finished();
      this.marks.end(regions);
      this.scheduleClear();
    }
  }

  private liveLegs(): Leg[] {
    return this.legs.filter((leg) => !leg.failed);
  }

  private nextReadLeg(): Leg | null {
    const live = this.liveLegs().filter((leg) => !leg.recovering);
    if (live.length === 0) return null;
    this.readLeg = (this.readLeg + 1) % live.length;
    return live[this.readLeg]!;
  }

  private startSyncPoll(): void {
    if (!clusteredLog(this.table) || this.syncPoll !== null) return;
    this.syncPoll = setInterval(() => void this.pollSync(), CLUSTERED_SYNC_POLL_MS);
    (this.syncPoll as { unref?: () => void }).unref?.();
  }

  /** A clustered log's in-sync count, asked (see the design note): fallen, the cache goes and the resync starts. */
  private async pollSync(): Promise<void> {
    if (this.polling || this.closing || this.suspended || !this.gate.isOpen || !clusteredLog(this.table)) return;
    this.polling = true;
    try {
      const count = await this.mirrorLog.client.syncCount();
      if (count < this.synced.setCount) {
        this.synced.clearRange(0, this.regionCount);
        this.event('note', `${this.regionCount - count} of ${this.regionCount} regions are out of sync in the clustered log (a member left with them marked): resyncing`);
      }
      if (count < this.regionCount) this.resync.kick();
      else if (this.synced.setCount < this.regionCount && !this.resync.active) this.synced.setRange(0, this.regionCount);
    } catch {
      // The log's failure is the mirror's to handle where it uses the log (writes, resync).
    } finally {
      this.polling = false;
    }
  }

  private async rangeInSync(offsetBytes: number, lengthBytes: number): Promise<boolean> {
    const first = Math.floor(offsetBytes / this.regionBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / this.regionBytes);
    for (let region = first; region <= last; region++) {
      if (this.synced.get(region)) continue;
      const inSync = await this.mirrorLog.client.inSync(region).catch(() => false);
      if (!inSync) return false;
      this.synced.set(region);
    }
    return true;
  }

  /**
   * Flushes every live leg. A leg whose flush fails fails (F); with handle_errors it leaves the
   * mirror and the flush stands on the others, without it (dm's -EIO) the flush fails: a write
   * on that leg may not be durable, so neither may the mirror say so nor its regions be cleared.
   * It stands only once every leg removal is recorded, and only on a leg still in the mirror then
   * (as a write: removalsRecorded, and a leg failed meanwhile flushed nothing the table names).
   */
  private async flushLegs(): Promise<void> {
    const legs = this.liveLegs();
    const results = await Promise.allSettled(legs.map((leg) => leg.device.flush()));
    let failed: unknown = null;
    const flushed: Leg[] = [];
    for (let i = 0; i < legs.length; i++) {
      const result = results[i]!;
      if (result.status === 'fulfilled') flushed.push(legs[i]!);
      else {
        failed ??= result.reason;
        await this.legFailed(legs[i]!, 'F', result.reason);
      }
    }
    if (failed !== null && !this.table.handleErrors) {
      throw new BlockError('EIO', `flush failed on a leg: ${describe(failed)}`, { device: this.name });
    }
    await this.removalsRecorded();
    if (legs.length > 0 && !flushed.some((leg) => !leg.failed)) {
      throw new BlockError('EIO', `no leg still in the mirror was flushed${failed !== null ? `: ${describe(failed)}` : ''}`, { device: this.name });
    }
    // A leg that failed its flush and stays (the last copy, legFailed): its writes may not be durable.
    if (failed !== null && legs.some((leg) => !leg.failed && !flushed.includes(leg))) {
      throw new BlockError('EIO', `flush failed on a leg that stays in the mirror: ${describe(failed)}`, { device: this.name });
    }
  }

  /**
   * Waits for the leg changes under way; EIO once a removal could not be recorded: the saved
   * table still names that leg as a copy, so nothing that skipped it may be acknowledged.
   */
  private async removalsRecorded(): Promise<void> {
    await this.legChanges;
    if (this.unrecordedRemoval !== null) {
      throw new BlockError('EIO', `a failed leg's removal could not be recorded: ${describe(this.unrecordedRemoval)}`, { device: this.name, cause: this.unrecordedRemoval });
    }
  }

  /**
   * A leg's request failed. Its health letter and count record it. With handle_errors (or by
   * request) the leg leaves the mirror by policy; without, the regions written are put out of
   * sync, to be resynced from the default leg.
   */
  private async legFailed(leg: Leg, health: LegHealth, error: unknown, byRequest = false, regions: number[] = []): Promise<void> {
    leg.errors += 1;
    if (leg.health === 'A' || health === 'F') leg.health = health;
    if (!this.table.handleErrors && !byRequest) {
      for (const region of regions) {
        this.synced.clear(region);
        this.marks.keepDirty(region);
        await this.mirrorLog.client.setRegionSync(region, false).catch(() => {});
      }
      this.event('leg-failed', `leg ${leg.table.device}: ${describe(error)} (error ${leg.errors}; not handled: its regions resync)`);
      this.resync.kick();
      return;
    }
    if (leg.removal !== null) return leg.removal;
    if (!leg.failed && !this.liveLegs().some((other) => other !== leg && !other.recovering)) {
      // The last copy stays in the table, failed or not (LVM keeps it too): with none, the table
      // would say nothing of where the data is; a leg still being copied to (recovering) holds
      // only the regions copied so far, so it does not count (see the design note). Its I/O
      // fails on its own: its reads and writes fail with EIO, never served from a partial copy.
      if (this.liveLegs().length === 1) {
        this.event('leg-failed', `leg ${leg.table.device}, the last one, failed (${health}): ${describe(error)}; it stays`);
        return;
      }
      this.event('leg-failed', `leg ${leg.table.device}, the only leg in sync (the others are being copied from it), failed (${health}): ${describe(error)}; it stays`);
      // A write it missed and a recovering leg took: the legs differ there; out of sync, copied
      // from this leg again (the write fails, EIO). Durable as any SET_REGION_SYNC: the region is
      // marked (its write is in flight) and a disk log keeps it dirty until in sync again.
      for (const region of regions) {
        this.synced.clear(region);
        this.marks.keepDirty(region);
        await this.mirrorLog.client.setRegionSync(region, false).catch(() => {});
      }
      if (regions.length > 0) this.resync.kick();
      return;
    }
    leg.failed = true;
    this.event('leg-failed', `leg ${leg.table.device} failed (${health}): ${describe(error)}`);
    if (leg === this.defaultLeg) {
      const next = this.liveLegs().find((candidate) => !candidate.recovering) ?? this.liveLegs()[0];
      if (next !== undefined) this.defaultLeg = next;
    }
    // One change of the legs at a time; every write acknowledged from now on waits for it
    // (legChanges), so none is acknowledged on the legs left before the table says so. A table
    // that could not be saved still names the leg: nothing is acknowledged from then on.
    leg.removal = this.legChanges.then(() => this.applyPolicy(leg)).catch((error: unknown) => {
      this.unrecordedRemoval ??= error;
      throw new BlockError('EIO', `leg ${leg.table.device} failed and its removal could not be recorded: ${describe(error)}`, { device: this.name, cause: error });
    });
    this.legChanges = leg.removal.catch(() => {});
    return leg.removal;
  }

  private async applyPolicy(failed: Leg): Promise<void> {
    // The failed leg leaves the table (what LVM's repair does in both policies).
    this.legs = this.legs.filter((leg) => leg !== failed);
    this.table = { ...this.table, legs: this.legs.map((leg) => leg.table) };
    void failed.device.close().catch(() => {});
    this.event('leg-removed', `leg ${failed.table.device} removed; ${this.legs.length === 1 ? 'one leg left: linear' : `${this.legs.length} legs left`}`);
    // The table without the leg is recorded before the write that failed is acknowledged (dm
    // holds it until the table is reloaded): after a crash the leg must not come back as a copy.
    await this.options.tableChanged?.(this.tableLine);
    if (this.options.legFaultPolicy !== 'replace') return;
    const spareName = this.options.spare?.() ?? null;
    if (spareName === null) {
      this.event('note', 'no spare to replace the failed leg with');
      return;
    }
    try {
      await this.addLeg(spareName);
    } catch (error) {
      this.event('note', `replacing the leg with ${spareName} failed: ${describe(error)}`);
    }
  }

  /**
   * Adds a leg (lvconvert -m+1; a spare replacing a failed leg): opened by name at offset 0, and
   * the log constructed again with `sync`, so every region is resynced and the new leg copied
   * whole from the default leg; until then it is read from never.
   */
  async addLeg(deviceName: string, offsetSectors = 0): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'addLeg');
    if (this.legs.length >= MIRROR_MAX_LEGS) throw new BlockError('ERANGE', `a mirror has at most ${MIRROR_MAX_LEGS} legs`, { device: this.name });
    if (this.legs.some((leg) => leg.table.device === deviceName)) throw new BlockError('EEXIST', `${deviceName} is a leg already`, { device: this.name });
    const device = await this.options.openLeg(deviceName);
    let leg: Leg;
    try {
      leg = newLeg({ device: deviceName, offsetSectors }, device, this.sizeBytes);
    } catch (error) {
      await device.close();
      throw error;
    }
    leg.recovering = true;
    this.legs = [...this.legs, leg];
    this.table = { ...this.table, legs: this.legs.map((one) => one.table) };
    try {
      await this.replaceLog({ ...this.table, logArgs: withSyncWord(this.table, 'sync') });
    } catch (error) {
      this.legs = this.legs.filter((one) => one !== leg);
      this.table = { ...this.table, legs: this.legs.map((one) => one.table) };
      await leg.device.close().catch(() => {});
      throw error;
    }
    await this.options.tableChanged?.(this.tableLine);
    this.event('leg-added', `leg ${deviceName} added; every region resyncs to it`);
  }

  /**
   * A log request failed: the mirror goes on with a core log. A failure of a log that was being
   * replaced (or is replaced now) is not one: the commit goes again to the new log.
   */
  private async logFailed(error: unknown, failedLog: MirrorLog['client']): Promise<boolean> {
    await this.logSettled();
    if (failedLog !== this.mirrorLog.client) return true;
    this.switchingLog ??= (async () => {
      this.logFailures += 1;
      this.event('log-failed', `the ${this.table.logType} log failed: ${describe(error)}; going on with a core log`);
      const allInSync = this.synced.setCount === this.regionCount && this.marks.markedCount === 0;
      const core: MirrorTable = { ...this.table, logType: 'core', logArgs: [String(this.regionBytes / 512), ...(allInSync ? ['nosync'] : [])] };
      try {
        await this.replaceLog(core);
        return true;
      } catch (failure) {
        this.event('note', `no core log either: ${describe(failure)}`);
        return false;
      } finally {
        this.switchingLog = null;
      }
    })();
    return this.switchingLog;
  }

  /** Constructs `table`'s log, resumes it, marks the marked regions there; the old log goes. */
  /**
   * Puts `table`'s log in place of the current one. The old log is destroyed first (its requests
   * in flight finish before its DTR): a disk log's device must not be written by both. Commits
   * that fail on it meanwhile wait for the switch (logSettled) and go to the new log, where every
   * marked region is marked again. While the new log is constructed nothing reaches either.
   */
  private async replaceLog(table: MirrorTable): Promise<void> {
    let done!: () => void;
    const previous = this.replacing;
    this.replacing = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      const old = this.mirrorLog;
      await old.close().catch(() => {});
      const next = await openMirrorLog(`${this.options.name}-${++this.logGeneration}`, table, this.sizeBytes / 512, this.options);
      this.mirrorLog = next;
      // The log only: the legs are whatever they are now (a policy may have changed them meanwhile).
      this.table = { ...this.table, logType: table.logType, logArgs: table.logArgs };
      await this.resumeLog();
      this.marks.remarkAll();
    } finally {
      done();
    }
  }

  /** Resolves once no log replacement is under way. */
  private async logSettled(): Promise<void> {
    for (let current = this.replacing; ; current = this.replacing) {
      await current;
      if (current === this.replacing) return;
    }
  }

  private scheduleClear(): void {
    if (this.clearTimer !== null || this.marks.idleCount === 0 || !this.gate.isOpen || this.suspended) return;
    const delayMs = this.options.clearDelayMs ?? CLEAR_DELAY_MS;
    this.clearTimer = setTimeout(() => {
      this.clearTimer = null;
      const run = this.marks.clearIdle(delayMs).then(
        () => this.scheduleClear(), // regions that went idle meanwhile
        (error: unknown) => this.event('note', `clearing idle regions failed: ${describe(error)}`),
      ).finally(() => {
        if (this.timerClear === run) this.timerClear = null;
      });
      this.timerClear = run;
    }, delayMs);
    (this.clearTimer as { unref?: () => void }).unref?.();
  }

  private cancelClearTimer(): void {
    if (this.clearTimer !== null) clearTimeout(this.clearTimer);
    this.clearTimer = null;
  }

  private event(type: MirrorEventType, message: string): void {
    try {
      this.options.onEvent?.({ type, message: `${this.name}: ${message}` });
    } catch {
      // an event sink that throws loses its event
    }
  }
}

function newLeg(table: MirrorLeg, device: BlockDevice, sizeBytes: number): Leg {
  return { table, device: new WindowDevice(device, table.offsetSectors * 512, sizeBytes, true), health: 'A', errors: 0, failed: false, recovering: false, removal: null };
}

/** The table's log arguments with its sync word set to `word`. */
function withSyncWord(table: MirrorTable, word: 'sync' | 'nosync'): string[] {
  const args = table.logArgs.filter((arg) => arg !== 'sync' && arg !== 'nosync');
  return [...args, word];
}

/** A userspace log of a clustered type: other members may hold resync work. */
function clusteredLog(table: MirrorTable): boolean {
  return table.logType === 'userspace' && table.logArgs.some((arg) => arg.startsWith('clustered-'));
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
