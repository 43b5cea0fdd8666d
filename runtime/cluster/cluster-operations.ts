/**
 * The module interface of md-cluster.rst section 6: the 17 calls the md core (here the array
 * device) makes to the cluster part, one method each, in the document's order, so the cluster
 * part reads against the document line by line. Implemented by MdCluster (md-cluster.ts).
 * Beyond the document, as later kernels: loadBitmaps (gather every slot's resync state once the
 * node's own bitmap is loaded); resizeStart / resizeFinish (online resize, which the document lists
 * as unsupported: array-resize.ts).
 *
 * And the other direction: ClusterHost, what the cluster part asks of the array when a message
 * arrives or a node is recovered (the kernel calls into md and md-bitmap for these).
 */

export type IoDirection = 'read' | 'write';

/** A range of sectors (per device, from data_offset); `highSectors` 0 means none. */
export interface SectorRange {
  lowSectors: number;
  highSectors: number;
}

export interface ClusterOperations {
  // 6.1
  /** (join happens in MdCluster.join: the array cannot call anything before it.) Leaves the cluster. */
  leave(): Promise<void>;
  // 6.2
  /** 0-based slot of this node (the DLM's slot minus one). */
  slotNumber(): number;
  // 6.3
  /** Records the resync range in this node's bitmap lock's value block; sends no message. */
  resyncInfoUpdate(lowSectors: number, highSectors: number): Promise<void>;
  // 6.4
  /** Takes the resync lock (EX: one node resyncs at a time; others wait, PENDING), publishes the whole array as resyncing. */
  resyncStart(signal?: AbortSignal): Promise<void>;
  /** Publishes the end of the resync; when not complete, asks another node to take it over. */
  resyncFinish(complete: boolean): Promise<void>;
  // 6.5
  /** Exclusive access to the metadata (the message channel held). */
  metadataUpdateStart(): Promise<void>;
  /** Sends METADATA_UPDATED naming a good device and releases the channel. */
  metadataUpdateFinish(goodDevice: number): Promise<void>;
  metadataUpdateCancel(): Promise<void>;
  // 6.6
  /** Some node resyncs part of [low, high), or (reads) a node recovery is running. */
  areaResyncing(direction: IoDirection, lowSectors: number, highSectors: number): boolean;
  // 6.7
  /**
   * NEWDISK, then no-new-dev EX without queueing: ENOENT when some node cannot see the disk (then
   * METADATA_UPDATED naming `goodDevice` tells the others it was not added). Holds the channel on success.
   */
  addNewDiskStart(deviceUuid: Uint8Array, raidSlot: number, goodDevice: number): Promise<void>;
  /** Ends an add that succeeded: METADATA_UPDATED, channel released. */
  addNewDiskFinish(goodDevice: number): Promise<void>;
  /** A receiver's answer to NEWDISK: true drops its no-new-dev CR (it sees the disk). */
  newDiskAck(ack: boolean): Promise<void>;
  // 6.8
  removeDisk(raidSlot: number): Promise<void>;
  // 6.9
  /** RE_ADD, then every other slot's bits merged into ours (not cleared): the dirty range to recover. */
  gatherBitmaps(raidSlot: number): Promise<SectorRange>;
  // 6.10
  /** Every other slot's bitmap lock PW without queueing: true when all were free (no other node runs). */
  lockAllBitmaps(): Promise<boolean>;
  unlockAllBitmaps(): Promise<void>;
  // beyond the document: online resize
  /**
   * The resync lock EX without queueing (EBUSY when some node resyncs), the channel held, then
   * BITMAP_RESIZE: every node has stopped writing when it resolves.
   */
  resizeStart(oldSectors: number, newSectors: number): Promise<void>;
  /** CHANGE_CAPACITY naming `goodDevice` (null: none left), METADATA_UPDATED, the channel and the resync lock released. */
  resizeFinish(goodDevice: number | null): Promise<void>;
}

export interface ClusterHost {
  /** Merges slot `slot`'s bits into ours (clearing them there when `clear`); their sector range. */
  copyBitmapFromSlot(slot: number, clear: boolean): Promise<SectorRange>;
  /** METADATA_UPDATED: re-read the superblock (from `goodDevice`) and apply what changed. */
  reloadSuperblock(goodDevice: number): Promise<void>;
  /** Regions from `fromSectors` may be out of sync (a dead node's bits, a stopped resync). */
  resyncNeeded(fromSectors: number): void;
  /** The suspended ranges or read balancing changed: waiting I/O may go again. */
  suspendChanged(): void;
  /** Resolves once no write of this node overlapping [low, high) is in flight (md's quiesce). */
  quiesce(range: SectorRange): Promise<void>;
  /** NEWDISK: can this node open the device with `deviceUuid`? If so it is bound as `raidSlot`. */
  newDiskSeen(deviceUuid: Uint8Array, raidSlot: number): Promise<boolean>;
  /** REMOVE: the leg numbered `raidSlot` leaves the array. */
  removeDisk(raidSlot: number): Promise<void>;
  /** RE_ADD: the failed leg `raidSlot` comes back. */
  readdDisk(raidSlot: number): Promise<void>;
  /** BITMAP_RESIZE from node slot `slot`: stop new writes, wait for those in flight and for bitmap commits. */
  resizePrepare(slot: number): Promise<void>;
  /** CHANGE_CAPACITY from node slot `slot`: take the size the superblock on `goodDevice` holds; that node lets writes go. */
  capacityChanged(slot: number, goodDevice: number): Promise<void>;
  /** Node slot `slot` died (before its bitmap is recovered): a resize it started ends here. */
  nodeGone(slot: number): void;
  /** This node holds dirty bits or an unfinished resync (recovery_cp is not MaxSector). */
  needsSync(): boolean;
  /** One line for the log / events. */
  note(event: string): void;
  /** This node may no longer write to the legs (its lock manager membership ended without a leave). */
  fenced(why: string): void;
  /**
   * The lockspace membership exists (join is still taking its locks): from now on it decides
   * whether this node may write, also for what a callback starts before join returns.
   */
  joined(space: { writesAllowed(): boolean }): void;
}
