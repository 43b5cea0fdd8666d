/**
 * The cluster part of a clustered array: md-cluster.c's behaviour over our lock manager.
 *
 * Design note
 * - Lockspace: one per array, named by the array uuid; our DLM slot (1-based) minus one is our
 *   bitmap slot, refused (ERANGE) when above the array's `nodes`.
 * - Locks held for the node's life: ack CR (messenger.ts), no-new-dev CR, our own `bitmapNNNN`
 *   PW (its value block: the resync range lo u64, hi u64, which joining nodes read), and NL on
 *   token, message and resync.
 * - Join: messenger (token EX, ack CR, token NL), no-new-dev CR, bitmap PW, resync NL; then
 *   loadBitmaps probes every other slot's bitmap lock with PW NOQUEUE: EAGAIN = that node lives
 *   (its resync range, read under CR, goes to the suspend list); granted = nobody there (its bits
 *   are merged into ours, not cleared, and resynced from their low end).
 * - Node failure (lockspace callbacks): recoverPrep suspends read balancing; recoverSlot queues
 *   the slot for the recovery loop (take its bitmap lock PW, merge and clear its bits, drop its
 *   suspend range, resync from the low end); recoverDone resumes read balancing.
 *   BITMAP_NEEDS_SYNC from a node that stops with dirty bits queues its slot the same way: the
 *   loop's PW on its bitmap lock waits until that node has left.
 * - Messages act as md-cluster's process_recvd_msg does (see onMessage).
 * - The resync lock (EX while resyncing) makes a second node wait: `pending` is true meanwhile
 *   (/proc/mdstat's PENDING).
 */
import { assert } from '../assert.ts';
import { BlockError } from '../errors.ts';
import { LockError } from '../locks/lock-error.ts';
import type { Lock, LockManager, Lockspace } from '../locks/lock-manager.ts';
import { LockMode } from '../locks/modes.ts';
import type { ClusterHost, ClusterOperations, IoDirection, SectorRange } from './cluster-operations.ts';
import { clusterMsg, MSG_TYPE, msgTypeName, type ClusterMsg } from './cluster-msg.ts';
import { Messenger, type CommChannel } from './messenger.ts';

const { NL, CR, PW, EX } = LockMode;

export function bitmapResource(slot: number): string {
  return `bitmap${String(slot).padStart(4, '0')}`;
}

