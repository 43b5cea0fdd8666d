/**
 * The md v1.2 superblock, byte-compatible with Linux md (include/uapi/linux/raid/md_p.h, struct
 * mdp_superblock_1) so that mdadm reads our legs. Little-endian; 256 fixed bytes, then one u16
 * role per device number (max_dev of them); v1.2 puts it 4 KiB from the start of the device.
 *
 *   0   magic u32 0xa92b4efc, major_version u32 1, feature_map u32, pad0 u32
 *   16  set_uuid[16], set_name[32]
 *   64  ctime u64 (low 40 bits seconds), level u32, layout u32, size u64 (sectors used per device)
 *   88  chunksize u32 (sectors), raid_disks u32, bitmap_offset s32 (sectors from the superblock)
 *   100 new_level u32, reshape_position u64, delta_disks u32, new_layout u32, new_chunk u32,
 *       new_offset u32 (reshape fields: zero, we do not reshape)
 *   128 data_offset u64, data_size u64, super_offset u64, recovery_offset u64 (all sectors)
 *   160 dev_number u32, cnt_corrected_read u32, device_uuid[16], devflags u8, bblog_shift u8,
 *       bblog_size u16, bblog_offset u32
 *   192 utime u64, events u64, resync_offset u64 (~0: in sync), sb_csum u32, max_dev u32, pad[32]
 *   256 dev_roles u16[max_dev]: the role (0..raid_disks-1), 0xffff spare, 0xfffe faulty
 *
 * sb_csum: the 32-bit little-endian words of the first 256 + 2 x max_dev bytes (sb_csum taken
 * as 0) summed in 64 bits, then the high half folded onto the low one (mdadm's calc_sb_1_csum).
 */
import { assert } from '../assert.ts';
import { getU64, setU64 } from '../le64.ts';

export const MD_SB_MAGIC = 0xa92b4efc;
export const MD_SB_FIXED_BYTES = 256;
/** v1.2: the superblock sits 8 sectors (4 KiB) from the start; mdadm reads 4 KiB there. */
export const MD_SB_OFFSET_SECTORS = 8;
export const MD_SB_AREA_BYTES = 4096;
export const MD_MAX_DEV_LIMIT = (MD_SB_AREA_BYTES - MD_SB_FIXED_BYTES) / 2;
export const SECTOR_BYTES = 512;

export const MD_FEATURE = {
  BITMAP_OFFSET: 1,
  RECOVERY_OFFSET: 2,
  /** The recovery under way is guided by the bitmap (a re-added leg: only dirty chunks). */
  RECOVERY_BITMAP: 128,
  CLUSTERED: 256,
} as const;
/** Per-leg flags: each leg's own, not copied between legs with the array fields. */
export const MD_FEATURE_PER_LEG = MD_FEATURE.RECOVERY_OFFSET | MD_FEATURE.RECOVERY_BITMAP;

export const MD_ROLE_SPARE = 0xffff;
export const MD_ROLE_FAULTY = 0xfffe;
/** Roles at or above this are not array slots. */
export const MD_ROLE_MAX = 0xff00;

/** raid10 layout word: near copies in bits 0-7, far copies in bits 8-15 (the near layout: far 1). */
export function raid10NearLayout(copies: number): number {
  return (1 << 8) | copies;
}

export interface MdSuperblock {
  featureMap: number;
  setUuid: Uint8Array;
  /** At most 32 bytes of UTF-8. */
  setName: string;
  ctimeSeconds: number;
  level: number;
  layout: number;
  /** Sectors of each device the array uses. */
  sizeSectors: number;
  chunkSectors: number;
  raidDisks: number;
  bitmapOffsetSectors: number;
  dataOffsetSectors: number;
  dataSizeSectors: number;
  superOffsetSectors: number;
  /** With MD_FEATURE.RECOVERY_OFFSET: sectors (from data_offset) this device has recovered. */
  recoveryOffsetSectors: number;
  devNumber: number;
  deviceUuid: Uint8Array;
  devFlags: number;
  utimeSeconds: number;
  events: number;
  /** Sectors (from data_offset) known in sync; null: all of it (~0 on disk, md's MaxSector). */
  resyncOffsetSectors: number | null;
  /** One role per device number. */
  devRoles: number[];
}

export function mdSuperblockBytes(sb: Pick<MdSuperblock, 'devRoles'>): number {
  return MD_SB_FIXED_BYTES + 2 * sb.devRoles.length;
}

