/**
 * A clustered md array (raid1, or raid10 with the near layout) as a BlockDevice, one node of it:
 * the md core's side of md-cluster.rst, talking to the cluster part through ClusterOperations.
 *
 * Design note
 * - On-disk: md v1.2 superblocks and a bitmap (clustered, internal or none: leg-layout.ts) on
 *   every leg (md-superblock.ts, bitmap-superblock.ts); Linux md and mdadm read the legs.
 * - Assemble: every leg's superblock checked (checksum, same array uuid); the highest event count
 *   is the array's state and legs more than one event behind it are not used (mdadm's margin);
 *   join the cluster (md-cluster.ts) for a slot; load our slot's bits (set ones are writes that
 *   may not have reached every leg: a crash of ours, resynced), or with no bitmap the dirty flag
 *   (dirty-flag.ts: resync everything); load every other slot (absent nodes' bits merged and
 *   resynced).
 * - Write: wait while the range is suspended by another node's resync (area_resyncing) and while
 *   our resync copies its chunks; set the chunks' bits, durable on every leg (write-intent.ts),
 *   before the data goes to every copy; a leg that fails a write is marked faulty in every
 *   superblock and the other nodes are told (METADATA_UPDATED) before the write is acknowledged,
 *   so no node takes that leg as a source again. Bits are cleared lazily (daemon_sleep).
 * - Read: balanced round-robin over in-sync copies, except where the data may differ between
 *   legs: a range some node resyncs, chunks our resync has not reached, anything past
 *   resync_offset of an array never synced, and all reads while a node recovery runs; those read
 *   the source copy (the lowest in-sync role), which resync copies from, so every node reads the
 *   same bytes.
 * - Flush: every active leg flushed (a volatile write cache per leg); FUA writes are FUA on every
 *   leg. Durable when acknowledged: bits before data; data after flush/FUA.
 * - Resize (array-resize.ts): writes and bitmap changes pause on every node while the size changes;
 *   the slot areas never move, so the write-intent bits and the resync bitmap are sized for the most
 *   chunks a slot area holds (chunkCapacity) and only the count changes.
 * - Stop: resync stopped, dirty bits kept (another node is asked to take the resync over),
 *   the cluster left; the legs closed only when the array owns them.
 * - Fencing: every leg is wrapped in a FencedDevice asking our lockspace member's
 *   writesAllowed() at each write, flush and copy; once it says no (the etcd lease could not be
 *   renewed in time, or the node left or died) nothing more reaches a leg, a refused write is not
 *   taken for a leg failure (no leg is marked faulty: the fault is ours), and the array reports a
 *   `fenced` event: the owner stops it and assembles again as a new member once it can.
 */
import { assert } from '../assert.ts';
import { deferred, type Deferred } from '../deferred.ts';
import type { BlockDevice, DiscardOutcome, WriteOptions } from '../devices/block-device.ts';
import { FencedDevice } from '../devices/fenced-device.ts';
import { OpGate } from '../devices/op-gate.ts';
import { EMPTY_DISCARD_OUTCOME, validateRequest } from '../devices/validate.ts';
import { BlockError } from '../errors.ts';
import type { LockManager } from '../locks/lock-manager.ts';
import { LocalMutex } from '../locks/local-mutex.ts';
import type { RegionBitmap } from '../bitmap.ts';
import { RegionOps } from '../regions/region-ops.ts';
import { formatArray, type ArrayCreateSpec } from './array-format.ts';
import { legFromSuperblock, recoversWhole, slotPicture, writeArrayMetadata, type Leg } from './array-legs.ts';
import { activateSpare, addLeg, bindNewDisk, readdLeg, removeLeg } from './array-manage.ts';
import { resizeArray, type ResizeRequest, type ResizeResult } from './array-resize.ts';
import { switchBitmap, type BitmapSwitchRequest } from './array-bitmap-switch.ts';
import type { SizeShape } from './array-size.ts';
import { ArrayResync } from './array-resync.ts';
import { bitmapChunkCount } from './bitmap-superblock.ts';
import type { ClusterHost, SectorRange } from './cluster-operations.ts';
import { slotChunkCapacity, type BitmapMode, type LegLayout } from './leg-layout.ts';
import { DEFAULT_DAEMON_SLEEP_SECONDS } from './bitmap-superblock.ts';
import { DirtyFlag } from './dirty-flag.ts';
import type { IntentLog } from './intent-log.ts';
import { bitmapSectorsOf, readBitmapArea, readLegLayout, readMdSuperblock, writeBitmapArea } from './leg-metadata.ts';
import { MdCluster } from './md-cluster.ts';
import { MD_FEATURE, MD_FEATURE_PER_LEG, MD_ROLE_FAULTY, MD_ROLE_MAX, SECTOR_BYTES, type MdSuperblock } from './md-superblock.ts';
import { raid10NearLayout, raid1Layout, type RaidLayout, type Segment } from './raid-layout.ts';
import { WriteIntent } from './write-intent.ts';

/** mdadm --assemble's event_margin: legs this many events behind the newest are still fresh. */
const EVENT_MARGIN = 1;

export interface AssembleOptions {
  /** For errors and status: `array:<name>`. */
  name: string;
  /** Every leg this node has (active, spare, failed), in any order. */
  legs: BlockDevice[];
  manager: LockManager;
  /** This node's name in the lockspace. */
  memberName: string;
  /** This node's id, stable across its restarts (a restarted node takes its old membership over). */
  nodeId?: string;
  /** Lazy bit clearing period; default the bitmap's daemon_sleep. */
  daemonSleepMs?: number;
  /** Events (leg failed, resync started...) for logs and the service's event stream. */
  onEvent?: (event: ArrayEvent) => void;
  /** Close the leg devices when the array stops (default: their owner does). */
  ownsLegs?: boolean;
  /**
   * Finds the device holding a leg with this device uuid (a NEWDISK from another node: blkid's
   * job in the kernel's design); none: this node refuses every add (the adder gets ENOENT).
   */
  findDevice?: (deviceUuid: Uint8Array) => Promise<BlockDevice | null>;
  /** md's sync_speed_max: the most bytes per second this node's resync and recovery copy (default: no limit). */
  resyncMaxBytesPerSecond?: number | null;
}

/** What the array reports as it goes: `message` reads alone; `type` is for filtering. */
export interface ArrayEvent {
  type: ArrayEventType;
  message: string;
}
export type ArrayEventType = 'leg-failed' | 'resync-started' | 'resync-done' | 'resync-stopped' | 'fenced' | 'note';