/** The kernel names the lockspace by the array uuid printed as %pU. */
export function lockspaceName(uuid: Uint8Array): string {
  const hex = Array.from(uuid, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export interface JoinOptions {
  manager: LockManager;
  arrayUuid: Uint8Array;
  nodes: number;
  memberName: string;
  /** The node (process) joining, stable across its restarts (JoinOptions.nodeId). */
  nodeId?: string;
  host: ClusterHost;
}

export interface SuspendEntry extends SectorRange {
  slot: number;
}

export class MdCluster implements ClusterOperations {
  private space!: Lockspace;
  private messenger!: Messenger;
  private noNewDev!: Lock;
  private ownBitmap!: Lock;
  private resyncLock!: Lock;
  private channel: CommChannel | null = null;
  private otherBitmaps: Lock[] = [];
  private readonly recoveryQueue = new Set<number>();
  private recovering: Promise<void> | null = null;
  /** Aborted by leave(): a recovery waiting for a slot's bitmap lock gives up. */
  private readonly recoveryAbort = new AbortController();
  private readBalancingSuspended = false;
  private left = false;
  /** Ranges other nodes are resyncing (RESYNCING messages, or read from their bitmap locks at join). */
  readonly suspendList: SuspendEntry[] = [];
  /** True while waiting for the resync lock: another node resyncs (PENDING). */
  pending = false;
  /** 0-based slots of the nodes in the lockspace at the last recovery (ours included). */
  nodesSeen: number[] = [];
  /** The node is about to be told whether it sees a new disk (NEWDISK received, no answer yet). */
  private waitingForNewDisk = false;

  private constructor(private readonly options: JoinOptions) {}

  /** join(nodes) of the document: see the design note. */
  static async join(options: JoinOptions): Promise<MdCluster> {
    const cluster = new MdCluster(options);
    cluster.space = await options.manager.join(lockspaceName(options.arrayUuid), {
      memberName: options.memberName,
      ...(options.nodeId === undefined ? {} : { nodeId: options.nodeId }),
      callbacks: {
        recoverPrep: () => cluster.recoverPrep(),
        recoverSlot: (member) => {
          options.host.nodeGone(member.slot - 1);
          cluster.queueRecovery(member.slot - 1);
        },
        recoverDone: (slots) => cluster.recoverDone(slots),
        fenced: (why) => options.host.fenced(why),
      },
    });
    options.host.joined(cluster.space);
    try {
      if (cluster.space.slot > options.nodes) {
        throw new BlockError('ERANGE', `lockspace slot ${cluster.space.slot} is above the array's ${options.nodes} nodes`);
      }
      cluster.messenger = await Messenger.start(cluster.space, {
        onMessage: (msg) => cluster.onMessage(msg),
        onRefused: (why) => options.host.note(`cluster message refused: ${why}`),
        onError: (error) => options.host.note(`cluster receive failed: ${String(error)}`),
      });
      cluster.noNewDev = await cluster.space.lock('no-new-dev', CR);
      cluster.ownBitmap = await cluster.space.lock(bitmapResource(cluster.slotNumber()), PW);
      cluster.resyncLock = await cluster.space.lock('resync', NL);
    } catch (error) {
      await cluster.space.leave();
      throw error;
    }
    return cluster;
  }

  get memberName(): string {
    return this.space.memberName;
  }

  /** The lockspace membership (a simulation kills it to model a node's death). */
  get lockspace(): Lockspace {
    return this.space;
  }

  /** Messages this node sent, processed and refused. */
  get messageCounts(): { sent: number; received: number; refused: number } {
    return { sent: this.messenger.sent, received: this.messenger.received, refused: this.messenger.refused };
  }

  // ---- 6.1 leave, 6.2 slot_number ----

  async leave(): Promise<void> {
    if (this.left) return;
    // A member already out (fenced, or its lease ended) can tell nobody anything: the others
    // recover it as a dead node; only what is local is stopped.
    const live = this.space.live;
    if (live && this.options.host.needsSync()) await this.messenger.send(clusterMsg(MSG_TYPE.BITMAP_NEEDS_SYNC)).catch(() => {});
    this.left = true;
    // A recovery may wait for the bitmap lock of a node that stops only after we do (its
    // BITMAP_NEEDS_SYNC): it is cancelled, and that slot is the next recovering node's.
    this.recoveryAbort.abort();
    await this.recovering;
    await this.messenger.stop();
    if (!live) return;
    await this.unlockAllBitmaps();
    for (const lock of [this.noNewDev, this.ownBitmap, this.resyncLock]) if (lock.held) await lock.unlock();
    await this.space.leave();
  }

  slotNumber(): number {
    return this.space.slot - 1;
  }

  // ---- 6.3 resync_info_update, 6.4 resync_start / resync_finish ----

  async resyncInfoUpdate(lowSectors: number, highSectors: number): Promise<void> {
    const block = new DataView(this.ownBitmap.valueBlock.buffer, this.ownBitmap.valueBlock.byteOffset, 16);
    block.setBigUint64(0, BigInt(lowSectors), true);
    block.setBigUint64(8, BigInt(highSectors), true);
    await this.ownBitmap.convert(PW); // PW -> PW writes the value block to the resource
  }

  async resyncStart(signal?: AbortSignal): Promise<void> {
    this.pending = true;
    try {
      await this.resyncLock.convert(EX, { signal });
    } finally {
      this.pending = false;
    }
  }

  /** Called with the range a resync is about to do (resync_start reports the whole array). */
  async announceResync(lowSectors: number, highSectors: number): Promise<void> {
    await this.resyncInfoUpdate(lowSectors, highSectors);
    await this.messenger.send(clusterMsg(MSG_TYPE.RESYNCING, { lowSectors, highSectors }));
  }

  async resyncFinish(complete: boolean): Promise<void> {
    if (this.resyncLock.mode !== NL) await this.resyncLock.convert(NL);
    await this.resyncInfoUpdate(0, 0);
    await this.messenger.send(clusterMsg(MSG_TYPE.RESYNCING, { lowSectors: 0, highSectors: 0 }));
    // An unfinished resync stays ours while we run (its bits stay set); leave() hands it over
    // with BITMAP_NEEDS_SYNC, as the kernel does: a node told earlier would wait for our bitmap
    // lock, which we hold for life.
    void complete;
  }

  // ---- 6.5 metadata updates ----

  async metadataUpdateStart(): Promise<void> {
    assert(this.channel === null, 'one metadata update at a time on a node');
    this.channel = await this.messenger.lockComm();
  }

  async metadataUpdateFinish(goodDevice: number): Promise<void> {
    const channel = this.takeChannel();
    try {
      await channel.send(clusterMsg(MSG_TYPE.METADATA_UPDATED, { raidSlot: goodDevice }));
    } finally {
      await channel.release();
    }
  }

  async metadataUpdateCancel(): Promise<void> {
    await this.takeChannel().release();
  }

  private takeChannel(): CommChannel {
    const channel = this.channel;
    assert(channel !== null, 'a metadata update was started');
    this.channel = null;
    return channel;
  }

  // ---- 6.6 area_resyncing ----

  areaResyncing(direction: IoDirection, lowSectors: number, highSectors: number): boolean {
    if (direction === 'read' && this.readBalancingSuspended) return true;
    return this.suspendList.some((s) => highSectors > s.lowSectors && lowSectors < s.highSectors);
  }

  // ---- 6.7 new disks ----

  async addNewDiskStart(deviceUuid: Uint8Array, raidSlot: number, goodDevice: number): Promise<void> {
    await this.metadataUpdateStart();
    let sent = false;
    try {
      await this.channel!.send(clusterMsg(MSG_TYPE.NEWDISK, { uuid: deviceUuid, raidSlot }));
      sent = true;
      try {
        await this.noNewDev.convert(EX, { noQueue: true });
      } catch (error) {
        if (error instanceof LockError && error.code === 'EAGAIN') {
          throw new BlockError('ENOENT', 'some node cannot see the new disk (it still holds no-new-dev)');
        }
        throw error;
      }
      await this.noNewDev.convert(CR);
    } catch (error) {
      // Refused (md-cluster.rst 5, step 9): METADATA_UPDATED all the same, so the nodes that saw
      // the disk take no-new-dev CR again and drop the spare they bound for nothing.
      if (sent) await this.metadataUpdateFinish(goodDevice).catch(() => {});
      else await this.metadataUpdateCancel();
      throw error;
    }
  }

  async addNewDiskFinish(goodDevice: number): Promise<void> {
    await this.metadataUpdateFinish(goodDevice);
  }

  async newDiskAck(ack: boolean): Promise<void> {
    if (!this.waitingForNewDisk) throw new LockError('EINVAL', 'no new disk is being confirmed');
    if (ack && this.noNewDev.mode !== NL) await this.noNewDev.convert(NL);
  }

  // ---- 6.8 remove_disk, 6.9 gather_bitmaps, 6.10 lock/unlock_all_bitmaps ----

  async removeDisk(raidSlot: number): Promise<void> {
    await this.messenger.send(clusterMsg(MSG_TYPE.REMOVE, { raidSlot }));
  }

  async gatherBitmaps(raidSlot: number): Promise<SectorRange> {
    await this.messenger.send(clusterMsg(MSG_TYPE.RE_ADD, { raidSlot }));
    let range: SectorRange = { lowSectors: 0, highSectors: 0 };
    for (let slot = 0; slot < this.options.nodes; slot++) {
      if (slot === this.slotNumber()) continue;
      range = union(range, await this.options.host.copyBitmapFromSlot(slot, false));
    }
    return range;
  }

  async lockAllBitmaps(): Promise<boolean> {
    let all = true;
    for (let slot = 0; slot < this.options.nodes; slot++) {
      if (slot === this.slotNumber()) continue;
      try {
        this.otherBitmaps.push(await this.space.lock(bitmapResource(slot), PW, { noQueue: true }));
      } catch (error) {
        if (!(error instanceof LockError && error.code === 'EAGAIN')) throw error;
        all = false;
      }
    }
    return all;
  }

  async unlockAllBitmaps(): Promise<void> {
    const locks = this.otherBitmaps;
    this.otherBitmaps = [];
    for (const lock of locks) if (lock.held) await lock.unlock();
  }

  // ---- beyond the document: online resize ----

  async resizeStart(oldSectors: number, newSectors: number): Promise<void> {
    try {
      await this.resyncLock.convert(EX, { noQueue: true });
    } catch (error) {
      if (error instanceof LockError && error.code === 'EAGAIN') throw new BlockError('EBUSY', 'another node is resyncing the array');
      throw error;
    }
    try {
      await this.metadataUpdateStart();
      try {
        await this.channel!.send(clusterMsg(MSG_TYPE.BITMAP_RESIZE, { lowSectors: oldSectors, highSectors: newSectors }));
      } catch (error) {
        await this.metadataUpdateCancel();
        throw error;
      }
    } catch (error) {
      await this.resyncLock.convert(NL).catch(() => {});
      throw error;
    }
  }

  async resizeFinish(goodDevice: number | null): Promise<void> {
    try {
      await this.channel!.send(clusterMsg(MSG_TYPE.CHANGE_CAPACITY, { raidSlot: goodDevice ?? 0 }));
    } finally {
      try {
        if (goodDevice === null) await this.metadataUpdateCancel();
        else await this.metadataUpdateFinish(goodDevice);
      } finally {
        await this.resyncLock.convert(NL);
      }
    }
  }

  // ---- beyond the document: load_bitmaps ----

  /** gather_all_resync_info: see the design note (join). */
  async loadBitmaps(): Promise<void> {
    for (let slot = 0; slot < this.options.nodes; slot++) {
      if (slot === this.slotNumber()) continue;
      const resource = bitmapResource(slot);
      let probe: Lock;
      try {
        probe = await this.space.lock(resource, PW, { noQueue: true });
      } catch (error) {
        if (!(error instanceof LockError && error.code === 'EAGAIN')) throw error;
        const reader = await this.space.lock(resource, CR);
        const range = readResyncRange(reader.valueBlock);
        await reader.unlock();
        if (range.highSectors > 0) this.setSuspended(slot, range);
        continue;
      }
      try {
        const range = await this.options.host.copyBitmapFromSlot(slot, false);
        if (range.highSectors > 0) this.options.host.resyncNeeded(range.lowSectors);
      } finally {
        await probe.unlock();
      }
    }
  }

  // ---- receiving: process_recvd_msg ----

  private async onMessage(msg: ClusterMsg): Promise<void> {
    const host = this.options.host;
    switch (msg.type) {
      case MSG_TYPE.METADATA_UPDATED:
        if (this.noNewDev.mode !== CR) await this.noNewDev.convert(CR);
        await host.reloadSuperblock(msg.raidSlot);
        break;
      case MSG_TYPE.BITMAP_RESIZE:
        await host.resizePrepare(msg.slot);
        break;
      case MSG_TYPE.CHANGE_CAPACITY:
        await host.capacityChanged(msg.slot, msg.raidSlot);
        break;
      case MSG_TYPE.RESYNCING:
        if (msg.highSectors === 0) {
          this.dropSuspended(msg.slot);
          host.resyncNeeded(Number.MAX_SAFE_INTEGER); // a check only: take over if anything is left
        } else {
          // New writes into the range wait from now on; the ack waits for those in flight.
          const range = { lowSectors: msg.lowSectors, highSectors: msg.highSectors };
          this.setSuspended(msg.slot, range);
          await host.quiesce(range);
        }
        break;
      case MSG_TYPE.NEWDISK: {
        this.waitingForNewDisk = true;
        try {
          const seen = await host.newDiskSeen(msg.uuid, msg.raidSlot);
          await this.newDiskAck(seen);
        } finally {
          this.waitingForNewDisk = false;
        }
        break;
      }
      case MSG_TYPE.REMOVE:
        await host.removeDisk(msg.raidSlot);
        break;
      case MSG_TYPE.RE_ADD:
        await host.readdDisk(msg.raidSlot);
        break;
      case MSG_TYPE.BITMAP_NEEDS_SYNC:
        this.queueRecovery(msg.slot);
        break;
      default:
        host.note(`cluster message ${msgTypeName(msg.type)} ignored`);
    }
  }

  private setSuspended(slot: number, range: SectorRange): void {
    this.dropSuspended(slot, false);
    this.suspendList.push({ slot, ...range });
    this.options.host.suspendChanged();
  }

  private dropSuspended(slot: number, notify = true): void {
    const index = this.suspendList.findIndex((s) => s.slot === slot);
    if (index >= 0) this.suspendList.splice(index, 1);
    if (notify) this.options.host.suspendChanged();
  }

  // ---- recovery: recover_prep / recover_slot / recover_done, recover_bitmaps ----

  private recoverPrep(): void {
    this.readBalancingSuspended = true;
  }

  private recoverDone(slots: readonly number[]): void {
    this.nodesSeen = slots.map((slot) => slot - 1);
    this.readBalancingSuspended = false;
    this.options.host.suspendChanged();
  }

  private queueRecovery(slot: number): void {
    if (this.left || slot === this.slotNumber()) return;
    this.recoveryQueue.add(slot);
    if (this.recovering === null) this.recovering = this.recoverBitmaps().finally(() => (this.recovering = null));
  }

  /** Resolves once no node recovery is queued or running. */
  async recoveryIdle(): Promise<void> {
    while (this.recovering !== null) await this.recovering;
  }

  /** Whether a node recovery is queued or running (reads stay off balancing meanwhile). */
  get recoveryRunning(): boolean {
    return this.recovering !== null || this.readBalancingSuspended;
  }

  private async recoverBitmaps(): Promise<void> {
    while (this.recoveryQueue.size > 0 && !this.left) {
      const slot = Math.max(...this.recoveryQueue);
      try {
        const lock = await this.space.lock(bitmapResource(slot), PW, { signal: this.recoveryAbort.signal });
        try {
          const range = await this.options.host.copyBitmapFromSlot(slot, true).finally(() => this.dropSuspended(slot));
          // Its bits, or (clean bits) whatever else it left: a resync or recovery to take over.
          this.options.host.resyncNeeded(range.highSectors > 0 ? range.lowSectors : Number.MAX_SAFE_INTEGER);
        } finally {
          await lock.unlock();
        }
      } catch (error) {
        if (!this.left) this.options.host.note(`recovery of slot ${slot} failed: ${String(error)}`);
      }
      this.recoveryQueue.delete(slot);
    }
    this.options.host.suspendChanged();
  }
}

export function readResyncRange(block: Uint8Array): SectorRange {
  const v = new DataView(block.buffer, block.byteOffset, 16);
  return { lowSectors: Number(v.getBigUint64(0, true)), highSectors: Number(v.getBigUint64(8, true)) };
}

function union(a: SectorRange, b: SectorRange): SectorRange {
  if (a.highSectors === 0) return b;
  if (b.highSectors === 0) return a;
  return { lowSectors: Math.min(a.lowSectors, b.lowSectors), highSectors: Math.max(a.highSectors, b.highSectors) };
}