export function encodeMdSuperblock(sb: MdSuperblock): Uint8Array {
  assert(sb.devRoles.length <= MD_MAX_DEV_LIMIT, 'max_dev fits the 4 KiB superblock area');
  assert(sb.setUuid.length === 16 && sb.deviceUuid.length === 16, 'uuids are 16 bytes');
  const bytes = new Uint8Array(mdSuperblockBytes(sb));
  const v = new DataView(bytes.buffer);
  v.setUint32(0, MD_SB_MAGIC, true);
  v.setUint32(4, 1, true);
  v.setUint32(8, sb.featureMap, true);
  bytes.set(sb.setUuid, 16);
  const name = new TextEncoder().encode(sb.setName);
  assert(name.length <= 32, 'set_name fits 32 bytes');
  bytes.set(name, 32);
  setU64(v, 64, sb.ctimeSeconds);
  v.setUint32(72, sb.level >>> 0, true);
  v.setUint32(76, sb.layout, true);
  setU64(v, 80, sb.sizeSectors);
  v.setUint32(88, sb.chunkSectors, true);
  v.setUint32(92, sb.raidDisks, true);
  v.setInt32(96, sb.bitmapOffsetSectors, true);
  v.setUint32(100, sb.level >>> 0, true); // new_level = level: no reshape
  v.setUint32(116, sb.layout, true); // new_layout
  v.setUint32(120, sb.chunkSectors, true); // new_chunk
  setU64(v, 128, sb.dataOffsetSectors);
  setU64(v, 136, sb.dataSizeSectors);
  setU64(v, 144, sb.superOffsetSectors);
  setU64(v, 152, sb.recoveryOffsetSectors);
  v.setUint32(160, sb.devNumber, true);
  bytes.set(sb.deviceUuid, 168);
  v.setUint8(184, sb.devFlags);
  setU64(v, 192, sb.utimeSeconds);
  setU64(v, 200, sb.events);
  if (sb.resyncOffsetSectors === null) {
    v.setUint32(208, 0xffffffff, true);
    v.setUint32(212, 0xffffffff, true);
  } else setU64(v, 208, sb.resyncOffsetSectors);
  v.setUint32(220, sb.devRoles.length, true);
  sb.devRoles.forEach((role, i) => v.setUint16(MD_SB_FIXED_BYTES + 2 * i, role, true));
  v.setUint32(216, mdSuperblockChecksum(bytes), true);
  return bytes;
}

/**
 * Decodes the superblock at the start of `bytes` (the 4 KiB read at `expectedSuperOffsetSectors`),
 * or says why it is not one we can use: magic, major version, max_dev, checksum, self-location.
 */
export function decodeMdSuperblock(bytes: Uint8Array, expectedSuperOffsetSectors: number): MdSuperblock | string {
  if (bytes.length < MD_SB_FIXED_BYTES) return `superblock needs ${MD_SB_FIXED_BYTES} bytes, got ${bytes.length}`;
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint32(0, true);
  if (magic !== MD_SB_MAGIC) return `no md superblock (magic ${hex32(magic)}, expected ${hex32(MD_SB_MAGIC)})`;
  const major = v.getUint32(4, true);
  if (major !== 1) return `md superblock major version ${major}, expected 1`;
  const maxDev = v.getUint32(220, true);
  if (maxDev > MD_MAX_DEV_LIMIT) return `max_dev ${maxDev} exceeds ${MD_MAX_DEV_LIMIT}`;
  if (bytes.length < MD_SB_FIXED_BYTES + 2 * maxDev) return `superblock with max_dev ${maxDev} is cut short`;
  const stored = v.getUint32(216, true);
  const computed = mdSuperblockChecksum(bytes.subarray(0, MD_SB_FIXED_BYTES + 2 * maxDev));
  if (stored !== computed) return `md superblock checksum ${hex32(stored)}, expected ${hex32(computed)}`;
  const fields: (number | null)[] = [];
  for (const offset of [80, 128, 136, 144, 152, 200]) fields.push(getU64(v, offset));
  if (fields.some((f) => f === null)) return 'a 64-bit field of the md superblock is beyond 2^53';
  const [size, dataOffset, dataSize, superOffset, recoveryOffset, events] = fields as number[];
  if (superOffset !== expectedSuperOffsetSectors) return `super_offset ${superOffset}, expected ${expectedSuperOffsetSectors} (not a v1.2 superblock here)`;
  const resyncLow = v.getUint32(208, true);
  const resyncHigh = v.getUint32(212, true);
  const inSync = resyncLow === 0xffffffff && resyncHigh === 0xffffffff;
  const resync = inSync ? null : getU64(v, 208);
  if (!inSync && resync === null) return 'resync_offset is beyond 2^53';
  const devRoles: number[] = [];
  for (let i = 0; i < maxDev; i++) devRoles.push(v.getUint16(MD_SB_FIXED_BYTES + 2 * i, true));
  return {
    featureMap: v.getUint32(8, true),
    setUuid: bytes.slice(16, 32),
    setName: cString(bytes.subarray(32, 64)),
    ctimeSeconds: seconds40(v, 64),
    level: v.getInt32(72, true),
    layout: v.getUint32(76, true),
    sizeSectors: size!,
    chunkSectors: v.getUint32(88, true),
    raidDisks: v.getUint32(92, true),
    bitmapOffsetSectors: v.getInt32(96, true),
    dataOffsetSectors: dataOffset!,
    dataSizeSectors: dataSize!,
    superOffsetSectors: superOffset!,
    recoveryOffsetSectors: recoveryOffset!,
    devNumber: v.getUint32(160, true),
    deviceUuid: bytes.slice(168, 184),
    devFlags: v.getUint8(184),
    utimeSeconds: seconds40(v, 192),
    events: events!,
    resyncOffsetSectors: resync,
    devRoles,
  };
}

/** mdadm's calc_sb_1_csum over `bytes` (256 + 2 x max_dev bytes), with sb_csum counted as 0. */
export function mdSuperblockChecksum(bytes: Uint8Array): number {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let low = 0;
  let high = 0;
  let i = 0;
  for (; i + 4 <= bytes.length; i += 4) {
    if (i === 216) continue;
    low += v.getUint32(i, true);
    if (low >= 2 ** 32) {
      high += Math.floor(low / 2 ** 32);
      low %= 2 ** 32;
    }
  }
  if (bytes.length - i === 2) low += v.getUint16(i, true);
  return (low + high) % 2 ** 32;
}

export { getU64, setU64 } from '../le64.ts';

/** md's time fields: seconds in the low 40 bits (microseconds, when written, above them). */
function seconds40(v: DataView, offset: number): number {
  return (v.getUint32(offset + 4, true) & 0xff) * 2 ** 32 + v.getUint32(offset, true);
}

export function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}
