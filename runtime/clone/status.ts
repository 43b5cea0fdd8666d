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

/** What a clone knows about itself at one moment; `cloneStatus` turns it into a CloneStatus. */
export type StatusParts = Pick<
  CloneStatus,
  | 'metadataUsedBlocks' | 'metadataTotalBlocks' | 'regionSectors' | 'hydratedRegions' | 'hydratingRegions' | 'features'
  | 'hydrationThreshold' | 'hydrationBatchSize' | 'mode' | 'hydrationEnabled' | 'hydrationError' | 'rateBytesPerSecond' | 'commits'
> & { regionCount: number; sizeBytes: number; regionBytes: number };

/** The status fields and line from what the clone knows now (progress and ETA derived here). */
export function cloneStatus(p: StatusParts): CloneStatus {
  const bytesHydrated = Math.min(p.sizeBytes, p.hydratedRegions * p.regionBytes);
  const remaining = p.sizeBytes - bytesHydrated;
  const progressing = p.rateBytesPerSecond > 0 && p.hydrationEnabled && p.hydrationError === null;
  const fields: Omit<CloneStatus, 'line'> = {
    metadataBlockSectors: METADATA_BLOCK_SECTORS,
    metadataUsedBlocks: p.metadataUsedBlocks,
    metadataTotalBlocks: p.metadataTotalBlocks,
    regionSectors: p.regionSectors,
    hydratedRegions: p.hydratedRegions,
    totalRegions: p.regionCount,
    hydratingRegions: p.hydratingRegions,
    features: p.features,
    hydrationThreshold: p.hydrationThreshold,
    hydrationBatchSize: p.hydrationBatchSize,
    mode: p.mode,
    hydrationEnabled: p.hydrationEnabled,
    hydrationComplete: p.hydratedRegions === p.regionCount,
    hydrationError: p.hydrationError,
    bytesHydrated,
    totalBytes: p.sizeBytes,
    rateBytesPerSecond: p.rateBytesPerSecond,
    etaSeconds: remaining === 0 ? 0 : progressing ? remaining / p.rateBytesPerSecond : null,
    commits: p.commits,
  };
  return { ...fields, line: formatStatusLine(fields) };
}

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