export interface ArrayStatus {
  name: string;
  level: 'raid1' | 'raid10';
  /** /proc/mdstat's picture: "[UU]", "[U_]". */
  picture: string;
  /** 0-based node slot. */
  slot: number;
  nodes: number;
  bitmap: BitmapMode;
  /** Slots of the nodes in the cluster at the last membership change (ours included). */
  nodesSeen: number[];
  /** A departed node's slot is being recovered (its bitmap lock taken, its bits merged; the resync follows). */
  recoveringNodes: boolean;
  raidDisks: number;
  sizeBytes: number;
  events: number;
  legs: { device: string; devNumber: number; role: number | null; state: Leg['state']; recovering: boolean }[];
  resync: { state: ArrayResync['state']; doneChunks: number; totalChunks: number };
  suspended: SectorRange[];
  dirtyChunks: number;
  chunkBytes: number;
  bitmapCommits: number;
  messages: { sent: number; received: number; refused: number };
  /** True once this node may not write to the legs any more (fenced, or it left the cluster). */
  fenced: boolean;
  /** This node's resync and recovery rate limit in bytes per second (md's sync_speed_max); null: none. */
  resyncMaxBytesPerSecond: number | null;
}

export class ClusterArray implements BlockDevice, ClusterHost {
  readonly name: string;
  readonly logicalBlockBytes: number;
  readonly canWrite = true;
  readonly canDiscard = false;
  readonly discardZeroes = false;
  readonly regionOps = new RegionOps();
  readonly chunkBytes: number;
  /** Chunks the slot areas can hold: how far an online resize can take chunkCount. */
  readonly chunkCapacity: number;
  private chunks: number;
  readonly cluster!: MdCluster;
  private intent!: IntentLog;
  /** Bitmap none: the superblocks say dirty (resync_offset 0) while writes may be under way. */
  private dirtyOnDisk = false;
  private resync!: ArrayResync;
  private readonly gate = new OpGate();
  private readonly userIo = new OpGate();
  private readonly writesInFlight = new Set<SectorRange>();
  private waiters: (() => void)[] = [];
  private readonly metadataMutex = new LocalMutex();
  private readonly failing = new Map<Leg, Promise<void>>();
  /**
   * Legs bound on another node's NEWDISK, with the event count then, until a METADATA_UPDATED says
   * whether they were added: an add writes new superblocks (events move on), a refusal does not.
   */
  readonly unconfirmedLegs = new Map<Leg, number>();
  /** Set when a leg failure could not be written to any superblock: the array acknowledges nothing more. */
  private unrecordedFailure: unknown = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;
  /** Sweeps and slot merges in flight: a resize waits for them (they write bitmap pages). */
  private readonly bitmapJobs = new OpGate();
  /** A spare taking a failed leg's role (takeSpare), running in the background. */
  private readonly spareJobs = new OpGate();
  /** Writes and bitmap changes stopped for a resize started by node slot `bySlot`, until `resume`. */
  private paused: { bySlots: Set<number>; resumed: Promise<void>; resume: () => void } | null = null;
  /** A resize or bitmap switch of ours runs (no resync starts meanwhile). */
  layoutChangeRunning = false;
  private started!: Promise<void>;
  private readCursor = 0;
  private stopped = false;

  private constructor(
    private readonly options: AssembleOptions,
    private readonly legs: Leg[],
    private md: MdSuperblock,
    readonly layout: LegLayout,
    private raid: RaidLayout,
  ) {
    this.name = options.name;
    this.logicalBlockBytes = Math.max(SECTOR_BYTES, ...legs.map((leg) => leg.device.logicalBlockBytes));
    this.chunkBytes = layout.bitmapChunkBytes;
    this.chunks = bitmapChunkCount(bitmapSectorsOf(md), this.chunkBytes);
    // No bitmap: nothing bounds a resize but the legs.
    const legMaxSectors = Math.min(...legs.filter((leg) => leg.state !== 'faulty').map((leg) => Math.floor(leg.device.sizeBytes / SECTOR_BYTES))) - md.dataOffsetSectors;
    this.chunkCapacity = layout.bitmap === 'none'
      ? Math.max(this.chunks, bitmapChunkCount(bitmapSectorsOf({ ...md, sizeSectors: legMaxSectors }), this.chunkBytes))
      : slotChunkCapacity(layout);
  }

  get sizeBytes(): number {
    return this.raid.arraySizeBytes;
  }

  /** Chunks of the bitmap (the array's sectors / chunk, rounded up). */
  get chunkCount(): number {
    return this.chunks;
  }

  /** mdadm --create: formats the legs, then assembles on this node. */
  static async create(options: AssembleOptions, spec: ArrayCreateSpec): Promise<ClusterArray> {
    await formatArray(options.legs, spec);
    return ClusterArray.assemble(options);
  }

  /** mdadm --assemble: see the design note. Refuses (EINVAL) legs it cannot use, writing nothing. */
  static async assemble(given: AssembleOptions): Promise<ClusterArray> {
    if (given.legs.length === 0) throw new BlockError('EINVAL', 'an array needs at least one leg');
    // Bound late: before the array joins, nothing fences it (no membership yet).
    const holder: { array?: ClusterArray } = {};
    const allowed = () => holder.array?.writesAllowed() ?? true;
    const findDevice = given.findDevice;
    const options: AssembleOptions = {
      ...given,
      legs: given.legs.map((device) => fenced(device, allowed)),
      ...(findDevice === undefined ? {} : { findDevice: async (uuid: Uint8Array) => { const found = await findDevice(uuid); return found === null ? null : fenced(found, allowed); } }),
    };
    const superblocks = await Promise.all(options.legs.map((device) => readMdSuperblock(device)));
    const uuid = superblocks[0]!.setUuid;
    superblocks.forEach((sb, i) => {
      if (!equalBytes(sb.setUuid, uuid)) throw new BlockError('EINVAL', 'leg belongs to another array (array uuid differs)', { device: options.legs[i]!.name });
    });
    const numbers = new Set(superblocks.map((sb) => sb.devNumber));
    if (numbers.size !== superblocks.length) throw new BlockError('EINVAL', 'two legs carry the same device number');
    const md = superblocks.reduce((a, b) => (b.events > a.events ? b : a));
    const legs = options.legs.map((device, i) => {
      const leg = legFromSuperblock(device, superblocks[i]!, md.devRoles);
      // One event behind is fresh, as mdadm --assemble's event_margin: a crash between the legs'
      // writes of one update (a dirty/clean mark, a resize commit) leaves them one apart, and the
      // newest superblock (the array's state here) already says what that update did.
      if (superblocks[i]!.events + EVENT_MARGIN < md.events && leg.state === 'active') {
        options.onEvent?.({ type: 'leg-failed', message: `${options.name}: leg ${device.name} is behind (events ${superblocks[i]!.events} < ${md.events - EVENT_MARGIN}): not used` });
        leg.state = 'faulty';
      }
      return leg;
    });
    const first = legs.find((leg) => leg.state === 'active');
    if (first === undefined) throw new BlockError('EINVAL', 'no active leg to assemble from');
    const layout = await readLegLayout(first.device, md);
    if (md.level !== 1 && md.level !== 10) throw new BlockError('EINVAL', `raid level ${md.level} is not raid1 or raid10`);
    const array = new ClusterArray(options, legs, md, layout, raidLayoutOf(md));
    holder.array = array;
    await array.start();
    return array;
  }

  /** False once our lockspace member may no longer write to shared legs (fenced, left or dead). */
  writesAllowed(): boolean {
    const space = (this.cluster as MdCluster | undefined)?.lockspace ?? this.joinedSpace;
    return space === null || space.writesAllowed();
  }

