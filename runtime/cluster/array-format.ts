/**
 * Creating a clustered array's legs (what `mdadm --create --bitmap=clustered` writes): the same
 * array superblock on every leg but for its device number and uuid, and every node slot's bitmap
 * area. Without assumeClean the array starts out of sync (resync_offset 0) and slot 0's bits are
 * all set, as mdadm writes them, so the first node to assemble resyncs everything.
 */
import { assert } from '../assert.ts';
import type { BlockDevice } from '../devices/block-device.ts';
import { BlockError } from '../errors.ts';
import { arraySectorsOf, legSectorsFor, type SizeShape } from './array-size.ts';
import { bitmapAreaBytes, bitmapChunkCount, CLUSTER_NAME_BYTES, DEFAULT_DAEMON_SLEEP_SECONDS } from './bitmap-superblock.ts';
import { BITMAP_OFFSET_SECTORS, NO_BITMAP_CHUNK_BYTES, planLegLayout, RAID1_SIZE_ALIGN_SECTORS, type BitmapMode, type LegLayout } from './leg-layout.ts';
import { bitmapVersionOf, writeBitmapArea, writeMdSuperblock, type NodeBitmap } from './leg-metadata.ts';
import { raid10ArraySectors } from './raid-layout.ts';
import { MD_FEATURE, MD_ROLE_SPARE, MD_SB_OFFSET_SECTORS, raid10NearLayout, SECTOR_BYTES, type MdSuperblock } from './md-superblock.ts';

export const MD_LEVEL = { raid1: 1, raid10: 10 } as const;
export type RaidLevel = keyof typeof MD_LEVEL;
export const DEFAULT_RAID10_CHUNK_BYTES = 512 * 1024;
/** mdadm's default bitmap chunk for internal bitmaps. */
export const DEFAULT_BITMAP_CHUNK_BYTES = 64 * 1024 * 1024;
/** max_dev written: room for legs to be added later (mdadm leaves room the same way). */
export const MAX_DEV_WRITTEN = 128;

export interface ArrayCreateSpec {
  name: string;
  level: RaidLevel;
  /** raid10 near copies (the n2 / n3 layouts). */
  nearCopies?: number;
  /** Active legs; devices beyond them are spares. */
  raidDisks: number;
  nodes: number;
  clusterName: string;
  bitmapChunkBytes: number;
  raid10ChunkBytes?: number;
  /** The array's size (mdadm --size, here in array bytes); default: what the smallest leg holds. */
  sizeBytes?: number;
  assumeClean: boolean;
  /** The bitmap (mdadm --bitmap): clustered (default), internal (one node) or none. `nodes` still sizes the room kept for a clustered one. */
  bitmap?: BitmapMode;
  uuid: Uint8Array;
  nowSeconds: number;
}

export interface FormattedArray {
  layout: LegLayout;
  superblocks: MdSuperblock[];
}

export async function formatArray(legs: BlockDevice[], spec: ArrayCreateSpec): Promise<FormattedArray> {
  assert(legs.length >= spec.raidDisks && spec.raidDisks >= 1, 'legs cover raidDisks');
  assert(new TextEncoder().encode(spec.name).length <= 32, 'the name fits set_name (validated at the boundary)');
  assert(new TextEncoder().encode(spec.clusterName).length < CLUSTER_NAME_BYTES, 'the cluster name fits (validated at the boundary)');
  const raid10 = spec.level === 'raid10';
  const chunkSectors = raid10 ? (spec.raid10ChunkBytes ?? DEFAULT_RAID10_CHUNK_BYTES) / SECTOR_BYTES : 0;
  const smallest = Math.min(...legs.map((leg) => leg.sizeBytes));
  const nearCopies = spec.nearCopies ?? 2;
  const bitmapSectorsOf = (sizeSectors: number) => (raid10 ? raid10ArraySectors(spec.raidDisks, nearCopies, chunkSectors, sizeSectors) : sizeSectors);
  const planned = planLegLayout(smallest, spec.nodes, spec.bitmapChunkBytes, raid10 ? chunkSectors : RAID1_SIZE_ALIGN_SECTORS, bitmapSectorsOf);
  if (typeof planned === 'string') throw new BlockError('EINVAL', planned);
  const sized = spec.sizeBytes === undefined ? planned : withSize(planned, spec, { level: spec.level, raidDisks: spec.raidDisks, nearCopies, chunkSectors });
  const layout = withBitmap(sized, spec.bitmap ?? 'clustered', spec.nodes, bitmapSectorsOf(sized.sizeSectors));
  const syncSizeSectors = bitmapSectorsOf(layout.sizeSectors);
  const roles = legs.map((_, i) => (i < spec.raidDisks ? i : MD_ROLE_SPARE));
  while (roles.length < MAX_DEV_WRITTEN) roles.push(MD_ROLE_SPARE);
  const superblocks = legs.map((leg, devNumber): MdSuperblock => ({
    featureMap: bitmapFeatures(layout.bitmap),
    setUuid: spec.uuid,
    setName: spec.name,
    ctimeSeconds: spec.nowSeconds,
    level: MD_LEVEL[spec.level],
    layout: raid10 ? raid10NearLayout(nearCopies) : 0,
    sizeSectors: layout.sizeSectors,
    chunkSectors,
    raidDisks: spec.raidDisks,
    bitmapOffsetSectors: layout.bitmap === 'none' ? 0 : BITMAP_OFFSET_SECTORS,
    dataOffsetSectors: layout.dataOffsetSectors,
    dataSizeSectors: Math.floor(leg.sizeBytes / SECTOR_BYTES) - layout.dataOffsetSectors,
    superOffsetSectors: MD_SB_OFFSET_SECTORS,
    recoveryOffsetSectors: 0,
    devNumber,
    deviceUuid: crypto.getRandomValues(new Uint8Array(16)),
    devFlags: 0,
    utimeSeconds: spec.nowSeconds,
    events: 1,
    resyncOffsetSectors: spec.assumeClean ? null : 0,
    devRoles: roles,
  }));
  const bitmaps = freshBitmaps(layout, spec.uuid, syncSizeSectors, spec.clusterName, !spec.assumeClean);
  // Bitmaps first, the superblock last: a leg whose superblock reads back has its slots written.
  await Promise.all(legs.map(async (leg, i) => {
    for (const [slot, bitmap] of bitmaps.entries()) await writeBitmapArea(leg, layout, slot, bitmap);
    await leg.flush();
    await writeMdSuperblock(leg, superblocks[i]!);
    await leg.flush();
  }));
  return { layout, superblocks };
}

