/**
 * A clone's status: the dm-clone INFO line exactly, and the same fields as JSON plus progress.
 *   8 <used>/<total metadata blocks> <region size> <hydrated>/<total regions> <hydrating>
 *     <#features> [features]* 4 hydration_threshold <n> hydration_batch_size <n> <rw|ro|Fail>
 * In Fail mode the line is just "Fail" (dm-clone-target.c clone_status).
 */
import { METADATA_BLOCK_BYTES } from './metadata-format.ts';
import { SECTOR_BYTES, type CloneFeature } from './table.ts';

export type CloneMode = 'rw' | 'ro' | 'Fail';

export interface CloneStatus {
  metadataBlockSectors: number;
  metadataUsedBlocks: number;
  metadataTotalBlocks: number;
  regionSectors: number;
  hydratedRegions: number;
  totalRegions: number;
  hydratingRegions: number;
  features: CloneFeature[];
  hydrationThreshold: number;
  hydrationBatchSize: number;
  mode: CloneMode;
  /** Beyond the kernel's line. */
  hydrationEnabled: boolean;
  hydrationComplete: boolean;
  /** Why background hydration stopped by itself, if it did. */
  hydrationError: string | null;
  bytesHydrated: number;
  totalBytes: number;
  rateBytesPerSecond: number;
  /** Seconds to completion at the current rate; null when unknown (no progress, or stopped). */
  etaSeconds: number | null;
  commits: number;
  /** The status line, exactly as dm-clone prints it. */
  line: string;
}

export const METADATA_BLOCK_SECTORS = METADATA_BLOCK_BYTES / SECTOR_BYTES;

export function formatStatusLine(s: Omit<CloneStatus, 'line'>): string {
  if (s.mode === 'Fail') return 'Fail';
  return [
    METADATA_BLOCK_SECTORS,
    `${s.metadataUsedBlocks}/${s.metadataTotalBlocks}`,
    s.regionSectors,
    `${s.hydratedRegions}/${s.totalRegions}`,
    s.hydratingRegions,
    s.features.length,
    ...s.features,
    4,
    'hydration_threshold',
    s.hydrationThreshold,
    'hydration_batch_size',
    s.hydrationBatchSize,
    s.mode,
  ].join(' ');
}

/** Parses a status line back into its fields (for clients and tests). */
export function parseStatusLine(line: string): Pick<CloneStatus, 'metadataUsedBlocks' | 'metadataTotalBlocks' | 'regionSectors' | 'hydratedRegions' | 'totalRegions' | 'hydratingRegions' | 'features' | 'hydrationThreshold' | 'hydrationBatchSize' | 'mode'> | { mode: 'Fail' } {
  const words = line.trim().split(/\s+/);
  if (words.length === 1 && words[0] === 'Fail') return { mode: 'Fail' };
  let at = 0;
  const next = () => {
    const word = words[at++];
    if (word === undefined) throw new Error(`status line ends early: ${line}`);
    return word;
  };
  const ratio = (word: string) => word.split('/').map(Number) as [number, number];
  if (Number(next()) !== METADATA_BLOCK_SECTORS) throw new Error(`bad metadata block size in ${line}`);
  const [metadataUsedBlocks, metadataTotalBlocks] = ratio(next());
  const regionSectors = Number(next());
  const [hydratedRegions, totalRegions] = ratio(next());
  const hydratingRegions = Number(next());
  const features = Array.from({ length: Number(next()) }, next) as CloneFeature[];
  const core = new Map<string, number>();
  const coreCount = Number(next());
  for (let i = 0; i < coreCount; i += 2) core.set(next(), Number(next()));
  const mode = next() as CloneMode;
  return {
    metadataUsedBlocks, metadataTotalBlocks, regionSectors, hydratedRegions, totalRegions, hydratingRegions, features,
    hydrationThreshold: core.get('hydration_threshold') ?? 1, hydrationBatchSize: core.get('hydration_batch_size') ?? 1, mode,
  };
}