  /** The membership while MdCluster.join takes its locks (a recovery a callback starts meanwhile writes behind it). */
  private joinedSpace: { writesAllowed(): boolean } | null = null;

  joined(space: { writesAllowed(): boolean }): void {
    this.joinedSpace = space;
  }

  /** A leg device as the array uses it: behind the fence. */
  private behindFence(device: BlockDevice): BlockDevice {
    return fenced(device, () => this.writesAllowed());
  }

  private fencedError(): BlockError {
    return new BlockError('EIO', 'fenced: this node may no longer write to the legs (its lock manager membership ended)', { device: this.name });
  }

  private async start(): Promise<void> {
    let startedNow!: () => void;
    this.started = new Promise<void>((resolve) => (startedNow = resolve));
    try {
      await this.startInCluster();
    } finally {
      startedNow();
    }
  }

  private async startInCluster(): Promise<void> {
    const first = this.inSyncLegs()[0] ?? this.activeLegs()[0]!;
    try {
      (this as { cluster: MdCluster }).cluster = await MdCluster.join({
        manager: this.options.manager, arrayUuid: this.md.setUuid, nodes: this.layout.nodes, memberName: this.options.memberName, host: this,
        ...(this.options.nodeId === undefined ? {} : { nodeId: this.options.nodeId }),
      });
    } catch (error) {
      if (error instanceof BlockError && error.code === 'ERANGE' && this.layout.bitmap !== 'clustered') {
        throw new BlockError('EBUSY', `the array is not clustered (bitmap ${this.layout.bitmap}): another node has it assembled`, { device: this.name });
      }
      throw error;
    }
    try {
      // Read before we joined: a change made meanwhile (a resize, a failed leg) is taken now, from
      // the newest superblock of any leg (the one in role 0 may be one event behind).
      const fresh = await this.newestSuperblock();
      if (fresh !== null && fresh.md.events > this.md.events) {
        if (bitmapFeatureBits(fresh.md) !== bitmapFeatureBits(this.md)) throw new BlockError('EBUSY', 'the bitmap was switched while this node assembled: assemble again', { device: this.name });
        await this.reloadSuperblock(fresh.leg.sb.devNumber);
      }
      const legs = () => this.writableLegs().map((leg) => leg.device);
      const legFailed = (device: BlockDevice, error: unknown) => void this.failDevice(device, error).catch(() => {}); // awaited by the write
      let daemonSleepMs = this.options.daemonSleepMs ?? DEFAULT_DAEMON_SLEEP_SECONDS * 1000;
      if (this.layout.bitmap === 'none') {
        this.intent = new DirtyFlag({
          chunkCount: this.chunkCount, capacityChunks: this.chunkCapacity, legs, legFailed, daemonSleepMs, setDirty: (dirty) => this.setDirtyOnDisk(dirty),
        });
      } else {
        const own = await readBitmapArea(first.device, this.layout, this.cluster.slotNumber(), this.md);
        daemonSleepMs = this.options.daemonSleepMs ?? own.sb.daemonSleepSeconds * 1000;
        this.intent = new WriteIntent({
          layout: this.layout, slot: this.cluster.slotNumber(), sb: own.sb, bits: own.bits, chunkCount: this.chunkCount, capacityChunks: this.chunkCapacity,
          legs, legFailed, degraded: () => this.degraded, daemonSleepMs,
        });
      }
      this.resync = await ArrayResync.create(this);
      this.resync.rateLimit.bytesPerSecond = this.options.resyncMaxBytesPerSecond ?? null;
      // Our own set bits: writes of ours that may not have reached every leg (we stopped or crashed).
      this.addBitsToResync(this.intent.bits);
      // A new leg left recovering (stopped or crashed mid-recovery) is recovered whole again; a
      // re-added one from the bits (ours, gathered from every slot when it was re-added).
      if (this.legs.some(recoversWhole)) this.resync.add(0, this.chunkCount);
      await this.cluster.loadBitmaps();
      this.sweepTimer = setInterval(() => void this.clearIdleBits().catch((error: unknown) => this.note(`bitmap clear failed: ${String(error)}`)), Math.max(10, daemonSleepMs / 2));
      (this.sweepTimer as { unref?: () => void }).unref?.();
      if (this.md.resyncOffsetSectors !== null || !this.resync.todo.isEmpty()) this.resync.kick();
      // Assembled degraded with a spare (a failure recorded by a node that stopped before its
      // spare took over): the spare takes the role now.
      this.takeSpare();
    } catch (error) {
      await this.cluster.leave().catch(() => {});
      throw error;
    }
  }

  private async newestSuperblock(): Promise<{ leg: Leg; md: MdSuperblock } | null> {
    let newest: { leg: Leg; md: MdSuperblock } | null = null;
    for (const leg of this.legs.filter((l) => l.state !== 'faulty')) {
      const md = await readMdSuperblock(leg.device).catch(() => null);
      if (md !== null && (newest === null || md.events > newest.md.events)) newest = { leg, md };
    }
    return newest;
  }

  // ---- BlockDevice ----

  async read(offsetBytes: number, target: Uint8Array): Promise<void> {
    const length = validateRequest(this, this.gate.isOpen, 'read', offsetBytes, target);
    if (length === 0) return;
    await this.gate.track(async () => {
      for (const segment of this.raid.segments(offsetBytes, length)) {
        const piece = target.subarray(segment.arrayOffsetBytes - offsetBytes, segment.arrayOffsetBytes - offsetBytes + segment.lengthBytes);
        await this.readSegment(segment, piece);
      }
    });
  }

