/**
 * PowerLossDevice: a disk with a volatile write cache, for crash tests (STYLE 19, after
 * tigerbeetle's `testing/storage.zig` and LazyFS). It wraps a backing BlockDevice (normally a
 * MemoryDevice) that holds what is persisted; writes since the last completed flush are held
 * apart in a cache that reads see, as a page cache would. Devices belong to a PowerDomain
 * (power-domain.ts), which schedules their operations and cuts the power of all of them at once.
 *
 * Why a wrapper of its own and not a mode of FaultDevice: a FaultDevice decides per request, on
 * one device, and its inner device always holds what was written. Power loss needs state that
 * outlives requests (what is cached, what is persisted), a notion of time shared by several
 * devices (a cut hits the metadata and the data device at the same instant) and an "after
 * reboot" image. The two compose: a FaultDevice over a PowerLossDevice fails requests on a
 * power-loss disk.
 *
 * Time, exactly. Every operation is submitted (the call, after validation) and later takes effect,
 * a seeded number of turns later (PowerSupply.delay); both are events of the domain, counted in
 * one sequence, and the power may be cut at any event, before it happens.
 *   write / discard  take effect by entering the cache: from then on reads see them, and they get
 *                    their place in the cache order. A discard is a write of zeros (so
 *                    `discardZeroes` is true and the outcome is 'zeroed'). Then the call resolves.
 *                    A FUA write is marked durable when it enters the cache.
 *   flush            covers exactly the writes that had entered the cache when the flush was
 *                    *submitted*. When it takes effect it writes them to the backing in cache order,
 *                    flushes the backing, drops them from the cache, then resolves. A write still in
 *                    flight when the flush was submitted is not covered by it, even if it enters
 *                    the cache before the flush resolves: only a later flush covers it. (So a write
 *                    that resolved before flush() was called is durable once that flush resolves,
 *                    which is the BlockDevice contract, and nothing more is promised.)
 *   read             takes effect at one instant: backing, then the cache in order on top. Reads
 *                    and flushes' persisting run one at a time, so a read never sees half a persist.
 * A power cut (PowerDomain.cut) at once makes every call and every operation not yet resolved fail
 * with EIO. Then each device's surviving image is put on its backing: on top of what was persisted,
 * the cached writes in cache order, then the writes in flight in submission order, each
 *   - kept whole, when it is a FUA write that entered the cache (FUA writes always survive);
 *   - else, by the cut's seeded fate: lost, kept whole, or torn: cut at absolute 512-byte sector
 *     boundaries, each piece kept or lost on its own (one write never changes part of a sector).
 * So after a cut each sector holds what the last completed flush left there or the content of one
 * write to it that no completed flush covered; never anything else. A flush whose persisting had
 * begun when the power failed completes its persisting first (it may have reached the disk) but
 * still fails to its caller.
 *
 * After the cut the device is dead for good: close() resolves without touching the backing, which
 * the cut hands back (PowerCutReport) to be opened again "after reboot". The backing belongs to
 * whoever attached it: close() before a cut does not close it either (closing a file does not
 * flush it; its cached writes still wait for the next flush or cut). Memory: the cache holds a copy
 * of every unflushed write, so this is for tests, not for production.
 */
import { BlockError } from '../errors.ts';
import type { Prng } from '../prng.ts';
import type { BlockDevice, DiscardOutcome, WriteOptions } from './block-device.ts';
import { OpGate } from './op-gate.ts';
import { EMPTY_DISCARD_OUTCOME, validateOpen, validateRequest } from './validate.ts';

/** The unit a torn write is cut at: one write either changes a whole sector or leaves it alone. */
export const POWER_SECTOR_BYTES = 512;

/** What a device needs from its power domain. */
export interface PowerSupply {
  /** Counts one event of `device` (an operation submitted or taking effect); false when the power was cut instead. */
  step(device: PowerLossDevice): boolean;
  /** Resolves after a seeded number of turns (how long an operation is in flight). */
  delay(): Promise<void>;
  readonly isCut: boolean;
}

/** What happens at a cut to writes no completed flush covered (FUA writes that completed always survive). */
export type UnflushedFate =
  /** Seeded: per device, all lost (10%), all kept (10%) or each lost, kept or torn (80%). */
  | 'random'
  | 'lose'
  | 'keep';

/** How one device's unflushed writes fared at a cut. */
export interface DeviceCutReport {
  name: string;
  /** Holds the surviving image; open it again "after reboot". */
  backing: BlockDevice;
  /** Writes and discards that no completed flush covered (cached or in flight). */
  unflushed: number;
  lost: number;
  keptWhole: number;
  torn: number;
  /** Completed FUA writes among the unflushed ones (always kept whole). */
  fua: number;
  /** Writes (and discards) submitted to this device since it was attached. */
  writesSubmitted: number;
  flushesCompleted: number;
}

