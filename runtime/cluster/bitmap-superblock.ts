/**
 * md's write-intent bitmap superblock (drivers/md/md-bitmap.h bitmap_super_t; mdadm's bitmap.h),
 * version 5 for a clustered bitmap: one per node slot, each followed by that node's bits.
 * Little-endian, 256 bytes:
 *
 *   0  magic u32 0x6d746962 ("bitm"), version u32 (4 plain, 5 clustered), uuid[16] (the array's)
 *   24 events u64, events_cleared u64, sync_size u64 (sectors per device the bits cover)
 *   48 state u32 (STALE 0x2, WRITE_ERROR 0x4), chunksize u32 (bytes), daemon_sleep u32 (seconds),
 *      write_behind u32, sectors_reserved u32, nodes u32, cluster_name[64], zero to 256
 *
 * Bits: one per chunk of `chunksize` bytes, bit i in byte i / 8 at bit i % 8, right after the
 * 256 superblock bytes. A node's area (superblock + bits) is rounded up to 4 KiB; slot n's area
 * starts n areas after slot 0's (md-bitmap's storage pages, mdadm's calc_bitmap_size).
 */
import { cString, getU64, setU64 } from './md-superblock.ts';

export const BITMAP_MAGIC = 0x6d746962;
export const BITMAP_VERSION_CLUSTERED = 5;
/** An internal bitmap of one node (md's BITMAP_MAJOR_HI). */
export const BITMAP_VERSION_INTERNAL = 4;
export const BITMAP_SB_BYTES = 256;
export const BITMAP_AREA_ALIGN_BYTES = 4096;
export const CLUSTER_NAME_BYTES = 64;
export const BITMAP_STATE = { STALE: 0x2, WRITE_ERROR: 0x4 } as const;
/** Sub-page chunks do not work in md; and a chunk is a power of two. */
export const BITMAP_CHUNK_BYTES_MIN = 4096;
export const DEFAULT_DAEMON_SLEEP_SECONDS = 5;

export interface BitmapSuperblock {
  version: number;
  uuid: Uint8Array;
  events: number;
  eventsCleared: number;
  syncSizeSectors: number;
  state: number;
  chunkBytes: number;
  daemonSleepSeconds: number;
  writeBehind: number;
  sectorsReserved: number;
  nodes: number;
  clusterName: string;
}

/** Chunks (bits) of a bitmap covering `syncSizeSectors` (mdadm's bitmap_bits). */
export function bitmapChunkCount(syncSizeSectors: number, chunkBytes: number): number {
  return Math.ceil((syncSizeSectors * 512) / chunkBytes);
}

/** Bytes of one node's area: superblock and bits, rounded up to 4 KiB. */
export function bitmapAreaBytes(syncSizeSectors: number, chunkBytes: number): number {
  const bytes = BITMAP_SB_BYTES + Math.ceil(bitmapChunkCount(syncSizeSectors, chunkBytes) / 8);
  return Math.ceil(bytes / BITMAP_AREA_ALIGN_BYTES) * BITMAP_AREA_ALIGN_BYTES;
}

export function encodeBitmapSuperblock(sb: BitmapSuperblock): Uint8Array {
  const bytes = new Uint8Array(BITMAP_SB_BYTES);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, BITMAP_MAGIC, true);
  v.setUint32(4, sb.version, true);
  bytes.set(sb.uuid, 8);
  setU64(v, 24, sb.events);
  setU64(v, 32, sb.eventsCleared);
  setU64(v, 40, sb.syncSizeSectors);
  v.setUint32(48, sb.state, true);
  v.setUint32(52, sb.chunkBytes, true);
  v.setUint32(56, sb.daemonSleepSeconds, true);
  v.setUint32(60, sb.writeBehind, true);
  v.setUint32(64, sb.sectorsReserved, true);
  v.setUint32(68, sb.nodes, true);
  const name = new TextEncoder().encode(sb.clusterName);
  if (name.length >= CLUSTER_NAME_BYTES) throw new RangeError(`cluster name is ${name.length} bytes; at most ${CLUSTER_NAME_BYTES - 1}`);
  bytes.set(name, 72);
  return bytes;
}

/** Decodes a bitmap superblock or says why it is not a usable one. */
export function decodeBitmapSuperblock(bytes: Uint8Array): BitmapSuperblock | string {
  if (bytes.length < BITMAP_SB_BYTES) return `bitmap superblock needs ${BITMAP_SB_BYTES} bytes, got ${bytes.length}`;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint32(0, true);
  if (magic !== BITMAP_MAGIC) return `no bitmap superblock (magic 0x${magic.toString(16)})`;
  const version = v.getUint32(4, true);
  if (version < 3 || version > BITMAP_VERSION_CLUSTERED) return `bitmap version ${version} is not 3 to 5`;
  const events = getU64(v, 24);
  const eventsCleared = getU64(v, 32);
  const syncSize = getU64(v, 40);
  if (events === null || eventsCleared === null || syncSize === null) return 'a 64-bit bitmap field is beyond 2^53';
  const chunkBytes = v.getUint32(52, true);
  if (chunkBytes < 512 || (chunkBytes & (chunkBytes - 1)) !== 0) return `bitmap chunk of ${chunkBytes} bytes is not a power of two of at least 512`;
  return {
    version,
    uuid: bytes.slice(8, 24),
    events,
    eventsCleared,
    syncSizeSectors: syncSize,
    state: v.getUint32(48, true),
    chunkBytes,
    daemonSleepSeconds: v.getUint32(56, true),
    writeBehind: v.getUint32(60, true),
    sectorsReserved: v.getUint32(64, true),
    nodes: v.getUint32(68, true),
    clusterName: cString(bytes.subarray(72, 72 + CLUSTER_NAME_BYTES)),
  };
}