  async write(offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void> {
    const length = validateRequest(this, this.gate.isOpen, 'write', offsetBytes, data);
    if (length === 0) return;
    if (!this.writesAllowed()) throw this.fencedError();
    await this.gate.track(() => this.userIo.track(async () => {
      const range = { lowSectors: offsetBytes / SECTOR_BYTES, highSectors: (offsetBytes + length) / SECTOR_BYTES };
      const first = Math.floor(offsetBytes / this.chunkBytes);
      const end = Math.ceil((offsetBytes + length) / this.chunkBytes);
      await this.waitWritable(range, first, end); // registers the range in writesInFlight
      try {
        await this.intent.startWrite(first, end);
        try {
          const failures: Leg[] = [];
          const results = await Promise.allSettled(this.raid.segments(offsetBytes, length).map((segment) => this.writeSegment(segment, data.subarray(segment.arrayOffsetBytes - offsetBytes, segment.arrayOffsetBytes - offsetBytes + segment.lengthBytes), options, failures)));
          for (const leg of failures) void this.failLeg(leg, 'write failed').catch(() => {}); // awaited just below
          // The data I/O is over: a resync window may close over this range while the failure is recorded.
          this.writesInFlight.delete(range);
          this.wake();
          const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (lost) {
            await this.failuresRecorded().catch(() => {});
            throw lost.reason;
          }
          // Acknowledged only once every leg that failed (here, in the bitmap commit or in a
          // metadata update) is recorded as faulty on the others and every node was told.
          await this.failuresRecorded();
        } finally {
          this.intent.endWrite(first, end);
        }
      } finally {
        this.writesInFlight.delete(range);
        this.wake();
      }
    }));
  }

  async flush(): Promise<void> {
    if (!this.gate.isOpen) throw new BlockError('EBADF', 'array is stopped', { device: this.name });
    await this.gate.track(async () => {
      const legs = this.writableLegs();
      const failed: Leg[] = [];
      await Promise.all(legs.map((leg) => leg.device.flush().catch(() => failed.push(leg))));
      if (!this.writesAllowed()) throw this.fencedError();
      if (failed.length === legs.length) throw new BlockError('EIO', 'no leg could flush', { device: this.name });
      for (const leg of failed) void this.failLeg(leg, 'flush failed').catch(() => {}); // awaited just below
      await this.failuresRecorded();
    });
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<DiscardOutcome> {
    if (validateRequest(this, this.gate.isOpen, 'discard', offsetBytes, lengthBytes) === 0) return EMPTY_DISCARD_OUTCOME;
    throw new BlockError('ENOTSUP', 'a clustered array does not discard', { device: this.name, offsetBytes, lengthBytes });
  }

  /**
   * Ends this array object after a bitmap switch rewrote the metadata (array-bitmap-switch.ts):
   * waiting writes fail (EBADF), the resync stops, the cluster is left; the old bitmap is not
   * touched and the legs stay open for the array assembled next.
   */
  private async stopForSwitch(): Promise<void> {
    this.stopped = true;
    this.resumeAfterResize(this.cluster.slotNumber());
    await this.gate.close(async () => {
      if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
      await this.resync.stop();
      await this.cluster.leave();
    });
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Stops this node's part of the array (mdadm --stop): see the design note. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.gate.close(async () => {
      if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
      await this.spareJobs.idle(); // a spare taking a role finishes its metadata update first
      await this.resync.stop();
      await this.bitmapJobs.idle(); // a sweep the timer started, or a slot merge, ends first
      // A clean stop leaves no bit set that need not be (md's bitmap flush on stop): every leg
      // flushed, then the bits of chunks with no write in flight cleared and written.
      await this.intent.sweep(0).catch((error: unknown) => this.note(`bitmap clear at stop failed: ${String(error)}`));
      await this.intent.settle().catch(() => {});
      try {
        await this.cluster.leave();
      } finally {
        if (this.options.ownsLegs) await Promise.all(this.legs.map((leg) => leg.device.close()));
      }
    });
  }

  /**
   * Runs the bitmap daemon now: clears the bits of chunks with no write for `idleForMs` (default
   * daemon_sleep), after flushing every leg. Returns how many it cleared.
   */
  clearIdleBits(idleForMs?: number): Promise<number> {
    if (this.paused !== null) return Promise.resolve(0);
    return this.bitmapJobs.track(() => this.intent.sweep(idleForMs));
  }

  /**
   * This node stops at once as if its machine died (simulation and tests): no message, no bitmap
   * clear, nothing more written; the caller kills its lockspace membership so the others recover.
   */
  abandon(): void {
    this.stopped = true;
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    void this.resync.stop();
  }

  // ---- I/O paths ----

  private async readSegment(segment: Segment, target: Uint8Array): Promise<void> {
    for (;;) {
      const candidates = segment.copies
        .map((copy) => ({ copy, leg: this.readableInRole(copy.role) }))
        .filter((c): c is { copy: typeof c.copy; leg: Leg } => c.leg !== undefined);
      if (candidates.length === 0) throw new BlockError('EIO', 'no in-sync copy left to read', { device: this.name, offsetBytes: segment.arrayOffsetBytes, lengthBytes: segment.lengthBytes });
      const pick = this.mayDiffer(segment) ? candidates[0]! : candidates[this.readCursor++ % candidates.length]!;
      try {
        await pick.leg.device.read(this.legOffset(pick.copy.legOffsetBytes), target);
        return;
      } catch (error) {
        if (!this.gate.isOpen || this.stopped) throw error;
        await this.failLeg(pick.leg, `read failed: ${String(error)}`);
      }
    }
  }

  private async writeSegment(segment: Segment, data: Uint8Array, options: WriteOptions | undefined, failures: Leg[]): Promise<void> {
    let written = 0;
    await Promise.all(segment.copies.map(async (copy) => {
      const leg = this.legInRole(copy.role);
      if (leg === undefined) return;
      try {
        await leg.device.write(this.legOffset(copy.legOffsetBytes), data, options);
        written += 1;
      } catch {
        failures.push(leg);
      }
    }));
    if (written === 0 && !this.writesAllowed()) throw this.fencedError();
    if (written === 0) throw new BlockError('EIO', 'no copy could be written', { device: this.name, offsetBytes: segment.arrayOffsetBytes, lengthBytes: segment.lengthBytes });
  }

  /** True where copies may hold different bytes: read the source copy then. */
  private mayDiffer(segment: Segment): boolean {
    const low = segment.arrayOffsetBytes / SECTOR_BYTES;
    const high = (segment.arrayOffsetBytes + segment.lengthBytes) / SECTOR_BYTES;
    if (this.cluster.recoveryRunning || this.cluster.areaResyncing('read', low, high)) return true;
    if (this.md.resyncOffsetSectors !== null && high > this.md.resyncOffsetSectors) return true;
    const first = Math.floor(segment.arrayOffsetBytes / this.chunkBytes);
    const end = Math.ceil((segment.arrayOffsetBytes + segment.lengthBytes) / this.chunkBytes);
    for (let chunk = first; chunk < end; chunk++) if (this.resync.todo.get(chunk)) return true;
    return false;
  }