/** The planned layout cut to the requested size (the slot areas as long as that size needs). */
function withSize(planned: LegLayout, spec: ArrayCreateSpec, shape: SizeShape): LegLayout {
  const legSectors = legSectorsFor(shape, spec.sizeBytes!);
  if (typeof legSectors === 'string') throw new BlockError('EINVAL', legSectors);
  if (legSectors <= 0) throw new BlockError('EINVAL', `sizeBytes must be above 0, got ${spec.sizeBytes}`);
  if (legSectors > planned.sizeSectors) {
    throw new BlockError('ERANGE', `sizeBytes ${spec.sizeBytes} is more than the legs hold (${arraySectorsOf(shape, planned.sizeSectors) * SECTOR_BYTES})`);
  }
  return { ...planned, sizeSectors: legSectors, bitmapAreaBytes: bitmapAreaBytes(arraySectorsOf(shape, legSectors), planned.bitmapChunkBytes) };
}

/** The layout with bitmap `mode` (the room before data_offset stays planned for `nodes` clustered slots). */
export function withBitmap(layout: LegLayout, mode: BitmapMode, nodes: number, syncSizeSectors: number, bitmapChunkBytes?: number): LegLayout {
  if (mode === 'none') return { ...layout, bitmap: mode, nodes: 1, bitmapChunkBytes: NO_BITMAP_CHUNK_BYTES, bitmapAreaBytes: 0 };
  const chunkBytes = bitmapChunkBytes ?? (layout.bitmap === 'none' ? DEFAULT_BITMAP_CHUNK_BYTES : layout.bitmapChunkBytes);
  return { ...layout, bitmap: mode, nodes: mode === 'clustered' ? nodes : 1, bitmapChunkBytes: chunkBytes, bitmapAreaBytes: bitmapAreaBytes(syncSizeSectors, chunkBytes) };
}

/** The superblock feature bits of a bitmap kind. */
export function bitmapFeatures(mode: BitmapMode): number {
  return mode === 'none' ? 0 : mode === 'internal' ? MD_FEATURE.BITMAP_OFFSET : MD_FEATURE.BITMAP_OFFSET | MD_FEATURE.CLUSTERED;
}

/** Every slot's bitmap of a new bitmap (none: no slot); slot 0 all dirty when `dirty` (a new array to resync). */
export function freshBitmaps(layout: LegLayout, uuid: Uint8Array, syncSizeSectors: number, clusterName: string, dirty: boolean): NodeBitmap[] {
  if (layout.bitmap === 'none') return [];
  const chunks = bitmapChunkCount(syncSizeSectors, layout.bitmapChunkBytes);
  const clustered = layout.bitmap === 'clustered';
  return Array.from({ length: layout.nodes }, (_, slot): NodeBitmap => {
    const bits = new Uint8Array(Math.ceil(chunks / 8));
    if (slot === 0 && dirty) setAll(bits, chunks);
    return {
      sb: {
        version: bitmapVersionOf(layout.bitmap), uuid, events: 1, eventsCleared: 1, syncSizeSectors, state: 0,
        chunkBytes: layout.bitmapChunkBytes, daemonSleepSeconds: DEFAULT_DAEMON_SLEEP_SECONDS, writeBehind: 0, sectorsReserved: 0,
        nodes: clustered ? layout.nodes : 0, clusterName: clustered ? clusterName : '',
      },
      bits,
    };
  });
}

/** Sets bits 0 .. count-1. */
export function setAll(bits: Uint8Array, count: number): void {
  bits.fill(0xff, 0, count >> 3);
  if (count & 7) bits[count >> 3] = (1 << (count & 7)) - 1;
}