interface CachedWrite {
  offsetBytes: number;
  lengthBytes: number;
  /** null: zeros (a discard). */
  data: Uint8Array | null;
  fua: boolean;
  /** Place in the cache order; -1 while in flight. */
  order: number;
}

export class PowerLossDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly logicalBlockBytes: number;
  readonly canWrite: boolean;
  readonly canDiscard: boolean;
  readonly discardZeroes = true;
  private readonly gate = new OpGate();
  /** Writes that entered the cache and no completed flush persisted yet, in cache order. */
  private writeCache: CachedWrite[] = [];
  /** Writes submitted that have not entered the cache, in submission order. */
  private readonly inFlight = new Set<CachedWrite>();
  private nextOrder = 0;
  /** Reads and persists, one at a time. */
  private serialTail: Promise<void> = Promise.resolve();
  private eventCount = 0;
  private writesSubmitted = 0;
  private flushesCompleted = 0;

  /** Made by PowerDomain.attach. */
  constructor(readonly backing: BlockDevice, private readonly supply: PowerSupply, name?: string) {
    this.name = name ?? `power(${backing.name})`;
    this.sizeBytes = backing.sizeBytes;
    this.logicalBlockBytes = backing.logicalBlockBytes;
    this.canWrite = backing.canWrite;
    this.canDiscard = backing.canWrite;
  }

  /** This device's events so far (operations submitted and taking effect). */
  get events(): number {
    return this.eventCount;
  }

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
    return this.gate.track(async () => {
      this.alive('read', offsetBytes, target.length);
      if (target.length === 0) return;
      this.event('read', offsetBytes, target.length);
      await this.supply.delay();
      this.event('read', offsetBytes, target.length);
      const bytes = new Uint8Array(target.length);
      await this.serial(async () => {
        this.alive('read', offsetBytes, target.length);
        await this.backing.read(offsetBytes, bytes);
        for (const write of this.writeCache) overlay(bytes, offsetBytes, write);
      });
      this.alive('read', offsetBytes, target.length);
      target.set(bytes);
    });
  }

  async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
    return this.gate.track(() => this.cacheWrite('write', offsetBytes, data.length, data.slice(), options?.fua === true));
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes);
    if (lengthBytes === 0) return this.gate.track(() => (this.alive('discard', offsetBytes, 0), EMPTY_DISCARD_OUTCOME));
    await this.gate.track(() => this.cacheWrite('discard', offsetBytes, lengthBytes, null, false));
    return 'zeroed';
  }

  async flush(): Promise<void> {
    validateOpen(this, this.gate.isOpen, 'flush');
    return this.gate.track(async () => {
      this.event('flush', undefined, undefined);
      // Covered: exactly what is in the cache now, at submission.
      const coveredBelowOrder = this.nextOrder;
      await this.supply.delay();
      this.event('flush', undefined, undefined);
      await this.serial(async () => {
        this.alive('flush', undefined, undefined);
        await this.persist(coveredBelowOrder);
      });
      this.alive('flush', undefined, undefined);
      this.flushesCompleted++;
    });
  }

  close(): Promise<void> {
    return this.gate.close(() => {});
  }

  /**
   * For PowerDomain.cut, once the power is cut: waits for a persist in progress, then puts the
   * surviving image on the backing (see the design note) and empties the cache.
   */
  async settleCut(prng: Prng, fate: UnflushedFate): Promise<DeviceCutReport> {
    for (let tail = this.serialTail; ; tail = this.serialTail) {
      await tail;
      if (tail === this.serialTail) break;
    }
    const unflushed = [...this.writeCache, ...this.inFlight];
    const report: DeviceCutReport = {
      name: this.name, backing: this.backing, unflushed: unflushed.length, lost: 0, keptWhole: 0, torn: 0, fua: 0,
      writesSubmitted: this.writesSubmitted, flushesCompleted: this.flushesCompleted,
    };
    const mode = fate === 'lose' || fate === 'keep' ? fate : prng.chance(0.1) ? 'lose' : prng.chance(1 / 9) ? 'keep' : 'mixed';
    for (const write of unflushed) {
      if (write.fua && write.order >= 0) {
        report.fua++;
        report.keptWhole++;
        await this.persistRange(write, write.offsetBytes, write.offsetBytes + write.lengthBytes);
        continue;
      }
      const roll = mode === 'lose' ? 0 : mode === 'keep' ? 1 : prng.below(3);
      if (roll === 0) {
        report.lost++;
      } else if (roll === 1) {
        report.keptWhole++;
        await this.persistRange(write, write.offsetBytes, write.offsetBytes + write.lengthBytes);
      } else {
        report.torn++;
        const endBytes = write.offsetBytes + write.lengthBytes;
        for (let pieceStart = write.offsetBytes; pieceStart < endBytes; ) {
          const pieceEnd = Math.min(endBytes, (Math.floor(pieceStart / POWER_SECTOR_BYTES) + 1) * POWER_SECTOR_BYTES);
          if (prng.chance(0.5)) await this.persistRange(write, pieceStart, pieceEnd);
          pieceStart = pieceEnd;
        }
      }
    }
    this.writeCache = [];
    this.inFlight.clear();
    if (this.backing.canWrite) await this.backing.flush();
    return report;
  }

  private async cacheWrite(op: 'write' | 'discard', offsetBytes: number, lengthBytes: number, data: Uint8Array | null, fua: boolean): Promise<void> {
    this.alive(op, offsetBytes, lengthBytes);
    if (lengthBytes === 0) return;
    this.event(op, offsetBytes, lengthBytes);
    this.writesSubmitted++;
    const write: CachedWrite = { offsetBytes, lengthBytes, data, fua, order: -1 };
    this.inFlight.add(write);
    await this.supply.delay();
    // A cut here leaves the write in flight, for the cut to judge.
    this.event(op, offsetBytes, lengthBytes);
    this.inFlight.delete(write);
    write.order = this.nextOrder++;
    this.writeCache.push(write);
  }

  /** Writes the cached writes of order below `belowOrder` to the backing, flushes it, drops them. */
  private async persist(belowOrder: number): Promise<void> {
    let count = 0;
    while (count < this.writeCache.length && this.writeCache[count]!.order < belowOrder) count++;
    if (count === 0) return;
    for (const write of this.writeCache.slice(0, count)) await this.backing.write(write.offsetBytes, write.data ?? new Uint8Array(write.lengthBytes));
    await this.backing.flush();
    this.writeCache = this.writeCache.slice(count);
  }

  /**
   * Puts [startBytes, endBytes) of `write` on the backing (at a cut). A torn piece may be smaller
   * than the backing's logical block, so the covering blocks are read, patched and written back.
   */
  private async persistRange(write: CachedWrite, startBytes: number, endBytes: number): Promise<void> {
    const blockBytes = this.logicalBlockBytes;
    const alignedStart = Math.floor(startBytes / blockBytes) * blockBytes;
    const alignedEnd = Math.ceil(endBytes / blockBytes) * blockBytes;
    const bytes = new Uint8Array(alignedEnd - alignedStart);
    if (alignedStart !== startBytes || alignedEnd !== endBytes) await this.backing.read(alignedStart, bytes);
    const from = startBytes - write.offsetBytes;
    if (write.data === null) bytes.fill(0, startBytes - alignedStart, endBytes - alignedStart);
    else bytes.set(write.data.subarray(from, from + endBytes - startBytes), startBytes - alignedStart);
    await this.backing.write(alignedStart, bytes);
  }

  private serial(task: () => Promise<void>): Promise<void> {
    const run = this.serialTail.then(task);
    this.serialTail = run.catch(() => {});
    return run;
  }

  /** One event of the domain (an operation submitted or taking effect): the power may fail at it. */
  private event(op: string, offsetBytes: number | undefined, lengthBytes: number | undefined): void {
    this.alive(op, offsetBytes, lengthBytes);
    if (this.supply.step(this)) this.eventCount++;
    this.alive(op, offsetBytes, lengthBytes);
  }

  /** After a cut every operation fails: the machine has no power. */
  private alive(op: string, offsetBytes: number | undefined, lengthBytes: number | undefined): void {
    if (this.supply.isCut) throw new BlockError('EIO', `${op} failed: power cut`, { device: this.name, offsetBytes, lengthBytes });
  }
}

/** Copies the part of `write` that overlaps [offsetBytes, offsetBytes + target.length) into `target`. */
function overlay(target: Uint8Array, offsetBytes: number, write: CachedWrite): void {
  const startBytes = Math.max(offsetBytes, write.offsetBytes);
  const endBytes = Math.min(offsetBytes + target.length, write.offsetBytes + write.lengthBytes);
  if (startBytes >= endBytes) return;
  if (write.data === null) target.fill(0, startBytes - offsetBytes, endBytes - offsetBytes);
  else target.set(write.data.subarray(startBytes - write.offsetBytes, endBytes - write.offsetBytes), startBytes - offsetBytes);
}