  /**
   * Waits until no node's resync window covers the range, our resync is not copying its chunks,
   * and no write of ours to an overlapping range is in flight: overlapping writes go to the legs
   * one after the other, so every leg ends with the same one (two at once could land in a
   * different order on each leg, and the mirror would differ where its bit is then cleared).
   * Registers `range` as in flight before it returns; the caller removes it.
   */
  private async waitWritable(range: SectorRange, first: number, end: number): Promise<void> {
    for (;;) {
      if (this.paused !== null) {
        await this.paused.resumed;
        continue;
      }
      if (this.stopped) throw new BlockError('EBADF', 'array is stopped', { device: this.name });
      if (range.highSectors * SECTOR_BYTES > this.sizeBytes) {
        throw new BlockError('ERANGE', `the array shrank to ${this.sizeBytes} bytes while this write waited`, { device: this.name, offsetBytes: range.lowSectors * SECTOR_BYTES });
      }
      if (this.cluster.areaResyncing('write', range.lowSectors, range.highSectors) || this.overlapsWriteInFlight(range)) {
        await new Promise<void>((resolve) => this.waiters.push(resolve));
        continue;
      }
      const busy = this.regionOps.firstBusy(first, end);
      if (busy >= 0) {
        await this.regionOps.get(busy)!.done;
        continue;
      }
      // In the same turn as the checks: a write arriving after this one sees it.
      this.writesInFlight.add(range);
      return;
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private legOffset(offsetBytes: number): number {
    return this.md.dataOffsetSectors * SECTOR_BYTES + offsetBytes;
  }

  /** The leg written in `role` (in sync or recovering). */
  private legInRole(role: number): Leg | undefined {
    return this.legs.find((leg) => leg.state === 'active' && leg.role === role);
  }

  /** The leg read in `role`: in sync only. */
  private readableInRole(role: number): Leg | undefined {
    return this.legs.find((leg) => leg.state === 'active' && !leg.recovering && leg.role === role);
  }

  /** Active legs, in sync or recovering, by role. */
  activeLegs(): Leg[] {
    return this.legs.filter((leg) => leg.state === 'active').sort((a, b) => a.role! - b.role!);
  }

  /** Active legs in sync, by role: the first is the source copy. */
  inSyncLegs(): Leg[] {
    return this.activeLegs().filter((leg) => !leg.recovering);
  }

  /** Legs that take writes and bitmap pages: active ones (spares hold no data yet). */
  private writableLegs(): Leg[] {
    return this.activeLegs();
  }

  get degraded(): boolean {
    return this.inSyncLegs().length < this.md.raidDisks;
  }

  // ---- leg failure and metadata ----

  private failDevice(device: BlockDevice, error: unknown): Promise<void> {
    const leg = this.legs.find((l) => l.device === device);
    assert(leg !== undefined, 'a failed device is one of our legs');
    return this.failLeg(leg, String(error));
  }

  /** Marks `leg` faulty here at once, then in every superblock, then tells the other nodes. */
  failLeg(leg: Leg, why: string): Promise<void> {
    // Fenced: the legs refuse us, they did not fail; nothing may be recorded on them either.
    if (!this.writesAllowed()) return Promise.reject(this.fencedError());
    const existing = this.failing.get(leg);
    if (existing !== undefined) return existing;
    if (leg.state === 'faulty') return Promise.resolve();
    this.note(`leg ${leg.device.name} (role ${leg.role}) failed: ${why}`, 'leg-failed');
    leg.state = 'faulty';
    leg.role = null;
    leg.recovering = false;
    const done = this.updateMetadata((md) => {
      md.devRoles[leg.sb.devNumber] = MD_ROLE_FAULTY;
    }).catch((error: unknown) => {
      // Unrecorded, the failure could be forgotten by a crash: no write is acknowledged from now on.
      this.unrecordedFailure ??= error;
      throw error;
    });
    this.failing.set(leg, done);
    // Recorded: a spare takes the vacant role (md's remove_and_add_spares), not awaited by the
    // write or request that failed the leg.
    void done.then(() => this.takeSpare(), () => {});
    return done;
  }

  /** A spare into a vacant role, if there are both (array-manage.ts: activateSpare). */
  private takeSpare(): void {
    if (this.stopped || !this.writesAllowed()) return;
    // Tracked: a stop waits for it before it leaves the cluster (not with the bitmap jobs: a
    // resize waits for those while it holds the token this needs).
    void this.spareJobs.track(() => activateSpare(this)).catch((error: unknown) => this.note(`a spare could not take the failed leg's role: ${String(error)}`));
  }

  /** Waits for every leg failure being recorded; EIO when one could not be (fenced: the fence's error). */
  private async failuresRecorded(): Promise<void> {
    let unrecorded: unknown = null;
    while (this.failing.size > 0) {
      const pending = [...this.failing];
      for (const outcome of await Promise.allSettled(pending.map(([, done]) => done))) if (outcome.status === 'rejected') unrecorded ??= outcome.reason;
      for (const [leg, done] of pending) if (this.failing.get(leg) === done) this.failing.delete(leg);
    }
    if (unrecorded !== null && !this.writesAllowed()) throw this.fencedError();
    if (this.unrecordedFailure !== null) {
      throw new BlockError('EIO', `a leg failure could not be recorded: ${String(this.unrecordedFailure)}`, { device: this.name, cause: this.unrecordedFailure });
    }
  }

  /** metadata_update_start, change, every leg's superblock written, metadata_update_finish. */
  async updateMetadata(change: (md: MdSuperblock) => void): Promise<void> {
    await this.metadataMutex.run(async () => {
      await this.cluster.metadataUpdateStart();
      try {
        await this.writeMetadataHolding(change);
      } catch (error) {
        await this.cluster.metadataUpdateCancel();
        throw error;
      }
      await this.finishMetadataUpdate();
    });
  }

  /** With the channel held: the array fields changed, events bumped, written to every leg not faulty. */
  async writeMetadataHolding(change: (md: MdSuperblock) => void): Promise<void> {
    const md: MdSuperblock = { ...this.md, devRoles: [...this.md.devRoles] };
    change(md);
    md.events += 1;
    md.utimeSeconds = Math.floor(Date.now() / 1000);
    this.md = md;
    // While dirty (no bitmap) the superblocks say resync_offset 0: a crash resyncs everything.
    const onDisk = () => (this.dirtyOnDisk ? { ...this.md, resyncOffsetSectors: 0 } : this.md);
    // Until a round adds no new failure: each leg that refused the update is failed in the next.
    // A leg failed here is faulty at once (writes skip it), but recorded only when a later round
    // lands: until then it is in `failing`, so no write that missed it is acknowledged before
    // (failuresRecorded), and a write that saw it fail does not take it as already recorded.
    let recording: Deferred | null = null;
    try {
      for (let failed = await writeArrayMetadata(this.legs, onDisk()); failed.length > 0; failed = await writeArrayMetadata(this.legs, onDisk())) {
        if (!this.writesAllowed()) throw this.fencedError();
        recording ??= deferred();
        for (const leg of failed) {
          leg.state = 'faulty';
          leg.role = null;
          leg.recovering = false;
          this.md.devRoles[leg.sb.devNumber] = MD_ROLE_FAULTY;
          if (!this.failing.has(leg)) this.failing.set(leg, recording.promise);
        }
        if (this.legs.every((leg) => leg.state === 'faulty')) break;
      }
      // A change no leg holds is not made: a write whose leg failure went unrecorded must not be
      // acknowledged (after a crash that leg could be taken as the source again).
      if (this.legs.every((leg) => leg.state === 'faulty')) throw new BlockError('EIO', 'no leg took the metadata update', { device: this.name });
      recording?.resolve();
    } catch (error) {
      if (recording !== null) {
        // Failures no superblock holds: as in failLeg, nothing is acknowledged from now on.
        if (this.writesAllowed()) this.unrecordedFailure ??= error;
        recording.reject(error);
      }
      throw error;
    }
  }

  /** metadata_update_finish naming a good device (cancel when none is left). */
  async finishMetadataUpdate(): Promise<void> {
    const good = this.inSyncLegs()[0];
    if (good === undefined) await this.cluster.metadataUpdateCancel();
    else await this.cluster.metadataUpdateFinish(good.sb.devNumber);
  }

  /** Bitmap none: every leg's superblock marked dirty (or clean again), flushed (dirty-flag.ts). */
  private async setDirtyOnDisk(dirty: boolean): Promise<void> {
    await this.metadataMutex.run(async () => {
      const before = this.dirtyOnDisk;
      this.dirtyOnDisk = dirty;
      try {
        await this.writeMetadataHolding(() => {});
      } catch (error) {
        // Not marked dirty: the write must not go. Not marked clean: it stays dirty (a resync too many).
        this.dirtyOnDisk = dirty ? before : true;
        throw error;
      }
    });
  }

  /** The array's superblock fields as this node has them. */
  get superblock(): MdSuperblock {
    return this.md;
  }

  /** Every leg this node knows (for the manage operations). */
  get legList(): Leg[] {
    return this.legs;
  }

  /** Serializes metadata changes of this node. */
  withMetadataLock<T>(work: () => Promise<T>): Promise<T> {
    return this.metadataMutex.run(work);
  }

  // ---- ClusterHost ----

  async copyBitmapFromSlot(slot: number, clear: boolean): Promise<SectorRange> {
    while (this.paused !== null) await this.paused.resumed;
    return this.bitmapJobs.track(() => this.mergeSlot(slot, clear));
  }

  private async mergeSlot(slot: number, clear: boolean): Promise<SectorRange> {
    const source = this.inSyncLegs()[0];
    if (source === undefined) return { lowSectors: 0, highSectors: 0 };
    const other = await readBitmapArea(source.device, this.layout, slot, this.md);
    const range = this.addBitsToResync(other.bits);
    if (range.highSectors > 0) await this.intent.markDirtyBits(other.bits);
    if (clear && range.highSectors > 0) {
      const cleared = { sb: other.sb, bits: new Uint8Array(other.bits.length) };
      await Promise.all(this.writableLegs().map(async (leg) => {
        await writeBitmapArea(leg.device, this.layout, slot, cleared);
        await leg.device.flush();
      }));
    }
    return range;
  }

  /** Adds the set bits of `bits` to the resync; their sector range. */
  addBitsToResync(bits: Uint8Array): SectorRange {
    let low = -1;
    let high = 0;
    for (let chunk = 0; chunk < this.chunkCount; chunk++) {
      if ((bits[chunk >> 3]! & (1 << (chunk & 7))) === 0) continue;
      this.resync.add(chunk, chunk + 1);
      if (low < 0) low = chunk;
      high = chunk + 1;
    }
    const sectorsPerChunk = this.chunkBytes / SECTOR_BYTES;
    return low < 0 ? { lowSectors: 0, highSectors: 0 } : { lowSectors: low * sectorsPerChunk, highSectors: high * sectorsPerChunk };
  }

  async reloadSuperblock(goodDevice: number): Promise<void> {
    const leg = this.legs.find((l) => l.sb.devNumber === goodDevice && l.state !== 'faulty') ?? this.inSyncLegs()[0];
    if (leg === undefined) return;
    const md = await readMdSuperblock(leg.device);
    const resized = md.sizeSectors !== this.md.sizeSectors;
    this.md = {
      ...this.md, events: md.events, raidDisks: md.raidDisks, sizeSectors: md.sizeSectors, devRoles: [...md.devRoles], resyncOffsetSectors: md.resyncOffsetSectors, utimeSeconds: md.utimeSeconds,
    };
    if (resized) this.applySize();
    else if (md.raidDisks !== this.raid.raidDisks) this.raid = raidLayoutOf(this.md);
    // A disk bound on NEWDISK that the superblocks do not list was refused: drop it.
    for (const [l, boundAtEvents] of [...this.unconfirmedLegs]) {
      this.unconfirmedLegs.delete(l);
      const role = md.devRoles[l.sb.devNumber];
      if (md.events > boundAtEvents && role !== undefined && role !== MD_ROLE_FAULTY) continue;
      this.legs.splice(this.legs.indexOf(l), 1);
      if (this.options.ownsLegs) await l.device.close().catch(() => {});
      this.note(`new leg ${l.device.name} was not added (some node could not see it): dropped`);
    }
    for (const l of this.legs) {
      const role = md.devRoles[l.sb.devNumber] ?? MD_ROLE_FAULTY;
      if (role === MD_ROLE_FAULTY) {
        if (l.state !== 'faulty') this.note(`leg ${l.device.name} failed on another node`, 'leg-failed');
        l.state = 'faulty';
        l.role = null;
      } else if (role >= MD_ROLE_MAX) {
        l.state = 'spare';
        l.role = null;
      } else if (l.state === 'faulty') {
        // Failed here (maybe our own update is still on its way): only RE_ADD, which makes it a
        // spare first, brings a failed leg back.
      } else {
        // Active: in sync unless its own superblock says it is being recovered.
        if (l.state !== 'active' || l.recovering) {
          const own = await readMdSuperblock(l.device).catch(() => null);
          l.recovering = own === null || (own.featureMap & MD_FEATURE.RECOVERY_OFFSET) !== 0;
          if (own !== null) l.sb = { ...l.sb, featureMap: (l.sb.featureMap & ~MD_FEATURE_PER_LEG) | (own.featureMap & MD_FEATURE_PER_LEG) };
        }
        l.state = 'active';
        l.role = role;
      }
      l.sb = { ...l.sb, events: md.events, sizeSectors: md.sizeSectors, devRoles: [...md.devRoles], resyncOffsetSectors: md.resyncOffsetSectors };
    }
  }

  resyncNeeded(fromSectors: number): void {
    if (fromSectors !== Number.MAX_SAFE_INTEGER || this.needsSync()) this.resync.kick();
  }

  private get recoveringLeg(): boolean {
    return this.legs.some((leg) => leg.state === 'active' && leg.recovering);
  }

  suspendChanged(): void {
    this.wake();
  }

  async quiesce(range: SectorRange): Promise<void> {
    while (this.overlapsWriteInFlight(range)) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private overlapsWriteInFlight(range: SectorRange): boolean {
    for (const w of this.writesInFlight) if (w.highSectors > range.lowSectors && w.lowSectors < range.highSectors) return true;
    return false;
  }

  async newDiskSeen(deviceUuid: Uint8Array, raidSlot: number): Promise<boolean> {
    if (this.stopped) return false; // stopping: nothing is bound into an array whose legs close
    // Not seeing a disk is the protocol's refusal: the adder's no-new-dev EX fails (ENOENT).
    const seen = await bindNewDisk(this, deviceUuid, raidSlot, this.options.findDevice);
    this.note(seen ? `new leg, device number ${raidSlot}, bound as a spare` : `NEWDISK for device number ${raidSlot}: no such device here`);
    return seen;
  }

  async removeDisk(raidSlot: number): Promise<void> {
    const leg = this.legs.find((l) => l.sb.devNumber === raidSlot);
    if (leg === undefined || leg.state === 'active') {
      this.note(`REMOVE of device number ${raidSlot} ignored: ${leg === undefined ? 'no such leg here' : 'it is active'}`);
      return;
    }
    this.legs.splice(this.legs.indexOf(leg), 1);
    if (this.options.ownsLegs) await leg.device.close().catch(() => {});
    this.note(`leg ${leg.device.name} (device number ${raidSlot}) removed by another node`);
  }

  async readdDisk(raidSlot: number): Promise<void> {
    // The leg comes back: no longer failed here; the METADATA_UPDATED that follows makes it active (recovering).
    const leg = this.legs.find((l) => l.sb.devNumber === raidSlot && l.state === 'faulty');
    if (leg !== undefined) leg.state = 'spare';
    this.note(`RE_ADD of device number ${raidSlot}`);
  }

  // ---- manage (array-manage.ts) ----

  /** mdadm --add: returns the new leg's device number. */
  addLeg(device: BlockDevice, spare = false): Promise<number> {
    return addLeg(this, this.behindFence(device), spare);
  }

  /** mdadm --grow --raid-devices=N+1 --add (raid1): one more active slot, rebuilt on `device`. */
  async growWith(device: BlockDevice): Promise<number> {
    if (this.raid.level !== 'raid1') throw new BlockError('ENOTSUP', 'only raid1 grows by a leg (md-cluster does not reshape raid10)', { device: this.name });
    const devNumber = await addLeg(this, this.behindFence(device), true);
    await this.growOnto(devNumber);
    return devNumber;
  }

  /** mdadm --grow --raid-devices=N+1 with a spare bound (raid1): the spare becomes the new active leg, rebuilt. */
  async growOnto(devNumber: number): Promise<void> {
    if (this.raid.level !== 'raid1') throw new BlockError('ENOTSUP', 'only raid1 grows by a leg (md-cluster does not reshape raid10)', { device: this.name });
    const leg = this.legs.find((l) => l.sb.devNumber === devNumber);
    if (leg === undefined) throw new BlockError('ENOENT', `no leg numbered ${devNumber}`);
    if (leg.state !== 'spare') throw new BlockError('EBUSY', `leg ${devNumber} is ${leg.state}, not a spare`, { device: leg.device.name });
    await this.updateMetadata((md) => {
      // Checked again under the token: the spare may have taken a failed leg's role meanwhile.
      if (leg.state !== 'spare') throw new BlockError('EBUSY', `leg ${devNumber} is ${leg.state} now, not a spare`, { device: leg.device.name });
      md.raidDisks += 1;
      md.devRoles[devNumber] = md.raidDisks - 1;
      leg.sb = { ...leg.sb, featureMap: leg.sb.featureMap | MD_FEATURE.RECOVERY_OFFSET, recoveryOffsetSectors: 0 };
      leg.state = 'active';
      leg.role = md.raidDisks - 1;
      leg.recovering = true;
    });
    this.raid = raidLayoutOf(this.md);
    this.note(`grown to ${this.md.raidDisks} legs: ${leg.device.name} recovering in role ${leg.role}`);
    this.recoverLegs(null);
  }

  /** mdadm --remove of a spare or failed leg; returns its device for the caller to close. */
  removeLeg(devNumber: number): Promise<BlockDevice> {
    return removeLeg(this, devNumber);
  }

  /** mdadm --re-add of a failed leg. */
  readdLeg(devNumber: number): Promise<void> {
    return readdLeg(this, devNumber);
  }

  /** Starts recovering the recovering legs: every chunk (`null`), or the chunks our bits mark ('bits'). */
  recoverLegs(what: null | 'bits'): void {
    if (what === null) this.resync.add(0, this.chunkCount);
    else this.addBitsToResync(this.intent.bits);
    this.resync.kick();
  }

  // ---- online resize (array-resize.ts) ----

  /**
   * mdadm --grow --bitmap: another kind of bitmap (array-bitmap-switch.ts). This array object ends;
   * the one returned runs on the same legs with the new bitmap.
   */
  async switchBitmap(request: BitmapSwitchRequest): Promise<ClusterArray> {
    await switchBitmap(this, request);
    await this.stopForSwitch();
    return ClusterArray.assemble(this.options);
  }

  /** mdadm --grow --size: every node takes the new size; a grow resyncs the new part only. */
  resize(request: ResizeRequest): Promise<ResizeResult> {
    return resizeArray(this, request);
  }

  /** raid level and shape, for size arithmetic (array-size.ts). */
  get sizeShape(): SizeShape {
    return { level: this.raid.level, raidDisks: this.md.raidDisks, nearCopies: this.md.layout & 0xff, chunkSectors: this.md.chunkSectors };
  }

  /**
   * Stops new writes and bitmap changes for a resize by node slot `bySlot` and resolves once the
   * writes in flight are over, no sweep or slot merge runs and every bitmap change is durable.
   */
  async pauseForResize(bySlot: number): Promise<void> {
    this.holdWrites(bySlot);
    await this.started;
    while (this.writesInFlight.size > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    await this.bitmapJobs.idle();
    await this.intent.settle();
  }

  /** New writes and bitmap changes wait until every node that held them (`bySlot`) lets go. */
  private holdWrites(bySlot: number): void {
    if (this.paused === null) {
      let resume!: () => void;
      const resumed = new Promise<void>((resolve) => (resume = resolve));
      this.paused = { bySlots: new Set(), resumed, resume };
    }
    this.paused.bySlots.add(bySlot);
  }

  /** While paused: every leg flushed, then every bit cleared (no bitmap: the array marked clean). */
  async cleanWhilePaused(): Promise<void> {
    assert(this.paused !== null, 'writes are paused');
    await this.intent.sweep(0);
    await this.intent.settle();
  }

  /** Node slot `bySlot` lets writes and bitmap changes go; they go once no node holds them. */
  resumeAfterResize(bySlot: number): void {
    const paused = this.paused;
    if (paused === null || !paused.bySlots.delete(bySlot) || paused.bySlots.size > 0) return;
    this.paused = null;
    paused.resume();
  }

  /**
   * The size in this.md was just changed (our resize, or another node's read from disk): the
   * layout, chunk count, write-intent bits and resync follow it.
   */
  applySize(): void {
    const before = this.raid.arraySizeBytes;
    const syncSectors = bitmapSectorsOf(this.md);
    const chunks = bitmapChunkCount(syncSectors, this.chunkBytes);
    // Checked before anything changes (the bits cannot go past the slot areas).
    if (chunks > this.chunkCapacity) throw new BlockError('EINVAL', `a size of ${syncSectors} sectors needs ${chunks} bitmap chunks; the slot areas hold ${this.chunkCapacity}`, { device: this.name });
    this.raid = raidLayoutOf(this.md);
    this.chunks = chunks;
    this.intent?.resize(chunks, syncSectors);
    this.resync?.shrinkTo(chunks);
    this.note(`resized from ${before} to ${this.raid.arraySizeBytes} bytes`);
  }

  async resizePrepare(slot: number): Promise<void> {
    await this.pauseForResize(slot); // held at once, before a node death (nodeGone) can look
  }

  async capacityChanged(slot: number, goodDevice: number): Promise<void> {
    await this.started;
    try {
      await this.reloadSuperblock(goodDevice);
    } catch (error) {
      this.note(`CHANGE_CAPACITY: the superblock could not be read: ${String(error)}`);
    } finally {
      this.resumeAfterResize(slot);
    }
  }

  nodeGone(slot: number): void {
    if (this.paused === null || !this.paused.bySlots.has(slot) || slot === this.cluster.slotNumber()) return;
    // Its resize ends here: the size is what the superblocks say; our slot is written whole again
    // (the resizing node may have died between rewriting slots).
    this.note(`the node resizing the array (slot ${slot}) died: the size on disk is taken`);
    const source = this.inSyncLegs()[0];
    void (async () => {
      try {
        if (source !== undefined) await this.reloadSuperblock(source.sb.devNumber);
        await this.intent.writeAll();
      } catch (error) {
        this.note(`taking the size after a dead node's resize failed: ${String(error)}`);
      } finally {
        this.resumeAfterResize(slot);
      }
    })();
  }

  needsSync(): boolean {
    return !this.resync.todo.isEmpty() || this.md.resyncOffsetSectors !== null || this.recoveringLeg;
  }

  fenced(why: string): void {
    if (!this.stopped) this.note(`fenced: ${why}; no more writes from this node until it assembles again`, 'fenced');
  }

  note(message: string, type: ArrayEventType = 'note'): void {
    this.options.onEvent?.({ type, message: `${this.name}: ${message}` });
  }

  /** mdadm --fail: the leg with device number `devNumber` is failed on every node; false when there is none. */
  async failByNumber(devNumber: number): Promise<boolean> {
    const leg = this.legs.find((l) => l.sb.devNumber === devNumber);
    if (leg === undefined) return false;
    await this.failLeg(leg, 'failed by request');
    await this.failuresRecorded();
    return true;
  }

  // ---- what the resync needs (ResyncHost) ----

  userBusy(): boolean {
    return this.userIo.inFlight > 0;
  }

  userIdle(): Promise<void> {
    return this.userIo.idle();
  }

  get arraySizeBytes(): number {
    return this.sizeBytes;
  }

  canRun(): boolean {
    return !this.stopped && !this.layoutChangeRunning && this.paused === null && this.inSyncLegs().length > 0 && this.activeLegs().length > 1;
  }

  async copyChunks(start: number, end: number): Promise<void> {
    const offset = start * this.chunkBytes;
    const length = Math.min(end * this.chunkBytes, this.sizeBytes) - offset;
    if (length <= 0) return;
    for (const segment of this.raid.segments(offset, length)) {
      const copies = segment.copies.map((copy) => ({ copy, leg: this.legInRole(copy.role) })).filter((c) => c.leg !== undefined);
      const source = copies.find((c) => !c.leg!.recovering);
      if (source === undefined || copies.length < 2) continue;
      const bytes = new Uint8Array(segment.lengthBytes);
      await source.leg!.device.read(this.legOffset(source.copy.legOffsetBytes), bytes);
      await Promise.all(copies.filter((c) => c !== source).map((c) => c.leg!.device.write(this.legOffset(c.copy.legOffsetBytes), bytes)));
    }
  }

  chunksInSync(start: number, end: number): void {
    this.intent.synced(start, end); // cleared by the bitmap daemon after its flush (never while degraded)
  }

  async allInSync(): Promise<void> {
    const recovered = this.activeLegs().filter((leg) => leg.recovering);
    if (this.md.resyncOffsetSectors === null && recovered.length === 0) return;
    // The copies durable before a superblock says they are done.
    await Promise.all(this.writableLegs().map((leg) => leg.device.flush()));
    await this.updateMetadata((md) => {
      md.resyncOffsetSectors = null;
      // Recovered legs are in sync: their own superblocks drop the recovery flag with this write.
      for (const leg of recovered) leg.sb = { ...leg.sb, featureMap: leg.sb.featureMap & ~MD_FEATURE_PER_LEG, recoveryOffsetSectors: 0 };
    });
    for (const leg of recovered) {
      leg.recovering = false;
      this.note(`leg ${leg.device.name} recovered: in sync in role ${leg.role}`);
    }
  }

  collect(todo: RegionBitmap): void {
    const from = this.md.resyncOffsetSectors;
    if (from !== null) todo.setRange(Math.floor((from * SECTOR_BYTES) / this.chunkBytes), this.chunkCount);
    // A new leg left recovering by a node that stopped (switch-recovery) is recovered whole here;
    // a re-added one from the bits this node merged from the stopped node's slot.
    if (this.legs.some(recoversWhole)) todo.setRange(0, this.chunkCount);
  }

  // ---- status ----

  status(): ArrayStatus {
    return {
      name: this.name,
      level: this.raid.level,
      picture: slotPicture(this.legs, this.md.raidDisks),
      slot: this.cluster.slotNumber(),
      nodes: this.layout.nodes,
      bitmap: this.layout.bitmap,
      nodesSeen: [...this.cluster.nodesSeen],
      recoveringNodes: this.cluster.recoveryRunning,
      raidDisks: this.md.raidDisks,
      sizeBytes: this.sizeBytes,
      events: this.md.events,
      legs: this.legs.map((leg) => ({ device: leg.device.name, devNumber: leg.sb.devNumber, role: leg.role, state: leg.state, recovering: leg.recovering })),
      resync: { state: this.resync.state, doneChunks: this.resync.doneChunks, totalChunks: this.resync.totalChunks },
      suspended: this.cluster.suspendList.map(({ lowSectors, highSectors }) => ({ lowSectors, highSectors })),
      dirtyChunks: this.intent.dirtyCount,
      chunkBytes: this.chunkBytes,
      bitmapCommits: this.intent.commits,
      messages: this.cluster.messageCounts,
      fenced: !this.stopped && !this.writesAllowed(),
      resyncMaxBytesPerSecond: this.resync.rateLimit.bytesPerSecond,
    };
  }

  /**
   * Sets this node's resync and recovery rate limit (null: none), as writing md's sync_speed_max:
   * copies that start from now on keep to it; it is kept when the array is assembled again here.
   */
  setResyncRate(bytesPerSecond: number | null): void {
    this.resync.rateLimit.bytesPerSecond = bytesPerSecond;
    this.options.resyncMaxBytesPerSecond = bytesPerSecond;
  }

  /** The resync's state alone (status() also counts every dirty bit). */
  get resyncState(): ArrayResync['state'] {
    return this.resync.state;
  }

  /** Resolves when no resync is pending or running. */
  async resyncIdle(): Promise<void> {
    await this.resync.idle();
  }

  /** Resolves once no node recovery and no resync is left to run (a recovery may start a resync). */
  async quiet(): Promise<void> {
    for (;;) {
      await this.cluster.recoveryIdle();
      await this.resync.idle();
      if (!this.cluster.recoveryRunning && this.resync.state === 'idle') return;
    }
  }
}

function bitmapFeatureBits(md: MdSuperblock): number {
  return md.featureMap & (MD_FEATURE.BITMAP_OFFSET | MD_FEATURE.CLUSTERED);
}

function raidLayoutOf(md: MdSuperblock): RaidLayout {
  return md.level === 10 ? raid10NearLayout(md.raidDisks, md.layout & 0xff, md.chunkSectors, md.sizeSectors) : raid1Layout(md.raidDisks, md.sizeSectors);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** `device` behind a fence asking `allowed` (a leg an earlier array of these legs fenced is taken from under its old fence). */
function fenced(device: BlockDevice, allowed: () => boolean): BlockDevice {
  return new FencedDevice(device instanceof FencedDevice ? device.inner : device, allowed, 'its lock manager membership ended');
}
