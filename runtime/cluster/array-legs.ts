/**
 * The legs of a clustered array as this node sees them: each leg's device, its own superblock
 * (device number and uuid differ per leg; the array fields are kept equal on all), and its state:
 * `active` in role r (in sync, or recovering up to recoveryOffsetSectors), `spare`, or `faulty`
 * (never written again by this node). Array-wide metadata changes (events, roles, resync offset,
 * size) go to every leg that is not faulty, each written and flushed.
 */
import type { BlockDevice } from '../devices/block-device.ts';
import { writeMdSuperblock } from './leg-metadata.ts';
import { MD_FEATURE, MD_FEATURE_PER_LEG, MD_ROLE_FAULTY, MD_ROLE_MAX, MD_ROLE_SPARE, type MdSuperblock } from './md-superblock.ts';

export type LegState = 'active' | 'spare' | 'faulty';

export interface Leg {
  readonly device: BlockDevice;
  sb: MdSuperblock;
  state: LegState;
  /** Array slot while active. */
  role: number | null;
  /** Active but not in sync yet (a new or re-added leg being recovered): written, never read. */
  recovering: boolean;
}

export function legFromSuperblock(device: BlockDevice, sb: MdSuperblock, roles: number[]): Leg {
  const role = roles[sb.devNumber] ?? MD_ROLE_SPARE;
  if (role === MD_ROLE_FAULTY) return { device, sb, state: 'faulty', role: null, recovering: false };
  if (role >= MD_ROLE_MAX) return { device, sb, state: 'spare', role: null, recovering: false };
  return { device, sb, state: 'active', role, recovering: (sb.featureMap & MD_FEATURE.RECOVERY_OFFSET) !== 0 };
}

/** The array fields every leg's superblock shares, taken from `from` (the leg keeps its recovery flag). */
export function withArrayFields(leg: MdSuperblock, from: MdSuperblock): MdSuperblock {
  return {
    ...leg,
    featureMap: (from.featureMap & ~MD_FEATURE_PER_LEG) | (leg.featureMap & MD_FEATURE_PER_LEG), level: from.level, layout: from.layout, sizeSectors: from.sizeSectors,
    chunkSectors: from.chunkSectors, raidDisks: from.raidDisks, utimeSeconds: from.utimeSeconds, events: from.events, bitmapOffsetSectors: from.bitmapOffsetSectors,
    resyncOffsetSectors: from.resyncOffsetSectors, devRoles: [...from.devRoles],
  };
}

/** Writes `array`'s fields into the superblock of every leg not faulty, each flushed. Returns the legs that failed. */
export async function writeArrayMetadata(legs: Leg[], array: MdSuperblock): Promise<Leg[]> {
  const failed: Leg[] = [];
  await Promise.all(legs.filter((leg) => leg.state !== 'faulty').map(async (leg) => {
    const sb = withArrayFields(leg.sb, array);
    try {
      await writeMdSuperblock(leg.device, sb);
      await leg.device.flush();
      leg.sb = sb;
    } catch {
      failed.push(leg);
    }
  }));
  return failed;
}

/** A recovering leg that needs every chunk (a new leg), not only the bitmap's (a re-added one). */
export function recoversWhole(leg: Leg): boolean {
  return leg.state === 'active' && leg.recovering && (leg.sb.featureMap & MD_FEATURE.RECOVERY_BITMAP) === 0;
}

/** "[UU_]" as /proc/mdstat prints it: one letter per array slot, U in use, _ missing or failed. */
export function slotPicture(legs: Leg[], raidDisks: number): string {
  let picture = '';
  for (let role = 0; role < raidDisks; role++) picture += legs.some((leg) => leg.state === 'active' && !leg.recovering && leg.role === role) ? 'U' : '_';
  return `[${picture}]`;
}
