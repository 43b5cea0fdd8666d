/**
 * md-cluster's message (struct cluster_msg of drivers/md/md-cluster.c), carried in the 64-byte
 * value block of the "message" lock. Little-endian, 48 bytes used, the rest of the block zero:
 *
 *   0  type u32, slot u32 (the sender's 0-based md slot)
 *   8  low u64, high u64 (sectors: RESYNCING's range; high 0 means the resync ended)
 *   24 uuid[16] (NEWDISK: the new device's uuid)
 *   40 raid_slot u32 (NEWDISK, REMOVE, RE_ADD, METADATA_UPDATED, CHANGE_CAPACITY: a device number), pad u32
 *
 * Types 0-7 as the kernel numbers them (8, RESYNCING_START of later kernels, is decoded so a
 * receiver can refuse it by name). BITMAP_RESIZE (low: the bitmap's sectors now, high: after) is
 * our online resize's first step: every node stops writing until CHANGE_CAPACITY (array-resize.ts).
 * CHANGE_CAPACITY names a good device in raid_slot, from which the receivers read the new size.
 */
import { VALUE_BLOCK_BYTES } from '../locks/modes.ts';
import { getU64, setU64 } from './md-superblock.ts';

export const CLUSTER_MSG_BYTES = 48;

export const MSG_TYPE = {
  METADATA_UPDATED: 0,
  RESYNCING: 1,
  NEWDISK: 2,
  REMOVE: 3,
  RE_ADD: 4,
  BITMAP_NEEDS_SYNC: 5,
  CHANGE_CAPACITY: 6,
  BITMAP_RESIZE: 7,
  RESYNCING_START: 8,
} as const;
export type MsgType = (typeof MSG_TYPE)[keyof typeof MSG_TYPE];
export const MSG_TYPE_NAMES: readonly string[] = Object.keys(MSG_TYPE);
/** The types this implementation acts on; the rest are refused (acknowledged, not applied). */
export const MSG_TYPE_HANDLED_MAX = MSG_TYPE.BITMAP_RESIZE;

export interface ClusterMsg {
  type: number;
  /** Sender's 0-based md slot. */
  slot: number;
  lowSectors: number;
  highSectors: number;
  uuid: Uint8Array;
  raidSlot: number;
}

export function clusterMsg(type: MsgType, fields: Partial<Omit<ClusterMsg, 'type'>> = {}): ClusterMsg {
  return { type, slot: 0, lowSectors: 0, highSectors: 0, uuid: new Uint8Array(16), raidSlot: 0, ...fields };
}

/** Encodes into a whole value block (64 bytes, the tail zero). */
export function encodeClusterMsg(msg: ClusterMsg): Uint8Array {
  const bytes = new Uint8Array(VALUE_BLOCK_BYTES);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, msg.type, true);
  v.setUint32(4, msg.slot, true);
  setU64(v, 8, msg.lowSectors);
  setU64(v, 16, msg.highSectors);
  bytes.set(msg.uuid.subarray(0, 16), 24);
  v.setUint32(40, msg.raidSlot >>> 0, true);
  return bytes;
}

/**
 * Decodes a value block or says why it is not a message we can act on: too short, an unknown
 * type, a sector beyond 2^53. Unused fields are not checked (the kernel leaves stale bytes).
 */
export function decodeClusterMsg(bytes: Uint8Array): ClusterMsg | string {
  if (bytes.length < CLUSTER_MSG_BYTES) return `a cluster message needs ${CLUSTER_MSG_BYTES} bytes, got ${bytes.length}`;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = v.getUint32(0, true);
  if (type > MSG_TYPE.RESYNCING_START) return `unknown cluster message type ${type}`;
  const low = getU64(v, 8);
  const high = getU64(v, 16);
  if (low === null || high === null) return `${MSG_TYPE_NAMES[type]}: a sector beyond 2^53`;
  return { type, slot: v.getUint32(4, true), lowSectors: low, highSectors: high, uuid: bytes.slice(24, 40), raidSlot: v.getUint32(40, true) };
}

export function msgTypeName(type: number): string {
  return MSG_TYPE_NAMES[type] ?? `type ${type}`;
}
