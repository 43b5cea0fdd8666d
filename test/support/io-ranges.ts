/**
 * Seeded I/O ranges over a clone's regions, shared by the crash tests' workloads (the SIGKILL
 * child and the power-loss workload): whole regions (1-3), a run inside one region, or a run of up
 * to 3 regions' worth of sectors from anywhere, across region boundaries. Always whole 512-byte
 * sectors inside the device.
 */
import type { Prng } from '../../runtime/prng.ts';
import { SECTOR_BYTES } from './clone-crash-records.ts';

/** Shares of the three shapes; what `wholeRegions` and `insideRegion` leave goes across boundaries. */
export interface RangeShares {
  wholeRegions: number;
  insideRegion: number;
}

/** [offsetBytes, lengthBytes) of one seeded range. */
export function pickRange(prng: Prng, totalSectors: number, regionSectors: number, shares: RangeShares): [number, number] {
  const shape = prng.next();
  let startSector: number;
  let endSector: number;
  if (shape < shares.wholeRegions) {
    const region = prng.below(Math.ceil(totalSectors / regionSectors));
    startSector = region * regionSectors;
    endSector = (region + prng.range(1, 3)) * regionSectors;
  } else if (shape < shares.wholeRegions + shares.insideRegion) {
    const region = prng.below(Math.ceil(totalSectors / regionSectors));
    const regionEnd = Math.min(totalSectors, (region + 1) * regionSectors);
    startSector = prng.range(region * regionSectors, regionEnd - 1);
    endSector = prng.range(startSector + 1, regionEnd);
  } else {
    startSector = prng.below(totalSectors);
    endSector = startSector + prng.range(1, 3 * regionSectors);
  }
  endSector = Math.min(endSector, totalSectors);
  return [startSector * SECTOR_BYTES, (endSector - startSector) * SECTOR_BYTES];
}
